"""Medical evaluation: zero-shot classification with radiology prompts, image-report retrieval in 2D and 3D,
image-text matching accuracy (PTUnifier) and concept detection (ConceptCLIP), with their report plots.

What a task needs from the model, checked before it runs:
- `retrieval` (2D), `zeroshot`: `encode_image` / `encode_text` (or `retrieval_features`), 2D preprocessing;
- `retrieval-3d`: a volume model (`encode_volume(volume, slice_mask, return_attention=True)` →
  `(features, attention [B, S])`, RadCLIP-3D) whose `transform()` is a `volume_transform`;
- `itm`: `itm_scores(batch) -> [T]` match probabilities of each caption with its image (PTUnifier);
- `concepts`: `concept_similarity_map(images, concept_names) -> [B, C, h, w]` (ConceptCLIP) and, when
  present, `concept_logits(images, concept_names) -> [B, C]` as the detection score.

Data: a file of the matching kind, or `med-toyworld` (any of its three names), written under `data_dir`
on first use; each task then reads its own view (2D Karpathy JSON, volume reports, class folders,
concept JSONL).

Every runner has the core's keyword signature (`vlzoo.core.eval.runners`); the 2D retrieval and zero-shot
are the core's runners given this domain's data and prompts. `vlzoo.medical.cli` registers them all as
the tasks of `vlzoo-medical eval`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn
from torch.utils.data import Dataset, Subset

from vlzoo.core.data import build_source, ensure_generated, generated_datasets, infer_data_kind, is_skipped
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import (
    encode_retrieval_set,
    eval_loader,
    evaluate_retrieval,
    evaluate_zeroshot,
    evaluation_runner,
    load_eval_model,
    report_metrics,
    save_figure,
)
from vlzoo.core.models import require_capability
from vlzoo.medical.data import MED_TOYWORLD_FILES

# Radiology prompts for zero-shot classification; class names are findings ("hypodense lesion",
# "no focal lesion"), so each prompt reads as a report of their presence or absence.
MEDICAL_TEMPLATES: tuple[str, ...] = (
    "a CT image showing {}.",
    "a radiology image showing {}.",
    "an axial CT slice with {}.",
    "{} on a CT scan.",
)
DEFAULT_DATA_DIR = "data/med-toyworld"


# ---------------------------------------------------------------------------------------------- data


def resolve_data(task: str, data: str, data_dir: str | Path | None = None) -> str:
    """The file or folder a task reads: a path as given, or the right view of a generated med-toyworld
    (under `data_dir`, default `DEFAULT_DATA_DIR`)."""
    data_dir = DEFAULT_DATA_DIR if data_dir is None else data_dir
    if data not in MED_TOYWORLD_FILES:
        if data in generated_datasets():  # another generated dataset: its own file
            return str(ensure_generated(data, data_dir))
        return data
    ensure_generated(data, data_dir)  # writes every view at once
    root = Path(data_dir)
    views = {
        "retrieval": "med-toyworld",
        "itm": "med-toyworld",
        "retrieval-3d": "med-toyworld-3d",
        "concepts": "med-toyworld-concepts",
    }
    if task == "zeroshot":
        return str(root / "classes")
    return str(root / MED_TOYWORLD_FILES[views[task]][0])


def _kind(path: str, given: str | None, default: str) -> str:
    if given is not None:
        return given
    try:
        kind = infer_data_kind(path)
    except ConfigError:
        return default
    # A JSONL's suffix says "jsonl"; the medical tasks read their own kind of JSONL.
    return default if kind == "jsonl" else kind


def _model(
    model: str | nn.Module, pretrained: str | None, capability: str, task: str
) -> tuple[nn.Module, str]:
    """`load_eval_model`, refusing (with the contract's own check) a model without the face the task needs."""
    net, name = load_eval_model(model, pretrained)
    require_capability(net, capability, key=f"eval {task}", model_name=name)
    return net, name


# ------------------------------------------------------------------------------------- 2D, core tasks


@evaluation_runner
def evaluate_med_retrieval(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 64,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The core's image↔report retrieval of `data` as `resolve_data` finds it (med-toyworld's 2D view)."""
    path = resolve_data("retrieval", data, data_dir)
    options = {"pretrained": pretrained, "split": split, "workers": workers, "data_kind": data_kind}
    return evaluate_retrieval(model, data=path, batch_size=batch_size, out=out, **options)


@evaluation_runner
def evaluate_med_zeroshot(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 64,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    templates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The core's zero-shot classification of a class folder (med-toyworld's by default) with radiology
    prompts: `MEDICAL_TEMPLATES` unless `templates`."""
    path = resolve_data("zeroshot", data, data_dir)
    options = {"pretrained": pretrained, "split": split, "workers": workers, "data_kind": data_kind}
    prompts = list(templates or MEDICAL_TEMPLATES)
    return evaluate_zeroshot(model, data=path, batch_size=batch_size, out=out, templates=prompts, **options)


# ------------------------------------------------------------------------------------------ 3D retrieval


@evaluation_runner
@torch.inference_mode()
def evaluate_volume_retrieval(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 16,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    n_attention: int = 4,
) -> dict[str, Any]:
    """Volume↔report retrieval (every report of every volume), and with `out` the report: metrics, recall
    curves, similarity heatmap and `slice_attention.png` (the first `n_attention` volumes' slices with the
    adapter's attention weights)."""
    net, name = _model(model, pretrained, "volume_encoder", "retrieval-3d")
    path = resolve_data("retrieval-3d", data, data_dir)
    source = build_source(path, _kind(path, data_kind, "volume-reports"), split, "all", {"train": False})
    encoded = encode_retrieval_set(net, eval_loader(net, source, batch_size, workers))
    metrics = encoded.metrics()
    report_metrics(metrics, f"{name} volume-report retrieval on {data} ({split})", out, **encoded.plots())
    if out is None:
        return metrics
    batch = _first_batch(net, source, n_attention)
    if batch is not None:
        _, attention = net.encode_volume(
            batch["image"], slice_mask=batch.get("slice_mask"), return_attention=True
        )
        plot_slice_attention(
            batch["image"],
            attention,
            Path(out) / "slice_attention.png",
            slice_mask=batch.get("slice_mask"),
            titles=[texts[0] for texts in _texts_by_image(batch)],
        )
    return metrics


def _first_batch(net: nn.Module, source: Dataset, n: int) -> dict[str, Any] | None:
    """One batch of the first `n` readable samples (model preprocessing, every caption)."""
    keep: list[int] = []
    for i in range(len(source)):
        if len(keep) >= n:
            break
        if not is_skipped(source[i]):
            keep.append(i)
    if not keep:
        return None
    loader = eval_loader(net, Subset(source, keep), batch_size=len(keep), workers=0, count_skips=False)
    return next(iter(loader))


def _texts_by_image(batch: dict[str, Any]) -> list[list[str]]:
    owners = batch.get("text_to_image")
    captions = batch.get("captions", [])
    n = len(batch["image"])
    if owners is None:
        return [[c] for c in captions] if captions else [[""] for _ in range(n)]
    by_image: list[list[str]] = [[] for _ in range(n)]
    for caption, owner in zip(captions, owners.tolist()):
        by_image[owner].append(caption)
    return by_image


def plot_slice_attention(
    volumes: torch.Tensor,
    attention: torch.Tensor,
    path: str | Path,
    slice_mask: torch.Tensor | None = None,
    titles: Sequence[str] | None = None,
    max_slices: int = 16,
) -> Path:
    """One row per volume: a strip of its slices (channel 0, each volume stretched to its own range; at
    most `max_slices` real slices, evenly spaced), each labelled with the adapter's attention weight and
    framed in proportion to it, then a bar chart of the weights over all slices (padding in grey).
    `volumes [B, S, C, H, W]`, `attention [B, S]`. A strip is one image, so the plot stays fast."""
    volumes = torch.as_tensor(volumes).detach().float().cpu()
    attention = torch.as_tensor(attention).detach().float().cpu()
    if volumes.ndim != 5 or attention.shape != volumes.shape[:2]:
        raise DataError(
            f"plot_slice_attention wants volumes [B, S, C, H, W] and attention [B, S]; got "
            f"{tuple(volumes.shape)} and {tuple(attention.shape)}"
        )
    B, S = attention.shape
    H, W = volumes.shape[-2:]
    mask = (
        torch.ones(B, S, dtype=torch.bool) if slice_mask is None else torch.as_tensor(slice_mask).bool().cpu()
    )
    columns, gap = min(max_slices, S), max(2, W // 8)
    fig = Figure(figsize=(1.1 * columns + 3.5, 1.6 * B + 0.6))
    grid = fig.add_gridspec(B, 2, width_ratios=[1.1 * columns, 3.0], wspace=0.08, hspace=0.5)
    for b in range(B):
        real = torch.nonzero(mask[b]).flatten()
        shown = (
            real[torch.linspace(0, len(real) - 1, min(columns, len(real))).round().long()]
            if len(real)
            else real
        )
        slices = volumes[b, :, 0]
        low, high = (float(slices[real].min()), float(slices[real].max())) if len(real) else (0.0, 1.0)
        strip = np.ones((H, columns * (W + gap)), np.float32)
        for col, s in enumerate(shown.tolist()):
            strip[:, col * (W + gap) : col * (W + gap) + W] = (
                (slices[s] - low) / max(high - low, 1e-8)
            ).numpy()
        ax = fig.add_subplot(grid[b, 0])
        ax.imshow(strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        peak = float(attention[b].max()) or 1.0
        for col, s in enumerate(shown.tolist()):
            weight = float(attention[b, s])
            x0 = col * (W + gap) - 0.5
            ax.add_patch(
                Rectangle(
                    (x0, -0.5), W, H, fill=False, edgecolor="#d73027", linewidth=0.3 + 3 * weight / peak
                )
            )
            ax.text(x0 + W / 2, -1.5, f"{s}: {weight:.2f}", ha="center", va="bottom", fontsize=6)
        ax.axis("off")
        if titles is not None:
            ax.set_title(textwrap.shorten(f"[{b}] {titles[b]}", 12 * columns), fontsize=8, pad=10)
        bars = fig.add_subplot(grid[b, 1])
        bars.bar(range(S), attention[b].numpy(), color=np.where(mask[b].numpy(), "#4575b4", "#bbbbbb"))
        bars.set_xlabel("slice", fontsize=7)
        bars.set_ylabel("attention", fontsize=7)
        bars.tick_params(labelsize=6)
    fig.suptitle("slice attention of the pooling adapter (slices in the model's view, inferior → superior)")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------- ITM


@evaluation_runner
@torch.inference_mode()
def evaluate_itm(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 64,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Image-text matching accuracy: every caption with its own image (a positive) and with the next image
    of its batch (a negative, unless that image has the very same caption); a pair is called a match when
    `itm_scores > 0.5`. Also the ranking accuracy: how often a caption scores higher with its own image.
    An image alone in its batch (no other to make a negative) is not scored; `unpaired_images` counts it."""
    net, name = _model(model, pretrained, "itm", "itm")
    path = resolve_data("itm", data, data_dir)
    source = build_source(path, _kind(path, data_kind, "karpathy"), split, "all", {"train": False})
    positives, negatives, ranked, unpaired = [], [], [], 0
    for batch in eval_loader(net, source, batch_size, workers):
        n = len(batch["image"])
        if n < 2:
            unpaired += n
            continue
        owners = batch.get("text_to_image", torch.arange(n))
        positive = net.itm_scores({**batch, "text_to_image": owners}).float().cpu()
        other = (owners + 1) % n
        texts = _texts_by_image(batch)
        real = torch.tensor([c not in texts[o] for c, o in zip(batch["captions"], other.tolist())])
        negative = net.itm_scores({**batch, "text_to_image": other}).float().cpu()
        positives.append(positive)
        negatives.append(negative[real])
        ranked.append((positive > negative)[real])
    if not positives:
        raise DataError(f"{data}: no batch of at least two readable images for image-text matching")
    pos, neg, rank = torch.cat(positives), torch.cat(negatives), torch.cat(ranked)
    metrics = itm_metrics(pos, neg)
    metrics["ranking_accuracy"] = 100.0 * rank.float().mean().item() if len(rank) else float("nan")
    metrics["unpaired_images"] = unpaired  # the metrics are over fewer images: say so
    report_metrics(metrics, f"{name} image-text matching on {data} ({split})", out)
    if out is not None:
        plot_itm_scores(pos, neg, Path(out) / "itm_scores.png")
    return metrics


def itm_metrics(positive: torch.Tensor, negative: torch.Tensor, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy (%) of calling matches at `threshold` over positive and negative pairs, and per side."""
    hits_pos = (positive > threshold).float()
    hits_neg = (negative <= threshold).float()
    total = len(positive) + len(negative)
    return {
        "itm_accuracy": 100.0 * (hits_pos.sum() + hits_neg.sum()).item() / max(total, 1),
        "positive_accuracy": 100.0 * hits_pos.mean().item() if len(positive) else float("nan"),
        "negative_accuracy": 100.0 * hits_neg.mean().item() if len(negative) else float("nan"),
        "positives": len(positive),
        "negatives": len(negative),
    }


def plot_itm_scores(positive: torch.Tensor, negative: torch.Tensor, path: str | Path) -> Path:
    """Histograms of the match probability of matching and non-matching pairs."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 26)
    ax.hist(positive.numpy(), bins=bins, alpha=0.6, label=f"matching ({len(positive)})", color="#1a9850")
    ax.hist(negative.numpy(), bins=bins, alpha=0.6, label=f"not matching ({len(negative)})", color="#d73027")
    ax.axvline(0.5, color="black", linewidth=0.8, linestyle="--")
    ax.set_xlabel("ITM match probability")
    ax.set_ylabel("pairs")
    ax.legend()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------- concept detection


@evaluation_runner
@torch.inference_mode()
def evaluate_concepts(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 64,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    n_maps: int = 4,
) -> dict[str, Any]:
    """Concept detection on a MedConcept-style file: every concept of the split (named by its span's text)
    scored against every image (`concept_logits`, else the max of `concept_similarity_map`); AUROC (%) per
    concept against "the concept is in the image's caption", and their mean. With `out`, also
    `concept_maps.png`: the patch-concept similarity of the first `n_maps` images with their concepts."""
    net, name = _model(model, pretrained, "concepts", "concepts")
    path = resolve_data("concepts", data, data_dir)
    source = build_source(path, _kind(path, data_kind, "medconcept"), split, "first", {"train": False})
    vocabulary = concept_vocabulary(source)
    if not vocabulary:
        raise DataError(f"{data}: no concept spans in split {split!r}")
    cuis, names = list(vocabulary), list(vocabulary.values())
    scores, targets = [], []
    for batch in eval_loader(net, source, batch_size, workers, captions=False):
        if len(batch["image"]) == 0:
            continue
        scores.append(_concept_scores(net, batch["image"], names))
        present = [{c["cui"] or c["name"] for c in concepts} for concepts in batch["concepts"]]
        targets.append(torch.tensor([[cui in p for cui in cuis] for p in present]))
    score, target = torch.cat(scores), torch.cat(targets)
    per_concept = {name: auroc(score[:, i], target[:, i]) for i, name in enumerate(names)}
    valid = [v for v in per_concept.values() if np.isfinite(v)]
    metrics: dict[str, Any] = {
        "mean_auroc": float(np.mean(valid)) if valid else float("nan"),
        "concepts": len(names),
        "images": int(score.shape[0]),
        "auroc": per_concept,
    }
    report_metrics(metrics, f"{name} concept detection on {data} ({split})", out)
    if out is None:
        return metrics
    batch = _first_batch(net, source, n_maps)
    if batch is not None:
        shown = sorted({c["name"] for concepts in batch["concepts"] for c in concepts})
        maps = net.concept_similarity_map(batch["image"], shown)
        plot_concept_maps(
            batch["image"], maps, shown, Path(out) / "concept_maps.png", concepts=batch["concepts"]
        )
    return metrics


def concept_vocabulary(source: Dataset) -> dict[str, str]:
    """`{cui: name}` of every concept of a MedConcept source, read from its records (no image decoded); a
    concept without a CUI (the minimal span format) is keyed by its text."""
    records = getattr(source, "records", None)
    if records is None:
        raise DataError("concept evaluation needs a MedConcept source (MedConceptPairs)")
    problems = getattr(source, "problems", {})
    vocabulary: dict[str, str] = {}
    for i, rec in enumerate(records):
        if i in problems:
            continue
        for c in rec.extra.get("concepts", []):
            vocabulary.setdefault(c["cui"] or c["name"], c["name"])
    return dict(sorted(vocabulary.items()))


def _concept_scores(net: torch.nn.Module, images: torch.Tensor, names: list[str]) -> torch.Tensor:
    logits = getattr(net, "concept_logits", None)
    if callable(logits):
        return logits(images, names).float().cpu()
    return net.concept_similarity_map(images, names).amax(dim=(-2, -1)).float().cpu()


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (%) by the rank-sum (Mann-Whitney) formula, ties sharing their mean rank;
    NaN when only one class is present."""
    labels = labels.bool().flatten()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = torch.unique(scores.double().flatten(), return_inverse=True, return_counts=True)
    first_rank = torch.cumsum(counts, 0) - counts + 1  # 1-based rank of each distinct value's first copy
    mean_rank = first_rank + (counts - 1) / 2.0
    rank_sum = mean_rank[inverse][labels].sum().item()
    return 100.0 * (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def plot_concept_maps(
    images: torch.Tensor,
    similarity: torch.Tensor,
    names: Sequence[str],
    path: str | Path,
    concepts: Sequence[Sequence[dict[str, Any]]] | None = None,
    max_concepts: int = 6,
) -> Path:
    """One row per image: the image, then its patch-concept similarity maps (`similarity [B, C, h, w]`,
    bilinearly upsampled to the image, blended over it in one colour scale for the figure). With
    `concepts` (the samples' spans) a row shows the image's own concepts first, marked ✓; at most
    `max_concepts` maps per row. A row is one image, so the plot stays fast."""
    images = torch.as_tensor(images).detach().float().cpu()
    similarity = torch.as_tensor(similarity).detach().float().cpu()
    if images.ndim != 4 or similarity.ndim != 4 or similarity.shape[:2] != (images.shape[0], len(names)):
        raise DataError(
            f"plot_concept_maps wants images [B, C, H, W], similarity [B, {len(names)}, h, w]; got "
            f"{tuple(images.shape)} and {tuple(similarity.shape)}"
        )
    B, (H, W) = images.shape[0], images.shape[-2:]
    up = torch.nn.functional.interpolate(similarity, size=(H, W), mode="bilinear", align_corners=False)
    low, high = float(similarity.min()), float(similarity.max())
    heat = colormaps["jet"](((up - low) / max(high - low, 1e-8)).numpy())[..., :3]  # [B, C, H, W, 3]
    columns, gap = min(max_concepts, len(names)), max(2, W // 10)
    fig = Figure(figsize=(1.6 * (columns + 1), 1.9 * B + 0.5))
    for b in range(B):
        own = {c["name"] for c in concepts[b]} if concepts is not None else set()
        order = sorted(range(len(names)), key=lambda i: (names[i] not in own, i))[:columns]
        picture = _display(images[b])
        gray = picture if picture.ndim == 3 else np.repeat(picture[..., None], 3, axis=-1)
        strip = np.ones((H, (columns + 1) * (W + gap), 3), np.float32)
        strip[:, :W] = gray
        ax = fig.add_subplot(B, 1, b + 1)
        ax.text(W / 2, -1.5, "image", ha="center", va="bottom", fontsize=7)
        for col, i in enumerate(order, start=1):
            x = col * (W + gap)
            strip[:, x : x + W] = 0.55 * gray + 0.45 * heat[b, i]
            mark = " ✓" if names[i] in own else ""
            label = textwrap.shorten(f"{names[i]}{mark} {float(similarity[b, i].max()):.2f}", 34)
            ax.text(x + W / 2, -1.5, label, ha="center", va="bottom", fontsize=6)
        ax.imshow(strip, interpolation="nearest")
        ax.axis("off")
    fig.suptitle("patch-concept similarity (cosine; one colour scale for the whole figure)", fontsize=10)
    return save_figure(fig, path)


def _display(image: torch.Tensor) -> np.ndarray:
    """A normalized `[C, H, W]` tensor as `[H, W]` or `[H, W, 3]` in [0, 1] for imshow."""
    array = image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image[0].numpy()
    low, high = float(array.min()), float(array.max())
    return (array - low) / max(high - low, 1e-8)


__all__ = [
    "DEFAULT_DATA_DIR",
    "MEDICAL_TEMPLATES",
    "auroc",
    "concept_vocabulary",
    "evaluate_concepts",
    "evaluate_itm",
    "evaluate_med_retrieval",
    "evaluate_med_zeroshot",
    "evaluate_volume_retrieval",
    "itm_metrics",
    "plot_concept_maps",
    "plot_itm_scores",
    "plot_slice_attention",
    "resolve_data",
]
