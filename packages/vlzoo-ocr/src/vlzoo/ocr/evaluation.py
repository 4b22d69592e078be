"""Scene-text detection evaluation: `vlzoo-ocr eval detection`.

The ICDAR 2015 protocol (`vlzoo.ocr.detection_metrics`: polygon IoU > 0.5 one-to-one, don't-care regions
and the predictions inside them counted on neither side) over a detection dataset's split, beside the
trivial whole-image detector; a table, `metrics.json` and a figure of images with the predicted (green),
missed (red) and don't-care (grey) polygons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table
from torch import nn

from vlzoo.core import ConfigError
from vlzoo.core.eval import load_eval_model, resolve_eval_data, save_figure, write_json
from vlzoo.ocr.data import DONT_CARE
from vlzoo.ocr.metrics_detection import detection_metrics, match_image
from vlzoo.ocr.training import predict_detections, whole_image_detector

GREEN, RED, GREY = (0, 200, 0), (230, 0, 0), (150, 150, 150)


def draw_detections(
    image: np.ndarray, predictions: Sequence[np.ndarray], truth: Sequence[tuple[np.ndarray, str]]
) -> np.ndarray:
    """`image` with predictions in green, missed words in red and don't-care regions in grey."""
    out = image.copy()
    matched = {g for g, _ in match_image(predictions, truth)["matches"]}
    thickness = max(1, round(max(image.shape[:2]) / 200))
    for i, (polygon, text) in enumerate(truth):
        if text == DONT_CARE:
            cv2.polylines(out, [np.round(polygon).astype(np.int32)], True, GREY, thickness)
        elif i not in matched:
            cv2.polylines(out, [np.round(polygon).astype(np.int32)], True, RED, thickness)
    for polygon in predictions:
        cv2.polylines(out, [np.round(polygon).astype(np.int32)], True, GREEN, thickness)
    return out


def detection_figure(paths: Sequence[str], predictions, truth, n: int = 8) -> Figure:
    n = min(n, len(paths))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3 * cols, 3 * rows))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        image = cv2.cvtColor(cv2.imread(paths[i], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ax.imshow(draw_detections(image, predictions[i], truth[i]))
        ax.set_title(Path(paths[i]).name, fontsize=8)
        ax.axis("off")
    fig.suptitle("predicted (green), missed (red), don't care (grey)", fontsize=9)
    return fig


def evaluate_detection(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 16,
    workers: int = 0,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    generate: Mapping[str, Any] | None = None,
    figure_images: int = 8,
    console: Console | None = None,
) -> dict[str, Any]:
    """Precision, recall and hmean (fractions) of a detector on `split` of `data` (an index JSON, an
    `images/` + `gt/` folder, or `ocr-toyworld`), and those of the whole-image detector."""
    if data_kind not in (None, "icdar-detection"):
        raise ConfigError(f"eval detection reads ICDAR-style detection data, not data kind {data_kind!r}")
    path = resolve_eval_data(data, data_dir, generate)
    net, name = load_eval_model(model, pretrained)
    if not hasattr(net, "predict"):
        raise ConfigError(f"{name} is not a detector (it has no predict(images)); use a dbnet-* model")
    predictions, truth, paths = predict_detections(net, path, split, batch_size)
    metrics: dict[str, Any] = dict(detection_metrics(predictions, truth))
    sizes = [cv2.imread(p, cv2.IMREAD_UNCHANGED).shape[:2] for p in paths]
    metrics["whole_image_detector"] = detection_metrics(whole_image_detector(truth, sizes), truth)
    metrics["images"] = len(paths)
    table = Table(title=f"{name} detection on {Path(str(data)).name} ({split}, ICDAR 2015 protocol)")
    for column in ("detector", "precision", "recall", "hmean"):
        table.add_column(column, justify="right")
    for label, row in ((name, metrics), ("whole image", metrics["whole_image_detector"])):
        table.add_row(label, *(f"{100 * row[k]:.1f}" for k in ("precision", "recall", "hmean")))
    (console or Console()).print(table)
    if out is not None:
        out = Path(out)
        write_json(metrics, out / "metrics.json")
        save_figure(detection_figure(paths, predictions, truth, figure_images), out / "detections.png")
    return metrics


__all__ = ["detection_figure", "draw_detections", "evaluate_detection"]
