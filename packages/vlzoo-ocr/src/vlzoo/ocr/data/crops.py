"""Word crops for recognition: folders with `path<TAB>label` files, crops cut from ICDAR-style detection gt,
and the generated `ocr-words` crops rendered with `vlzoo.ocr.render`.

>>> train = WordCrops("data/ocr-words/train/labels.txt")       # {"image": PIL.Image, "text", "id", "path"}
>>> cut_icdar_crops("data/ocr-toyworld/ocr-toyworld.json", "test", "crops/test")  # → crops/test/labels.txt
>>> write_ocr_words("data/ocr-words", n_train=2000, n_test=200)  # rendered crops, one labels file per split

Labels are normalized as in `LmdbDataset` (PARSeq's rules; those too long or empty are counted in
`skipped_labels`); an image that does not decode is a skip marker, counted by the collator.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from vlzoo.core import ConfigError, DataError
from vlzoo.core.data import Record, load_record
from vlzoo.ocr.data.icdar import iter_words, read_detection_records
from vlzoo.ocr.data.labels import filter_charset, load_charset, normalize_unicode
from vlzoo.ocr.data.lmdb import read_labels_file
from vlzoo.ocr.data.toyworld import LABEL_KINDS, sample_background, sample_label
from vlzoo.ocr.render import legible_color, paste_word, render_word, sample_placement, sample_style

__all__ = [
    "CROP_STYLES",
    "OCR_WORDS",
    "OCR_WORDS_FILE",
    "CropStyle",
    "WordCrops",
    "cut_icdar_crops",
    "rectify_quad",
    "render_word_crop",
    "write_ocr_words",
]

OCR_WORDS = "ocr-words"
OCR_WORDS_FILE = "train/labels.txt"  # what `data: ocr-words` trains on; the test split is test/labels.txt


@dataclass
class WordCrops(Dataset):
    """Word images listed in a `path<TAB>label` file (paths relative to `image_root`, default the file's
    folder) as `{"image": PIL.Image (RGB), "text", "id", "path"}`; labels normalized to `charset`."""

    labels_file: str | os.PathLike
    image_root: str | os.PathLike | None = None
    charset: str | None = None
    max_length: int = 25
    skipped_labels: list[tuple[int, str]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.labels_file = Path(self.labels_file)
        root = Path(self.image_root) if self.image_root is not None else self.labels_file.parent
        charset = load_charset(self.charset)
        self.records: list[Record] = []
        for line, (image, label) in enumerate(read_labels_file(self.labels_file), 1):
            text = normalize_unicode(label)
            if len(text) > self.max_length:  # before the charset filter, as PARSeq
                self.skipped_labels.append((line, f"label longer than {self.max_length} characters"))
                continue
            text = filter_charset(text, charset)
            if not text:
                self.skipped_labels.append((line, "label empty after normalization"))
                continue
            self.records.append(Record(root / image, [text], line, {}))
        if not self.records:
            raise DataError(
                f"{self.labels_file}: no usable sample ({len(self.skipped_labels)} labels dropped)"
            )

    @property
    def labels(self) -> list[str]:
        return [r.captions[0] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return load_record(self.records[index], "first")


# ------------------------------------------------------------------------------ crops from detection gt


def rectify_quad(image: np.ndarray, quad: np.ndarray, height: int | None = None) -> np.ndarray:
    """The quadrilateral `quad` [4, 2] (tl, tr, br, bl) of `image` warped onto an upright rectangle: width
    the mean of its top and bottom edges, height the mean of its sides (or `height`, keeping the ratio)."""
    quad = np.asarray(quad, np.float32)
    if quad.shape != (4, 2):
        raise DataError(f"a word crop needs a quadrilateral [4, 2], got {quad.shape}")
    width = 0.5 * (np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3]))
    side = 0.5 * (np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1]))
    if height is not None:
        width, side = width * height / max(side, 1e-6), height
    w, h = max(round(float(width)), 1), max(round(float(side)), 1)
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    return cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _quad_of(polygon: np.ndarray) -> np.ndarray:
    """A polygon's quadrilateral: itself with 4 points, else its minimum-area rectangle ordered tl, tr, br,
    bl (Total-Text's curved words are cut straight)."""
    polygon = np.asarray(polygon, np.float32)
    if len(polygon) == 4:
        return polygon
    box = cv2.boxPoints(cv2.minAreaRect(polygon))
    start = int(np.argmin(box.sum(1)))  # top-left: smallest x + y
    box = np.roll(box, -start, axis=0)
    return box if box[1, 0] >= box[3, 0] else box[[0, 3, 2, 1]]  # clockwise from top-left


def cut_icdar_crops(
    detection: str | os.PathLike, split: str, out_dir: str | os.PathLike, height: int | None = None
) -> dict[str, Any]:
    """Cut every legible word (not `###`) of a detection dataset (an index JSON or an images/ + gt/ folder,
    read by `vlzoo.ocr.data.icdar`) into `out_dir/<n>.png`, rectified with a perspective warp, and write
    `out_dir/labels.txt`. An image that does not read is counted and left out. Returns
    `{"written", "skipped", "labels"}`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines, skipped, cache = [], 0, {}
    for image_path, instance in iter_words(read_detection_records(detection, split)):
        if instance.ignore or not instance.text.strip():
            continue
        if image_path not in cache:
            cache.clear()  # words come grouped by image: keep one decoded image
            cache[image_path] = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        image = cache[image_path]
        if image is None:
            skipped += 1
            continue
        crop = rectify_quad(image, _quad_of(instance.polygon), height)
        name = f"{len(lines):06d}.png"
        cv2.imwrite(str(out / name), crop)
        lines.append(f"{name}\t{instance.text}")
    if not lines:
        raise DataError(f"{detection} ({split}): no legible word to cut")
    (out / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"written": len(lines), "skipped": skipped, "labels": out / "labels.txt"}


# ------------------------------------------------------------------------------------ ocr-words crops


@dataclass(frozen=True)
class CropStyle:
    """How varied the rendered word crops are. `varied` (the default) draws every font, outline, shadow,
    background and case ocr-toyworld has; `clean` is a learnable-at-CPU-scale setting for short recognition
    runs: four fonts, lowercase words, colours at least `min_contrast` in luminance from the background,
    plain (noise, gradient, blurred photo) backgrounds and milder warps."""

    fonts: tuple[str, ...] | None = None  # None = every text font `list_fonts()` finds
    backgrounds: tuple[str, ...] | None = None  # kinds of `sample_background`; None = all of them
    min_contrast: float | None = None  # None = the colour as sampled (may be hard to read)
    outline_p: float = 0.3
    shadow_p: float = 0.2
    lowercase: bool = False
    max_rotation: float = 4.0
    max_perspective: float = 0.12


CROP_STYLES = {
    "varied": CropStyle(),
    "clean": CropStyle(
        fonts=("DejaVuSans", "DejaVuSans-Bold", "DejaVuSerif", "DejaVuSansMono"),
        backgrounds=("noise", "gradient", "photo"),
        min_contrast=100.0,
        outline_p=0.0,
        shadow_p=0.0,
        lowercase=True,
        max_rotation=2.0,
        max_perspective=0.05,
    ),
}


def _crop_style(style: str | CropStyle) -> CropStyle:
    if isinstance(style, CropStyle):
        return style
    if style not in CROP_STYLES:
        raise ConfigError(f"unknown ocr-words style {style!r}; the styles are {sorted(CROP_STYLES)}")
    return CROP_STYLES[style]


def render_word_crop(
    rng: np.random.Generator, text: str, height: int = 32, style: str | CropStyle = "varied"
) -> np.ndarray:
    """One word crop `[h, w, 3]` uint8: `text` in a random font, size, colour and outline (`vlzoo.ocr.render`)
    slightly rotated and perspective-warped on a textured background, the word filling most of the height;
    `style` (a `CROP_STYLES` name or a `CropStyle`) bounds how varied that is."""
    crop = _crop_style(style)
    text_style = sample_style(
        rng,
        fonts=crop.fonts,
        size_range=(int(height * 0.6), int(height * 0.9)),
        outline_p=crop.outline_p,
        shadow_p=crop.shadow_p,
    )
    word = render_word(text, text_style)
    wh, ww = word.size
    canvas = (int(wh * 1.2) + 4, int(ww * 1.1) + 4)
    warp = {"max_rotation": crop.max_rotation, "max_perspective": crop.max_perspective}
    matrix = sample_placement(rng, word.size, canvas, **warp)
    while matrix is None:  # the rotated word is larger than the canvas: give it more room
        canvas = (canvas[0] + 4, canvas[1] + 4)
        matrix = sample_placement(rng, word.size, canvas, **warp)
    kind = None if crop.backgrounds is None else crop.backgrounds[int(rng.integers(len(crop.backgrounds)))]
    image = sample_background(rng, canvas, kind)
    if crop.min_contrast is not None:  # recolour against the background actually drawn (same glyphs)
        color = legible_color(text_style.color, image.reshape(-1, 3).mean(0), crop.min_contrast)
        if color != text_style.color:
            word = render_word(text, replace(text_style, color=color))
    paste_word(image, word, matrix)
    return image


def write_ocr_words(
    out_dir: str | os.PathLike,
    n_train: int = 400,
    n_val: int = 0,
    n_test: int = 100,
    height: int = 32,
    seed: int = 0,
    style: str = "varied",
    labels: str = "vocabulary",
    label_lists: dict[str, list[str]] | None = None,
) -> Path:
    """Write rendered word crops (ocr-toyworld's renderer) as `<split>/<n>.png` and `<split>/labels.txt` for
    the splits train, val (when `n_val`) and test; returns the train labels file. `style` names a
    `CROP_STYLES` entry; `labels` a `LABEL_KINDS` entry (ocr-toyworld's vocabulary, random lowercase strings
    or both). `label_lists` (split -> the exact label of each crop; it must hold "train") replaces the
    counts and `labels`. A word the drawn font cannot render is redrawn in another style. Identical
    arguments give identical files."""
    if label_lists is not None:
        if not label_lists.get("train"):
            raise ConfigError("ocr-words label_lists needs a non-empty 'train' list")
        n_train, n_val, n_test = (len(label_lists.get(s) or ()) for s in ("train", "val", "test"))
    if n_train < 1 or height < 16:
        raise ConfigError(f"ocr-words needs n_train >= 1 and height >= 16, got {n_train}, {height}")
    if labels not in LABEL_KINDS:
        raise ConfigError(f"unknown ocr-words label kind {labels!r}; the kinds are {LABEL_KINDS}")
    crop_style = _crop_style(style)
    root = Path(out_dir)
    splits = (("val", n_val), ("test", n_test), ("train", n_train))  # train last: its file marks completion
    for split, n in [(name, n) for name, n in splits if n > 0 or name == "train"]:
        (root / split).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            rng = np.random.default_rng([seed, zlib.crc32(split.encode()), i])
            text = sample_label(rng, labels) if label_lists is None else label_lists[split][i]
            text = text.lower() if crop_style.lowercase else text
            for _ in range(10):
                try:
                    crop = render_word_crop(rng, text, height, crop_style)
                    break
                except DataError:  # a font without one of the word's glyphs: another style
                    continue
            else:
                raise DataError(f"ocr-words: no font renders {text!r}")
            cv2.imwrite(str(root / split / f"{i:06d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            lines.append(f"{i:06d}.png\t{text}")
        tmp = root / split / "labels.txt.tmp"
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(root / split / "labels.txt")
    return root / OCR_WORDS_FILE


# ------------------------------------------------------------------------------------ data kinds


def build_word_crops(path: str, split: str, captions: str, options: dict[str, Any]) -> Dataset:
    """A `path<TAB>label` file; one in a folder named as the training split (`<root>/train/labels.txt`, the
    layout `ocr-words` writes) stands for its dataset, so `val_data: ocr-words` reads `<root>/val/`."""
    labels_file = Path(path)
    train_split = options.get("train_split") or "train"
    if split != train_split and labels_file.parent.name == train_split:
        labels_file = labels_file.parent.parent / split / labels_file.name
        if not labels_file.is_file():
            raise DataError(
                f"{path}: no {split} split beside it ({labels_file} is missing); for ocr-words generate it "
                f"with data.generate.n_{split}"
            )
    return WordCrops(
        labels_file, options.get("image_root"), options.get("charset"), int(options.get("max_length") or 25)
    )


def build_str_lmdb(path: str, split: str, captions: str, options: dict[str, Any]) -> Dataset:
    from vlzoo.ocr.data.lmdb import LmdbDataset

    return LmdbDataset(path, options.get("charset"), int(options.get("max_length") or 25))
