"""ICDAR 2015 / Total-Text style ground truth: parsing real files, and bad input named by file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vlzoo.core import DataError
from vlzoo.ocr.data import read_detection_records, read_gt_file

IC15 = "\ufeff377,117,463,117,465,130,378,130,Genaxis Theatre\r\n493,115,519,115,519,131,493,131,[06]\r\n"


def test_an_icdar2015_file_with_bom_commas_and_dont_care(tmp_path: Path):
    path = tmp_path / "gt_img_1.txt"
    path.write_bytes(
        (IC15 + "374,155,409,155,409,170,374,170,###\n\n12,1,30,1,30,9,12,9,a,b\n").encode("utf-8")
    )
    words = read_gt_file(path)
    assert [w.text for w in words] == ["Genaxis Theatre", "[06]", "###", "a,b"]
    assert [w.ignore for w in words] == [False, False, True, False]
    assert np.array_equal(words[0].polygon, [[377, 117], [463, 117], [465, 130], [378, 130]])


def test_total_text_polygons_and_numeric_transcriptions(tmp_path: Path):
    path = tmp_path / "img2.txt"
    path.write_text("0,0,10,0,20,5,20,15,10,20,0,20,curve\n0,0,8,0,8,4,0,4,2014\n")
    words = read_gt_file(path)
    assert words[0].polygon.shape == (6, 2) and words[0].text == "curve"
    assert words[1].polygon.shape == (4, 2) and words[1].text == "2014"
    # with the point count fixed (ICDAR 2015), a number after the 4 points is the transcription
    fixed = tmp_path / "gt_img3.txt"
    fixed.write_text("0,0,8,0,8,4,0,4,12,5\n")
    assert read_gt_file(fixed, points=4)[0].text == "12,5"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("1,2,3,4,5,6,7,word", r"gt_bad\.txt:2: an odd number of coordinates \(7\)"),
        ("0,0,10,10,10,0,0,10,bowtie", r"gt_bad\.txt:2: the polygon is self-intersecting"),
        ("0,0,5,5,word", r"gt_bad\.txt:2: a polygon needs at least 3 points"),
    ],
)
def test_a_bad_line_is_a_data_error_naming_file_and_line(tmp_path: Path, line: str, problem: str):
    path = tmp_path / "gt_bad.txt"
    path.write_text(f"0,0,4,0,4,4,0,4,ok\n{line}\n")
    with pytest.raises(DataError, match=problem):
        read_gt_file(path)


def test_a_fixed_point_count_refuses_a_short_line(tmp_path: Path):
    path = tmp_path / "gt_short.txt"
    path.write_text("0,0,4,0,4,4,word\n")
    with pytest.raises(DataError, match=r"gt_short\.txt:1: expected 8 coordinates"):
        read_gt_file(path, points=4)


def test_a_dataset_folder_pairs_images_with_their_gt_and_names_a_missing_one(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    for name in ("img_1.jpg", "img_2.png"):
        (tmp_path / "images" / name).write_bytes(b"not decoded here")
    (tmp_path / "gt" / "gt_img_1.txt").write_text(IC15)
    (tmp_path / "gt" / "img_2.txt").write_text("0,0,4,0,4,4,0,4,x\n")
    records = read_detection_records(tmp_path)
    assert [r.image_path.name for r in records] == ["img_1.jpg", "img_2.png"]
    assert [len(r.instances) for r in records] == [2, 1]
    (tmp_path / "gt" / "img_2.txt").unlink()
    with pytest.raises(DataError, match=r"img_2\.png: no ground truth"):
        read_detection_records(tmp_path)
