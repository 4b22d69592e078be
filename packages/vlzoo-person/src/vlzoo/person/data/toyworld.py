"""person-toyworld: drawn pedestrians with part attributes, seeded, written as PNGs + CUHK-PEDES JSON.

Why it exists: person search models, their tests and the CPU recipes need data that ships with the code,
goes through the real file path (PNG images, the CUHK-PEDES `reid_raw.json` annotation read by
`CuhkPedes`) and can be learned by a tiny model in minutes, while demanding what the task demands: telling
apart identities that differ in *one* part. Every identity is a set of part attributes (`PERSON_ATTRIBUTES`):
gender, hair length and colour, upper-body garment type and colour, lower-body garment type and colour,
shoe colour, bag (none / backpack / handbag) and its colour. Identities come in *families* that share a
base outfit, each member re-drawing only one or two groups; a family's members often wear the same colours
on other parts, or the same colours swapped between parts, so a matcher that sees only which colours are
present (`colours_only_rank1`) confuses them, and matching needs the parts.

Each identity has several images (`images_per_id`) varying pose (stride, arm swing, facing side, which
moves the bag), scale, position, background and lighting; each image has five paraphrased captions naming
every part ("a man with short black hair in a red jacket and blue trousers, wearing white shoes, carrying
a grey backpack"). Images are H×W 128×64 by default (a pedestrian's 2:1 aspect). Every attribute is drawn
as a part several pixels across at that size (long hair falls over the shoulders, bags have a dark outline
and a backpack shows its straps): a supervised narrow ResNet-18 reads each group from 2000 such images
(gender 93 %, hair length 85 %, upper garment type 93 %, bag 76 % after 400 steps; an earlier drawing that
hid long hair behind a man's shoulders and drew small bags gave 71 % and 57 % on those two;
`benchmarks/person_toyworld_oracle.py`).

- `PERSON_ATTRIBUTES`: attribute group → its values (the vocabulary the captions use);
  `COLOUR_WORDS`: every colour word.
- `draw_identities(n, seed)`: the identities' attributes (families of near neighbours, all distinct).
- `render_person(attributes, rng, ...)`: one image `[H, W, 3]` uint8.
- `captions_for(attributes, rng)`: five captions; `part_captions_for(attributes, rng, n)`: captions naming
  a random subset of the parts (`write_person_toyworld(part_captions=n)` adds them);
  `swapped_part_captions_for(attributes, rng, n)`: such captions with exactly one part swapped, hard
  negatives for NegCLIP's loss (`write_person_toyworld(negative_captions=n)` adds them as `negative_texts`).
  `shape_caption_for(attributes)`: the caption naming only the shapes, for a grayscale copy
  (`write_person_toyworld(shape_copies=f)` adds one for a fraction f of the training images;
  `shape_copy_colour=True` pairs the caption with the colour image instead).
- `write_person_toyworld(root, ...)`: `root/imgs/<split>/<id>_<k>.png` + `root/reid_raw.json`; each entry
  also has `"attributes"` (group → value) and `"family"`, which the CUHK-PEDES reader passes through.
- `colours_only_rank1(...)`: the baseline a part-blind matcher reaches.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vlzoo.core.errors import ConfigError

__all__ = [
    "COLOUR_WORDS",
    "GARMENT_COLOURS",
    "PERSON_ATTRIBUTES",
    "PERSON_TOYWORLD_FILE",
    "attribute_words",
    "caption_colours",
    "captions_for",
    "colours_only_rank1",
    "draw_identities",
    "part_captions_for",
    "render_person",
    "shape_caption_for",
    "swapped_part_captions_for",
    "write_person_toyworld",
]

PERSON_TOYWORLD_FILE = "reid_raw.json"

# Colour word → RGB. Garments use GARMENT_COLOURS; hair and shoes their own (sub)sets.
RGB: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35),
    "blue": (35, 60, 190),
    "green": (40, 150, 55),
    "yellow": (230, 205, 40),
    "white": (235, 235, 235),
    "black": (25, 25, 28),
    "grey": (128, 128, 132),
    "purple": (120, 45, 150),
    "brown": (110, 70, 35),
    "blonde": (225, 190, 110),
}
GARMENT_COLOURS = ("red", "blue", "green", "yellow", "white", "black", "grey", "purple")
PERSON_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "gender": ("man", "woman"),
    "hair_length": ("short", "long"),
    "hair_colour": ("black", "brown", "blonde", "grey"),
    "upper_type": ("shirt", "jacket", "coat"),
    "upper_colour": GARMENT_COLOURS,
    "lower_type": ("trousers", "shorts", "skirt"),
    "lower_colour": GARMENT_COLOURS,
    "shoe_colour": ("black", "white", "brown", "red"),
    "bag": ("none", "backpack", "handbag"),
    "bag_colour": ("none", *GARMENT_COLOURS),  # "none" exactly when bag is "none"
}
COLOUR_WORDS = tuple(RGB)
COLOUR_GROUPS = ("hair_colour", "upper_colour", "lower_colour", "shoe_colour", "bag_colour")
SKIN = ((236, 200, 170), (205, 160, 120), (160, 110, 75), (110, 75, 50))
PLURAL = {"trousers", "shorts"}


def attribute_words() -> frozenset[str]:
    """Every word that names an attribute value in the captions (colours, hair length, garments, bags,
    gender): the words an attribute-prediction head masks."""
    return frozenset(v for values in PERSON_ATTRIBUTES.values() for v in values if v != "none")


# ----------------------------------------------------------------------------------------- identities


def _draw_attributes(rng: np.random.Generator) -> dict[str, str]:
    attrs = {g: str(rng.choice(v)) for g, v in PERSON_ATTRIBUTES.items() if g != "bag_colour"}
    attrs["bag_colour"] = "none" if attrs["bag"] == "none" else str(rng.choice(GARMENT_COLOURS))
    return attrs


def _neighbour(
    base: Mapping[str, str], rng: np.random.Generator, hair_colour: bool = False
) -> dict[str, str]:
    """`base` changed in one or two parts without changing its set of colours: a garment, hair length,
    gender or bag kind re-drawn, or two parts trading colours (the upper and lower garments, or a garment
    and the bag). Only the parts' layout tells such neighbours apart. `hair_colour` adds one more move, the
    hair colour re-drawn: neighbours then also differ in a colour, the only one that never differs
    otherwise."""
    attrs = dict(base)
    shape_groups = ["gender", "hair_length", "upper_type", "lower_type"]
    if attrs["bag"] != "none":
        shape_groups.append("bag")
    moves = [*shape_groups, "swap_garments", "swap_bag", *(["hair_colour"] if hair_colour else [])]
    for move in rng.choice(moves, size=int(rng.integers(1, 3)), replace=False):
        if move == "swap_garments":
            attrs["upper_colour"], attrs["lower_colour"] = attrs["lower_colour"], attrs["upper_colour"]
        elif move == "swap_bag":
            if attrs["bag"] != "none":
                attrs["upper_colour"], attrs["bag_colour"] = attrs["bag_colour"], attrs["upper_colour"]
        else:
            values = [v for v in PERSON_ATTRIBUTES[move] if v not in (attrs[move], "none")]
            attrs[move] = str(rng.choice(values))
    return attrs


def draw_identities(
    n: int, seed: int = 0, family_size: int = 8, hair_colour_moves: bool = False
) -> list[tuple[dict[str, str], int]]:
    """`n` distinct identities as (attributes, family index): families of `family_size` near neighbours
    around a random base outfit (duplicates are drawn again, so a family may be smaller);
    `hair_colour_moves`: a neighbour may differ in hair colour too (`_neighbour`)."""
    rng = np.random.default_rng([seed, 7])
    seen: set[tuple[str, ...]] = set()
    out: list[tuple[dict[str, str], int]] = []
    family = -1
    while len(out) < n:
        family += 1
        base = _draw_attributes(rng)
        members = [base] + [_neighbour(base, rng, hair_colour_moves) for _ in range(3 * family_size)]
        kept = 0
        for attrs in members:
            key = tuple(attrs[g] for g in PERSON_ATTRIBUTES)
            if key not in seen and len(out) < n and kept < family_size:
                seen.add(key)
                out.append((attrs, family))
                kept += 1
    return out


# ------------------------------------------------------------------------------------------- drawing


def _shade(rgb: Sequence[int], factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in rgb)  # type: ignore[return-value]


def _box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """A rectangle's corners in the order PIL wants, whichever way the figure faces."""
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A muted scene: wall and ground in low-saturation tones plus a few clutter blocks."""
    wall = rng.uniform(70, 190) + rng.uniform(-12, 12, 3)
    ground = rng.uniform(60, 170) + rng.uniform(-10, 10, 3)
    horizon = int(height * rng.uniform(0.55, 0.8))
    canvas = np.empty((height, width, 3), np.float32)
    canvas[:horizon] = wall
    canvas[horizon:] = ground
    image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.uniform(-10, width), rng.uniform(0, horizon)
        w, h = rng.uniform(6, 24), rng.uniform(8, 40)
        tone = tuple(int(v) for v in (rng.uniform(60, 200) + rng.uniform(-10, 10, 3)).clip(0, 255))
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=tone)
    return image


def render_person(
    attributes: Mapping[str, str], rng: np.random.Generator, height: int = 128, width: int = 64
) -> np.ndarray:
    """One image `[height, width, 3]` uint8 of the identity `attributes`, pose, placement, background and
    lighting drawn from `rng`. The figure is drawn in units of 1/100 of its height, facing the camera;
    `facing` (±1) mirrors the side its bag is carried on.

    Every attribute is drawn as a part several units across, so that a CNN at 128×64 sees it: the
    shoulders and hips (gender), strands of long hair falling over the shoulders, the sleeves' length and a
    jacket's zip and collar or a coat's flared skirt and belt, trousers / shorts / skirt, the shoes, and a
    dark-outlined bag (a backpack's two shoulder straps and its body beside the torso, or a handbag at the hand)."""
    image = _background(rng, height, width)
    draw = ImageDraw.Draw(image)
    a = attributes
    u = height * rng.uniform(0.0078, 0.0092)  # figure height 78-92% of the image
    cx = width / 2 + rng.uniform(-0.1, 0.1) * width
    top = rng.uniform(0.02, 1.0) * (height - 100 * u)
    facing = 1 if rng.random() < 0.5 else -1
    stride = rng.uniform(0.0, 5.0)  # feet apart (units)
    swing = rng.uniform(-3.0, 3.0)
    skin = SKIN[int(rng.integers(len(SKIN)))]
    y = lambda v: top + v * u  # noqa: E731  (units → pixels, vertical)
    x = lambda v: cx + v * u  # noqa: E731
    line = max(1, round(u))  # a one-unit stroke
    upper, lower = RGB[a["upper_colour"]], RGB[a["lower_colour"]]
    hair, shoes = RGB[a["hair_colour"]], RGB[a["shoe_colour"]]
    shoulder = 13.0 if a["gender"] == "man" else 8.0  # a man's broad shoulders, a woman's wider hips
    hip = 6.0 if a["gender"] == "man" else 9.5
    bag = RGB.get(a["bag_colour"], (0, 0, 0))
    bag_edge = _shade(bag, 0.4)  # an outline keeps a bag apart from a garment or wall of its colour

    if a["bag"] == "backpack":  # behind the body: its body shows beside the torso on the far side
        side = facing
        draw.rectangle(
            _box(x(side * (shoulder - 2)), y(15), x(side * (shoulder + 8)), y(44)), fill=bag, outline=bag_edge,
            width=line,
        )  # fmt: skip
    if a["hair_length"] == "long":  # hair falls behind the shoulders
        draw.rectangle((x(-7.5), y(6), x(7.5), y(30)), fill=hair)
    # legs and lower garment
    leg_ends = {"trousers": 92, "shorts": 70, "skirt": 50}
    for sign in (-1, 1):
        foot = sign * (3.5 + stride / 2)
        draw.polygon(
            [(x(sign * 1), y(50)), (x(sign * hip), y(50)), (x(foot + 3), y(93)), (x(foot - 3), y(93))],
            fill=skin,
        )
        end = leg_ends[a["lower_type"]]
        if end > 50:
            t = (end - 50) / 43
            kx = sign * hip + (foot + 3 - sign * hip) * t
            ix = sign * 1 + (foot - 3 - sign * 1) * t
            draw.polygon(
                [(x(sign * 1), y(50)), (x(sign * hip), y(50)), (x(kx), y(end)), (x(ix), y(end))], fill=lower
            )
        draw.rectangle((x(foot - 4), y(91), x(foot + 4), y(98)), fill=shoes)
    if a["lower_type"] == "skirt":
        draw.polygon(
            [(x(-hip), y(48)), (x(hip), y(48)), (x(hip + 5), y(74)), (x(-hip - 5), y(74))], fill=lower
        )
    else:
        draw.rectangle((x(-hip), y(46), x(hip), y(54)), fill=lower)
    # arms: a shirt has short sleeves (bare forearms), a jacket or coat long ones
    sleeve_end = 24 if a["upper_type"] == "shirt" else 48
    for sign, sw in ((-1, swing), (1, -swing)):
        sx = sign * shoulder
        draw.polygon(
            [
                (x(sx - 2.5), y(16)),
                (x(sx + 2.5), y(16)),
                (x(sx + sw + 2.5), y(49)),
                (x(sx + sw - 2.5), y(49)),
            ],
            fill=skin,
        )
        t = (sleeve_end - 16) / 33
        draw.polygon(
            [
                (x(sx - 2.8), y(15)),
                (x(sx + 2.8), y(15)),
                (x(sx + sw * t + 2.8), y(sleeve_end)),
                (x(sx + sw * t - 2.8), y(sleeve_end)),
            ],
            fill=upper,
        )
    # torso: a coat flares down over the thighs (a skirt or shorts still show below it) with a dark belt;
    # a jacket has a dark collar and a broad zip down the middle
    coat = a["upper_type"] == "coat"
    bottom, waist = (66, hip + 4) if coat else (50, hip)
    draw.polygon(
        [(x(-shoulder), y(15)), (x(shoulder), y(15)), (x(waist), y(bottom)), (x(-waist), y(bottom))],
        fill=upper,
    )
    dark = _shade(upper, 0.35) if a["upper_colour"] != "black" else (90, 90, 96)
    if a["upper_type"] == "jacket":
        draw.polygon([(x(-5), y(15)), (x(5), y(15)), (x(0), y(25))], fill=dark)
        draw.rectangle((x(-1), y(15), x(1), y(50)), fill=dark)
    if coat:
        draw.rectangle((x(-hip - 1.5), y(44), x(hip + 1.5), y(47)), fill=dark)
    if a["hair_length"] == "long":  # and strands fall in front of the shoulders
        for sign in (-1, 1):
            draw.rectangle(_box(x(sign * 4), y(8), x(sign * 8), y(30)), fill=hair)
    # head and hair
    draw.rectangle((x(-1.8), y(11), x(1.8), y(16)), fill=skin)
    draw.ellipse((x(-5.5), y(1), x(5.5), y(13)), fill=skin)
    draw.chord((x(-6), y(0), x(6), y(10)), 180, 360, fill=hair)
    if a["bag"] == "handbag":  # in the hand on the near side
        hx = facing * shoulder + (-swing if facing > 0 else swing)
        draw.line((x(hx), y(44), x(hx), y(50)), fill=bag_edge, width=line)
        draw.rectangle(_box(x(hx - 5), y(49), x(hx + 5), y(61)), fill=bag, outline=bag_edge, width=line)
    if a["bag"] == "backpack":  # its two straps over the shoulders
        for sign in (-1, 1):
            sx = sign * shoulder * 0.6
            draw.rectangle(_box(x(sx - 1.5), y(15), x(sx + 1.5), y(36)), fill=bag, outline=bag_edge, width=1)
    pixels = np.asarray(image, np.float32)
    light = rng.uniform(0.75, 1.15) * rng.uniform(0.95, 1.05, 3)  # brightness and a slight colour cast
    pixels = pixels * light + rng.normal(0.0, 4.0, pixels.shape)
    return pixels.clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- captions

TEMPLATES = (
    "a {g} with {hl} {hc} hair in {up} and {lo}, wearing {sc} shoes{bag_comma}.",
    "this {g} has {hl} {hc} hair and is wearing {up}, {lo} and {sc} shoes{bag_and}.",
    "the {g} is wearing {lo} with {up} and {sc} shoes{bag_with}; {pr} hair is {hl} and {hc}.",
    "{bag_lead}a {g} in {up} and {lo} with {hl} {hc} hair and {sc} shoes.",
    "a pedestrian, a {g} in {sc} shoes, {lo} and {up}, with {hl} {hc} hair{bag_comma}.",
    "a {g} in {up} and {lo} with {sc} shoes and {hl} {hc} hair{bag_and}.",
    "{hl} {hc} hair, {up}, {lo}, {sc} shoes{bag_comma}: a {g}.",
)


def _garment(colour: str, kind: str) -> str:
    return f"{colour} {kind}" if kind in PLURAL else f"a {colour} {kind}"


def captions_for(attributes: Mapping[str, str], rng: np.random.Generator, n: int = 5) -> list[str]:
    """`n` (at most 7) captions of `attributes`, each naming every part, from distinct templates."""
    a = attributes
    has_bag = a["bag"] != "none"
    bag = f"a {a['bag_colour']} {a['bag']}"
    words = {
        "g": a["gender"],
        "pr": "his" if a["gender"] == "man" else "her",
        "hl": a["hair_length"],
        "hc": a["hair_colour"],
        "up": _garment(a["upper_colour"], a["upper_type"]),
        "lo": _garment(a["lower_colour"], a["lower_type"]),
        "sc": a["shoe_colour"],
        "bag_comma": f", carrying {bag}" if has_bag else ", without a bag",
        "bag_and": f" and is carrying {bag}" if has_bag else " and has no bag",
        "bag_with": f" and has {bag}" if has_bag else " and has no bag",
        "bag_lead": f"carrying {bag}, " if has_bag else "without a bag, ",
    }
    order = [0, *(1 + rng.permutation(len(TEMPLATES) - 1))]
    return [TEMPLATES[i].format(**words) for i in order[:n]]


# Groups a part-subset caption draws from (the bag's colour goes with the bag).
PART_GROUPS = tuple(g for g in PERSON_ATTRIBUTES if g != "bag_colour")


def _part_phrases(a: Mapping[str, str], named: frozenset[str], bag_colour: bool = True) -> list[str]:
    """The clauses that name exactly the groups `named` of `a`, in the captions' word order (the bag with
    its colour unless `bag_colour` is false)."""
    words = {g: (a[g] if g in named else None) for g in PART_GROUPS}
    clauses = [f"a {words['gender'] or 'person'}"]
    hair = " ".join(w for w in (words["hair_length"], words["hair_colour"]) if w)
    if hair:
        clauses.append(f"with {hair} hair")
    for colour, kind, top in (
        ("upper_colour", "upper_type", "top"),
        ("lower_colour", "lower_type", "bottoms"),
    ):
        c, k = words[colour], words[kind]
        if c and k:
            clauses.append(f"in {_garment(c, k)}")
        elif k:
            clauses.append(f"in {k}" if k in PLURAL else f"in a {k}")
        elif c:
            clauses.append(f"in a {c} {top}" if top == "top" else f"in {c} {top}")
    if words["shoe_colour"]:
        clauses.append(f"wearing {words['shoe_colour']} shoes")
    if words["bag"]:
        bag = f"{a['bag_colour']} {a['bag']}" if bag_colour else a["bag"]
        clauses.append("without a bag" if a["bag"] == "none" else f"carrying a {bag}")
    return clauses


def part_captions_for(
    attributes: Mapping[str, str], rng: np.random.Generator, n: int, max_groups: int | None = None
) -> list[str]:
    """`n` captions each naming a random non-empty subset of the parts ("a woman in a red top, wearing white
    shoes."). Real TBPS captions rarely name every part; a CLIP trained only on captions naming all of them
    learns the few parts that tell a batch apart and never sees a phrase on its own, which is what a
    per-group prompt of the pseudo-text generator is. A subset's size is uniform over 1..all groups, or over
    1..`max_groups` (1: every caption names one part, as a per-group prompt does)."""
    out = []
    for _ in range(n):
        size = int(rng.integers(1, (max_groups or len(PART_GROUPS)) + 1))
        named = frozenset(str(g) for g in rng.choice(PART_GROUPS, size=size, replace=False))
        subject, *rest = _part_phrases(attributes, named)
        out.append(f"{subject} {', '.join(rest)}." if rest else f"{subject}.")
    return out


def shape_caption_for(attributes: Mapping[str, str]) -> str:
    """The caption naming every shape group (`SHAPE_GROUPS`: gender, hair length, garment types, bag) and
    no colour ("a man with long hair, in a coat, in shorts, carrying a backpack."): the caption of a
    grayscale copy (`write_person_toyworld(shape_copies=...)`), where only shapes can match image to text.

    Why every shape group and not a random subset of them, as `part_captions_for` names: a subset caption
    ("a woman.") fits a quarter to a half of a batch's grayscale images, so its contrast says little; one
    naming all five is one of 108 combinations (measured at 600 steps: the bag named 56.0 % against
    38.0 with subsets, chance 33.3; benchmarks/person_pseudo_text.py)."""
    subject, *rest = _part_phrases(attributes, frozenset(SHAPE_GROUPS), bag_colour=False)
    return f"{subject} {', '.join(rest)}."


def _swap_one_part(a: Mapping[str, str], group: str, rng: np.random.Generator) -> dict[str, str]:
    """`a` with exactly `group` re-drawn to another value (a bag that appears gets a colour; `bag_colour`
    only re-colours a bag that is there)."""
    out = dict(a)
    refused = {a[group], "none"} if group == "bag_colour" else {a[group]}
    out[group] = str(rng.choice([v for v in PERSON_ATTRIBUTES[group] if v not in refused]))
    if group == "bag":
        out["bag_colour"] = "none" if out["bag"] == "none" else a["bag_colour"]
        if out["bag"] != "none" and a["bag"] == "none":
            out["bag_colour"] = str(rng.choice(GARMENT_COLOURS))
    return out


# The groups a hard negative swaps: the parts' shapes. Colours need no hard negatives: in a random batch the
# other captions already differ from the truth in colour.
SHAPE_GROUPS = ("gender", "hair_length", "upper_type", "lower_type", "bag")


def swapped_part_captions_for(
    attributes: Mapping[str, str], rng: np.random.Generator, n: int, groups: Sequence[str] = SHAPE_GROUPS
) -> list[str]:
    """`n` NegCLIP-style hard negatives (Yuksekgonul et al. 2023): part captions (`part_captions_for`'s
    phrasing) of `attributes` with exactly one group's value swapped for another, the swapped group always
    among those named. The group is uniform over `groups` (default the shape groups; `bag_colour` only
    re-colours a bag that is there), the other named groups a random subset of the rest.

    Why: in a random batch the colours alone tell nearly every caption from the others, so InfoNCE never
    needs a yes/no shape cue (hair length, bag); a caption that differs from the truth in that cue alone,
    as a negative of the image, does."""
    groups = [g for g in groups if g != "bag_colour" or attributes["bag"] != "none"]
    out = []
    for _ in range(n):
        group = str(rng.choice(groups))
        swapped = _swap_one_part(attributes, group, rng)
        named_group = "bag" if group == "bag_colour" else group
        rest = [g for g in PART_GROUPS if g != named_group]
        others = rng.choice(rest, size=int(rng.integers(0, len(rest) + 1)), replace=False)
        subject, *clauses = _part_phrases(swapped, frozenset([named_group, *map(str, others)]))
        out.append(f"{subject} {', '.join(clauses)}." if clauses else f"{subject}.")
    return out


_WORD = re.compile(r"[a-z]+")


def caption_colours(caption: str) -> frozenset[str]:
    """The colour words of a caption."""
    return frozenset(w for w in _WORD.findall(caption.lower()) if w in RGB)


def _tokens(caption: str) -> list[str]:
    return re.findall(r"[a-z]+|[^\sa-z]", caption.lower())


# -------------------------------------------------------------------------------------------- writing


def write_person_toyworld(
    root: str | os.PathLike,
    n_train: int = 160,
    n_val: int = 16,
    n_test: int = 40,
    images_per_id: int = 4,
    image_height: int = 128,
    image_width: int = 64,
    seed: int = 0,
    part_captions: int = 0,
    part_caption_groups: int = 0,
    negative_captions: int = 0,
    shape_copies: float = 0.0,
    shape_copy_colour: bool = False,
    neighbour_hair_colour: bool = False,
) -> Path:
    """Write person-toyworld, `n_train`/`n_val`/`n_test` identities × `images_per_id` images per split:
    `root/imgs/<split>/<id:04d>_<k>.png` and the CUHK-PEDES annotation
    `root/reid_raw.json` (a list of `{"split", "captions", "file_path", "processed_tokens", "id"}`, ids
    from 1 as CUHK-PEDES numbers them, `file_path` relative to `root/imgs`); returns the JSON's path.

    Each entry also has `"attributes"` (group → value of `PERSON_ATTRIBUTES`) and `"family"` (its group of
    near-neighbour identities). Identities of different splits are different people; a family never spans
    two splits. Identical arguments give identical files. `part_captions` > 0 adds that many captions per
    image naming a random subset of the parts (`part_captions_for`) after the five; the images and the five
    captions stay those of `part_captions=0`; `part_caption_groups` > 0 caps the parts one names (1: a
    single part each). `negative_captions` > 0 adds `"negative_texts"`, that many
    one-part-swapped captions per image (`swapped_part_captions_for`): hard negatives for NegCLIP's loss
    (`loss: negclip`); the images and captions stay those without them. `shape_copies` > 0 gives that
    fraction of the training images a grayscale copy, `<id:04d>_<k>_gray.png`, as an entry of its own (same
    id, attributes and family) whose one caption names only shapes (`shape_caption_for`): the colour
    shortcut taken away, so that the contrast must learn hair length, garment types and the bag; the other
    entries stay those without them. `shape_copy_colour` keeps the copy's colours: the entry names the colour
    image itself (no new file) with the shape-only caption, so that only the caption hides the colours.
    `neighbour_hair_colour` lets near neighbours differ in hair colour (`draw_identities(hair_colour_moves=)`):
    another world, every identity drawn anew.
    """
    if not 0 <= part_caption_groups <= len(PART_GROUPS):
        raise ConfigError(
            f"person-toyworld: part_caption_groups is in 0..{len(PART_GROUPS)}, got {part_caption_groups}"
        )
    if not 0.0 <= shape_copies <= 1.0:
        raise ConfigError(f"person-toyworld: shape_copies is a fraction in [0, 1], got {shape_copies}")
    if min(n_train, n_test) < 1 or min(n_val, part_captions, negative_captions) < 0 or images_per_id < 1:
        raise ConfigError(
            "person-toyworld: n_train and n_test must be ≥ 1, n_val, part_captions and negative_captions ≥ 0,"
            f" images_per_id ≥ 1; got {n_train}, {n_test}, {n_val}, {part_captions}, {negative_captions},"
            f" {images_per_id}"
        )
    if image_height < 48 or image_width < 24:
        raise ConfigError(f"person-toyworld: images must be at least 48×24, got {image_height}×{image_width}")
    root = Path(root)
    entries: list[dict[str, Any]] = []
    next_id = 1
    for split_index, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        if n == 0:
            continue
        (root / "imgs" / split).mkdir(parents=True, exist_ok=True)
        for attrs, family in draw_identities(
            n, seed * 3 + split_index, hair_colour_moves=neighbour_hair_colour
        ):
            pid = next_id
            next_id += 1
            for k in range(images_per_id):
                rng = np.random.default_rng([seed, split_index, pid, k])
                pixels = render_person(attrs, rng, image_height, image_width)
                file_path = f"{split}/{pid:04d}_{k}.png"
                Image.fromarray(pixels).save(root / "imgs" / file_path)
                captions = captions_for(attrs, rng)
                if part_captions:
                    captions += part_captions_for(attrs, rng, part_captions, part_caption_groups or None)
                entry = {
                    "split": split,
                    "captions": captions,
                    "file_path": file_path,
                    "processed_tokens": [_tokens(c) for c in captions],
                    "id": pid,
                    "attributes": dict(attrs),
                    "family": f"{split}-{family}",
                }
                if negative_captions:
                    entry["negative_texts"] = swapped_part_captions_for(attrs, rng, negative_captions)
                entries.append(entry)
                copy_rng = np.random.default_rng([seed, split_index, pid, k, 1])  # leaves `rng`'s draws alone
                if split == "train" and copy_rng.random() < shape_copies:
                    entries.append(_shape_copy(entry, None if shape_copy_colour else pixels, root / "imgs"))
    path = root / PERSON_TOYWORLD_FILE
    path.write_text(json.dumps(entries))
    return path


def _shape_copy(entry: Mapping[str, Any], pixels: np.ndarray | None, images: Path) -> dict:
    """`entry`'s image written in grayscale (ITU-R 601 luma) beside it, with a caption naming only shapes;
    with `pixels` None, `entry`'s own colour image with that caption."""
    file_path = entry["file_path"]
    if pixels is not None:
        file_path = file_path.replace(".png", "_gray.png")
        Image.fromarray(pixels).convert("L").save(images / file_path)
    captions = [shape_caption_for(entry["attributes"])]
    return {
        **entry,
        "captions": captions,
        "file_path": file_path,
        "processed_tokens": [_tokens(c) for c in captions],
    }


# ------------------------------------------------------------------------------------------- baseline


def colours_only_rank1(
    query_captions: Sequence[str],
    query_ids: Sequence[int],
    gallery_attributes: Sequence[Mapping[str, str]],
    gallery_ids: Sequence[int],
) -> float:
    """Text→image Rank-1 (%) of a matcher that knows exactly which colours each gallery image shows (its
    true attribute colours) but not where: Jaccard overlap of a caption's colour words with an image's
    colour set. It is the best any part-blind colour matcher can do on person-toyworld. Ties count in
    expectation (a query whose best score is shared by k images, m of them of its identity, scores m/k),
    so the figure is deterministic."""
    names = list(RGB)
    gallery = np.array(
        [[c in {a[g] for g in COLOUR_GROUPS} for c in names] for a in gallery_attributes], np.float32
    )
    queries = np.array([[c in caption_colours(t) for c in names] for t in query_captions], np.float32)
    inter = queries @ gallery.T
    union = queries.sum(1, keepdims=True) + gallery.sum(1)[None, :] - inter
    score = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    at_best = np.isclose(score, score.max(axis=1, keepdims=True))
    same = np.asarray(query_ids)[:, None] == np.asarray(gallery_ids)[None, :]
    return float(100.0 * np.mean((at_best & same).sum(1) / at_best.sum(1)))
