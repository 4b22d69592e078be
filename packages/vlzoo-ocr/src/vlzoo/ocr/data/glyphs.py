"""ODM glyph labels: every annotated word re-drawn in one uniform font, perspective-warped into its polygon.

ODM's destylization target is the image's text with its style removed: black-on-white glyphs of a single
font at the words' locations. A word is rendered with `vlzoo.ocr.render.render_word` in `UNIFORM_FONT`, its
tight ink quadrilateral is mapped onto the word's annotated quadrilateral by a homography, and the warped
ink is or-ed into a binary map of the image's size. Don't-care words (`###`) have no transcription, so
they draw nothing (the official label generator skips them too).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from vlzoo.core import DataError
from vlzoo.ocr.data.icdar import DONT_CARE
from vlzoo.ocr.render import UNIFORM_FONT, TextStyle, quad_homography, render_word, warp_rgba

# Large enough that downscaling by the warp keeps strokes smooth, small enough to render fast.
GLYPH_FONT_SIZE = 48


def polygon_quad(polygon: np.ndarray) -> np.ndarray:
    """The quadrilateral a word is drawn into: a 4-point polygon as given (ICDAR order: top-left first,
    clockwise), a longer polygon (Total-Text) through its minimum-area rectangle, top-left first."""
    poly = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
    if len(poly) == 4:
        return poly
    box = cv2.boxPoints(cv2.minAreaRect(poly)).astype(np.float32)
    # start at the corner nearest the top-left of the box's bounding rectangle, then clockwise
    start = int(np.argmin(box.sum(1)))
    box = np.roll(box, -start, axis=0)
    (ax, ay), (bx, by) = box[1] - box[0], box[2] - box[0]
    if ax * by - ay * bx < 0:  # counter-clockwise in image coordinates
        box = box[[0, 3, 2, 1]]
    return box


def render_glyph_map(
    words: Sequence[tuple[np.ndarray, str]],
    size: tuple[int, int],
    *,
    font: str = UNIFORM_FONT,
    font_size: int = GLYPH_FONT_SIZE,
) -> tuple[np.ndarray, list[str]]:
    """A binary glyph map `[H, W]` uint8 (1 = glyph ink) for `words` (`(polygon, transcription)` pairs) in
    an image of `size` (H, W), and the transcriptions skipped because `font` cannot draw them."""
    glyphs = np.zeros(size, dtype=np.uint8)
    skipped: list[str] = []
    style = TextStyle(font=font, size=font_size)
    for polygon, text in words:
        if text == DONT_CARE or not text.strip():
            continue
        try:
            word = render_word(text, style)
        except DataError:
            skipped.append(text)
            continue
        matrix = quad_homography(word.quad, polygon_quad(polygon))
        alpha, (y0, y1, x0, x1) = warp_rgba(word.image[..., 3], matrix, size)
        if alpha.size:
            glyphs[y0:y1, x0:x1] |= (alpha > 127).astype(np.uint8)
    return glyphs, skipped


__all__ = ["GLYPH_FONT_SIZE", "polygon_quad", "render_glyph_map"]
