"""Map-style sources read real files written in tmp_path; bad files give skip markers or a DataError."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.data_files import write_jpeg, write_png, write_truncated_jpeg
from PIL import Image

from vlzoo.core.data import (
    CsvPairs,
    ImageFolderClasses,
    JsonlPairs,
    KarpathySplits,
    decode_image,
    is_skipped,
)
from vlzoo.core.data import sources as sources_module
from vlzoo.core.errors import DataError


def test_csv_pairs_resolve_paths_relative_to_the_csv_file(tmp_path, monkeypatch):
    data = tmp_path / "data"
    a = write_png(data / "img" / "a.png", seed=1)
    b = write_png(data / "img" / "b.png", seed=2)
    csv_path = data / "pairs.csv"
    csv_path.write_text(
        'filepath,title,source\nimg/a.png,"a red, round thing",web\nimg/b.png,a blue square,book\n'
    )
    monkeypatch.chdir(tmp_path)  # paths must not depend on the working directory
    source = CsvPairs(csv_path)
    assert len(source) == 2
    first, second = source[0], source[1]
    assert first["text"] == "a red, round thing"
    assert first["id"] == 0
    assert first["source"] == "web"
    assert first["image"].mode == "RGB"
    np.testing.assert_array_equal(np.asarray(first["image"]), a)
    np.testing.assert_array_equal(np.asarray(second["image"]), b)


def test_tsv_is_read_with_tabs_and_custom_columns(tmp_path):
    write_png(tmp_path / "x.png", seed=3)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("key\timage\tcaption\nk1\tx.png\ta caption, with a comma\n")
    source = CsvPairs(tsv, img_key="image", caption_key="caption", id_key="key")
    sample = source[0]
    assert sample["text"] == "a caption, with a comma"
    assert sample["id"] == "k1"


def test_jsonl_pairs_with_one_or_several_captions(tmp_path):
    write_png(tmp_path / "im" / "0.png", seed=0)
    write_png(tmp_path / "im" / "1.png", seed=1)
    path = tmp_path / "pairs.jsonl"
    lines = [
        {"image": "im/0.png", "text": "one caption", "label": 3},
        {"image": "im/1.png", "text": ["first", "second", ""]},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert JsonlPairs(path)[0]["text"] == "one caption"
    assert JsonlPairs(path)[0]["label"] == 3
    assert JsonlPairs(path, captions="all")[1]["texts"] == ["first", "second"]
    each = JsonlPairs(path, captions="each")
    assert [s.get("text") for s in (each[i] for i in range(len(each)))] == [
        "one caption",
        "first",
        "second",
        None,  # the empty third caption of image 1 is a skipped sample, not a crash
    ]
    assert is_skipped(each[3])


def _karpathy(tmp_path):
    root = tmp_path / "coco"
    arrays = {
        "a": write_png(root / "val2014" / "a.png", seed=10),
        "b": write_png(root / "b.png", seed=11),
        "c": write_png(root / "c.png", seed=12),
        "d": write_png(root / "d.png", seed=13),
    }
    images = [
        {"filepath": "val2014", "filename": "a.png", "split": "train", "imgid": 0, "sentences": [
            {"raw": "a cat", "tokens": ["a", "cat"]}, {"raw": "a small cat", "tokens": []}]},
        {"filename": "b.png", "split": "restval", "imgid": 1, "sentences": [{"tokens": ["two", "dogs"]}]},
        {"filename": "c.png", "split": "test", "imgid": 2, "sentences": [
            {"raw": "x"}, {"raw": "y"}, {"raw": "z"}], "extra": "kept"},
        {"filename": "d.png", "split": "val", "imgid": 3, "sentences": [{"raw": "w"}]},
    ]  # fmt: skip
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path, arrays


def test_karpathy_keeps_all_captions_and_filters_splits(tmp_path):
    path, arrays = _karpathy(tmp_path)
    test = KarpathySplits(path, split="test")
    assert len(test) == 1
    sample = test[0]
    assert sample["texts"] == ["x", "y", "z"]
    assert sample["extra"] == "kept"
    assert sample["split"] == "test"
    np.testing.assert_array_equal(np.asarray(sample["image"]), arrays["c"])

    train = KarpathySplits(path, split=("train", "restval"), captions="each")
    assert [train[i]["text"] for i in range(len(train))] == ["a cat", "a small cat", "two dogs"]
    np.testing.assert_array_equal(np.asarray(train[0]["image"]), arrays["a"])  # filepath joined
    assert len(KarpathySplits(path, split=None)) == 4


def test_karpathy_random_caption_is_one_of_the_image_captions(tmp_path):
    path, _ = _karpathy(tmp_path)
    source = KarpathySplits(path, split="test", captions="random")
    seen = {source[0]["text"] for _ in range(40)}
    assert seen == {"x", "y", "z"}


def test_karpathy_image_root_is_configurable(tmp_path):
    path, arrays = _karpathy(tmp_path)
    moved = tmp_path / "elsewhere" / "dataset.json"
    moved.parent.mkdir()
    moved.write_text(path.read_text())
    sample = KarpathySplits(moved, split="val", image_root=path.parent)[0]
    np.testing.assert_array_equal(np.asarray(sample["image"]), arrays["d"])
    # without the image root, the files are looked for next to the JSON: a skipped sample, not a crash
    marker = KarpathySplits(moved, split="val")[0]
    assert is_skipped(marker)
    assert marker["path"] == str(moved.parent / "d.png")


def test_image_folder_classes(tmp_path):
    write_png(tmp_path / "sea_ice" / "1.png", seed=1)
    write_png(tmp_path / "sea_ice" / "2.png", seed=2)
    write_jpeg(tmp_path / "forest" / "a.jpg", seed=3)
    (tmp_path / "forest" / "notes.txt").write_text("not an image")
    source = ImageFolderClasses(tmp_path)
    assert source.classes == ["forest", "sea_ice"]
    assert source.class_names == ["forest", "sea ice"]
    assert len(source) == 3
    labels = [(source[i]["label"], source[i]["class_name"], source[i]["id"]) for i in range(3)]
    assert labels == [
        (0, "forest", "forest/a.jpg"),
        (1, "sea ice", "sea_ice/1.png"),
        (1, "sea ice", "sea_ice/2.png"),
    ]


# ---------------------------------------------------------------------------------------- bad input


def test_missing_column_is_named_with_the_file(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("filepath,caption\na.png,hello\n")
    with pytest.raises(DataError, match=r"pairs\.csv.*no column 'title'.*\['filepath', 'caption'\]"):
        CsvPairs(path)


def test_ragged_csv_and_empty_csv_are_refused(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("filepath,title\na.png,x,surplus\n")
    with pytest.raises(DataError, match=r"ragged\.csv: row 2 has more fields"):
        CsvPairs(ragged)
    empty = tmp_path / "empty.csv"
    empty.write_text("filepath,title\n")
    with pytest.raises(DataError, match=r"empty\.csv: the dataset is empty"):
        CsvPairs(empty)


def test_bad_samples_become_skip_markers_with_their_path(tmp_path):
    write_png(tmp_path / "ok.png", seed=0)
    truncated = write_truncated_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "garbage.png").write_bytes(b"not a png at all")
    path = tmp_path / "pairs.csv"
    path.write_text(
        "filepath,title\nok.png,fine\nok.png,\nmissing.png,lost\ncut.jpg,cut short\ngarbage.png,junk\n"
    )
    source = CsvPairs(path)
    assert not is_skipped(source[0])
    empty, missing, cut, garbage = (source[i] for i in range(1, 5))
    assert all(is_skipped(m) for m in (empty, missing, cut, garbage))
    assert empty["reason"] == "empty caption"
    assert missing["path"] == str(tmp_path / "missing.png")
    assert "FileNotFoundError" in missing["reason"]
    assert cut["path"] == str(truncated)
    assert "truncated" in cut["reason"]
    assert cut["id"] == 3


def test_truncated_jpeg_really_is_unreadable(tmp_path):
    # guards the test above: the file parses as a JPEG and only decoding the pixels fails
    path = write_truncated_jpeg(tmp_path / "cut.jpg")
    with Image.open(path) as img:
        assert img.format == "JPEG"
    with pytest.raises(OSError, match="truncated"):
        decode_image(path, path)


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text('{"images": [{"filename": "a.jpg",}')
    with pytest.raises(DataError, match=r"dataset_flickr30k\.json: not valid JSON.*line 1"):
        KarpathySplits(path)
    path.write_text('{"annotations": []}')
    with pytest.raises(DataError, match=r"dataset_flickr30k\.json: .*no top-level list \"images\""):
        KarpathySplits(path)
    path.write_text('{"images": [{"filename": "a.jpg", "split": "train"}]}')
    with pytest.raises(DataError, match=r"images\[0\] has no 'sentences'"):
        KarpathySplits(path)


def test_empty_split_lists_the_splits_present(tmp_path):
    path, _ = _karpathy(tmp_path)
    with pytest.raises(DataError, match=r"no image in split 'tset'.*\['restval', 'test', 'train', 'val'\]"):
        KarpathySplits(path, split="tset")


def test_malformed_jsonl_line_is_named(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"image": "a.png", "text": "ok"}\n{"image": "b.png", "text": }\n')
    with pytest.raises(DataError, match=r"pairs\.jsonl: line 2 is not valid JSON"):
        JsonlPairs(path)
    path.write_text('{"image": "a.png", "caption": "ok"}\n')
    with pytest.raises(DataError, match=r"line 1 has no key 'text'"):
        JsonlPairs(path)


def test_image_folder_without_classes_is_refused(tmp_path):
    with pytest.raises(DataError, match="no class folders"):
        ImageFolderClasses(tmp_path)


def test_a_registered_decoder_reads_tif_files(tmp_path, monkeypatch):
    """A domain package can plug a multi-band decoder in for .tif; sources then use it."""
    write_png(tmp_path / "a.png", seed=0)
    (tmp_path / "bands.tif").write_bytes(b"fake geotiff")
    calls = []

    def fake_geotiff(data, name):
        calls.append(name)
        return np.zeros((4, 4, 13), np.float32)

    monkeypatch.setitem(sources_module._DECODERS, ".tif", None)  # restored after the test
    sources_module.register_image_decoder("TIF", fake_geotiff)
    path = tmp_path / "pairs.csv"
    path.write_text("filepath,title\nbands.tif,thirteen bands\na.png,rgb\n")
    source = CsvPairs(path)
    assert source[0]["image"].shape == (4, 4, 13)
    assert calls == [str(tmp_path / "bands.tif")]
    assert source[1]["image"].mode == "RGB"  # other extensions keep PIL


def test_an_undecodable_image_from_bytes_is_named_by_its_file():
    from vlzoo.core.data import decode_image

    with pytest.raises(Exception, match=r"cannot identify image file 'shards/train-000\.tar/42\.png'") as err:
        decode_image(b"not a png at all", "shards/train-000.tar/42.png")
    assert "BytesIO" not in str(err.value)
