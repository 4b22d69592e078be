"""Evaluation reports: a rich table in the terminal, a JSON file, PNG plots.

Plots are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through ``pyplot``:
no window opens, no global backend is switched under the caller's feet, and figures are freed as soon as
they are saved (pyplot would keep them registered until closed).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from rich.console import Console
from rich.table import Table

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval.retrieval import recall_at_k, retrieval_ranks
from vlzoo.core.eval.skips import active_skips, with_skips

__all__ = [
    "plot_query_grid",
    "plot_recall_curves",
    "plot_similarity_heatmap",
    "print_skip_note",
    "print_table",
    "report_metrics",
    "save_figure",
    "to_jsonable",
    "write_json",
    "write_report",
]

_HIT_COLOR = "#1a9850"  # green
_MAX_NESTED_ROWS = 20  # a per-class dict of 1000 ImageNet classes belongs in the JSON, not the terminal


def to_jsonable(value):
    """Plain JSON types from tensors, numpy values, paths and nested containers; NaN/inf become None.

    Strict JSON has no NaN (Python would write a bare ``NaN`` that other parsers reject); ``None`` marks
    a metric that could not be computed, e.g. a recall with no queries.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return to_jsonable(value.item() if value.ndim == 0 else value.tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    raise DataError(f"cannot write a {type(value).__name__} to JSON: {value!r}")


def write_json(metrics: Mapping[str, object], path: str | os.PathLike) -> Path:
    """Writes ``metrics`` as indented JSON; atomic, so a crashed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(metrics), indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _rows(metrics: Mapping[str, object], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if len(value) > _MAX_NESTED_ROWS:
                rows.append((name, f"{len(value)} entries (see the JSON file)"))
            else:
                rows += _rows(value, prefix=f"{name}/")
        else:
            rows.append((name, _format_value(value)))
    return rows


def _format_value(value) -> str:
    value = to_jsonable(value)
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 and value != 0 else f"{value:.2f}"
    return str(value)


def print_table(
    metrics: Mapping[str, object], title: str = "Evaluation", console: Console | None = None
) -> Table:
    """Prints one row per metric (nested dicts as ``outer/inner`` rows) and returns the rich Table."""
    table = Table(title=title)
    table.add_column("metric", style="cyan", no_wrap=True)
    table.add_column("value", justify="right")
    for name, value in _rows(metrics):
        table.add_row(name, value)
    (console or Console()).print(table)
    return table


def print_skip_note(console: Console | None = None, always: bool = False) -> str | None:
    """Prints, under a report's table, how many samples the running evaluation skipped and which (see
    `vlzoo.core.eval.skips`); with `always`, also that none were (for a table without a `skipped` row).
    Returns the note, None when nothing was printed."""
    skips = active_skips()
    note = skips.note() if skips is not None and (always or skips.skipped) else None
    if note is not None:  # no markup (file names hold brackets) and no wrapping (names stay whole)
        (console or Console()).print(note, markup=False, highlight=False, soft_wrap=True)
    return note


def _table_rows(metrics: Mapping[str, object]) -> dict[str, object]:
    """The metrics a table shows: the skipped files are listed under it, not crammed into a cell."""
    return {k: v for k, v in metrics.items() if k != "skipped_examples"}


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Writes ``fig`` as a PNG at ``path`` (parents created) and returns the path: every report plot of the
    core and the domains goes through here, so they share one size and format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return path


def plot_recall_curves(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    path: str | os.PathLike,
    ks: Sequence[int] = tuple(range(1, 51)),
    chunk_size: int | None = None,
) -> Path:
    """Recall@K against K for both directions. Ranks are computed once, chunked, then thresholded at each K."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ConfigError(f"ks must be positive integers, got {ks!r}")
    i2t, t2i = retrieval_ranks(image_features, text_features, text_to_image, chunk_size=chunk_size)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for label, ranks in (("image → text", i2t), ("text → image", t2i)):
        ax.plot(ks, recall_at_k(ranks, ks), marker="." if len(ks) <= 60 else None, label=label)
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Recall@K: {image_features.shape[0]} images, {text_features.shape[0]} captions")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_similarity_heatmap(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    path: str | os.PathLike,
    n_images: int = 10,
) -> Path:
    """Similarities of the first ``n_images`` images with their own captions, boxes around matching pairs.

    A good model shows bright boxes on a dark background; a bright row or column is a hub (an image or
    caption close to everything).
    """
    t2i = torch.as_tensor(text_to_image).long().cpu()
    n = min(int(n_images), image_features.shape[0])
    if n < 1:
        raise ConfigError(f"n_images must be positive, got {n_images}")
    captions = torch.nonzero(t2i < n).flatten()
    captions = captions[torch.argsort(t2i[captions], stable=True)]  # grouped by image
    if captions.numel() == 0:
        raise DataError(f"the first {n} images have no captions in text_to_image")
    with torch.inference_mode():
        sim = (image_features[:n].float().cpu() @ text_features[captions].float().cpu().T).numpy()
    owners = t2i[captions].tolist()
    fig = Figure(figsize=(max(4.0, 0.25 * len(owners) + 2), max(3.0, 0.35 * n + 1.5)))
    ax = fig.add_subplot()
    im = ax.imshow(sim, cmap="viridis", aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="cosine similarity")
    for img in range(n):
        cols = [c for c, owner in enumerate(owners) if owner == img]
        if cols:
            ax.add_patch(
                Rectangle(
                    (cols[0] - 0.5, img - 0.5), len(cols), 1, fill=False, edgecolor="white", linewidth=1.5
                )
            )
    ax.set_xlabel("caption index (grouped by image)")
    ax.set_ylabel("image index")
    ax.set_yticks(range(n))
    if len(owners) <= 40:
        ax.set_xticks(range(len(owners)), [str(c) for c in captions.tolist()], rotation=90, fontsize=7)
    ax.set_title(f"Image-caption similarity, first {n} images")
    return save_figure(fig, path)


def _as_display_array(image) -> np.ndarray:
    """HWC array for imshow from a PIL image, a CHW/HWC tensor or array, uint8 or float."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
            image = image.permute(1, 2, 0)
        image = image.float().numpy() if image.is_floating_point() else image.numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] > 4:  # multispectral: show the first three bands
        array = array[..., :3]
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:  # a normalized tensor (ImageNet mean/std): stretch to [0, 1] for display only
        array = (array - low) / max(high - low, 1e-8)
    return array


def plot_query_grid(
    captions: Sequence[str],
    images,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    path: str | os.PathLike,
    n_queries: int = 6,
    k: int = 5,
    query_indices: Sequence[int] | None = None,
) -> Path:
    """One row per caption query (its text as the row title) with its top-``k`` images; hits in green.

    Queries default to ``n_queries`` captions evenly spaced over the set, so that the grid isn't only the
    first few images. ``images`` is indexable by image index: a ``[N, C, H, W]`` tensor, or a sequence of
    PIL images, CHW tensors or HWC arrays.
    """
    t2i = torch.as_tensor(text_to_image).long().cpu()
    n_txt = text_features.shape[0]
    if len(captions) != n_txt or t2i.shape[0] != n_txt:
        raise DataError(
            f"{len(captions)} captions, text_to_image {tuple(t2i.shape)} and text_features "
            f"{tuple(text_features.shape)} must have the same length"
        )
    if len(images) != image_features.shape[0]:
        raise DataError(f"{len(images)} images for image_features {tuple(image_features.shape)}")
    if query_indices is None:
        n = max(1, min(int(n_queries), n_txt))
        query_indices = torch.linspace(0, n_txt - 1, n).round().long().unique().tolist()
    queries = [int(q) for q in query_indices]
    k = min(int(k), image_features.shape[0])
    with torch.inference_mode():
        scores = text_features[queries].float().cpu() @ image_features.float().cpu().T
        top = scores.topk(k, dim=1)

    fig = Figure(figsize=(2.0 * k, 2.5 * len(queries)))
    rows = fig.subfigures(len(queries), 1, squeeze=False)[:, 0]
    for row, q, indices, values in zip(rows, queries, top.indices.tolist(), top.values.tolist()):
        row.suptitle(textwrap.shorten(f"[{q}] {captions[q]}", width=30 * k), fontsize=10)
        for col, (img, score) in enumerate(zip(indices, values)):
            ax = row.add_subplot(1, k, col + 1)
            ax.imshow(_as_display_array(images[img]))
            ax.set_xticks([])
            ax.set_yticks([])
            hit = img == int(t2i[q])
            ax.set_xlabel(f"#{img}  {score:.3f}" + ("  ✓" if hit else ""), fontsize=8)
            for spine in ax.spines.values():
                spine.set_visible(hit)
                if hit:
                    spine.set_edgecolor(_HIT_COLOR)
                    spine.set_linewidth(5)
    return save_figure(fig, path)


def write_report(
    out_dir: str | os.PathLike,
    metrics: Mapping[str, object],
    *,
    title: str = "Evaluation",
    image_features: torch.Tensor | None = None,
    text_features: torch.Tensor | None = None,
    text_to_image: torch.Tensor | None = None,
    captions: Sequence[str] | None = None,
    images=None,
    chunk_size: int | None = None,
    console: Console | None = None,
) -> dict[str, Path]:
    """Prints the table and writes ``metrics.json`` plus, given retrieval features, the three plots.

    The recall curves and heatmap need ``image_features``, ``text_features`` and ``text_to_image``; the
    query grid also needs ``captions`` and ``images``. Inside an evaluation, the table and the JSON carry
    its skipped samples (`vlzoo.core.eval.skips`). Returns the written paths by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = with_skips(metrics)
    print_table(_table_rows(metrics), title=title, console=console)
    print_skip_note(console)
    paths = {"json": write_json(metrics, out / "metrics.json")}
    retrieval = (image_features, text_features, text_to_image)
    if any(x is not None for x in retrieval) and not all(x is not None for x in retrieval):
        raise ConfigError("image_features, text_features and text_to_image go together: pass all three")
    if image_features is None:
        return paths
    paths["recall_curves"] = plot_recall_curves(
        image_features, text_features, text_to_image, out / "recall_curves.png", chunk_size=chunk_size
    )
    paths["similarity_heatmap"] = plot_similarity_heatmap(
        image_features, text_features, text_to_image, out / "similarity_heatmap.png"
    )
    if captions is not None and images is not None:
        paths["query_grid"] = plot_query_grid(
            captions, images, image_features, text_features, text_to_image, out / "query_grid.png"
        )
    return paths


def report_metrics(
    metrics: Mapping[str, object],
    title: str = "Evaluation",
    out: str | os.PathLike | None = None,
    console: Console | None = None,
    **plots,
) -> dict[str, Path]:
    """The end of every evaluation runner: with ``out``, `write_report` there (``plots`` are its plot
    keywords, e.g. ``EncodedRetrievalSet.plots()``); without, only the table. Returns the written paths."""
    if out is None:
        print_table(_table_rows(with_skips(metrics)), title=title, console=console)
        print_skip_note(console)
        return {}
    return write_report(out, metrics, title=title, console=console, **plots)
