"""DBNet: DB targets, losses, differentiable binarization and box post-processing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import shapely
import torch

from vlzoo.ocr.data import db_targets
from vlzoo.ocr.dbnet import (
    DBHead,
    balanced_bce,
    boxes_from_prob_map,
    dice_loss,
    masked_l1,
)

WORD = np.array([[20, 20], [80, 20], [80, 40], [20, 40]], np.float32)  # 60 × 20: area 1200, perimeter 160


def test_the_probability_map_is_the_polygon_shrunk_by_dbnets_offset():
    maps = db_targets([WORD], [False], (64, 100))
    d = 1200 * (1 - 0.4**2) / 160  # 6.3 px
    prob = maps["prob_map"]
    ys, xs = np.nonzero(prob)
    # the shrunk box spans (20 + d .. 80 - d) × (20 + d .. 40 - d), to a pixel
    assert abs(xs.min() - (20 + d)) <= 1.5 and abs(xs.max() - (80 - d)) <= 1.5
    assert abs(ys.min() - (20 + d)) <= 1.5 and abs(ys.max() - (40 - d)) <= 1.5
    assert maps["prob_mask"].all()


def test_the_threshold_map_peaks_on_the_border_and_fades_over_d():
    maps = db_targets([WORD], [False], (64, 100))
    thresh, mask = maps["thresh_map"], maps["thresh_mask"]
    assert thresh.min() == pytest.approx(0.3) and thresh.max() == pytest.approx(0.7, abs=0.01)
    assert thresh[20, 50] == pytest.approx(0.7, abs=0.01)  # on the top edge
    assert thresh[30, 50] == pytest.approx(0.3, abs=0.01)  # 10 px from the nearest edge, more than d
    assert thresh[17, 50] == pytest.approx(0.3 + 0.4 * (1 - 3 / 6.3), abs=0.02)  # 3 px outside
    assert mask[20 - 5, 50] == 1 and mask[2, 50] == 0 and mask[30, 50] == 1


def test_dont_care_and_tiny_words_are_masked_out_of_the_loss():
    tiny = np.array([[5, 5], [9, 5], [9, 8], [5, 8]], np.float32)
    maps = db_targets([WORD, tiny], [True, False], (64, 100))
    assert maps["prob_map"].sum() == 0 and maps["thresh_mask"].sum() == 0
    assert maps["prob_mask"][30, 50] == 0 and maps["prob_mask"][6, 6] == 0 and maps["prob_mask"][60, 95] == 1


def test_balanced_bce_keeps_the_hardest_three_negatives_per_positive():
    gt = torch.tensor([1.0, 0, 0, 0, 0, 0])
    pred = torch.tensor([0.5, 0.9, 0.8, 0.7, 0.1, 0.1])
    mask = torch.ones(6)
    bce = lambda p, y: -np.log(p if y else 1 - p)  # noqa: E731
    expected = (bce(0.5, 1) + bce(0.9, 0) + bce(0.8, 0) + bce(0.7, 0)) / 4
    assert float(balanced_bce(pred, gt, mask)) == pytest.approx(expected, rel=1e-4)


def test_masked_l1_and_dice_by_hand():
    pred = torch.tensor([0.5, 1.0, 0.0, 0.2])
    gt = torch.tensor([1.0, 1.0, 0.0, 0.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert float(masked_l1(pred, gt, mask)) == pytest.approx(0.5 / 3)
    assert float(dice_loss(pred, gt, mask)) == pytest.approx(1 - 2 * 1.5 / (1.5 + 2.0), rel=1e-5)


def test_differentiable_binarization_is_a_steep_sigmoid_of_p_minus_t():
    head = DBHead(channels=16, k=50.0)
    out = head(torch.randn(2, 16, 8, 8))
    expected = 1 / (1 + torch.exp(-50 * (out["prob_map"] - out["thresh_map"])))
    assert out["prob_map"].shape == (2, 32, 32)  # two 2x deconvolutions: stride 4 to the input size
    assert torch.allclose(out["binary_map"], expected, atol=1e-6)


def test_post_processing_recovers_rotated_words_from_a_shrunk_probability_map():
    size = (128, 160)
    words = [WORD, np.array([[90, 80], [150, 60], [155, 75], [95, 95]], np.float32)]
    prob = db_targets(words, [False, False], size)["prob_map"] * 0.9
    boxes, scores = boxes_from_prob_map(prob)
    assert len(boxes) == 2 and all(0.7 < s <= 0.9 for s in scores)  # mean probability inside each box
    for word in words:  # unclipping undoes the shrink: each word is found at IoU > 0.8
        iou = max(
            shapely.Polygon(word).intersection(shapely.Polygon(b)).area
            / shapely.Polygon(word).union(shapely.Polygon(b)).area
            for b in boxes
        )
        assert iou > 0.8


def test_post_processing_drops_weak_and_tiny_blobs():
    prob = np.zeros((64, 64), np.float32)
    cv2.rectangle(prob, (5, 5), (40, 20), 0.45, -1)  # above the 0.3 binarization, below a 0.6 box score
    cv2.rectangle(prob, (50, 50), (51, 51), 0.95, -1)  # 2 px: smaller than min_size
    assert boxes_from_prob_map(prob, box_thresh=0.6) == ([], [])
    boxes, _ = boxes_from_prob_map(prob, box_thresh=0.3)
    assert len(boxes) == 1  # the weak blob passes a lower score threshold; the 2 px one never does
