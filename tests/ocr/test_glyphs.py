"""ODM glyph labels: the uniform-font glyphs of each word land inside its polygon."""

from __future__ import annotations

import cv2
import numpy as np

from vlzoo.ocr.data import polygon_quad, render_glyph_map


def _mask(polygon, size):
    mask = np.zeros(size, np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(polygon)).astype(np.int32)], 1)
    return mask


def test_glyphs_fill_their_polygon_and_nothing_outside_it():
    size = (160, 240)
    words = [
        (np.array([[20, 20], [120, 30], [115, 60], [15, 50]], np.float32), "Hello"),  # rotated, skewed
        (np.array([[140, 100], [230, 90], [232, 130], [138, 145]], np.float32), "ab12"),  # perspective
        (np.array([[10, 100], [60, 100], [60, 140], [10, 140]], np.float32), "###"),  # don't care
    ]
    glyphs, skipped = render_glyph_map(words, size)
    assert skipped == [] and set(np.unique(glyphs)) == {0, 1}
    care = [_mask(p, size) for p, t in words[:2]]
    inside = cv2.dilate(np.maximum(*care), np.ones((3, 3), np.uint8))
    assert not (glyphs & (1 - inside)).any()  # no ink outside the word polygons
    for mask in care:
        ink = (glyphs & mask).sum() / mask.sum()
        assert 0.15 < ink < 0.8  # glyphs, not an empty or filled box
        # the ink spans the polygon: its extent covers most of the box's width
        _, xs = np.nonzero(glyphs & mask)
        _, mxs = np.nonzero(mask)
        assert (xs.max() - xs.min()) > 0.85 * (mxs.max() - mxs.min())
    assert not (glyphs & _mask(words[2][0], size)).any()  # the don't-care word draws nothing


def test_a_word_the_uniform_font_cannot_draw_is_skipped_and_named():
    glyphs, skipped = render_glyph_map([(np.array([[0, 0], [40, 0], [40, 20], [0, 20]]), "中文")], (30, 50))
    assert skipped == ["中文"] and glyphs.sum() == 0


def test_a_many_point_polygon_is_drawn_into_its_minimum_area_rectangle():
    curve = np.array([[10, 10], [50, 5], [90, 10], [90, 30], [50, 25], [10, 30]], np.float32)
    quad = polygon_quad(curve)
    assert quad.shape == (4, 2)
    assert np.allclose(quad.min(0), (10, 5), atol=1) and np.allclose(quad.max(0), (90, 30), atol=1)
    # clockwise from the top-left in image coordinates (y down)
    assert np.allclose(quad[0], (10, 5), atol=1) and quad[1][0] > quad[0][0] and quad[2][1] > quad[1][1]


def test_render_glyphs_writes_one_label_per_image_inside_its_words(toyworld, tmp_path):
    from vlzoo.ocr.cli import main
    from vlzoo.ocr.data import read_detection_records

    assert main(["render-glyphs", str(toyworld), str(tmp_path), "--split", "test"]) == 0
    records = read_detection_records(toyworld, "test")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{r.image_path.stem}.png" for r in records)
    for record in records[:6]:
        label = cv2.imread(str(tmp_path / f"{record.image_path.stem}.png"), cv2.IMREAD_GRAYSCALE)
        assert label.shape == (128, 128) and set(np.unique(label)) <= {0, 255}
        care = [i.polygon for i in record.instances if not i.ignore]
        if not care:  # only don't-care words: an empty label
            assert not label.any()
            continue
        words = cv2.dilate(
            np.maximum.reduce([_mask(p, label.shape) for p in care]), np.ones((3, 3), np.uint8)
        )
        assert label.any() and not ((label > 0) & (words == 0)).any()
