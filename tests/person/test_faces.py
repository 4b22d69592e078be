"""Face data readers on files written here: CelebA attribute/partition files and FaceCaption-style tables
(parquet through pyarrow, JSONL), including bad rows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from vlzoo.core.data import build_source, infer_data_kind, is_skipped
from vlzoo.core.errors import DataError
from vlzoo.person.data import (
    CELEBA_ATTRIBUTES,
    CelebASource,
    FaceCaptionTable,
    read_celeba_attributes,
    read_celeba_partition,
)


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _png_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _celeba(root: Path, rows: list[str], names: list[str], count: int | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [str(len(rows) if count is None else count), " ".join(names), *rows]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return root / "list_attr_celeba.txt"


# ----------------------------------------------------------------------------------------- CelebA


def test_celeba_attributes_map_plus_minus_one_to_one_zero_with_multiple_spaces(tmp_path: Path):
    names = list(CELEBA_ATTRIBUTES)
    row1 = "000001.jpg " + " ".join(" 1" if i % 3 == 0 else "-1" for i in range(40))  # CelebA's 2-space pad
    row2 = "000002.jpg  " + "  ".join("-1" if i % 3 == 0 else "1" for i in range(40))
    table = read_celeba_attributes(_celeba(tmp_path, [row1, row2], names))
    assert table.names == names and table.files == ["000001.jpg", "000002.jpg"]
    expected = np.array([[int(i % 3 == 0) for i in range(40)], [int(i % 3 != 0) for i in range(40)]])
    np.testing.assert_array_equal(table.labels, expected)


def test_a_celeba_row_with_the_wrong_column_count_names_the_file_and_line(tmp_path: Path):
    path = _celeba(tmp_path, ["a.jpg 1 -1 1", "b.jpg 1 -1", "c.jpg -1 -1 1"], ["Smiling", "Male", "Young"])
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt: line 4 has 3 columns, expected 4"):
        read_celeba_attributes(path)


def test_a_celeba_value_other_than_plus_minus_one_and_a_wrong_count_are_named(tmp_path: Path):
    path = _celeba(tmp_path, ["a.jpg 1 -1", "b.jpg 0 1"], ["Smiling", "Male"])
    with pytest.raises(DataError, match=r"line 4: attribute Smiling is '0', not 1 or -1"):
        read_celeba_attributes(path)
    path = _celeba(tmp_path / "n", ["a.jpg 1 -1"], ["Smiling", "Male"], count=3)
    with pytest.raises(DataError, match="announces 3 images, the file lists 1"):
        read_celeba_attributes(path)


def test_celeba_partition_maps_0_1_2_and_names_a_bad_line(tmp_path: Path):
    path = tmp_path / "list_eval_partition.txt"
    path.write_text("a.jpg 0\nb.jpg 1\nc.jpg 2\n")
    assert read_celeba_partition(path) == {"a.jpg": "train", "b.jpg": "val", "c.jpg": "test"}
    path.write_text("a.jpg 0\nb.jpg 3\n")
    with pytest.raises(DataError, match=r"list_eval_partition\.txt: line 2 must be '<file> <0\|1\|2>'"):
        read_celeba_partition(path)


def test_celeba_source_keeps_the_split_orders_attributes_and_skips_a_missing_image(tmp_path: Path):
    _celeba(tmp_path, ["a.png 1 -1", "b.png -1 1", "c.png 1 1"], ["Smiling", "Male"])
    (tmp_path / "list_eval_partition.txt").write_text("a.png 0\nb.png 2\nc.png 0\n")
    _png(tmp_path / "img_align_celeba" / "a.png", (255, 0, 0))  # c.png is missing
    train = CelebASource(tmp_path, "train", attributes=["Male", "Smiling"])
    assert train.files == ["a.png", "c.png"]
    sample = train[0]
    assert torch.equal(sample["attributes"], torch.tensor([0, 1])) and sample["image"].getpixel((0, 0)) == (
        255,
        0,
        0,
    )
    missing = train[1]
    assert (
        is_skipped(missing) and missing["path"].endswith("c.png") and "FileNotFoundError" in missing["reason"]
    )
    assert CelebASource(tmp_path, "test").labels.tolist() == [[0, 1]]
    with pytest.raises(DataError, match="no attribute"):
        CelebASource(tmp_path, "train", attributes=["Bald"])
    # the data kind is found by the file's name, and reads the folder
    assert infer_data_kind(str(tmp_path / "list_attr_celeba.txt")) == "celeba"
    assert len(build_source(str(tmp_path / "list_attr_celeba.txt"), "celeba", "train", "all", {})) == 2


# --------------------------------------------------------------------------------- FaceCaption tables


def test_parquet_table_with_paths_bytes_and_hf_image_structs_and_attribute_columns(tmp_path: Path):
    _png(tmp_path / "faces" / "red.png", (255, 0, 0))
    rows = [
        {"image": "faces/red.png", "face_caption": "a man", "Smiling": 1, "split": "train"},
        {"image": "faces/red.png", "face_caption": "a woman", "Smiling": 0, "split": "test"},
    ]
    table = tmp_path / "FaceCaption-v1.parquet"
    pq.write_table(pa.Table.from_pylist(rows), table)
    train = FaceCaptionTable(table, split="train")
    assert len(train) == 1
    first = train[0]
    assert (
        first["text"] == "a man" and first["Smiling"] == 1 and first["image"].getpixel((3, 3)) == (255, 0, 0)
    )
    assert FaceCaptionTable(table, split="test")[0]["Smiling"] == 0
    # images stored in the table as raw bytes
    raw = [{"image": _png_bytes((0, 255, 0)), "caption": "a woman"}]
    pq.write_table(pa.Table.from_pylist(raw), tmp_path / "bytes.parquet")
    second = FaceCaptionTable(tmp_path / "bytes.parquet")[0]
    assert second["text"] == "a woman" and second["image"].getpixel((3, 3)) == (0, 255, 0)
    # the Hugging Face image feature: a struct of bytes and path
    hf = [{"image": {"bytes": _png_bytes((9, 9, 9)), "path": "x.png"}, "caption": ["one", "two"]}]
    pq.write_table(pa.Table.from_pylist(hf), tmp_path / "hf.parquet")
    sample = build_source(str(tmp_path / "hf.parquet"), "facecaption", "train", "all", {})[0]
    assert sample["texts"] == ["one", "two"] and sample["image"].getpixel((0, 0)) == (9, 9, 9)
    assert infer_data_kind(str(table)) == "facecaption"


def test_table_bad_rows_are_skips_or_errors_naming_the_row(tmp_path: Path):
    lines = [
        {"image": "missing.png", "caption": "a face"},  # missing file: counted skip
        {"image": "ok.png", "caption": "   "},  # empty caption: counted skip
        {"image": "ok.png", "caption": "a fine face"},
    ]
    _png(tmp_path / "ok.png", (1, 2, 3))
    path = tmp_path / "faces.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    source = FaceCaptionTable(path)
    reasons = [source[i].get("reason") for i in range(3)]
    assert "FileNotFoundError" in reasons[0] and reasons[1] == "empty caption" and reasons[2] is None
    path.write_text(json.dumps({"image": 7, "caption": "x"}) + "\n")
    with pytest.raises(DataError, match=r"faces\.jsonl: row 0 \(line 1\).*neither a path nor image bytes"):
        FaceCaptionTable(path)
    path.write_text(json.dumps({"picture": "ok.png", "caption": "x"}) + "\n")
    with pytest.raises(DataError, match="no image column"):
        FaceCaptionTable(path)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: not a readable parquet file"):
        FaceCaptionTable(tmp_path / "broken.parquet")
