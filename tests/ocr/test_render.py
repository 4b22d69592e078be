"""The text renderer: fonts, styles, tight word quads, placement and compositing."""

from __future__ import annotations

import numpy as np
import pytest

from vlzoo.core import DataError
from vlzoo.ocr.render import (
    TextStyle,
    composite,
    list_fonts,
    missing_chars,
    paste_word,
    render_word,
    sample_placement,
    sample_style,
)


def test_the_fonts_matplotlib_ships_are_listed_and_symbol_faces_are_not():
    fonts = list_fonts()
    for family in ("DejaVuSans", "DejaVuSerif-Bold", "DejaVuSansMono-Oblique", "STIXGeneral", "cmr10"):
        assert family in fonts
    assert "cmex10" not in fonts and "STIXSizOneSymReg" not in fonts


def test_the_word_quad_is_the_tight_box_of_its_ink():
    word = render_word("Hello", TextStyle(size=30, color=(255, 0, 0)))
    alpha = word.image[..., 3]
    ys, xs = np.nonzero(alpha)
    (x0, y0), (x1, _), (_, y1) = word.quad[0], word.quad[1], word.quad[2]
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    assert 40 < x1 - x0 < 120 and 15 < y1 - y0 < 35  # five letters at 30 px
    # opaque ink is the requested colour
    assert (word.image[alpha == 255][:, :3] == (255, 0, 0)).all()


def test_outline_and_shadow_draw_their_colours():
    plain = render_word("Text", TextStyle(size=32, color=(0, 0, 0)))
    styled = render_word(
        "Text",
        TextStyle(size=32, color=(0, 0, 0), outline_width=2, outline_color=(0, 255, 0), shadow_offset=(4, 4)),
    )
    green = (styled.image[..., 1] > 200) & (styled.image[..., 0] < 50) & (styled.image[..., 3] == 255)
    assert green.sum() > 50 and not ((plain.image[..., 1] > 200) & (plain.image[..., 3] == 255)).any()
    # the shadow adds translucent pixels outside the ink box
    x0, y0 = styled.quad[0].astype(int)
    x1, y1 = styled.quad[2].astype(int)
    outside = styled.image[..., 3].copy()
    outside[y0:y1, x0:x1] = 0
    assert outside.max() > 0


def test_a_character_the_font_lacks_is_a_data_error_naming_it():
    assert missing_chars("DejaVuSans", "ab中c") == "中"
    with pytest.raises(DataError, match=r"'DejaVuSans' cannot render '中'"):
        render_word("ab中c", TextStyle())


def test_style_sampling_is_seeded_and_keeps_contrast_with_the_background():
    a = [sample_style(np.random.default_rng(3), background=(250, 250, 250)) for _ in range(2)]
    assert a[0] == a[1]
    styles = [sample_style(np.random.default_rng(s), background=(250, 250, 250)) for s in range(40)]
    lum = [0.299 * s.color[0] + 0.587 * s.color[1] + 0.114 * s.color[2] for s in styles]
    assert max(lum) < 250 - 60
    assert len({s.font for s in styles}) > 8


def test_placement_keeps_the_word_inside_the_canvas_and_returns_its_polygon():
    rng = np.random.default_rng(0)
    word = render_word("Scene", TextStyle(size=28, color=(255, 255, 255)))
    for _ in range(10):
        canvas = np.zeros((120, 200, 3), np.uint8)
        m = sample_placement(rng, word.size, canvas.shape[:2], max_rotation=40, max_perspective=0.2)
        assert m is not None
        poly = paste_word(canvas, word, m)
        assert (poly >= 0).all() and (poly[:, 0] <= 200).all() and (poly[:, 1] <= 120).all()
        # every bright pixel lies inside the returned polygon (1 px of anti-aliasing aside)
        import cv2

        inside = np.zeros((120, 200), np.uint8)
        cv2.fillPoly(inside, [np.round(poly).astype(np.int32)], 1)
        inside = cv2.dilate(inside, np.ones((3, 3), np.uint8))
        ink = canvas.max(2) > 128
        assert ink.sum() > 50 and not (ink & (inside == 0)).any()
    assert sample_placement(rng, (50, 500), (100, 100)) is None


def test_composite_blends_by_alpha():
    word = np.zeros((2, 2, 4), np.uint8)
    word[0, 0] = (200, 0, 0, 255)
    word[1, 1] = (200, 0, 0, 0)
    out = composite(np.full((2, 2, 3), 100, np.uint8), word)
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[1, 1]) == (100, 100, 100)
