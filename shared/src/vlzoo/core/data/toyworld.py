"""toyworld: a small, seeded world of two coloured shapes per image, captioned by what and where they are.

Why it exists: vlzoo's CPU demo and tests need an image-text dataset that ships with the code, trains a
tiny CLIP in minutes, and still measures something. Colour alone can't solve it: images come in pairs that
share both colours but differ in one shape, in which object has which shape, in a size or in the spatial
relation ("a small red circle above a large blue square" / "... below ..."), so a bag-of-colours matcher
(`bag_of_colours_baseline`) stays far below a model that reads shapes, sizes and relations.

- `ToyWorld(split, n, image_size, seed)`: the samples in memory (a map-style Dataset, random access: each
  pair of images is drawn from its own seed, so sample i doesn't need samples 0..i-1).
- `write_toyworld(root, ...)`: the same samples as PNG files plus a Karpathy split JSON (read it with
  `KarpathySplits`); each image entry also carries its `"scene"` record (shapes, colours, sizes, centres),
  its `"pair"`, what tells it from its distractor (`"change"`, one of `CHANGES`) and the distractor's
  captions as `"negative_texts"` (hard negatives for `NegClipLoss`; with `swap_negatives`, also each own
  caption's direction-flipped and object-swapped edits, `caption_swaps`).
- `write_toyworld_classes(root, ...)`: a classification view in `root/<class>/<image>` layout
  (`ImageFolderClasses`), for zero-shot prompts such as "a photo of a {}".

Scene records are the ground truth: `objects[0] <relation> objects[1]`, centres `x, y` in pixels (y down),
`r` the half-extent. Rendering is vectorized: one boolean mask per shape over a pixel-centre grid.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vlzoo.core.data.karpathy import write_karpathy_json
from vlzoo.core.data.sources import CaptionMode, Sample, is_skipped
from vlzoo.core.errors import DataError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 220, 50),
    "purple": (150, 70, 200),
    "white": (235, 235, 235),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = {"small": 0.10, "large": 0.18}  # half-extent as a fraction of the image side
RELATIONS = ("above", "below", "left of", "right of")
# What tells an image from its distractor: a shape changed, the two shapes swapped, a size, or the relation.
CHANGES = ("shape", "swap", "size", "relation")
INVERSE = {"above": "below", "below": "above", "left of": "right of", "right of": "left of"}
BACKGROUND = (45, 45, 50)
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

# Paraphrase material: a canonical word first, then synonyms; shapes and colours keep one word each so that
# the vocabulary a tiny text tower must learn stays small.
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
_RELATION_WORDS = {
    "above": ("above", "on top of", "over"),
    "below": ("below", "under", "beneath"),
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
}
_TEMPLATES = (
    "{a} {rel} {b}",
    "there is {a} {rel} {b}",
    "a picture of {a} {rel} {b}",
    "{a} that is {rel} {b}",
)


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    size: str
    x: float = 0.0
    y: float = 0.0
    r: float = 0.0

    def phrase(self, size_word: str | None = None) -> str:
        return f"a {size_word or self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """`objects[0] <relation> objects[1]`."""

    objects: tuple[Shape, Shape]
    relation: str

    def to_dict(self) -> dict[str, Any]:
        return {"objects": [vars(o).copy() for o in self.objects], "relation": self.relation}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Scene:
        a, b = (Shape(**o) for o in d["objects"])
        return Scene((a, b), d["relation"])


# ------------------------------------------------------------------------------------------ scenes


def _random_attributes(rng: np.random.Generator) -> tuple[list[dict[str, str]], str]:
    objects = [
        {
            "shape": SHAPES[rng.integers(len(SHAPES))],
            "colour": list(COLOURS)[rng.integers(len(COLOURS))],
            "size": list(SIZES)[rng.integers(len(SIZES))],
        }
        for _ in range(2)
    ]
    return objects, RELATIONS[rng.integers(len(RELATIONS))]


def _distractor_attributes(
    objects: list[dict[str, str]], relation: str, rng: np.random.Generator
) -> tuple[list[dict[str, str]], str, str]:
    """Same two colours, one change a colour-only reader can't see: a shape, a swap, a size or the relation.
    Returns the distractor's objects, its relation and which `CHANGES` it is."""
    objects = [dict(o) for o in objects]
    change = rng.choice(CHANGES, p=[0.4, 0.2, 0.2, 0.2])
    if change == "swap" and objects[0]["shape"] == objects[1]["shape"]:
        change = "shape"
    if change == "shape":
        o = objects[rng.integers(2)]
        o["shape"] = str(rng.choice([s for s in SHAPES if s != o["shape"]]))
    elif change == "swap":
        objects[0]["shape"], objects[1]["shape"] = objects[1]["shape"], objects[0]["shape"]
    elif change == "size":
        o = objects[rng.integers(2)]
        o["size"] = "small" if o["size"] == "large" else "large"
    else:
        relation = INVERSE[relation]
    return objects, str(relation), str(change)


def _place(objects: list[dict[str, str]], relation: str, size: int, rng: np.random.Generator) -> Scene:
    """Centres such that the relation clearly holds (its axis dominates) and the shapes don't touch."""
    r0, r1 = (round(SIZES[o["size"]] * size, 2) for o in objects)
    gap = max(2.0, 0.04 * size)
    while True:  # vectorized rejection: 64 candidate layouts per round, almost always enough
        lo0, hi0 = r0 + 1, size - r0 - 1
        lo1, hi1 = r1 + 1, size - r1 - 1
        x0, y0 = rng.uniform(lo0, hi0, 64), rng.uniform(lo0, hi0, 64)
        x1, y1 = rng.uniform(lo1, hi1, 64), rng.uniform(lo1, hi1, 64)
        # along: how far object 0 is in the relation's direction from object 1; across: the other axis
        along = {"above": y1 - y0, "below": y0 - y1, "left of": x1 - x0, "right of": x0 - x1}[relation]
        across = np.abs(x1 - x0) if relation in ("above", "below") else np.abs(y1 - y0)
        ok = np.flatnonzero((along > r0 + r1 + gap) & (across <= 0.6 * along))
        if ok.size:
            i = ok[0]
            a = Shape(**objects[0], x=round(float(x0[i]), 2), y=round(float(y0[i]), 2), r=r0)
            b = Shape(**objects[1], x=round(float(x1[i]), 2), y=round(float(y1[i]), 2), r=r1)
            return Scene((a, b), relation)


def _scene_pair(seed: int, split: str, pair: int, size: int) -> tuple[Scene, Scene, str, np.random.Generator]:
    rng = np.random.default_rng([seed, _split_id(split), pair])
    objects, relation = _random_attributes(rng)
    first = _place(objects, relation, size, rng)
    objects2, relation2, change = _distractor_attributes(objects, relation, rng)
    second = _place(objects2, relation2, size, rng)
    return first, second, change, rng


def _split_id(split: str) -> int:
    return SPLIT_IDS.get(split, zlib.crc32(split.encode()) + len(SPLIT_IDS))


# --------------------------------------------------------------------------------------- rendering


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    return ys, xs


def shape_mask(shape: Shape, size: int) -> np.ndarray:
    """Boolean `[size, size]` mask of one shape."""
    ys, xs = _grid(size)
    dx, dy, r = xs - shape.x, ys - shape.y, shape.r
    if shape.shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape.shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape.shape == "triangle":  # apex up, base at the bottom, as wide as it is tall
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if shape.shape == "cross":
        arm = 0.35 * r
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise DataError(f"toyworld: unknown shape {shape.shape!r}")


def render(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """`[size, size, 3]` uint8: a slightly noisy background (so images aren't trivially compressible or
    identical up to position) with flat-coloured shapes on top."""
    noise = rng.normal(0.0, 6.0, (size, size, 1)).astype(np.float32)
    image = np.clip(np.asarray(BACKGROUND, np.float32) + noise, 0, 255).astype(np.uint8)
    for shape in scene.objects:
        image[shape_mask(shape, size)] = COLOURS[shape.colour]
    return image


# ---------------------------------------------------------------------------------------- captions


def captions_for(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """`n` paraphrases: the canonical sentence, the same with the relation reversed, then random templates
    with synonyms, each in a random direction."""
    a, b = scene.objects
    rel = scene.relation
    out = [f"{a.phrase()} {rel} {b.phrase()}", f"{b.phrase()} {INVERSE[rel]} {a.phrase()}"]
    while len(out) < n:
        first, second, relation = (a, b, rel) if rng.random() < 0.5 else (b, a, INVERSE[rel])
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        text = template.format(
            a=first.phrase(str(rng.choice(_SIZE_WORDS[first.size]))),
            rel=str(rng.choice(_RELATION_WORDS[relation])),
            b=second.phrase(str(rng.choice(_SIZE_WORDS[second.size]))),
        )
        if text not in out:
            out.append(text)
    return out


# The two other cells of a relation caption's XOR: its direction word flipped ("A above B" -> "A below B") and its
# objects swapped ("B above A"). Both are false of the caption's image and true of its relation distractor;
# flipping both gives back a true paraphrase ("B below A"), which is why neither word order nor the direction
# word alone tells a relation pair apart. The vocabulary is closed, so plain patterns find every part.
_INVERSE_WORD = {
    word: _RELATION_WORDS[INVERSE[relation]][min(i, len(_RELATION_WORDS[INVERSE[relation]]) - 1)]
    for relation, words in _RELATION_WORDS.items()
    for i, word in enumerate(words)
}
_RELATION_WORD = re.compile(r"\b(" + "|".join(sorted(_INVERSE_WORD, key=len, reverse=True)) + r")\b")
_OBJECT_PHRASE = re.compile(
    r"\ba (?:"
    + "|".join(w for words in _SIZE_WORDS.values() for w in words)
    + r") (?:"
    + "|".join(COLOURS)
    + r") (?:"
    + "|".join(SHAPES)
    + r")\b"
)


def caption_swaps(text: str) -> dict[str, str]:
    """A toyworld caption's minimal edits that make it false of its image: `"direction"` (the relation word
    replaced by its inverse, "above" -> "below", "on top of" -> "under") and `"objects"` (the two object phrases
    exchanged). When both objects read the same, neither edit changes what the caption says: both are dropped.

    Raises:
        DataError: `text` has not exactly one relation and two object phrases (not a toyworld caption).
    """
    relations, objects = _RELATION_WORD.findall(text), _OBJECT_PHRASE.findall(text)
    if len(relations) != 1 or len(objects) != 2:
        raise DataError(
            f"toyworld: {text!r} is not a caption of two objects and one relation "
            f"(found relations {relations}, objects {objects})"
        )
    canonical = {w: size for size, words in _SIZE_WORDS.items() for w in words}
    if len({" ".join(canonical.get(w, w) for w in o.split()) for o in objects}) == 1:
        return {}
    first, second = objects
    swapped = _OBJECT_PHRASE.sub(lambda m: second if m.group(0) == first else first, text)
    return {"direction": _RELATION_WORD.sub(lambda m: _INVERSE_WORD[m.group(1)], text), "objects": swapped}


# ------------------------------------------------------------------------------------------ dataset


class ToyWorld(Dataset):
    """`n` toyworld samples of one split, in memory: `{"image": PIL RGB, "texts" | "text", "id", "scene", "split"}`.

    `captions` as in the file sources: `"all"` (5 captions as `"texts"`, evaluation), `"each"` (one sample
    per caption), `"random"` (one drawn per access), `"first"`. The same `(split, index, image_size, seed)`
    always gives the same image, captions and scene, and `write_toyworld` writes exactly these.
    `"negative_texts"` are the distractor's captions, and with `swap_negatives` also every `caption_swaps`
    edit of the image's own captions (`negative_captions`).
    """

    def __init__(
        self,
        split: str = "train",
        n: int = 1000,
        image_size: int = 64,
        seed: int = 0,
        captions: CaptionMode = "all",
        captions_per_image: int = 5,
        swap_negatives: bool = False,
    ):
        if n < 1 or image_size < 24:
            raise DataError(f"toyworld: need n ≥ 1 and image_size ≥ 24, got n={n}, image_size={image_size}")
        if captions not in ("all", "each", "random", "first"):
            raise DataError(
                f"toyworld: captions must be 'all', 'each', 'random' or 'first', got {captions!r}"
            )
        self.split, self.n, self.image_size, self.seed = split, n, image_size, seed
        self.captions, self.captions_per_image = captions, captions_per_image
        self.swap_negatives = swap_negatives
        self._last_pair: tuple[int, Any, Any, Any, str] | None = None

    def __len__(self) -> int:
        return self.n * (self.captions_per_image if self.captions == "each" else 1)

    def generate(self, index: int) -> tuple[np.ndarray, Scene, list[str]]:
        """Pixels, scene record and captions of image `index`."""
        images, scenes, texts, _ = self._pair(index)
        k = index % 2
        return images[k].copy(), scenes[k], list(texts[k])

    def distractor_captions(self, index: int) -> list[str]:
        """The captions of image `index`'s distractor (the other image of its pair): its hard negatives. The
        last image of an odd `n` has no distractor in the split and gets none."""
        texts = self._pair(index)[2]
        return list(texts[1 - index % 2]) if index ^ 1 < self.n else []

    def negative_captions(self, index: int) -> list[str]:
        """Hard-negative captions of image `index`: its distractor's captions, then (with `swap_negatives`)
        the direction-flipped and object-swapped edits of its own captions (`caption_swaps`): the two false
        cells of the relation's XOR for every image, not only for the pairs whose change is the relation.
        Each text once, none of them one of the image's own captions."""
        negatives = self.distractor_captions(index)
        if self.swap_negatives:
            own = self._pair(index)[2][index % 2]  # its captions, without copying its pixels as generate does
            edits = [edit for text in own for edit in caption_swaps(text).values()]
            negatives = [t for t in dict.fromkeys(negatives + edits) if t not in own]
        return negatives

    def change(self, index: int) -> str:
        """What tells image `index` from its distractor: one of `CHANGES`, the same for both images of a pair."""
        return self._pair(index)[3]

    def _pair(self, index: int) -> tuple[Any, Any, Any, str]:
        if not 0 <= index < self.n:
            raise IndexError(f"toyworld {self.split}: index {index} out of range(0, {self.n})")
        pair = index // 2
        if self._last_pair is None or self._last_pair[0] != pair:  # sequential reads render each pair once
            first, second, change, rng = _scene_pair(self.seed, self.split, pair, self.image_size)
            images = (render(first, self.image_size, rng), render(second, self.image_size, rng))
            texts = (
                captions_for(first, rng, self.captions_per_image),
                captions_for(second, rng, self.captions_per_image),
            )
            self._last_pair = (pair, images, (first, second), texts, change)
        return self._last_pair[1:]

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += len(self)
        per = self.captions_per_image if self.captions == "each" else 1
        image, scene, texts = self.generate(index // per)
        sample: Sample = {
            "image": Image.fromarray(image),
            "id": f"{self.split}/{index // per:06d}",
            "scene": scene.to_dict(),
            "split": self.split,
            "negative_texts": self.negative_captions(index // per),
        }
        if self.captions == "all":
            sample["texts"] = texts
        elif self.captions == "each":
            sample["text"] = texts[index % per]
        elif self.captions == "random":
            sample["text"] = texts[int(torch.randint(len(texts), ()))]
        else:
            sample["text"] = texts[0]
        return sample


def write_toyworld(
    root: str | os.PathLike,
    n_train: int = 1000,
    n_val: int = 200,
    n_test: int = 200,
    image_size: int = 64,
    seed: int = 0,
    swap_negatives: bool = False,
) -> Path:
    """Write toyworld as `root/<split>/<index>.png` plus the Karpathy JSON `root/toyworld.json`; returns the
    JSON's path. Identical arguments give identical files. `swap_negatives` adds the `caption_swaps` edits of
    each image's captions to its `"negative_texts"` (`ToyWorld.negative_captions`); images and captions are
    the same either way."""
    root = Path(root)
    images: list[dict[str, Any]] = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n <= 0:
            continue
        (root / split).mkdir(parents=True, exist_ok=True)
        world = ToyWorld(split, n, image_size, seed, swap_negatives=swap_negatives)
        for i in range(n):
            pixels, scene, texts = world.generate(i)
            filename = f"{i:06d}.png"
            Image.fromarray(pixels).save(root / split / filename)
            images.append(
                {
                    "filepath": split,
                    "filename": filename,
                    "split": split,
                    "imgid": f"{split}/{i:06d}",
                    "pair": i // 2,  # an image and its distractor: a hard-negative group
                    "change": world.change(i),  # what tells them apart: pair scores break down by it
                    "captions": texts,
                    # the distractor's captions (and the own captions' swaps): NegCLIP's hard negatives
                    "negative_texts": world.negative_captions(i),
                    "scene": scene.to_dict(),
                }
            )
    return write_karpathy_json(root / "toyworld.json", images, "toyworld")


ClassLabel = Literal["shape", "colour_shape"]


def toyworld_classes(label: ClassLabel = "shape") -> list[str]:
    """Class folder names of `write_toyworld_classes`, in label order."""
    if label == "shape":
        return list(SHAPES)
    if label == "colour_shape":
        return [f"{c}_{s}" for c in COLOURS for s in SHAPES]
    raise DataError(f"toyworld: label must be 'shape' or 'colour_shape', got {label!r}")


def write_toyworld_classes(
    root: str | os.PathLike,
    n_per_class: int = 50,
    image_size: int = 64,
    seed: int = 0,
    label: ClassLabel = "shape",
) -> Path:
    """A classification view: `root/<class>/<index>.png`, the class being the shape (or colour + shape,
    folder `red_circle`) of the image's *large* object; a small object of another shape and colour is a
    distractor. Returns `root`; read it with `ImageFolderClasses` (class names "red circle", ...)."""
    root = Path(root)
    for c, name in enumerate(toyworld_classes(label)):
        (root / name).mkdir(parents=True, exist_ok=True)
        colour, shape = name.split("_") if label == "colour_shape" else (None, name)
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, 7, c, i])
            main = {
                "shape": shape,
                "colour": colour or list(COLOURS)[rng.integers(len(COLOURS))],
                "size": "large",
            }
            other = {
                "shape": str(rng.choice([s for s in SHAPES if s != shape])),
                "colour": str(rng.choice([k for k in COLOURS if k != main["colour"]])),
                "size": "small",
            }
            objects = [main, other] if rng.random() < 0.5 else [other, main]
            scene = _place(objects, RELATIONS[rng.integers(len(RELATIONS))], image_size, rng)
            Image.fromarray(render(scene, image_size, rng)).save(root / name / f"{i:05d}.png")
    return root


# --------------------------------------------------------------------------------------- baseline


_COLOUR_WORD = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")


def image_colours(image: Any, min_pixels: int = 4, tolerance: float = 40.0) -> frozenset[str]:
    """Palette colours present in an image (≥ `min_pixels` pixels within `tolerance` of the colour)."""
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, np.float32)
    pixels = pixels.reshape(-1, 3)
    palette = np.asarray(list(COLOURS.values()), np.float32)
    dist = np.linalg.norm(pixels[:, None, :] - palette[None, :, :], axis=-1)  # [pixels, colours]
    counts = (dist <= tolerance).sum(axis=0)
    return frozenset(name for name, n in zip(COLOURS, counts) if n >= min_pixels)


def caption_colours(text: str) -> frozenset[str]:
    return frozenset(_COLOUR_WORD.findall(text.lower()))


def bag_of_colours_baseline(samples: Iterable[Sample]) -> float:
    """Text→image R@1 of a matcher that sees only colours: a caption's colour words vs the palette colours
    found in each image's pixels, scored by Jaccard overlap.

    `samples`: evaluation samples with `"texts"` (or `"text"`), e.g. `ToyWorld("test", 200)` or
    `KarpathySplits(json, "test")`. Ties are broken at random *in expectation* (a caption whose image
    shares the best score with k-1 others counts 1/k), so the figure is deterministic. Chance is 1/N for
    N images; on toyworld the paired distractors keep this baseline near 1/(2·images per colour pair).
    """
    image_sets: list[frozenset[str]] = []
    text_sets: list[frozenset[str]] = []
    owner: list[int] = []
    for sample in samples:
        if is_skipped(sample):
            continue
        texts = sample["texts"] if "texts" in sample else [sample["text"]]
        image_sets.append(image_colours(sample["image"]))
        for t in texts:
            text_sets.append(caption_colours(t))
            owner.append(len(image_sets) - 1)
    if not image_sets:
        raise DataError("bag_of_colours_baseline: no readable samples")
    names = list(COLOURS)
    images = np.array([[c in s for c in names] for s in image_sets], np.float32)  # [N, colours]
    texts = np.array([[c in s for c in names] for s in text_sets], np.float32)  # [T, colours]
    inter = texts @ images.T
    union = texts.sum(1, keepdims=True) + images.sum(1)[None, :] - inter
    score = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    best = score.max(axis=1, keepdims=True)
    at_best = np.isclose(score, best)
    hit = at_best[np.arange(len(owner)), owner]
    return float(np.mean(hit / at_best.sum(axis=1)))
