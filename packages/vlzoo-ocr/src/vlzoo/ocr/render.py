"""Text rendering shared by detection scenes, recognition word crops and ODM glyph labels.

Public API (numpy arrays; images are ``uint8``, quadrilaterals ``float32 [4, 2]`` as ``(x, y)`` in the
order top-left, top-right, bottom-right, bottom-left, ICDAR's clockwise order):

>>> from vlzoo.ocr.render import list_fonts, sample_style, render_word, sample_placement, paste_word
>>> rng = np.random.default_rng(0)
>>> style = sample_style(rng)                        # TextStyle(font, size, color, outline..., shadow...)
>>> word = render_word("Hello", style)               # RenderedWord: .image [h, w, 4] RGBA, .quad [4, 2]
>>> m = sample_placement(rng, word.size, (480, 640))  # 3x3 homography (rotation + perspective), or None
>>> polygon = paste_word(canvas, word, m)            # blends into canvas [H, W, 3] in place -> [4, 2]

- ``list_fonts()``: names of the text fonts matplotlib ships (DejaVu Sans/Serif/Mono with their
  bold/oblique faces, STIX General, Computer Modern); ``font_path(name)``, ``load_font(name, size)``.
- ``missing_chars(font, text)``: characters the font has no glyph for; ``render_word`` raises
  ``DataError`` for them (callers that generate data catch it and count a skip).
- ``quad_homography(src, dst)``: the perspective map of one quadrilateral onto another (glyph labels warp a
  word rendered in one uniform font into its annotated polygon with it).
- ``composite(background, word_rgba)``: a word image flattened onto a background of its size (word crops).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from vlzoo.core import DataError

# Text faces only: the Computer Modern math/symbol faces (cmex/cmmi/cmsy), STIX's non-Unicode and size
# variants and the Display faces map printable ASCII to symbols or nothing.
_TEXT_FONTS = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSans-BoldOblique",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "DejaVuSerif-Italic",
    "DejaVuSerif-BoldItalic",
    "DejaVuSansMono",
    "DejaVuSansMono-Bold",
    "DejaVuSansMono-Oblique",
    "DejaVuSansMono-BoldOblique",
    "STIXGeneral",
    "STIXGeneralBol",
    "STIXGeneralItalic",
    "STIXGeneralBolIta",
    "cmr10",
    "cmb10",
    "cmti10",
    "cmss10",
    "cmtt10",
)
# The uniform font ODM's glyph labels are drawn in ("one uniform font", the paper).
UNIFORM_FONT = "DejaVuSans"


def font_dir() -> Path:
    # imported here: registering the ocr models (every `vlzoo list`) must not pull in matplotlib
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def list_fonts() -> tuple[str, ...]:
    """Names of the text fonts available here (those of `_TEXT_FONTS` that this matplotlib ships)."""
    return tuple(name for name in _TEXT_FONTS if (font_dir() / f"{name}.ttf").is_file())


def font_path(name: str) -> Path:
    path = font_dir() / f"{name}.ttf"
    if not path.is_file():
        raise DataError(f"font {name!r} not found at {path}; available: {', '.join(list_fonts())}")
    return path


@functools.cache
def _codepoints(name: str) -> frozenset[int]:
    return frozenset(TTFont(font_path(name), lazy=True)["cmap"].getBestCmap())


def missing_chars(font: str, text: str) -> str:
    """The characters of `text` (spaces aside) that `font` has no glyph for, in order of appearance."""
    have = _codepoints(font)
    return "".join(dict.fromkeys(c for c in text if not c.isspace() and ord(c) not in have))


@functools.lru_cache(maxsize=512)
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size=size)


@dataclass(frozen=True)
class TextStyle:
    """How one word is drawn. Colours are RGB tuples; an outline or shadow of width/offset 0 is off."""

    font: str = UNIFORM_FONT
    size: int = 32
    color: tuple[int, int, int] = (0, 0, 0)
    outline_width: int = 0
    outline_color: tuple[int, int, int] = (255, 255, 255)
    shadow_offset: tuple[int, int] = (0, 0)
    shadow_color: tuple[int, int, int] = (0, 0, 0)
    shadow_blur: float = 0.0
    shadow_opacity: float = 0.6


@dataclass(frozen=True)
class RenderedWord:
    """An RGBA word image and the tight quadrilateral of its ink (text + outline, not the shadow)."""

    text: str
    image: np.ndarray  # [h, w, 4] uint8
    quad: np.ndarray  # [4, 2] float32, tl tr br bl, in the image's pixel coordinates

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the image."""
        return self.image.shape[0], self.image.shape[1]


def _luminance(rgb: np.ndarray) -> float:
    return float(np.dot(np.asarray(rgb, dtype=np.float64), (0.299, 0.587, 0.114)))


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def legible_color(
    color: tuple[int, int, int], background: tuple[int, int, int] | np.ndarray, min_contrast: float = 80.0
) -> tuple[int, int, int]:
    """`color`, or when its luminance is within `min_contrast` of `background`'s, the colour pushed
    towards black or white, whichever is farther from the background."""
    if abs(_luminance(color) - _luminance(background)) >= min_contrast:
        return tuple(int(c) for c in color)
    target = 0 if _luminance(background) > 127 else 255
    return tuple(int(0.25 * c + 0.75 * target) for c in color)


def sample_style(
    rng: np.random.Generator,
    *,
    fonts: tuple[str, ...] | None = None,
    size_range: tuple[int, int] = (16, 48),
    background: tuple[int, int, int] | None = None,
    min_contrast: float = 80.0,
    outline_p: float = 0.3,
    shadow_p: float = 0.3,
) -> TextStyle:
    """A random style: font, size, colour (at least `min_contrast` luminance away from `background`, when
    given, so words stay legible), outline with probability `outline_p`, drop shadow with `shadow_p`."""
    fonts = fonts or list_fonts()
    color = _random_color(rng)
    if background is not None:
        color = legible_color(color, background, min_contrast)
    size = int(rng.integers(size_range[0], size_range[1] + 1))
    outline = int(rng.integers(1, max(2, size // 12) + 1)) if rng.random() < outline_p else 0
    shadow = rng.random() < shadow_p
    offset = tuple(int(v) for v in rng.integers(1, max(2, size // 10) + 1, 2)) if shadow else (0, 0)
    return TextStyle(
        font=str(fonts[int(rng.integers(len(fonts)))]),
        size=size,
        color=color,
        outline_width=outline,
        outline_color=tuple(255 - c for c in color),  # the complement keeps the outline visible
        shadow_offset=offset,
        shadow_color=(0, 0, 0) if _luminance(color) > 127 else (255, 255, 255),
        shadow_blur=float(rng.uniform(0.0, 2.0)) if shadow else 0.0,
        shadow_opacity=float(rng.uniform(0.4, 0.8)),
    )


def render_word(text: str, style: TextStyle = TextStyle()) -> RenderedWord:
    """Draw `text` with `style` on a transparent canvas just large enough for it, its outline and shadow.

    Raises `DataError` when the font has no glyph for a character or the text draws no ink.
    """
    missing = missing_chars(style.font, text)
    if missing:
        raise DataError(f"font {style.font!r} cannot render {missing!r} (in the word {text!r})")
    font = load_font(style.font, style.size)
    stroke = style.outline_width
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    sx, sy = style.shadow_offset
    pad = stroke + max(abs(sx), abs(sy)) + int(np.ceil(3 * style.shadow_blur)) + 2
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    origin = (pad - left, pad - top)

    word = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(word).text(
        origin,
        text,
        font=font,
        fill=(*style.color, 255),
        stroke_width=stroke,
        stroke_fill=(*style.outline_color, 255),
    )
    ink = np.asarray(word)[..., 3]
    ys, xs = np.nonzero(ink)
    if xs.size == 0:
        raise DataError(f"the word {text!r} draws no ink in font {style.font!r}")
    if sx or sy:
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).text(
            (origin[0] + sx, origin[1] + sy), text, font=font, fill=255, stroke_width=stroke
        )
        if style.shadow_blur > 0:
            mask = mask.filter(ImageFilter.GaussianBlur(style.shadow_blur))
        shadow = Image.new("RGBA", (width, height), (*style.shadow_color, 0))
        shadow.putalpha(mask.point(lambda v: int(v * style.shadow_opacity)))
        word = Image.alpha_composite(shadow, word)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
    return RenderedWord(text=text, image=np.asarray(word).copy(), quad=quad)


def quad_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 perspective transform taking quadrilateral `src` [4, 2] onto `dst` [4, 2]."""
    return cv2.getPerspectiveTransform(np.asarray(src, np.float32), np.asarray(dst, np.float32))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points [N, 2] through a 3x3 homography."""
    pts = np.asarray(points, np.float32).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(pts, np.asarray(matrix, np.float64)).reshape(-1, 2)


def sample_placement(
    rng: np.random.Generator,
    word_size: tuple[int, int],
    canvas_size: tuple[int, int],
    *,
    max_rotation: float = 30.0,
    max_perspective: float = 0.15,
    scale: float = 1.0,
    margin: int = 2,
) -> np.ndarray | None:
    """A homography placing a word image of `word_size` (h, w) inside a canvas of `canvas_size` (H, W):
    scaled by `scale`, rotated by up to `max_rotation` degrees about its centre, each corner moved by up
    to `max_perspective` of the word's height (a perspective warp), then shifted to a random spot where
    the whole image lies inside the canvas. None when it cannot fit."""
    h, w = word_size
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    centred = (src - (w / 2, h / 2)) * scale
    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = centred @ rot.T + rng.uniform(-max_perspective, max_perspective, (4, 2)) * h * scale
    lo, hi = dst.min(0), dst.max(0)
    room = np.array(canvas_size[::-1], dtype=np.float64) - (hi - lo) - 2 * margin
    if (room < 0).any():
        return None
    dst += margin - lo + rng.uniform(0, 1, 2) * room
    return quad_homography(src, dst)


def warp_rgba(
    word_rgba: np.ndarray, matrix: np.ndarray, canvas_size: tuple[int, int]
) -> tuple[np.ndarray, tuple]:
    """`word_rgba` warped by `matrix`, cut to the bounding box of its footprint in a canvas of
    `canvas_size`: returns (patch [bh, bw, 4] uint8, (y0, y1, x0, x1)); an empty box when off-canvas."""
    h, w = word_rgba.shape[:2]
    corners = transform_points(np.array([[0, 0], [w, 0], [w, h], [0, h]]), matrix)
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + 1, canvas_size[1])
    y1 = min(int(np.ceil(corners[:, 1].max())) + 1, canvas_size[0])
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, 4), np.uint8), (0, 0, 0, 0)
    local = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64) @ matrix
    patch = cv2.warpPerspective(word_rgba, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderValue=0)
    return patch, (y0, y1, x0, x1)


def paste_word(canvas: np.ndarray, word: RenderedWord, matrix: np.ndarray) -> np.ndarray:
    """Alpha-blend `word` warped by `matrix` into `canvas` ([H, W, 3] uint8, modified in place); returns
    the word's polygon (its tight quad through `matrix`) in canvas coordinates, [4, 2] float32."""
    patch, (y0, y1, x0, x1) = warp_rgba(word.image, matrix, canvas.shape[:2])
    if patch.size:
        alpha = patch[..., 3:].astype(np.float32) / 255.0
        region = canvas[y0:y1, x0:x1].astype(np.float32)
        canvas[y0:y1, x0:x1] = (region * (1 - alpha) + patch[..., :3] * alpha + 0.5).astype(np.uint8)
    return transform_points(word.quad, matrix).astype(np.float32)


def composite(background: np.ndarray, word_rgba: np.ndarray) -> np.ndarray:
    """`word_rgba` [h, w, 4] flattened onto `background` [h, w, 3] (a new uint8 array)."""
    if background.shape[:2] != word_rgba.shape[:2]:
        raise DataError(
            f"background {background.shape[:2]} and word image {word_rgba.shape[:2]} differ in size"
        )
    alpha = word_rgba[..., 3:].astype(np.float32) / 255.0
    out = background.astype(np.float32) * (1 - alpha) + word_rgba[..., :3].astype(np.float32) * alpha
    return (out + 0.5).astype(np.uint8)


__all__ = [
    "UNIFORM_FONT",
    "RenderedWord",
    "TextStyle",
    "composite",
    "font_dir",
    "font_path",
    "legible_color",
    "list_fonts",
    "load_font",
    "missing_chars",
    "paste_word",
    "quad_homography",
    "render_word",
    "sample_placement",
    "sample_style",
    "transform_points",
    "warp_rgba",
]
