"""`vlzoo-ocr fit-mmocr` without the [mmocr] extra: the error names the extra, and the MMOCR annotation
file it hands MMOCR's dataset is read back field by field."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from vlzoo.core import ConfigError
from vlzoo.ocr.cli import main
from vlzoo.ocr.data import read_detection_records
from vlzoo.ocr.mmocr_fit import dataset_splits, fit_mmocr, write_mmocr_textdet

HAS_MMOCR = all(importlib.util.find_spec(n) for n in ("mmengine", "mmcv", "mmdet", "mmocr"))


@pytest.mark.skipif(HAS_MMOCR, reason="the [mmocr] extra is installed: the error path cannot be reached")
def test_fit_mmocr_without_the_extra_names_it(tmp_path: Path, capsys):
    code = main(["fit-mmocr", str(tmp_path / "odm.safetensors"), "--work-dir", str(tmp_path / "run")])
    assert code != 0
    assert re.search(r"mmocr extra, missing .*mmengine.*vlzoo-ocr\[mmocr\]", capsys.readouterr().err)
    assert not (tmp_path / "run").exists()  # failed before exporting anything
    with pytest.raises(ConfigError, match="mmocr extra"):
        fit_mmocr(tmp_path / "odm.safetensors", tmp_path / "run")


def test_mmocr_textdet_file_holds_every_word_with_dont_care_as_ignore(toyworld: Path, tmp_path: Path):
    out = write_mmocr_textdet(toyworld, "test", tmp_path / "textdet_test.json")
    ann = json.loads(out.read_text())
    assert ann["metainfo"]["task_name"] == "textdet"
    records = read_detection_records(toyworld, "test")
    assert len(ann["data_list"]) == len(records)
    for entry, record in zip(ann["data_list"], records):
        assert Path(entry["img_path"]).is_file() and (entry["height"], entry["width"]) == (128, 128)
        assert len(entry["instances"]) == len(record.instances)
        for inst, word in zip(entry["instances"], record.instances):
            polygon = np.array(inst["polygon"]).reshape(-1, 2)
            np.testing.assert_allclose(polygon, word.polygon)
            x0, y0, x1, y1 = inst["bbox"]
            assert x0 <= polygon[:, 0].min() and polygon[:, 0].max() <= x1
            assert y0 <= polygon[:, 1].min() and polygon[:, 1].max() <= y1
            assert inst["ignore"] == (word.text == "###") and inst["bbox_label"] == 0
    assert any(i["ignore"] for e in ann["data_list"] for i in e["instances"])


def test_mmocr_gets_the_index_splits_that_have_images(toyworld: Path, tmp_path: Path):
    assert dataset_splits(toyworld) == ["train", "test", "val"]
    index = json.loads(toyworld.read_text())
    index["splits"]["val"] = []
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert dataset_splits(tmp_path / "index.json") == ["train", "test"]
