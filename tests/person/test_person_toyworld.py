"""person-toyworld: real PNGs and a CUHK-PEDES annotation, part attributes named by every caption, several
images per identity, near-neighbour identities that a colours-only matcher confuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlzoo.core.data import ensure_generated, get_generated_dataset
from vlzoo.core.errors import ConfigError
from vlzoo.person.data import (
    PERSON_ATTRIBUTES,
    TbpsAnnotations,
    attribute_words,
    colours_only_rank1,
    draw_identities,
    part_captions_for,
    render_person,
    swapped_part_captions_for,
    write_person_toyworld,
)


def test_files_and_annotation(person_toyworld: Path):
    entries = json.loads(person_toyworld.read_text())
    assert len(entries) == (24 + 4 + 8) * 3
    first = entries[0]
    assert {"split", "captions", "file_path", "processed_tokens", "id", "attributes"} <= set(first)
    assert first["id"] == 1  # CUHK-PEDES numbers identities from 1
    image = Image.open(person_toyworld.parent / "imgs" / first["file_path"])
    assert image.format == "PNG" and image.size == (64, 128)  # W×H: a tall pedestrian crop
    assert len(first["captions"]) == 5 and len(set(first["captions"])) == 5
    assert first["processed_tokens"][0][:2] == first["captions"][0].split()[:2]
    # identities never span two splits, and each has 3 images
    splits: dict[int, set[str]] = {}
    for e in entries:
        splits.setdefault(e["id"], set()).add(e["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert np.bincount([e["id"] for e in entries])[1:].tolist() == [3] * 36


def test_every_caption_names_every_part(person_toyworld: Path):
    for e in json.loads(person_toyworld.read_text())[:30]:
        a = e["attributes"]
        assert set(a) == set(PERSON_ATTRIBUTES)
        assert all(a[g] in PERSON_ATTRIBUTES[g] for g in a)
        assert (a["bag"] == "none") == (a["bag_colour"] == "none")
        for caption in e["captions"]:
            words = set(
                caption.replace(",", " ").replace(".", " ").replace(";", " ").replace(":", " ").split()
            )
            named = {a[g] for g in ("gender", "hair_length", "upper_type", "lower_type")}
            named |= {a["hair_colour"], a["upper_colour"], a["lower_colour"], a["shoe_colour"]}
            if a["bag"] != "none":
                named |= {a["bag"], a["bag_colour"]}
            assert named <= words, (caption, a)
            assert words & attribute_words() <= named | {"man", "woman"}  # no attribute word of another value


def _words(caption: str) -> set[str]:
    return set(caption.replace(",", " ").replace(".", " ").split())


def test_part_captions_name_a_subset_of_the_true_parts_and_each_part_alone():
    """A part caption names only the identity's own values, and over many captions every group is named
    alone ("a person wearing white shoes."): the phrases a per-group pseudo-text prompt is made of."""
    a = {"gender": "woman", "hair_length": "long", "hair_colour": "blonde", "upper_type": "coat",
         "upper_colour": "red", "lower_type": "shorts", "lower_colour": "blue", "shoe_colour": "white",
         "bag": "backpack", "bag_colour": "grey"}  # fmt: skip
    captions = part_captions_for(a, np.random.default_rng(0), 400)
    own = {v for v in a.values()} | {"person"}
    sizes = []
    for caption in captions:
        words = _words(caption)
        assert words & (attribute_words() | {"person"}) <= own, caption
        sizes.append(len(words & attribute_words()))
    assert min(sizes) == 1 and max(sizes) == len(attribute_words() & set(a.values()))
    for alone in ("a woman.", "a person with long hair.", "a person with blonde hair.", "a person in a coat.",
                  "a person in a red top.", "a person in shorts.", "a person in blue bottoms.",
                  "a person wearing white shoes.", "a person carrying a grey backpack."):  # fmt: skip
        assert alone in captions
    no_bag = part_captions_for({**a, "bag": "none", "bag_colour": "none"}, np.random.default_rng(0), 400)
    assert "a person without a bag." in no_bag and not any("grey" in c for c in no_bag)
    singles = ["a woman.", "a person with long hair.", "a person with blonde hair.", "a person in a coat.",
               "a person in a red top.", "a person in shorts.", "a person in blue bottoms.",
               "a person wearing white shoes.", "a person carrying a grey backpack."]  # fmt: skip
    one_part = part_captions_for(a, np.random.default_rng(0), 400, max_groups=1)
    assert set(one_part) == set(singles)  # each names one part, and every part is named
    two_parts = part_captions_for(a, np.random.default_rng(0), 400, max_groups=2)
    assert set(singles) < set(two_parts)
    assert max(len(_words(c) & attribute_words()) for c in two_parts) <= 3  # the bag's colour goes with it


def test_part_captions_come_after_the_five_and_change_nothing_else(tmp_path: Path):
    sizes = {"n_train": 3, "n_val": 0, "n_test": 2, "images_per_id": 2, "seed": 1}
    plain = json.loads(write_person_toyworld(tmp_path / "a", **sizes).read_text())
    parts = json.loads(write_person_toyworld(tmp_path / "b", part_captions=3, **sizes).read_text())
    for e, f in zip(plain, parts, strict=True):
        assert f["captions"][:5] == e["captions"] and len(f["captions"]) == 8
        assert all(_words(c) & attribute_words() <= set(f["attributes"].values()) for c in f["captions"][5:])
    image = "imgs/test/0004_1.png"
    assert (tmp_path / "a" / image).read_bytes() == (tmp_path / "b" / image).read_bytes()
    with pytest.raises(ConfigError, match="part_captions"):
        write_person_toyworld(tmp_path / "c", part_captions=-1)
    with pytest.raises(ConfigError, match="part_caption_groups"):
        write_person_toyworld(tmp_path / "d", part_captions=3, part_caption_groups=10)
    single = json.loads(
        write_person_toyworld(tmp_path / "e", part_captions=3, part_caption_groups=1, **sizes).read_text()
    )
    assert [e["captions"][:5] for e in single] == [e["captions"] for e in plain]
    assert all(c.startswith("a ") and c.count(",") == 0 for e in single for c in e["captions"][5:])


def test_swapped_part_captions_get_exactly_one_shape_part_wrong():
    """NegCLIP's hard negatives: each names one shape part (gender, hair length, a garment's type, the bag)
    with a value the person does not have and every other part it names as the person has it; over many,
    each shape part is the wrong one, alone or among other parts."""
    a = {"gender": "woman", "hair_length": "long", "hair_colour": "blonde", "upper_type": "coat",
         "upper_colour": "red", "lower_type": "shorts", "lower_colour": "blue", "shoe_colour": "white",
         "bag": "backpack", "bag_colour": "grey"}  # fmt: skip
    own = set(a.values())
    wrong_word = {"man": "gender", "short": "hair_length", "shirt": "upper_type", "jacket": "upper_type",
                  "trousers": "lower_type", "skirt": "lower_type", "handbag": "bag"}  # fmt: skip
    swapped: dict[str, int] = {}
    for caption in swapped_part_captions_for(a, np.random.default_rng(0), 400):
        wrong = (_words(caption) & attribute_words()) - own
        group = "bag" if "without a bag" in caption else None
        assert len(wrong) + (group is not None) == 1, caption
        group = group or wrong_word[wrong.pop()]
        swapped[group] = swapped.get(group, 0) + 1
    assert set(swapped) == {"gender", "hair_length", "upper_type", "lower_type", "bag"}
    assert min(swapped.values()) >= 50  # about 80 each: uniform over the five
    colours = swapped_part_captions_for(a, np.random.default_rng(1), 200, groups=("upper_colour",))
    upper = [re.search(r"in a (\w+) (?:coat|top)", c) for c in colours]  # the only part named in colour
    assert all(m is not None and m[1] != "red" for m in upper), colours
    bagless = {**a, "bag": "none", "bag_colour": "none"}
    no_bag = swapped_part_captions_for(bagless, np.random.default_rng(2), 200)
    for caption in no_bag:  # a bag that appears is the wrong part (with a colour of its own), or another is
        wrong = (_words(caption) & attribute_words()) - set(bagless.values())
        if "carrying" in caption:
            assert len(wrong & {"backpack", "handbag"}) == 1 and len(wrong) <= 2, caption
        else:
            assert len(wrong) == 1, caption
    assert any("handbag" in c for c in no_bag) and any("backpack" in c for c in no_bag)


def test_negative_captions_reach_the_training_samples_and_change_nothing_else(tmp_path: Path):
    sizes = {"n_train": 3, "n_val": 0, "n_test": 2, "images_per_id": 2, "seed": 1, "part_captions": 2}
    plain = json.loads(write_person_toyworld(tmp_path / "a", **sizes).read_text())
    path = write_person_toyworld(tmp_path / "b", negative_captions=4, **sizes)
    negatives = json.loads(path.read_text())
    for e, f in zip(plain, negatives, strict=True):
        assert f["captions"] == e["captions"] and "negative_texts" not in e
        assert len(f["negative_texts"]) == 4 and not set(f["negative_texts"]) & set(f["captions"])
    image = "imgs/train/0002_1.png"
    assert (tmp_path / "a" / image).read_bytes() == (tmp_path / "b" / image).read_bytes()
    sample = TbpsAnnotations(path, "train", captions="random")[0]
    assert sample["negative_texts"] == negatives[0]["negative_texts"]
    with pytest.raises(ConfigError, match="negative_captions"):
        write_person_toyworld(tmp_path / "c", negative_captions=-1)


def test_identities_are_distinct_near_neighbours():
    """Families of up to 8 identities share their set of colours (what a colour matcher sees) and differ
    from the family's first member in a few parts only."""
    ids = draw_identities(40, seed=3)
    keys = [tuple(a[g] for g in PERSON_ATTRIBUTES) for a, _ in ids]
    assert len(set(keys)) == 40
    families: dict[int, list[dict]] = {}
    for a, f in ids:
        families.setdefault(f, []).append(a)
    assert max(len(m) for m in families.values()) == 8
    colour_groups = ("hair_colour", "upper_colour", "lower_colour", "shoe_colour", "bag_colour")
    for members in families.values():
        colours = {frozenset(a[g] for g in colour_groups) for a in members}
        assert len(colours) == 1
        for other in members[1:]:
            assert 1 <= sum(members[0][g] != other[g] for g in PERSON_ATTRIBUTES) <= 4
    # hair-colour moves: some neighbours differ from their family's first member in hair colour, while the
    # family's other colours stay its own (at most traded between parts)
    moved = draw_identities(400, seed=3, hair_colour_moves=True)
    first: dict[int, dict] = {}
    differ = 0
    for a, f in moved:
        base = first.setdefault(f, a)
        assert {a[g] for g in colour_groups[1:]} == {base[g] for g in colour_groups[1:]}
        differ += a["hair_colour"] != base["hair_colour"]
    assert 40 <= differ <= 200


def test_images_of_one_identity_vary_and_the_generator_is_seeded():
    a, _ = draw_identities(1, seed=0)[0]
    one = render_person(a, np.random.default_rng(1))
    two = render_person(a, np.random.default_rng(2))
    assert one.shape == (128, 64, 3) and one.dtype == np.uint8
    assert np.abs(one.astype(int) - two).mean() > 10  # pose, placement, background and light differ
    assert np.array_equal(one, render_person(a, np.random.default_rng(1)))


@pytest.mark.parametrize(
    ("group", "value"),
    [("gender", "woman"), ("hair_length", "long"), ("upper_type", "shirt"), ("upper_type", "coat"),
     ("lower_type", "shorts"), ("lower_type", "skirt"), ("bag", "backpack"), ("bag", "handbag"),
     ("shoe_colour", "black")],
)  # fmt: skip
def test_every_attribute_is_drawn_large_enough_to_see_at_128x64(group: str, value: str):
    """Changing one attribute, pose and scene kept (the same rng), changes at least 120 of the 8192 pixels
    of a 128×64 image in every one of 20 poses: each attribute is a part a CNN can see, not a silhouette
    nuance (an earlier drawing hid long hair behind a man's shoulders entirely: 0 pixels in some poses)."""
    base = {"gender": "man", "hair_length": "short", "hair_colour": "brown", "upper_type": "jacket",
            "upper_colour": "red", "lower_type": "trousers", "lower_colour": "blue", "shoe_colour": "white",
            "bag": "none", "bag_colour": "none"}  # fmt: skip
    other = {**base, group: value, **({"bag_colour": "yellow"} if group == "bag" else {})}
    changed = []
    for seed in range(20):
        a = render_person(base, np.random.default_rng(seed)).astype(int)
        b = render_person(other, np.random.default_rng(seed)).astype(int)
        changed.append(int((np.abs(a - b).max(-1) > 40).sum()))
    assert min(changed) >= 120, changed


def test_same_arguments_same_files(tmp_path: Path):
    p1 = write_person_toyworld(tmp_path / "a", n_train=3, n_val=0, n_test=2, images_per_id=2, seed=5)
    p2 = write_person_toyworld(tmp_path / "b", n_train=3, n_val=0, n_test=2, images_per_id=2, seed=5)
    assert p1.read_text() == p2.read_text()
    assert (p1.parent / "imgs/test/0004_1.png").read_bytes() == (
        p2.parent / "imgs/test/0004_1.png"
    ).read_bytes()
    with pytest.raises(ConfigError, match="images_per_id"):
        write_person_toyworld(tmp_path / "c", images_per_id=0)


def test_registered_as_generated_cuhk_pedes(tmp_path: Path):
    spec = get_generated_dataset("person-toyworld")
    assert spec is not None and spec.kind == "cuhk-pedes" and spec.filename == "reid_raw.json"
    path = ensure_generated(
        "person-toyworld", tmp_path, {"n_train": 2, "n_val": 0, "n_test": 2, "images_per_id": 2}
    )
    assert TbpsAnnotations(path, "test", captions="all")[0]["pid"] == 3  # test pids are the raw ids


def test_colours_only_matcher_is_confused_by_neighbours(person_toyworld: Path):
    """The part-blind matcher knows each image's true colours, yet near neighbours defeat it: on 8 test
    identities of one family it is at chance (1/8), however well it sees colours."""
    test = [e for e in json.loads(person_toyworld.read_text()) if e["split"] == "test"]
    captions = [c for e in test for c in e["captions"]]
    query_ids = [e["id"] for e in test for _ in e["captions"]]
    rank1 = colours_only_rank1(captions, query_ids, [e["attributes"] for e in test], [e["id"] for e in test])
    assert rank1 == pytest.approx(100 / 8)
    # and a matcher given the right colours on a gallery of identities with distinct colour sets is perfect
    same = colours_only_rank1(
        ["a red shirt"],
        [1],
        [
            {
                "upper_colour": "red",
                "hair_colour": "x",
                "lower_colour": "x",
                "shoe_colour": "x",
                "bag_colour": "none",
            },
            {
                "upper_colour": "blue",
                "hair_colour": "x",
                "lower_colour": "x",
                "shoe_colour": "x",
                "bag_colour": "none",
            },
        ],
        [1, 2],
    )
    assert same == 100.0
