"""`vlzoo.ocr.detection_metrics` against precision/recall/hmean worked out by hand (ICDAR 2015 rules)."""

from __future__ import annotations

import pytest

from vlzoo.ocr import detection_metrics


def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_exact_and_partial_matches_count_when_iou_passes_one_half():
    gt = [[(box(0, 0, 10, 10), "cat"), (box(20, 0, 30, 10), "dog")]]
    # the second prediction covers 60 of the 100 pixels of "dog" and nothing else: IoU 0.6
    preds = [[box(0, 0, 10, 10), box(20, 0, 26, 10)]]
    assert detection_metrics(preds, gt) == {"precision": 1.0, "recall": 1.0, "hmean": 1.0}


def test_iou_of_exactly_one_half_is_not_a_match():
    gt = [[(box(0, 0, 20, 10), "word")]]
    split = [[box(0, 0, 10, 10), box(10, 0, 20, 10)]]  # each half: IoU 100/200 = 0.5
    assert detection_metrics(split, gt) == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}


def test_a_merged_box_over_two_words_matches_neither():
    gt = [[(box(0, 0, 10, 10), "ab"), (box(12, 0, 22, 10), "cd")]]
    merged = [[box(0, 0, 22, 10)]]  # IoU 100/220 with each word
    assert detection_metrics(merged, gt) == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}


def test_matching_is_one_to_one():
    gt = [[(box(0, 0, 10, 10), "a")]]
    twice = [[box(0, 0, 10, 10), box(0, 0, 10, 10)]]
    assert detection_metrics(twice, gt) == pytest.approx({"precision": 0.5, "recall": 1.0, "hmean": 2 / 3})


def test_dont_care_regions_and_predictions_inside_them_count_on_neither_side():
    gt = [[(box(0, 0, 10, 10), "###"), (box(50, 50, 60, 60), "word")]]
    preds = [
        [
            box(2, 0, 12, 10),  # 80% of it inside the don't-care box: dropped
            box(5, 0, 15, 10),  # exactly 50% inside: kept, and a false positive
            box(50, 50, 60, 60),  # a hit
        ]
    ]
    assert detection_metrics(preds, gt) == pytest.approx({"precision": 0.5, "recall": 1.0, "hmean": 2 / 3})


def test_totals_are_summed_over_images_before_dividing():
    gt = [
        [(box(0, 0, 10, 10), "cat"), (box(20, 0, 30, 10), "dog")],
        [(box(0, 0, 20, 10), "word")],
        [(box(0, 0, 10, 10), "ab"), (box(12, 0, 22, 10), "cd")],
        [(box(0, 0, 10, 10), "###"), (box(50, 50, 60, 60), "word")],
    ]
    preds = [
        [box(0, 0, 10, 10), box(20, 0, 26, 10)],
        [box(0, 0, 10, 10), box(10, 0, 20, 10)],
        [box(0, 0, 22, 10)],
        [box(2, 0, 12, 10), box(5, 0, 15, 10), box(50, 50, 60, 60)],
    ]
    # hits 2+0+0+1 = 3, care gt 2+1+2+1 = 6, kept predictions 2+2+1+2 = 7
    p, r = 3 / 7, 3 / 6
    assert detection_metrics(preds, gt) == pytest.approx(
        {"precision": p, "recall": r, "hmean": 2 * p * r / (p + r)}
    )


def test_rotated_polygons_use_their_true_area():
    diamond = [[10, 0], [20, 10], [10, 20], [0, 10]]  # area 200
    square = box(5, 5, 15, 15)  # area 100, wholly inside the diamond: IoU 100/200 = 0.5
    assert detection_metrics([[square]], [[(diamond, "x")]])["hmean"] == 0.0
    bigger = box(4, 4, 16, 16)  # 144 inside the diamond except its four corners (4 triangles of 2): 136/208
    assert detection_metrics([[bigger]], [[(diamond, "x")]])["hmean"] == 1.0


def test_no_predictions_and_no_ground_truth_give_zeros_not_a_division_error():
    assert detection_metrics([[]], [[]]) == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}
    assert detection_metrics([[]], [[(box(0, 0, 5, 5), "a")]])["recall"] == 0.0
