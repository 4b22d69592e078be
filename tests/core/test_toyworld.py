"""toyworld: deterministic, captions true to the pixels, and not solvable by colours alone."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from vlzoo.core.data import (
    ImageFolderClasses,
    KarpathySplits,
    ToyWorld,
    bag_of_colours_baseline,
    toyworld_classes,
    write_toyworld,
    write_toyworld_classes,
)
from vlzoo.core.data.toyworld import CHANGES, COLOURS, INVERSE, SHAPES, caption_swaps
from vlzoo.core.errors import DataError

_REL = {
    "above": "above", "on top of": "above", "over": "above",
    "below": "below", "under": "below", "beneath": "below",
    "left of": "left of", "to the left of": "left of",
    "right of": "right of", "to the right of": "right of",
}  # fmt: skip
_SIZE = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}
_NP = r"a (\w+) (\w+) (\w+)"
_CAPTION = re.compile(
    rf"^(?:there is |a picture of )?{_NP}(?: that is)? ({'|'.join(sorted(_REL, key=len, reverse=True))}) {_NP}$"
)


def parse(caption: str) -> tuple[tuple[str, str, str], str, tuple[str, str, str]]:
    """(size, colour, shape), relation, (size, colour, shape) — canonical words."""
    m = _CAPTION.match(caption)
    assert m, f"caption in no known template: {caption!r}"
    s0, c0, sh0, rel, s1, c1, sh1 = m.groups()
    return (_SIZE[s0], c0, sh0), _REL[rel], (_SIZE[s1], c1, sh1)


def region(image: np.ndarray, obj: dict) -> np.ndarray:
    """Mask of the pixels of the object's colour inside its box (+1 px): measured, not re-rendered."""
    x, y, r = obj["x"], obj["y"], obj["r"]
    window = np.zeros(image.shape[:2], bool)
    window[max(0, int(y - r - 1)) : int(y + r + 2), max(0, int(x - r - 1)) : int(x + r + 2)] = True
    return window & np.all(image == COLOURS[obj["colour"]], axis=-1)


def shape_of(mask: np.ndarray) -> str:
    """Name a shape from its pixels: how much of its bounding box it fills, top vs bottom row widths."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    fill = box.mean()
    if fill > 0.93:
        return "square"
    if fill > 0.7:
        return "circle"
    top, bottom = box[0].sum(), box[-1].sum()
    return "triangle" if bottom > 2 * top else "cross"


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = ToyWorld("train", 10, seed=0), ToyWorld("train", 10, seed=0), ToyWorld("train", 10, seed=1)
    for i in (9, 0, 5):  # out of order: random access gives the same as sequential
        sa, sb = a[i], b[i]
        np.testing.assert_array_equal(np.asarray(sa["image"]), np.asarray(sb["image"]))
        assert sa["texts"] == sb["texts"]
        assert sa["scene"] == sb["scene"]
    assert [a[i]["texts"] for i in range(10)] != [c[i]["texts"] for i in range(10)]
    assert not np.array_equal(np.asarray(a[0]["image"]), np.asarray(c[0]["image"]))
    assert [a[i]["texts"] for i in range(4)] != [ToyWorld("val", 10)[i]["texts"] for i in range(4)]


def test_written_files_are_identical_across_runs_and_match_memory(tmp_path):
    one = write_toyworld(tmp_path / "one", n_train=6, n_val=2, n_test=2, image_size=48, seed=5)
    two = write_toyworld(tmp_path / "two", n_train=6, n_val=2, n_test=2, image_size=48, seed=5)
    assert one.read_bytes() == two.read_bytes()
    pngs = sorted(p.relative_to(one.parent) for p in one.parent.rglob("*.png"))
    assert len(pngs) == 10
    for rel in pngs:
        assert (one.parent / rel).read_bytes() == (two.parent / rel).read_bytes()
    memory = ToyWorld("train", 6, image_size=48, seed=5)
    files = KarpathySplits(one, "train")
    for i in range(6):
        np.testing.assert_array_equal(np.asarray(files[i]["image"]), np.asarray(memory[i]["image"]))
        assert files[i]["texts"] == memory[i]["texts"]
        assert files[i]["id"] == memory[i]["id"]
    data = json.loads(one.read_text())
    assert {e["split"] for e in data["images"]} == {"train", "val", "test"}
    assert all(len(e["sentences"]) == 5 for e in data["images"])


def test_captions_and_scene_records_agree_with_the_pixels():
    world = ToyWorld("test", 120, image_size=64, seed=2)
    seen_shapes, seen_relations = set(), set()
    for i in range(len(world)):
        sample = world[i]
        image = np.asarray(sample["image"])
        objects, relation = sample["scene"]["objects"], sample["scene"]["relation"]
        truth = [(o["size"], o["colour"], o["shape"]) for o in objects]
        for o in objects:
            # the recorded centre pixel has the named colour, the blob there has the named shape and size
            assert tuple(image[int(o["y"]), int(o["x"])]) == COLOURS[o["colour"]]
            mask = region(image, o)
            assert shape_of(mask) == o["shape"], (i, o)
            height = np.ptp(np.flatnonzero(mask.any(1))) + 1
            assert (height >= 16) == (o["size"] == "large"), (i, o, height)
        # the relation holds on the measured centroids, on its own axis
        (y0, x0), (y1, x1) = (np.argwhere(region(image, o)).mean(0) for o in objects)
        along = {"above": y1 - y0, "below": y0 - y1, "left of": x1 - x0, "right of": x0 - x1}[relation]
        assert along > 0
        # every caption, whichever template and direction, says the same thing
        assert len(sample["texts"]) == 5
        for caption in sample["texts"]:
            first, rel, second = parse(caption)
            assert (first, rel, second) in (
                (truth[0], relation, truth[1]),
                (truth[1], INVERSE[relation], truth[0]),
            )
        seen_shapes |= {o["shape"] for o in objects}
        seen_relations.add(relation)
    assert seen_shapes == set(SHAPES)
    assert len(seen_relations) == 4


def test_images_come_in_colour_sharing_pairs_that_differ_otherwise():
    world = ToyWorld("train", 40, seed=0)
    for pair in range(20):
        a, b = world[2 * pair]["scene"], world[2 * pair + 1]["scene"]
        assert [o["colour"] for o in a["objects"]] == [o["colour"] for o in b["objects"]]
        described = lambda s: ([(o["shape"], o["size"]) for o in s["objects"]], s["relation"])  # noqa: E731
        assert described(a) != described(b)


def changed(a: dict, b: dict) -> str:
    """What differs between two scenes of a pair, read from their records."""
    (a0, a1), (b0, b1) = a["objects"], b["objects"]
    if a["relation"] != b["relation"]:
        return "relation"
    if (a0["size"], a1["size"]) != (b0["size"], b1["size"]):
        return "size"
    return "swap" if (a0["shape"], a1["shape"]) == (b1["shape"], b0["shape"]) else "shape"


def test_each_pair_records_the_one_change_that_tells_its_images_apart(tmp_path):
    world = ToyWorld("test", 200, seed=0)
    index = json.loads(write_toyworld(tmp_path, n_train=0, n_val=0, n_test=200).read_text())["images"]
    seen = []
    for pair in range(100):
        a, b = world[2 * pair]["scene"], world[2 * pair + 1]["scene"]
        change = world.change(2 * pair)
        assert change == world.change(2 * pair + 1) == changed(a, b)
        assert index[2 * pair]["change"] == index[2 * pair + 1]["change"] == change
        if change == "relation":  # the same objects with the relation reversed
            assert b["relation"] == INVERSE[a["relation"]]
            assert [o["shape"] for o in a["objects"]] == [o["shape"] for o in b["objects"]]
        if change == "swap":
            assert a["objects"][0]["shape"] != a["objects"][1]["shape"]
        seen.append(change)
    assert set(seen) == set(CHANGES)
    assert 30 <= seen.count("shape") <= 50  # drawn with p = 0.4, and in place of a swap of equal shapes


def test_caption_swaps_flip_the_direction_word_or_exchange_the_objects():
    assert caption_swaps("there is a little red circle on top of a big blue cross") == {
        "direction": "there is a little red circle under a big blue cross",
        "objects": "there is a big blue cross on top of a little red circle",
    }
    assert caption_swaps("a picture of a large white square to the left of a small green triangle") == {
        "direction": "a picture of a large white square to the right of a small green triangle",
        "objects": "a picture of a small green triangle to the left of a large white square",
    }
    # the same object twice (size synonyms read alike): neither edit makes the caption false
    assert caption_swaps("a tiny red circle over a small red circle") == {}
    with pytest.raises(DataError, match="not a caption of two objects and one relation"):
        caption_swaps("a red circle")


def test_caption_swaps_of_a_relation_pair_are_its_distractors_captions():
    # the two cells of the relation's XOR that are false of an image are exactly what its distractor shows
    world = ToyWorld("train", 400, seed=0)
    relation_pairs = [p for p in range(200) if world.change(2 * p) == "relation"]
    assert len(relation_pairs) >= 20
    for pair in relation_pairs:
        own, distractor = world.generate(2 * pair)[2], world.generate(2 * pair + 1)[2]
        swaps = caption_swaps(own[0])
        if swaps:
            assert swaps["direction"] == distractor[0]  # "A above B" -> "A below B"
            assert swaps["objects"] == distractor[1]  # "A above B" -> "B above A"
    # every edit of every caption is false of its own image: never one of its captions
    for index in range(40):
        captions = world.generate(index)[2]
        for text in captions:
            assert not set(caption_swaps(text).values()) & set(captions)


def test_swap_negatives_add_the_own_captions_edits_and_change_nothing_else(tmp_path):
    plain = json.loads(write_toyworld(tmp_path / "plain", 20, 0, 0).read_text())["images"]
    swaps = json.loads(write_toyworld(tmp_path / "swaps", 20, 0, 0, swap_negatives=True).read_text())[
        "images"
    ]
    for i, (a, b) in enumerate(zip(plain, swaps)):
        assert (tmp_path / "plain/train" / a["filename"]).read_bytes() == (
            tmp_path / "swaps/train" / b["filename"]
        ).read_bytes()
        assert {k: v for k, v in a.items() if k != "negative_texts"} == {
            k: v for k, v in b.items() if k != "negative_texts"
        }
        own = [s["raw"] for s in a["sentences"]]
        distractor = [s["raw"] for s in plain[i ^ 1]["sentences"]]
        assert a["negative_texts"] == distractor
        edits = {edit for text in own for edit in caption_swaps(text).values()}
        assert b["negative_texts"][: len(distractor)] == distractor  # the distractor's first, as before
        assert set(b["negative_texts"]) == set(distractor) | edits
        assert len(set(b["negative_texts"])) == len(b["negative_texts"])
        assert not set(b["negative_texts"]) & set(own)
        if a["change"] != "relation" and edits:  # edits that no caption of the pair says: new negatives
            assert len(b["negative_texts"]) > len(distractor)
    world = ToyWorld("train", 20, swap_negatives=True, captions="random")
    assert world[3]["negative_texts"] == swaps[3]["negative_texts"]


def test_bag_of_colours_is_above_chance_and_far_from_solving_it():
    r1 = bag_of_colours_baseline(ToyWorld("test", 200, captions="all"))
    assert 1 / 200 * 3 < r1 < 0.5


def test_bag_of_colours_reads_the_written_split_the_same(tmp_path):
    path = write_toyworld(tmp_path, n_train=0, n_val=0, n_test=60)
    assert bag_of_colours_baseline(KarpathySplits(path, "test")) == pytest.approx(
        bag_of_colours_baseline(ToyWorld("test", 60))
    )


def test_a_thousand_training_images_in_well_under_five_seconds():
    world = ToyWorld("train", 1000, image_size=64)
    start = time.perf_counter()
    for i in range(len(world)):
        world[i]
    assert time.perf_counter() - start < 5.0


def test_classification_view_in_image_folder_layout(tmp_path):
    root = write_toyworld_classes(tmp_path / "shapes", n_per_class=3, image_size=64, seed=0)
    source = ImageFolderClasses(root)
    assert source.classes == sorted(SHAPES)
    assert len(source) == 12
    for i in range(len(source)):
        sample = source[i]
        image = np.asarray(sample["image"])
        # the largest single-colour blob is the labelled (large) object: its shape is the class
        sizes = {name: np.all(image == rgb, axis=-1).sum() for name, rgb in COLOURS.items()}
        colour = max(sizes, key=sizes.get)
        mask = np.all(image == COLOURS[colour], axis=-1)
        assert shape_of(mask) == sample["class_name"]
    coloured = ImageFolderClasses(write_toyworld_classes(tmp_path / "cs", 1, label="colour_shape"))
    assert len(coloured.classes) == len(COLOURS) * len(SHAPES) == len(toyworld_classes("colour_shape"))
    assert "red circle" in coloured.class_names
