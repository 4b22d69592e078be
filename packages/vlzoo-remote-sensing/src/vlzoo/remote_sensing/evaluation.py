"""Evaluation the remote-sensing way: RSICD/RSITMD retrieval (R@1/5/10 both ways and mR) and zero-shot
scene classification with remote-sensing prompts, with the report the papers' tables and a map of scenes.

The retrieval protocol of RSICD, RSITMD (and PriorCLIP, RS-M-CLIP): the test split, each image with its
five captions. Image → text: an image's query is a hit at K when *any* of its captions is among the top K
captions; text → image: a caption's query is a hit when its image is among the top K images. mR is the
mean of the six recalls. These are the core's `retrieval_metrics` (an image's rank is that of its
best-ranked caption), so the figures here and in `vlzoo eval` agree.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import Dataset

from vlzoo.core import get_tokenizer
from vlzoo.core.data import build_source, infer_data_kind
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import (
    GalleryImages,
    active_skips,
    encode_images,
    encode_retrieval_set,
    eval_loader,
    evaluation_runner,
    load_eval_model,
    print_skip_note,
    resolve_eval_data,
    save_figure,
    with_skips,
    write_json,
    write_report,
    zeroshot_classifier,
    zeroshot_metrics,
)
from vlzoo.remote_sensing.data import (
    RS_TEMPLATES,
    GeoImage,
    RSKarpathySplits,
    SceneFolder,
    read_geotiff,
    rgb_composite,
    scene_class_name,
)

__all__ = [
    "RS_COLUMNS",
    "draw_scene",
    "evaluate_rs_retrieval",
    "evaluate_rs_zeroshot",
    "plot_confusion_matrix",
    "plot_scene_map",
    "print_rs_table",
    "resolve_rs_data",
    "rs_table_markdown",
]

# The columns of the RSICD/RSITMD tables: (header, metric key of `retrieval_metrics`).
RS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("I→T R@1", "image_to_text_R@1"),
    ("I→T R@5", "image_to_text_R@5"),
    ("I→T R@10", "image_to_text_R@10"),
    ("T→I R@1", "text_to_image_R@1"),
    ("T→I R@5", "text_to_image_R@5"),
    ("T→I R@10", "text_to_image_R@10"),
    ("mR", "mean_recall"),
)
_HIT, _MISS = "#1a9850", "#444444"
_GEO_SUFFIXES = (".tif", ".tiff")


# -------------------------------------------------------------------------------------------- data


def resolve_rs_data(
    data: str,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    generate: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """(path, kind) of a data argument: a generated dataset's name (`rs-toyworld`: written under
    `data_dir`, default `data/<name>`, on first use) or a file. A plain Karpathy JSON is read as
    `rs-karpathy`, which adds the class ids and georeferencing the reports use."""
    path = resolve_eval_data(data, data_dir, generate)
    kind = data_kind or infer_data_kind(path)
    return path, "rs-karpathy" if kind == "karpathy" else kind


def display_image(path: str | Path) -> np.ndarray:
    """`[H, W, 3]` for imshow: a GeoTIFF's RGB composite, any other image as RGB."""
    if str(path).lower().endswith(_GEO_SUFFIXES):
        return rgb_composite(read_geotiff(path))
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# ------------------------------------------------------------------------------------------- tables


def print_rs_table(
    results: Mapping[str, Mapping[str, float]], title: str = "Retrieval", console: Console | None = None
) -> Table:
    """The paper-style table: one row per model (`results` maps a row label to its metrics), columns
    I→T R@1/5/10, T→I R@1/5/10 and mR, in percent."""
    table = Table(title=title)
    table.add_column("model", style="cyan", no_wrap=True)
    for header, _ in RS_COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for label, metrics in results.items():
        table.add_row(label, *(f"{metrics[key]:.2f}" for _, key in RS_COLUMNS))
    # Eight columns don't fit the 80 characters rich assumes off a terminal: never fold the headers.
    (console or Console(width=max(Console().width, 120))).print(table)
    return table


def rs_table_markdown(results: Mapping[str, Mapping[str, float]]) -> str:
    """The same table as Markdown, for READMEs and reports."""
    headers = ["model", *(h for h, _ in RS_COLUMNS)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for label, metrics in results.items():
        lines.append("| " + " | ".join([label, *(f"{metrics[k]:.2f}" for _, k in RS_COLUMNS)]) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- plots


def plot_scene_map(
    scenes: Sequence[GeoImage | np.ndarray],
    captions: Sequence[str],
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    image_indices: Sequence[int],
    path: str | Path,
    k: int = 5,
) -> Path:
    """One row per scene: its RGB composite drawn at its map coordinates (easting/northing from the
    GeoTIFF's transform, CRS in the title; pixel rows/columns for an image without georeferencing), and
    beside it its top-`k` retrieved captions, the scene's own captions in green."""
    t2i = torch.as_tensor(text_to_image).long().cpu()
    k = min(int(k), text_features.shape[0])
    with torch.inference_mode():
        scores = image_features[list(image_indices)].float().cpu() @ text_features.float().cpu().T
        top = scores.topk(k, dim=1)
    fig = Figure(figsize=(11, 3.4 * len(image_indices)))
    axes = fig.subplots(len(image_indices), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 1.5]})
    for row, (index, scene) in enumerate(zip(image_indices, scenes)):
        ax_map, ax_text = axes[row]
        draw_scene(ax_map, scene)
        ax_text.axis("off")
        ax_text.set_title(f"image #{index}: top-{k} captions", fontsize=10, loc="left")
        for rank, (caption, score) in enumerate(zip(top.indices[row].tolist(), top.values[row].tolist())):
            hit = int(t2i[caption]) == index
            text = textwrap.shorten(captions[caption], width=70)
            ax_text.text(
                0.0,
                0.9 - rank * 0.18,
                f"{rank + 1}. {text}  ({score:.3f}){'  ✓' if hit else ''}",
                color=_HIT if hit else _MISS,
                fontsize=9,
                transform=ax_text.transAxes,
            )
    return save_figure(fig, path)


def draw_scene(ax, scene: GeoImage | np.ndarray) -> None:
    """Draw a scene on matplotlib axes: a `GeoImage`'s RGB composite spans its bounds in CRS units."""
    if isinstance(scene, GeoImage):
        left, bottom, right, top = scene.bounds
        ax.imshow(rgb_composite(scene), extent=(left, right, bottom, top), interpolation="nearest")
        if scene.crs is not None:
            ax.set_xlabel("easting (m)" if scene.crs.is_projected else "longitude")
            ax.set_ylabel("northing (m)" if scene.crs.is_projected else "latitude")
            ax.set_title(f"{Path(scene.path).name}  ({scene.geo['crs']})", fontsize=9)
            ax.ticklabel_format(useOffset=False, style="plain")
            ax.tick_params(labelsize=7)
            return
        ax.set_title(Path(scene.path).name, fontsize=9)
    else:
        ax.imshow(scene)
    ax.set_xlabel("column")
    ax.set_ylabel("row")


def plot_confusion_matrix(
    predictions: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str], path: str | Path
) -> Path:
    """Row-normalized confusion matrix of a scene classification (rows: true class)."""
    n = len(classnames)
    counts = torch.bincount(labels * n + predictions, minlength=n * n).reshape(n, n).double()
    rates = (counts / counts.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    fig = Figure(figsize=(1.0 + 0.45 * n, 0.8 + 0.45 * n))
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    ax.set_xticks(range(n), list(classnames), rotation=90, fontsize=8)
    ax.set_yticks(range(n), list(classnames), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("zero-shot scene classification")
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------ retrieval


@evaluation_runner
@torch.inference_mode()
def evaluate_rs_retrieval(
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
    languages: str | Sequence[str] | None = None,
    generate: Mapping[str, Any] | None = None,
    map_scenes: int = 3,
    console: Console | None = None,
) -> dict[str, Any]:
    """Image↔text retrieval on `split` of `data` (a Karpathy JSON, a file of any data kind, or
    `rs-toyworld`), every caption of every image, in the languages asked for.

    Prints the paper-style table; with `out`, writes `metrics.json`, `retrieval_table.md`, the core's
    plots (recall curves, similarity heatmap, query grid of RGB composites) and `scene_map.png`
    (`map_scenes` scenes at their map coordinates with their top captions). Returns the metrics of
    `retrieval_metrics` plus the counts of images, captions and skipped samples.
    """
    path, kind = resolve_rs_data(data, data_kind, data_dir, generate)
    options = {"train": False, "languages": languages}
    source = build_source(path, kind, split, "all", options)
    net, name = load_eval_model(model, pretrained)
    encoded = encode_retrieval_set(net, eval_loader(net, source, batch_size, workers))
    metrics = with_skips(encoded.metrics())
    title = f"{name} retrieval on {Path(path).name} ({split})"
    print_rs_table({name: metrics}, title=title, console=console)
    print_skip_note(console, always=True)  # the paper-style table has no column for it
    if out is not None:
        _write_retrieval_report(Path(out), metrics, title, name, encoded, source, map_scenes)
    return metrics


def _write_retrieval_report(out, metrics, title, name, encoded, source, map_scenes) -> None:
    gallery = GalleryImages.of(source, encoded, display=display_image)
    write_report(
        out,
        metrics,
        title=title,
        images=gallery,
        console=Console(file=io.StringIO()),  # the paper-style table was printed already
        **encoded.plots(),
    )
    skips = active_skips()
    note = skips.note() if skips is not None else None
    table = f"{title}\n\n" + rs_table_markdown({name: metrics}) + (f"\n{note}\n" if note else "")
    (out / "retrieval_table.md").write_text(table)
    records = getattr(source, "records", None)
    # The map shows gallery images by index, as the query grid does: only when the gallery is complete.
    if gallery is not None and records and map_scenes > 0 and encoded.captions:
        n = encoded.image_features.shape[0]
        indices = sorted(set(np.linspace(0, n - 1, min(map_scenes, n)).round().astype(int).tolist()))
        scenes = [_scene(records[i].image_path) for i in indices]
        plot_scene_map(
            scenes,
            encoded.captions,
            encoded.image_features,
            encoded.text_features,
            encoded.text_to_image,
            indices,
            out / "scene_map.png",
        )


def _scene(path: Path) -> GeoImage | np.ndarray:
    return read_geotiff(path) if str(path).lower().endswith(_GEO_SUFFIXES) else display_image(path)


# ------------------------------------------------------------------------------------------- zero-shot


class _ClassLabelled(Dataset):
    """A caption source's images labelled with their scene class (`label` = `class_id`), captions dropped."""

    def __init__(self, source: RSKarpathySplits):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.source[index]
        if "class_id" in sample:
            sample = {k: v for k, v in sample.items() if k not in ("texts", "text")}
            sample["label"] = sample["class_id"]
        return sample


def _scene_dataset(
    data: str, split: str, data_kind: str | None, data_dir, generate
) -> tuple[Dataset, list[str]]:
    if Path(data).is_dir():
        folder = SceneFolder(data)
        return folder, folder.class_names
    path, kind = resolve_rs_data(data, data_kind, data_dir, generate)
    source = build_source(path, kind, split, "all", {"train": False})
    if not isinstance(source, RSKarpathySplits):
        raise ConfigError(
            f"{data}: zero-shot needs a scene folder or a caption file with classes, not {kind}"
        )
    return _ClassLabelled(source), [scene_class_name(c) for c in source.classes]


@evaluation_runner
@torch.inference_mode()
def evaluate_rs_zeroshot(
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
    templates: Sequence[str] | None = None,
    generate: Mapping[str, Any] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Zero-shot scene classification with remote-sensing prompts (`RS_TEMPLATES` unless `templates`).

    `data` is a scene folder (UCM, AID, RESISC45, EuroSAT layout: `root/<class>/<image>`) or a caption
    file whose images carry classes (RSICD/RSITMD filenames, `rs-toyworld`): its `split` is classified
    into the classes of the whole file. Returns `zeroshot_metrics` (top-1/top-5 accuracy, balanced and
    per-class accuracy, percent); with `out`, also writes `metrics.json` and `confusion_matrix.png`.
    """
    dataset, classnames = _scene_dataset(data, split, data_kind, data_dir, generate)
    net, name = load_eval_model(model, pretrained)
    classifier = zeroshot_classifier(net, get_tokenizer(net), classnames, list(templates or RS_TEMPLATES))
    encoded = encode_images(net, eval_loader(net, dataset, batch_size, workers, captions=False))
    if encoded.labels is None:
        raise DataError(f"{data}: the images carry no class labels")
    metrics: dict[str, Any] = dict(
        zeroshot_metrics(encoded.features, classifier, encoded.labels, classnames=classnames)
    )
    metrics["images"] = len(encoded)
    metrics = with_skips(metrics)
    title = f"{name} zero-shot scene classification on {Path(str(data)).name}"
    table = Table(title=title)
    for column in ("model", "top-1 accuracy", "top-5 accuracy", "balanced accuracy", "images"):
        table.add_column(column, justify="right")
    table.add_row(
        name,
        f"{metrics['top1_accuracy']:.2f}",
        f"{metrics['top5_accuracy']:.2f}",
        f"{metrics['balanced_accuracy']:.2f}",
        str(metrics["images"]),
    )
    (console or Console()).print(table)
    print_skip_note(console, always=True)
    if out is not None:
        out = Path(out)
        write_json(metrics, out / "metrics.json")
        predictions = (encoded.features @ classifier).argmax(dim=1)
        plot_confusion_matrix(predictions, encoded.labels, classnames, out / "confusion_matrix.png")
    return metrics
