"""`vlzoo-ocr eval recognition`: word accuracy and 1 − NED per benchmark, as PARSeq reports them.

    vlzoo-ocr eval recognition --model dptr-parseq-vit-s --pretrained model.safetensors \
        --data data/str/test/IIIT5k,data/str/test/SVT,data/str/test/IC13_857,data/str/test/IC15_1811,...

`--data` is a comma-separated list of STR LMDB folders, `path<TAB>label` files, or a generated dataset
(`ocr-words`: its test crops; `ocr-toyworld`: the legible words of its test scenes, cut and rectified).
Labels are read with the 36-character evaluation charset (PARSeq's `charset_test`), up to 25 characters;
predictions are scored with `recognition_metrics` (the same normalization on both sides). The table has
one row per benchmark (named by its folder: IIIT5k, SVT, IC13_857, IC15_1811, SVTP, CUTE80, ...) and the
combined row weighted by sample count. With `--out`: `metrics.json`, `crops.png` (crops with prediction /
label, errors in red) and `confusions.json` (per-character substitutions, deletions, insertions).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vlzoo.core import DataError
from vlzoo.core.data import ensure_generated, get_generated_dataset
from vlzoo.core.eval import eval_loader, evaluation_runner, load_eval_model, save_figure, with_skips
from vlzoo.ocr.data.labels import normalize_label
from vlzoo.ocr.metrics_recognition import recognition_metrics

__all__ = [
    "BENCHMARKS",
    "character_confusions",
    "evaluate_recognition",
    "recognition_dataset",
]

# PARSeq's benchmark names (strhub/data/module.py), in its table order; others follow in the order given.
BENCHMARKS = ("IIIT5k", "SVT", "IC13_857", "IC13_1015", "IC15_1811", "IC15_2077", "SVTP", "CUTE80")


def recognition_dataset(
    data: str,
    charset: str | None,
    max_length: int,
    data_dir: str | Path | None = None,
    data_kind: str | None = None,
):
    """One evaluation set (labels normalized to `charset`, a name or a file): an LMDB folder, a labels
    file, `ocr-words` (its test split) or `ocr-toyworld` (its test scenes' legible words, cut once under
    `data_dir/recognition-test`)."""
    from vlzoo.ocr.data.crops import WordCrops, cut_icdar_crops
    from vlzoo.ocr.data.lmdb import LmdbDataset

    if get_generated_dataset(data) is not None:
        root = Path(data_dir or Path("data") / data)
        index = ensure_generated(data, root)
        if data == "ocr-toyworld":
            crops = root / "recognition-test"
            if not (crops / "labels.txt").is_file():
                cut_icdar_crops(index, "test", crops)
            return WordCrops(crops / "labels.txt", charset=charset, max_length=max_length)
        return WordCrops(index.parent.parent / "test" / "labels.txt", charset=charset, max_length=max_length)
    path = Path(data)
    if data_kind == "str-lmdb" or (path / "data.mdb").is_file():
        return LmdbDataset(path, charset=charset, max_length=max_length)
    if path.is_file():
        return WordCrops(path, charset=charset, max_length=max_length)
    raise DataError(f"{data}: not an LMDB folder (data.mdb), a path<TAB>label file or a generated dataset")


def _name(data: str) -> str:
    return Path(data).name if not Path(data).is_file() else Path(data).parent.name or Path(data).stem


@torch.no_grad()
def _read(net: nn.Module, dataset, batch_size: int, workers: int, decode: dict[str, Any]):
    labels, preds, images = [], [], []
    device = next(net.parameters()).device
    for batch in eval_loader(net, dataset, batch_size, workers, captions=False):
        if len(batch["id"]) == 0:
            continue
        preds += net.recognize(batch["image"].to(device), **decode)
        labels += batch["captions"]
        images.append(batch["image"][: max(0, 48 - sum(len(x) for x in images))])
    return preds, labels, torch.cat(images) if images else torch.empty(0)


def character_confusions(predictions: Sequence[str], labels: Sequence[str], top: int = 15) -> dict[str, Any]:
    """Per-character errors from a minimal edit alignment of each wrong word: `substitutions` (label char →
    predicted char), `deletions` (label chars missed), `insertions` (chars predicted in excess), each the
    `top` most frequent, and `error_rate` per label character (its substitutions + deletions / occurrences)."""
    subs, dels, ins, seen = Counter(), Counter(), Counter(), Counter()
    for pred, gt in zip(predictions, labels):
        seen.update(gt)
        if pred == gt:
            continue
        d = np.zeros((len(pred) + 1, len(gt) + 1), dtype=np.int64)
        d[:, 0], d[0, :] = np.arange(len(pred) + 1), np.arange(len(gt) + 1)
        for i in range(1, len(pred) + 1):
            for j in range(1, len(gt) + 1):
                d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (pred[i - 1] != gt[j - 1]))
        i, j = len(pred), len(gt)
        while i or j:  # walk back along one minimal path
            if i and j and d[i, j] == d[i - 1, j - 1] + (pred[i - 1] != gt[j - 1]):
                if pred[i - 1] != gt[j - 1]:
                    subs[f"{gt[j - 1]}→{pred[i - 1]}"] += 1
                i, j = i - 1, j - 1
            elif j and d[i, j] == d[i, j - 1] + 1:
                dels[gt[j - 1]] += 1
                j -= 1
            else:
                ins[pred[i - 1]] += 1
                i -= 1
    wrong = Counter({c: 0 for c in seen})
    for pair, n in subs.items():
        wrong[pair.split("→")[0]] += n
    wrong.update(dels)
    rates = {c: wrong[c] / seen[c] for c in sorted(seen, key=lambda c: -wrong[c] / seen[c])}
    return {
        "substitutions": dict(subs.most_common(top)),
        "deletions": dict(dels.most_common(top)),
        "insertions": dict(ins.most_common(top)),
        "error_rate": {c: round(r, 4) for c, r in list(rates.items())[:top]},
    }


def _figure(images: torch.Tensor, preds: Sequence[str], labels: Sequence[str], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = 4
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 1.3 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        pixels = (images[k].permute(1, 2, 0).float() * 0.5 + 0.5).clamp(0, 1).numpy()
        ax.imshow(pixels)
        ok = preds[k] == labels[k]
        ax.set_title(f"{preds[k]} / {labels[k]}", fontsize=9, color="black" if ok else "red")
    fig.suptitle(f"{title}: prediction / label (errors in red)", fontsize=10)
    return fig


@evaluation_runner
def evaluate_recognition(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 128,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    charset: str | None = None,
    max_length: int = 25,
    ar: bool | None = None,
    refine_iters: int | None = None,
    figure_crops: int = 24,
    console: Any = None,
) -> dict[str, Any]:
    """Word accuracy and 1-NED (percent) per benchmark of `data` (comma-separated) and combined (weighted by
    samples); `{"benchmarks": {name: {"accuracy", "one_minus_ned", "samples"}}, "combined": {...}}`."""
    from rich.console import Console
    from rich.table import Table

    from vlzoo.ocr.data.labels import load_charset

    net, name = load_eval_model(model, pretrained)
    spec = charset or "36"
    chars = load_charset(spec)
    decode = {k: v for k, v in (("ar", ar), ("refine_iters", refine_iters)) if v is not None}
    given = [d.strip() for d in str(data).split(",") if d.strip()]
    order = sorted(
        range(len(given)),
        key=lambda i: (
            BENCHMARKS.index(_name(given[i])) if _name(given[i]) in BENCHMARKS else len(BENCHMARKS),
            i,
        ),
    )
    benchmarks, all_preds, all_labels, shown = {}, [], [], None
    for i in order:
        dataset = recognition_dataset(given[i], spec, max_length, data_dir, data_kind)
        preds, labels, images = _read(net, dataset, batch_size, workers, decode)
        preds = [normalize_label(p, chars) for p in preds]
        labels = [normalize_label(t, chars) for t in labels]
        benchmarks[_name(given[i])] = {**recognition_metrics(preds, labels, chars), "samples": len(labels)}
        all_preds += preds
        all_labels += labels
        if shown is None:
            shown = (images[:figure_crops], preds[:figure_crops], labels[:figure_crops], _name(given[i]))
    total = sum(b["samples"] for b in benchmarks.values())
    combined = {
        key: sum(b[key] * b["samples"] for b in benchmarks.values()) / total
        for key in ("accuracy", "one_minus_ned")
    }
    metrics: dict[str, Any] = with_skips(
        {"benchmarks": benchmarks, "combined": {**combined, "samples": total}}
    )

    table = Table(title=f"{name}: word accuracy and 1-NED (%), charset of {len(chars)} characters")
    for column in ("benchmark", "samples", "accuracy", "1 - NED"):
        table.add_column(column, justify="right")
    for bench, m in [*benchmarks.items(), ("Combined", metrics["combined"])]:
        table.add_row(bench, str(m["samples"]), f"{m['accuracy']:.2f}", f"{m['one_minus_ned']:.2f}")
    console = console or Console()
    console.print(table)
    confusions = character_confusions(all_preds, all_labels)
    for kind in ("substitutions", "deletions", "insertions"):
        listed = ", ".join(f"{k} ({n})" for k, n in list(confusions[kind].items())[:8])
        console.print(f"most frequent {kind}: {listed or 'none'}")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        (out / "confusions.json").write_text(json.dumps(confusions, indent=1, ensure_ascii=False))
        if shown is not None and len(shown[0]):
            save_figure(_figure(*shown), out / "crops.png")
    metrics["confusions"] = confusions
    return metrics
