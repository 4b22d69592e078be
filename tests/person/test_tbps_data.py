"""TBPS annotation readers on files written here in each released format: CUHK-PEDES, ICFG-PEDES,
RSTPReid, SYNTH-PEDES and LUPerson-T; pid rules, evaluation layout, pedestrian transforms, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlzoo.core.data import ImageTextCollator, infer_data_kind, is_skipped
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.person.data import TbpsAnnotations, pedestrian_transform


def _png(path: Path, size=(32, 64), value=100) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path.name


def _write(root: Path, name: str, entries: list, images: bool = True, image_key: str = "file_path") -> Path:
    base = root / "imgs" if image_key != "synth" else root
    for e in entries:
        key = "img_path" if "img_path" in e else "file_path"
        if images and key in e:
            _png(base / e[key])
    path = root / name
    path.write_text(json.dumps(entries))
    return path


def cuhk_entries() -> list[dict]:
    """Ids 1..3 train (3 has two images), 7 and 8 test, 5 val (split name 'val')."""
    rows = [(1, "train"), (2, "train"), (3, "train"), (3, "train"), (5, "val"), (7, "test"), (8, "test")]
    return [
        {
            "split": split,
            "captions": [f"person {pid} caption {c}" for c in range(2)],
            "file_path": f"CUHK01/{pid:04d}{i}.png",
            "processed_tokens": [["person"], ["person"]],
            "id": pid,
        }
        for i, (pid, split) in enumerate(rows)
    ]


def test_cuhk_pedes_train_is_one_sample_per_caption_with_contiguous_pids(tmp_path: Path):
    path = _write(tmp_path, "reid_raw.json", cuhk_entries())
    train = TbpsAnnotations(path, "train")  # captions="each"
    assert len(train) == 4 * 2
    samples = [train[i] for i in range(len(train))]
    assert [s["pid"] for s in samples] == [0, 0, 1, 1, 2, 2, 2, 2]  # ids 1, 2, 3 → 0, 1, 2
    assert [s["person_id"] for s in samples][::2] == [1, 2, 3, 3]
    assert [s["image_id"] for s in samples][::2] == [0, 1, 2, 3]
    assert samples[1]["text"] == "person 1 caption 1"
    assert samples[0]["path"] == str(tmp_path / "imgs" / "CUHK01" / "00010.png")  # images under imgs/
    assert train.num_identities == 3
    assert infer_data_kind(str(path)) == "cuhk-pedes"


def test_test_split_is_one_gallery_entry_per_image_and_one_query_per_caption(tmp_path: Path):
    path = _write(tmp_path, "reid_raw.json", cuhk_entries())
    test = TbpsAnnotations(path, "test", captions="all")
    assert len(test) == 2  # gallery: one per image
    assert [test[i]["pid"] for i in range(2)] == [7, 8]  # raw ids, as IRRA keeps them at test time
    collate = ImageTextCollator(
        pedestrian_transform((64, 32), (0.5,) * 3, (0.5,) * 3, train=False), None, captions="all"
    )
    batch = collate([test[0], test[1]])
    assert batch["captions"] == [
        "person 7 caption 0",
        "person 7 caption 1",
        "person 8 caption 0",
        "person 8 caption 1",
    ]
    assert batch["text_to_image"].tolist() == [0, 0, 1, 1] and batch["pid"].tolist() == [7, 8]
    val = TbpsAnnotations(path, "val", captions="all")
    assert len(val) == 1 and val[0]["pid"] == 5


@pytest.mark.parametrize("name", ["ICFG-PEDES.json", "ICFG_PEDES.json"])
def test_icfg_pedes(tmp_path: Path, name: str):
    entries = [
        {"id": 0, "file_path": "test/0000/a.jpg", "captions": ["x"], "split": "test"},
        {"id": 4, "file_path": "train/0004/b.jpg", "captions": ["y", "z"], "split": "train"},
    ]
    for e in entries:
        _png(tmp_path / "imgs" / e["file_path"])
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    assert infer_data_kind(str(path)) == "icfg-pedes"
    train = TbpsAnnotations(path, "train")
    assert len(train) == 2 and train[0]["pid"] == 0 and train[1]["text"] == "z"


def test_rstpreid_reads_img_path(tmp_path: Path):
    entries = [
        {"id": 10, "img_path": "0010_c1_0.jpg", "captions": ["a", "b"], "split": "train"},
        {"id": 11, "img_path": "0011_c3_1.jpg", "captions": ["c"], "split": "val"},
    ]
    path = _write(tmp_path, "data_captions.json", entries)
    assert infer_data_kind(str(path)) == "rstpreid"
    train = TbpsAnnotations(path, "train")
    assert train[0]["path"].endswith("imgs/0010_c1_0.jpg") and not is_skipped(train[0])
    with pytest.raises(DataError, match="entry 0 has no 'file_path' \\(RSTPReid names it img_path\\)"):
        TbpsAnnotations(path, "train", fmt="cuhk-pedes")


def test_synth_pedes_has_no_split_and_keeps_attributes(tmp_path: Path):
    entries = [
        {
            "id": 7,
            "file_path": "Part1/7/1.jpg",
            "attributes": ["man,black hair,black shirt,pink shorts,black shoes,unknown"],
            "captions": ["a man in a black shirt", "pink shorts"],
            "prompt_caption": ["A man."],
        },
        {
            "id": 9,
            "file_path": "Part1/9/1.jpg",
            "attributes": ["woman"],
            "captions": ["w"],
            "prompt_caption": ["p"],
        },
    ]
    for e in entries:
        _png(tmp_path / e["file_path"])  # no imgs/ folder: under the annotation's folder
    path = tmp_path / "synthpedes_dataset.json"
    path.write_text(json.dumps(entries))
    train = TbpsAnnotations(path, "train")
    assert [train[i]["pid"] for i in range(3)] == [0, 0, 1]
    assert train[0]["attributes"] == entries[0]["attributes"] and train[0]["prompt_caption"] == ["A man."]
    assert not is_skipped(train[0])
    with pytest.raises(DataError, match="no entry in split 'test'; the file has \\['train'\\]"):
        TbpsAnnotations(path, "test")


def test_luperson_t_each_image_its_own_identity(tmp_path: Path):
    entries = [{"file_path": "a.jpg", "captions": ["x", "y"]}, {"file_path": "b.jpg", "captions": ["z"]}]
    path = _write(tmp_path, "LuPerson_caption_all_some_2v.json", entries)
    train = TbpsAnnotations(path, "train", fmt="luperson-t")
    assert [train[i]["pid"] for i in range(3)] == [0, 0, 1]


def test_missing_image_and_empty_captions_are_counted_skips(tmp_path: Path):
    entries = cuhk_entries()
    entries[1]["captions"] = []
    path = _write(tmp_path, "reid_raw.json", entries)
    (tmp_path / "imgs" / entries[0]["file_path"]).unlink()
    train = TbpsAnnotations(path, "train")
    samples = [train[i] for i in range(len(train))]
    skipped = [s for s in samples if is_skipped(s)]
    assert len(samples) == 2 + 1 + 4  # the empty caption list still yields one (skipped) sample
    assert len(skipped) == 3
    assert "0001" + "0.png" in skipped[0]["path"] and "FileNotFoundError" in skipped[0]["reason"]
    assert skipped[2]["reason"] == "empty caption"


def test_malformed_annotations_name_the_file_and_entry(tmp_path: Path):
    entries = cuhk_entries()
    entries[5]["id"] = 2  # a training identity reappearing in the test split
    path = _write(tmp_path, "reid_raw.json", entries)
    with pytest.raises(
        DataError, match="identity 2 appears in more than one split: test \\(entry 5\\), train \\(entry 1\\)"
    ):
        TbpsAnnotations(path, "train")
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = {
        "{": "not valid JSON",
        json.dumps({"images": []}): "a JSON list of image entries",
        json.dumps([{"id": 1, "captions": ["x"], "split": "train"}]): "entry 0 has no 'file_path'",
        json.dumps(
            [{"id": "p1", "file_path": "x.png", "captions": ["x"], "split": "train"}]
        ): "entry 0 has id 'p1', not an integer",
        json.dumps(
            [{"id": 1, "file_path": "x.png", "captions": "one", "split": "train"}]
        ): "entry 0 has no 'captions' list",
        json.dumps([3]): "entry 0 is a JSON int",
    }
    for text, message in cases.items():
        (bad / "reid_raw.json").write_text(text)
        with pytest.raises(DataError, match=message) as err:
            TbpsAnnotations(bad / "reid_raw.json", "train")
        assert str(bad / "reid_raw.json") in str(err.value)
    with pytest.raises(DataError, match="file not found"):
        TbpsAnnotations(tmp_path / "nope.json", "train")


def test_pedestrian_transform_keeps_the_aspect():
    """A square image becomes a 64×32 tensor with the person centred and padding (0 = mean colour) above and
    below, not a squashed square; a 2:1 crop fills the frame."""
    square = Image.fromarray(np.full((40, 40, 3), 255, np.uint8))
    out = pedestrian_transform((64, 32), (0.5,) * 3, (0.5,) * 3, train=False)(square)
    assert out.shape == (3, 64, 32)
    assert torch.allclose(out[:, 16:48], torch.ones(3, 32, 32))  # the white square, 32×32, centred
    assert out[:, :16].abs().max() == 0 and out[:, 48:].abs().max() == 0
    tall = Image.fromarray(np.full((128, 64, 3), 255, np.uint8))
    assert torch.allclose(
        pedestrian_transform((64, 32), (0.5,) * 3, (0.5,) * 3, train=False)(tall), torch.ones(3, 64, 32)
    )
    train = pedestrian_transform((64, 32), (0.5,) * 3, (0.5,) * 3, train=True)
    assert train(tall).shape == (3, 64, 32)
    with pytest.raises(ConfigError, match="\\(height, width\\)"):
        pedestrian_transform((64,), (0.5,) * 3, (0.5,) * 3, train=False)
