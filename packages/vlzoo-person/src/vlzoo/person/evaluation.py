"""Text-based person search evaluation: the TBPS protocol (IRRA's), its paper-style table and report.

The test split of a TBPS annotation (CUHK-PEDES, ICFG-PEDES, RSTPReid, person-toyworld): every caption is
a query, every image a gallery entry, and a hit is any gallery image of the query's identity. Rank-1/5/10,
mAP and mINP (text → image, percent) come from the core's `identity_retrieval` with the TBPS protocol's
AP; `ap="market1501"` gives PLIP's released script's trapezoidal AP instead, and the table says which.

`vlzoo-person eval tbps --model NAME [--data person-toyworld | reid_raw.json] [--out DIR]` prints the table
and, with `--out`, writes `metrics.json`, `tbps_table.md` and `tbps_queries.png`: for a few queries, the
caption and its top-10 gallery images, each framed green when it shows the query's identity, red when not.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from rich.console import Console
from rich.table import Table
from torch import nn

from vlzoo.core.data import build_source, infer_data_kind
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import (
    active_skips,
    encode_pair_batch,
    eval_loader,
    evaluation_runner,
    identity_ranking,
    identity_retrieval,
    load_eval_model,
    print_skip_note,
    resolve_eval_data,
    save_figure,
    write_json,
)

__all__ = [
    "TBPS_COLUMNS",
    "EncodedTBPS",
    "encode_tbps",
    "evaluate_tbps",
    "plot_tbps_queries",
    "print_tbps_table",
    "tbps_table_markdown",
]

# The columns of the TBPS papers' tables: (header, key of `identity_retrieval`).
TBPS_COLUMNS = (("Rank-1", "R@1"), ("Rank-5", "R@5"), ("Rank-10", "R@10"), ("mAP", "mAP"), ("mINP", "mINP"))


@dataclass
class EncodedTBPS:
    """A TBPS split encoded: gallery images with their identities, every caption and the image it belongs
    to (its identity is the query's), and the gallery's image files (for the figure)."""

    image_features: torch.Tensor
    text_features: torch.Tensor
    image_pids: torch.Tensor
    text_to_image: torch.Tensor
    captions: list[str]
    skipped: int
    image_paths: list[str] | None = None  # the gallery's files, when every image was read (the figure)

    @property
    def query_pids(self) -> torch.Tensor:
        return self.image_pids[self.text_to_image]

    def metrics(self, ap: str = "tbps") -> dict[str, Any]:
        """Text → image Rank-1/5/10, mAP, mINP (percent), plus the counts of the split."""
        metrics: dict[str, Any] = dict(
            identity_retrieval(
                self.text_features, self.image_features, self.query_pids, self.image_pids, ap=ap
            )
        )
        metrics.update(
            queries=int(self.text_features.shape[0]),
            gallery=int(self.image_features.shape[0]),
            identities=int(self.image_pids.unique().numel()),
        )
        metrics["chance_R@1"] = 100.0 * self._chance_rank1()
        return metrics

    def _chance_rank1(self) -> float:
        """Rank-1 of a random ranking: the share of the gallery that shows the query's identity, averaged."""
        same = (self.query_pids[:, None] == self.image_pids[None, :]).float().mean(1)
        return float(same.mean())


@torch.inference_mode()
def encode_tbps(model: nn.Module, loader: Iterable[Mapping[str, Any]]) -> EncodedTBPS:
    """Encode every image and caption of `loader` (evaluation batches with `"pid"`: `eval_loader`)."""
    images, texts, pids, owners, captions = [], [], [], [], []
    offset = skipped = 0
    for batch in loader:
        skipped += len(batch.get("skipped", ()))
        if len(batch["image"]) == 0:
            continue
        if "pid" not in batch:
            raise DataError(
                "TBPS evaluation needs each image's identity ('pid'): read the data as a TBPS kind"
            )
        image_features, text_features = encode_pair_batch(model, batch)
        images.append(image_features)
        texts.append(text_features)
        pids.append(torch.as_tensor(batch["pid"]).long().cpu())
        owners.append(batch["text_to_image"].cpu() + offset)
        captions.extend(batch.get("captions", []))
        offset += len(batch["image"])
    if not images:
        raise DataError(f"no readable sample to encode ({skipped} skipped)")
    return EncodedTBPS(
        torch.cat(images), torch.cat(texts), torch.cat(pids), torch.cat(owners), captions, skipped
    )


# ---------------------------------------------------------------------------------------------- table


def _cells(metrics: Mapping[str, Any]) -> list[str]:
    return [f"{float(metrics[key]):.2f}" for _, key in TBPS_COLUMNS]


def print_tbps_table(
    results: Mapping[str, Mapping[str, Any]],
    title: str = "Text-based person search",
    console: Console | None = None,
) -> Table:
    """One row per model: Rank-1/5/10, mAP, mINP (text → image, percent), under the AP protocol they share."""
    protocols = {str(m.get("ap_protocol", "tbps")) for m in results.values()}
    if len(protocols) > 1:
        raise ConfigError(f"one table holds one AP protocol; these results mix {sorted(protocols)}")
    table = Table(title=f"{title} (text→image, AP: {protocols.pop() if protocols else 'tbps'})")
    table.add_column("model", style="cyan")
    for header, _ in TBPS_COLUMNS:
        table.add_column(header, justify="right")
    for name, metrics in results.items():
        table.add_row(name, *_cells(metrics))
    (console or Console()).print(table)
    return table


def tbps_table_markdown(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The same table as Markdown."""
    header = "| model | " + " | ".join(h for h, _ in TBPS_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(TBPS_COLUMNS)
    rows = [f"| {name} | " + " | ".join(_cells(m)) + " |" for name, m in results.items()]
    return "\n".join([header, rule, *rows]) + "\n"


# --------------------------------------------------------------------------------------------- figure


def _load(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def plot_tbps_queries(
    encoded: EncodedTBPS, path: str | Path, queries: Sequence[int] | int = 5, top: int = 10
) -> Path:
    """For each query (caption indices, or that many spread over the split): its caption, then its `top`
    gallery images in rank order, framed green when they show the query's identity and red when not."""
    if encoded.image_paths is None or len(encoded.image_paths) != encoded.image_features.shape[0]:
        raise DataError("the query figure needs every gallery image's file (none skipped)")
    n = encoded.text_features.shape[0]
    if isinstance(queries, int):
        queries = sorted(set(np.linspace(0, n - 1, min(queries, n)).round().astype(int).tolist()))
    chosen = torch.tensor(list(queries), dtype=torch.long)
    indices, matches = identity_ranking(
        encoded.text_features[chosen],
        encoded.image_features,
        encoded.query_pids[chosen],
        encoded.image_pids,
        top=top,
    )
    top = indices.shape[1]
    fig = Figure(figsize=(2.2 + 0.9 * top, 2.0 * len(chosen)))
    grid = fig.add_gridspec(len(chosen), top + 1, width_ratios=[2.4] + [1] * top)
    for row, q in enumerate(chosen.tolist()):
        text_ax = fig.add_subplot(grid[row, 0])
        text_ax.axis("off")
        caption = encoded.captions[q] if q < len(encoded.captions) else f"query {q}"
        text_ax.text(0, 0.5, textwrap.fill(caption, 30), fontsize=7, va="center")
        for col in range(top):
            ax = fig.add_subplot(grid[row, col + 1])
            ax.imshow(_load(encoded.image_paths[int(indices[row, col])]))
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "#1a9641" if bool(matches[row, col]) else "#d7191c"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            if row == 0:
                ax.set_title(f"#{col + 1}", fontsize=7)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------- runner


@evaluation_runner
@torch.inference_mode()
def evaluate_tbps(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 64,
    workers: int = 0,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    generate: Mapping[str, Any] | None = None,
    ap: str = "tbps",
    queries: int = 5,
    console: Console | None = None,
) -> dict[str, Any]:
    """Text-based person search on `split` of `data` (a TBPS annotation or `person-toyworld`): prints the
    paper-style table and, with `out`, writes the report (see the module docstring). Returns the metrics."""
    path = resolve_eval_data(data, data_dir, generate)
    kind = data_kind or infer_data_kind(data if data == "person-toyworld" else path)
    if kind == "person-toyworld":
        kind = "cuhk-pedes"
    source = build_source(path, kind, split, "all", {"train": False})
    net, name = load_eval_model(model, pretrained)
    encoded = encode_tbps(net, eval_loader(net, source, batch_size, workers))
    records = getattr(source, "records", None)
    if encoded.skipped == 0 and records is not None and len(records) == encoded.image_features.shape[0]:
        encoded.image_paths = [str(r.image_path) for r in records]
    metrics = encoded.metrics(ap=ap)
    title = f"{name} on {Path(path).name} ({split})"
    print_tbps_table({name: metrics}, title=title, console=console)
    print_skip_note(console, always=True)
    if out is not None:
        out = Path(out)
        write_json({"model": name, "data": str(path), "split": split, **metrics}, out / "metrics.json")
        skips = active_skips()
        note = skips.note() if skips is not None else None
        (out / "tbps_table.md").write_text(
            f"{title}, AP: {ap}\n\n" + tbps_table_markdown({name: metrics}) + (f"\n{note}\n" if note else "")
        )
        if queries > 0 and encoded.image_paths is not None:
            plot_tbps_queries(encoded, out / "tbps_queries.png", queries=queries)
    return metrics
