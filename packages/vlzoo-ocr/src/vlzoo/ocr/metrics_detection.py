"""Scene-text detection metric: the ICDAR 2015 (RRC) protocol, as MMOCR's `HmeanIOUMetric` and the
official script compute it.

- Ground truth whose transcription is `###` is don't-care: it counts on neither side.
- A prediction is dropped (counts on neither side) when its intersection with any one don't-care region
  is more than half of its own area.
- The remaining predictions and ground truth are matched one-to-one, first come first matched in
  ground-truth-major order (the official script's greedy loop, MMOCR's 'vanilla' strategy), where the
  polygon IoU is strictly greater than 0.5.
- Precision, recall and hmean come from the totals over all images; a zero denominator gives 0 (the
  official script; MMOCR instead sets recall to 1 when there is no ground truth at all).

Polygons that are not valid (self-touching predictions) are repaired with `buffer(0)`, as MMOCR does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely

DONT_CARE = "###"
MATCH_IOU = 0.5
DONT_CARE_PRECISION = 0.5


def _polygons(polygons: Sequence[Any]) -> np.ndarray:
    geoms = [shapely.Polygon(np.asarray(p, dtype=np.float64).reshape(-1, 2)) for p in polygons]
    return np.array([g if g.is_valid else g.buffer(0) for g in geoms], dtype=object)


def _intersection_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return shapely.area(shapely.intersection(a[:, None], b[None, :]))


def match_image(predictions: Sequence[Any], ground_truth: Sequence[tuple[Any, str]]) -> dict[str, Any]:
    """One image: `{"matches": [(gt index, pred index)], "care_gt": [...], "care_pred": [...],
    "dont_care_pred": [...]}` (indices into the inputs)."""
    preds = _polygons(predictions)
    gts = _polygons([p for p, _ in ground_truth])
    dont_care = np.array([t == DONT_CARE for _, t in ground_truth], dtype=bool)
    pred_area = shapely.area(preds) if len(preds) else np.zeros(0)
    inter_dc = _intersection_areas(preds, gts[dont_care])
    dropped = (
        (inter_dc / (pred_area[:, None] + 1e-5) > DONT_CARE_PRECISION).any(1)
        if len(preds)
        else np.zeros(0, bool)
    )
    care_gt = np.flatnonzero(~dont_care)
    care_pred = np.flatnonzero(~dropped)
    inter = _intersection_areas(gts[care_gt], preds[care_pred])
    union = (
        shapely.area(gts[care_gt])[:, None] + pred_area[care_pred][None, :] - inter if inter.size else inter
    )
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    matches, used_gt, used_pred = [], set(), set()
    for gi, pi in zip(*np.nonzero(iou > MATCH_IOU)):  # row-major: ground-truth-major, as the official loop
        if gi in used_gt or pi in used_pred:
            continue
        matches.append((int(gi), int(pi)))
        used_gt.add(gi)
        used_pred.add(pi)
    return {
        "matches": [(int(care_gt[g]), int(care_pred[p])) for g, p in matches],
        "care_gt": care_gt.tolist(),
        "care_pred": care_pred.tolist(),
        "dont_care_pred": np.flatnonzero(dropped).tolist(),
    }


def detection_metrics(
    predictions: Sequence[Sequence[Any]], ground_truth: Sequence[Sequence[tuple[Any, str]]]
) -> dict[str, float]:
    """`{"precision", "recall", "hmean"}` (fractions) over images; `predictions[i]` the polygons (`N×2`
    array-likes) predicted for image i, `ground_truth[i]` its `(polygon, transcription)` pairs."""
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} images of predictions but {len(ground_truth)} of ground truth")
    hits = n_gt = n_pred = 0
    for preds, gts in zip(predictions, ground_truth):
        image = match_image(preds, gts)
        hits += len(image["matches"])
        n_gt += len(image["care_gt"])
        n_pred += len(image["care_pred"])
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_gt if n_gt else 0.0
    hmean = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "hmean": hmean}


__all__ = ["DONT_CARE", "detection_metrics", "match_image"]
