"""face-toyworld: drawn faces with CelebA-style binary attributes, written in CelebA's and FaceCaption's formats.

Why it exists: FLIP's protocol (a linear probe per facial attribute on frozen encoders) and its face-caption
pretraining need faces whose attributes are known, that ship with the code and that a tiny model learns on
a CPU in minutes. Each face draws `FACE_ATTRIBUTES` (CelebA's names) independently, within what a face can
be (a bald face has no hair colour nor bangs, only men have beards or mustaches), and is drawn with what
the attributes say: hair colour and bangs, a hat, glasses, a smiling or straight mouth, open or closed, a
beard, a mustache, pale or darker skin, earrings. Pose, scale, position, background and lighting vary.

Files under `root`, in the real formats:
- `img_align_celeba/000001.png, ...` (PNG, `image_size` square);
- `list_attr_celeba.txt` (count, names, `file ±1 ...` rows) and `list_eval_partition.txt` (0/1/2);
- `face-toyworld.parquet`: a FaceCaption-style table, columns `image` (path), `caption` (list of
  `captions_per_image` paraphrases), `split`, and one 0/1 column per attribute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vlzoo.core.errors import ConfigError

__all__ = [
    "FACE_ATTRIBUTES",
    "FACE_TOYWORLD_FILE",
    "draw_face_attributes",
    "face_captions",
    "render_face",
    "write_face_toyworld",
]

FACE_TOYWORLD_FILE = "face-toyworld.parquet"
FACE_ATTRIBUTES: tuple[str, ...] = (
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Gray_Hair", "Male",
    "Mouth_Slightly_Open", "Mustache", "No_Beard", "Pale_Skin", "Smiling", "Wearing_Earrings", "Wearing_Hat",
)  # fmt: skip
HAIR_COLOURS = {"Black_Hair": (30, 25, 25), "Blond_Hair": (225, 195, 110), "Brown_Hair": (115, 70, 35),
                "Gray_Hair": (165, 165, 170)}  # fmt: skip
HAIR_WORDS = {"Black_Hair": "black", "Blond_Hair": "blond", "Brown_Hair": "brown", "Gray_Hair": "grey"}
PALE_SKIN = (245, 222, 205)
DARKER_SKINS = ((215, 170, 130), (170, 120, 85), (120, 82, 55))
HAT_COLOURS = ((200, 40, 40), (40, 70, 180), (40, 140, 60), (90, 60, 140), (230, 200, 60))


def draw_face_attributes(rng: np.random.Generator) -> dict[str, int]:
    """One face's attributes (name → 0/1), each drawn with its own rate, consistent with the others.

    The rates keep each attribute's minority at about a quarter of the faces or more (a hair colour is one
    of four, on the faces that are not bald; bald, mustache and beard are a half of the men, earrings a
    third of the men and two thirds of the women, the rest a half): a linear probe is scored against the
    majority-class baseline, and an attribute nine faces in ten lack leaves a few dozen positives to learn
    from and a majority answer that is already 90 % right.
    """
    male = rng.random() < 0.5
    bald = rng.random() < (0.4 if male else 0.1)
    hair = None if bald else list(HAIR_COLOURS)[int(rng.integers(len(HAIR_COLOURS)))]
    bearded = male and rng.random() < 0.5
    a = {name: 0 for name in FACE_ATTRIBUTES}
    a.update(
        Male=int(male),
        Bald=int(bald),
        Bangs=int(not bald and rng.random() < 0.5),
        Eyeglasses=int(rng.random() < 0.5),
        Mouth_Slightly_Open=int(rng.random() < 0.5),
        Mustache=int(male and rng.random() < 0.5),
        No_Beard=int(not bearded),
        Pale_Skin=int(rng.random() < 0.5),
        Smiling=int(rng.random() < 0.5),
        Wearing_Earrings=int(rng.random() < (1 / 3 if male else 2 / 3)),
        Wearing_Hat=int(rng.random() < 0.5),
    )
    if hair is not None:
        a[hair] = 1
    return a


def _hair_colour(a: Mapping[str, int]) -> tuple[int, int, int]:
    return next((rgb for name, rgb in HAIR_COLOURS.items() if a[name]), (60, 45, 35))


def render_face(a: Mapping[str, int], rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One face `[size, size, 3]` uint8 drawn from attributes `a`, at a random place, scale and light."""
    scale = size / 64.0
    # An aligned crop, as CelebA's: the face fills the frame on a muted background (grey, a slight tint).
    grey = rng.uniform(70, 190)
    img = Image.new("RGB", (size, size), tuple(int(grey + t) for t in rng.uniform(-12, 12, 3)))
    d = ImageDraw.Draw(img)
    s = rng.uniform(1.05, 1.3) * scale
    cx, cy = size / 2 + rng.uniform(-2, 2) * scale, size / 2 + rng.uniform(0, 3) * scale
    rx, ry = 15 * s, 19 * s
    hair = _hair_colour(a)
    # Every draw is made whatever the attributes, so faces differing in one attribute differ only where it shows.
    darker = DARKER_SKINS[int(rng.integers(len(DARKER_SKINS)))]
    hat_colour = HAT_COLOURS[int(rng.integers(len(HAT_COLOURS)))]
    light = rng.uniform(0.75, 1.2)
    skin = PALE_SKIN if a["Pale_Skin"] else darker
    if not a["Bald"]:
        d.ellipse((cx - rx - 2 * s, cy - ry - 3 * s, cx + rx + 2 * s, cy + 2 * s), fill=hair)
        if not a["Male"]:  # long hair falls beside the face
            d.rectangle((cx - rx - 3 * s, cy - 4 * s, cx - rx + 3 * s, cy + ry + 2 * s), fill=hair)
            d.rectangle((cx + rx - 3 * s, cy - 4 * s, cx + rx + 3 * s, cy + ry + 2 * s), fill=hair)
    d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=skin)
    if not a["No_Beard"]:
        d.chord((cx - rx, cy - ry, cx + rx, cy + ry), 20, 160, fill=hair)
    if a["Bangs"]:
        d.chord((cx - rx, cy - ry, cx + rx, cy + 0.2 * ry), 180, 360, fill=hair)
    eye_y, eye_dx = cy - 0.15 * ry, 0.4 * rx
    for ex in (cx - eye_dx, cx + eye_dx):
        d.ellipse((ex - 1.6 * s, eye_y - 1.6 * s, ex + 1.6 * s, eye_y + 1.6 * s), fill=(20, 20, 30))
        if a["Eyeglasses"]:
            r = 4.5 * s
            d.ellipse(
                (ex - r, eye_y - r, ex + r, eye_y + r), outline=(10, 10, 10), width=max(1, int(1.2 * s))
            )
    if a["Eyeglasses"]:
        d.line((cx - eye_dx + 4.5 * s, eye_y, cx + eye_dx - 4.5 * s, eye_y), fill=(10, 10, 10), width=1)
    d.line((cx, cy - 0.05 * ry, cx, cy + 0.2 * ry), fill=tuple(int(v * 0.7) for v in skin), width=1)
    mouth_y, mouth_w = cy + 0.5 * ry, 0.45 * rx
    box = (cx - mouth_w, mouth_y - 4 * s, cx + mouth_w, mouth_y + 4 * s)
    if a["Mouth_Slightly_Open"]:
        if a["Smiling"]:
            d.chord(box, 0, 180, fill=(90, 20, 25))
        else:
            d.ellipse(
                (cx - 0.6 * mouth_w, mouth_y - 2.5 * s, cx + 0.6 * mouth_w, mouth_y + 2.5 * s),
                fill=(90, 20, 25),
            )
    elif a["Smiling"]:
        d.arc(box, 10, 170, fill=(120, 30, 35), width=max(1, int(1.5 * s)))
    else:
        d.line((cx - mouth_w, mouth_y, cx + mouth_w, mouth_y), fill=(120, 30, 35), width=max(1, int(1.5 * s)))
    if a["Mustache"]:
        d.rectangle((cx - 0.5 * rx, mouth_y - 6 * s, cx + 0.5 * rx, mouth_y - 3.5 * s), fill=hair)
    if a["Wearing_Earrings"]:
        for ex in (cx - rx, cx + rx):
            d.ellipse(
                (ex - 2 * s, cy + 0.15 * ry - 2 * s, ex + 2 * s, cy + 0.15 * ry + 2 * s), fill=(240, 200, 30)
            )
    if a["Wearing_Hat"]:
        d.rectangle((cx - rx - 5 * s, cy - 0.62 * ry, cx + rx + 5 * s, cy - 0.5 * ry), fill=hat_colour)
        d.rectangle((cx - 0.8 * rx, cy - ry - 6 * s, cx + 0.8 * rx, cy - 0.55 * ry), fill=hat_colour)
    return np.clip(np.asarray(img, dtype=np.float32) * light, 0, 255).astype(np.uint8)


def _phrases(a: Mapping[str, int]) -> list[str]:
    hair = next((HAIR_WORDS[n] for n in HAIR_WORDS if a[n]), None)
    parts = ["who is bald" if a["Bald"] else f"with {hair} hair"]
    optional = (
        ("Bangs", "with bangs"),
        ("Eyeglasses", "wearing glasses"),
        ("Wearing_Hat", "wearing a hat"),
        ("Mustache", "with a mustache"),
        ("Mouth_Slightly_Open", "with an open mouth"),
        ("Pale_Skin", "with pale skin"),
        ("Wearing_Earrings", "wearing earrings"),
    )
    parts += [phrase for name, phrase in optional if a[name]]
    if a["Male"]:
        parts.append("clean shaven" if a["No_Beard"] else "with a beard")
    return parts


def face_captions(a: Mapping[str, int], rng: np.random.Generator, n: int = 3) -> list[str]:
    """`n` paraphrases naming every attribute the face shows: subject, then its parts in shuffled order."""
    noun = "man" if a["Male"] else "woman"
    subjects = (
        f"a {'smiling ' if a['Smiling'] else ''}{noun}",
        f"a photo of a {noun}{' smiling' if a['Smiling'] else ''}",
        f"the face of a {noun}{' who is smiling' if a['Smiling'] else ' with a neutral expression'}",
    )
    captions = []
    for k in range(n):
        parts = _phrases(a)
        order = rng.permutation(len(parts))
        captions.append(f"{subjects[k % len(subjects)]} " + ", ".join(parts[i] for i in order))
    return captions


def write_face_toyworld(
    root: str | os.PathLike,
    n_train: int = 240,
    n_val: int = 40,
    n_test: int = 120,
    image_size: int = 64,
    captions_per_image: int = 3,
    seed: int = 0,
) -> Path:
    """Write face-toyworld under `root` (module docstring) and return the caption table's path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if min(n_train, n_test) < 1 or n_val < 0 or image_size < 32:
        raise ConfigError(f"face-toyworld needs n_train, n_test >= 1 and image_size >= 32, got {locals()}")
    root = Path(root)
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    partition = {"train": 0, "val": 1, "test": 2}
    rows, attr_lines, partition_lines = [], [], []
    for i, split in enumerate(splits, 1):
        a = draw_face_attributes(rng)
        name = f"{i:06d}.png"
        Image.fromarray(render_face(a, rng, image_size)).save(images / name)
        rows.append({"image": f"img_align_celeba/{name}", "caption": face_captions(a, rng, captions_per_image),
                     "split": split, **a})  # fmt: skip
        attr_lines.append(name + " " + " ".join(f"{2 * a[n] - 1:2d}" for n in FACE_ATTRIBUTES))
        partition_lines.append(f"{name} {partition[split]}")
    header = [str(len(splits)), " ".join(FACE_ATTRIBUTES)]
    (root / "list_attr_celeba.txt").write_text("\n".join(header + attr_lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(partition_lines) + "\n")
    table = root / FACE_TOYWORLD_FILE
    staging = table.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pylist(rows), staging)
    staging.replace(table)  # the table is what marks the dataset written: it lands last, whole
    return table
