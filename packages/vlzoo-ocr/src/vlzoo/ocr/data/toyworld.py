"""ocr-toyworld: seeded scene-text images written as real PNG/JPEG files with ICDAR-style ground truth.

Why it exists: detection, ODM pre-training and recognition need scene text that ships with the code, goes
through the real file path (image files + `gt_img_<n>.txt` lines) and that a tiny model learns on a CPU.
Each scene has 1–`max_words` words drawn with `vlzoo.ocr.render` in the fonts matplotlib ships (sizes,
colours, outlines, shadows), rotated and perspective-warped, on a textured background: noise, a gradient,
stripes, tiles, or a blurred crop of one of scikit-image's (text-free) sample photographs. Words do not
overlap. Some words (`dont_care_p`) are annotated `###`, as illegible words are in ICDAR 2015.

- `generate_scene(rng, size, ...)`: pixels `[H, W, 3]` uint8 and the words (`TextInstance`s).
- `write_ocr_toyworld(out_dir, ...)`: `out_dir/<split>/img_<n>.{png,jpg}` + `gt_img_<n>.txt` and the index
  `out_dir/ocr-toyworld.json` (data kind `icdar-detection`; `read_detection_records(path, split)`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import zlib
from pathlib import Path

import cv2
import numpy as np
import shapely

from vlzoo.core import ConfigError, DataError
from vlzoo.ocr.data.icdar import DONT_CARE, TextInstance, write_gt_file
from vlzoo.ocr.render import (
    legible_color,
    list_fonts,
    paste_word,
    render_word,
    sample_placement,
    sample_style,
)

OCR_TOYWORLD_FILE = "ocr-toyworld.json"
# Common English words, shop-sign words and a few tokens with digits and punctuation.
VOCABULARY = [
    "the",
    "open",
    "shop",
    "cafe",
    "hotel",
    "bank",
    "taxi",
    "exit",
    "stop",
    "park",
    "road",
    "street",
    "city",
    "bus",
    "station",
    "market",
    "food",
    "pizza",
    "coffee",
    "bar",
    "sale",
    "new",
    "free",
    "hot",
    "cold",
    "water",
    "fire",
    "police",
    "school",
    "book",
    "store",
    "music",
    "art",
    "love",
    "home",
    "north",
    "south",
    "east",
    "west",
    "main",
    "central",
    "king",
    "queen",
    "star",
    "sun",
    "moon",
    "river",
    "lake",
    "green",
    "blue",
    "red",
    "gold",
    "silver",
    "fast",
    "good",
    "best",
    "time",
    "day",
    "night",
    "welcome",
    "push",
    "pull",
    "entry",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "24h",
    "100%",
    "no.5",
    "A1",
    "B12",
    "EUR",
    "$9.99",
    "car-wash",
    "tel.",
    "www",
    "2024",
    "OK",
]
# Natural photographs of scikit-image's data module that ship with it (no download) and show no text.
SKIMAGE_PHOTOS = (
    "astronaut", "coffee", "chelsea", "camera", "coins", "immunohistochemistry", "moon", "grass", "gravel",
    "brick",
)  # fmt: skip
BACKGROUNDS = ("noise", "gradient", "stripes", "tiles", "photo")


@functools.cache
def _photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def sample_background(rng: np.random.Generator, size: tuple[int, int], kind: str | None = None) -> np.ndarray:
    """A textured background `[H, W, 3]` uint8 of one of `BACKGROUNDS` (random when `kind` is None)."""
    h, w = size
    kind = kind or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    if kind == "photo":
        photo = _photo(SKIMAGE_PHOTOS[int(rng.integers(len(SKIMAGE_PHOTOS)))])
        ch = int(rng.integers(min(photo.shape[0], h) // 2, photo.shape[0] + 1))
        cw = min(photo.shape[1], max(1, int(ch * w / h)))
        y, x = int(rng.integers(0, photo.shape[0] - ch + 1)), int(rng.integers(0, photo.shape[1] - cw + 1))
        crop = cv2.resize(
            np.ascontiguousarray(photo[y : y + ch, x : x + cw]), (w, h), interpolation=cv2.INTER_AREA
        )
        return cv2.GaussianBlur(crop, (0, 0), float(rng.uniform(1.5, 4.0)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = _colour(rng), _colour(rng)
    if kind == "noise":
        base = a + rng.normal(0, rng.uniform(10, 40), (h, w, 3)).astype(np.float32)
        return np.clip(cv2.GaussianBlur(base, (0, 0), float(rng.uniform(0.5, 2.0))), 0, 255).astype(np.uint8)
    angle = rng.uniform(0, np.pi)
    along = (xx * np.cos(angle) + yy * np.sin(angle))[..., None]
    if kind == "gradient":
        t = (along - along.min()) / max(float(np.ptp(along)), 1.0)
        return (a * (1 - t) + b * t).astype(np.uint8)
    if kind == "stripes":
        period = rng.uniform(6, max(8.0, min(h, w) / 3))
        t = 0.5 + 0.5 * np.sin(2 * np.pi * along / period)
        return (a * (1 - t) + b * t).astype(np.uint8)
    if kind == "tiles":
        tile = int(rng.integers(6, max(8, min(h, w) // 3)))
        t = (((yy // tile) + (xx // tile)) % 2)[..., None]
        return (a * (1 - t) + b * t).astype(np.uint8)
    raise ConfigError(f"unknown background {kind!r}; the kinds are {BACKGROUNDS}")


def sample_word(rng: np.random.Generator) -> str:
    word = VOCABULARY[int(rng.integers(len(VOCABULARY)))]
    case = rng.random()
    return word.upper() if case < 0.3 else word.capitalize() if case < 0.5 else word


# What a label is: a vocabulary word (ocr-toyworld's scenes), a random lowercase string (an open vocabulary:
# a reader must look at every character, no word prior helps), or either with even odds.
LABEL_KINDS = ("vocabulary", "random", "mixed")
RANDOM_LENGTHS = (3, 10)  # the random strings' length range, inclusive
_LOWERCASE = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def sample_random_string(rng: np.random.Generator, lengths: tuple[int, int] = RANDOM_LENGTHS) -> str:
    return "".join(rng.choice(_LOWERCASE, int(rng.integers(lengths[0], lengths[1] + 1))))


def generated_lexicon(size: int, seed: int = 0, lengths: tuple[int, int] = RANDOM_LENGTHS) -> list[str]:
    """`size` distinct random lowercase strings, in a seeded order: a made-up language whose words are not
    single CLIP tokens (BPE splits them into pieces), so a reader has to learn characters, not word codes.
    DPTR's transfer experiment takes a text corpus from the whole lexicon and crops from a part of it."""
    room = sum(26**n for n in range(lengths[0], lengths[1] + 1))
    if not 0 < size <= room // 2:
        raise ConfigError(
            f"a lexicon of {size} strings of lengths {lengths} is not possible (1..{room // 2})"
        )
    rng = np.random.default_rng([seed, 0x1E71C0])
    words: dict[str, None] = {}  # insertion-ordered set: the order is the seed's
    while len(words) < size:
        words.setdefault(sample_random_string(rng, lengths))
    return list(words)


def sample_label(rng: np.random.Generator, kind: str = "vocabulary") -> str:
    """A label of one of `LABEL_KINDS` (`vocabulary` draws exactly what `sample_word` draws)."""
    if kind == "vocabulary":
        return sample_word(rng)
    if kind == "random":
        return sample_random_string(rng)
    if kind == "mixed":
        return sample_word(rng) if rng.random() < 0.5 else sample_random_string(rng)
    raise ConfigError(f"unknown label kind {kind!r}; the kinds are {LABEL_KINDS}")


def generate_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (256, 256),
    *,
    max_words: int = 8,
    dont_care_p: float = 0.1,
    max_rotation: float = 25.0,
    max_perspective: float = 0.15,
    size_range: tuple[int, int] | None = None,
) -> tuple[np.ndarray, list[TextInstance]]:
    """One scene: pixels `[H, W, 3]` uint8 and its words (at least one; non-overlapping polygons)."""
    h, w = size
    size_range = size_range or (max(10, min(h, w) // 14), max(14, min(h, w) // 6))
    image = sample_background(rng, size)
    target = int(rng.integers(1, max_words + 1))
    placed: list[shapely.Polygon] = []
    words: list[TextInstance] = []
    fonts = list_fonts()
    for attempt in range(4 * target + 50):  # a few tries per word: crowded scenes reject overlapping spots
        if len(words) == target or (words and attempt >= 4 * target):
            break
        text = sample_word(rng)
        style = sample_style(rng, fonts=fonts, size_range=size_range)
        word = render_word(text, style)
        # a word longer than the scene is scaled down to fit (small scenes, long words)
        scale = min(1.0, 0.9 * w / word.size[1], 0.9 * h / word.size[0])
        matrix = sample_placement(
            rng, word.size, size, max_rotation=max_rotation, max_perspective=max_perspective, scale=scale
        )
        if matrix is None:
            continue
        footprint = shapely.Polygon(
            cv2.perspectiveTransform(
                np.array(
                    [[[0, 0], [word.size[1], 0], [word.size[1], word.size[0]], [0, word.size[0]]]], np.float32
                ),
                matrix,
            )[0]
        )
        if any(footprint.intersects(p) for p in placed):
            continue
        # legible: re-coloured (same geometry) to stand out from what lies under the word
        x0, y0, x1, y1 = (int(v) for v in footprint.bounds)
        under = image[max(y0, 0) : max(y1, 1), max(x0, 0) : max(x1, 1)].reshape(-1, 3).mean(0)
        color = legible_color(style.color, under)
        if color != style.color:
            style = dataclasses.replace(style, color=color, outline_color=tuple(255 - c for c in color))
            word = render_word(text, style)
        polygon = paste_word(image, word, matrix)
        placed.append(footprint)
        words.append(TextInstance(polygon, DONT_CARE if rng.random() < dont_care_p else text))
    if not words:
        raise DataError(f"no word fits a {h}x{w} scene with sizes {size_range}")
    return image, words


def _scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def write_ocr_toyworld(
    out_dir: str | os.PathLike,
    n_train: int = 200,
    n_val: int = 40,
    n_test: int = 40,
    image_size: int = 128,
    max_words: int = 4,
    dont_care_p: float = 0.1,
    seed: int = 0,
) -> Path:
    """Write ocr-toyworld under `out_dir` (PNG for even, JPEG for odd image numbers) and its index JSON;
    returns the index's path. Identical arguments give identical files (each scene has its own seed)."""
    if image_size < 32 or max_words < 1:
        raise ConfigError(
            f"ocr-toyworld needs image_size >= 32 and max_words >= 1, got {image_size}, {max_words}"
        )
    root = Path(out_dir)
    splits: dict[str, list[dict[str, str]]] = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        entries = []
        for i in range(n):
            image, words = generate_scene(
                _scene_rng(seed, split, i),
                (image_size, image_size),
                max_words=max_words,
                dont_care_p=dont_care_p,
            )
            name = f"img_{i}.{'png' if i % 2 == 0 else 'jpg'}"
            cv2.imwrite(str(root / split / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            write_gt_file(root / split / f"gt_img_{i}.txt", words)
            entries.append({"image": f"{split}/{name}", "gt": f"{split}/gt_img_{i}.txt"})
        splits[split] = entries
    index = root / OCR_TOYWORLD_FILE
    meta = {"image_size": image_size, "max_words": max_words, "seed": seed, "fonts": list(list_fonts())}
    tmp = index.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"dataset": "ocr-toyworld", **meta, "splits": splits}, indent=1))
    tmp.replace(index)  # the index appears last and whole: its presence means the dataset is complete
    return index


__all__ = [
    "BACKGROUNDS",
    "LABEL_KINDS",
    "OCR_TOYWORLD_FILE",
    "SKIMAGE_PHOTOS",
    "VOCABULARY",
    "generate_scene",
    "generated_lexicon",
    "sample_background",
    "sample_label",
    "sample_random_string",
    "sample_word",
    "write_ocr_toyworld",
]
