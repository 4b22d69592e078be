"""The benchmarks' readers: GeoQA / UniGeo JSON exports, Geometry3K, PGPS9K, GeoX's formal annotations —
one sample dict, bad files as DataErrors naming file and record, bad problems as counted skips."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from vlzoo.core import ConfigError, DataError
from vlzoo.core.data import ImageTextCollator, build_source, check_data_options
from vlzoo.geometry.data import formal_clauses, latex_number, pre_caption


def _png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((24, 32), 255, np.uint8)
    image[8:16, 4:28] = value
    Image.fromarray(image).save(path)
    return path


GOOD = {
    "id": "g1",
    "subject": "如图，AB = 3, BC = 4, ∠B = 90°, find AC.",
    "choices": ["5", "7", "12", "1"],
    "choice_nums": [5, 7, 12, 1],
    "label": 0,
    "manual_program": ["gougu_add", "N_0", "N_1"],
    "numbers": [3, 4, 90],
    "image": "img/g1.png",
}


def _geoqa(tmp_path, records, name="test.json"):
    _png(tmp_path / "img" / "g1.png")
    path = tmp_path / name
    path.write_text(json.dumps(records, ensure_ascii=False))
    return path


def test_geoqa_export_reads_into_the_sample_dict(tmp_path):
    gray = np.full((20, 30), 200).tolist()  # a pickle's gray diagram, exported as nested lists
    unigeo = {
        **GOOD, "id": "u1", "English_problem": "AB = 3, BC = 4, find AC.", "image": gray,
        "manual_program": "gougu_add N_0 N_1", "label": "A", "problem_type": "Length",
    }  # fmt: skip
    del unigeo["subject"]
    path = _geoqa(tmp_path, [GOOD, unigeo])
    source = build_source(str(path), "geoqa", "test", "random", {"text_field": "question"})
    first, second = source[0], source[1]
    assert first["question"] == GOOD["subject"] and first["text"] == GOOD["subject"]
    assert first["program"] == ["gougu_add", "N_0", "N_1"] and first["numbers"] == [3.0, 4.0, 90.0]
    assert first["choice_values"] == [5.0, 7.0, 12.0, 1.0] and first["answer"] == 0
    assert first["image"].size == (32, 24) and first["problem_type"] == "other"
    assert second["question"] == "AB = 3, BC = 4, find AC." and second["answer"] == 0
    assert second["program"] == ["gougu_add", "N_0", "N_1"] and second["problem_type"] == "length"
    assert second["image"].size == (30, 20) and second["image"].getpixel((0, 0)) == (200, 200, 200)
    program = build_source(str(path), "geoqa", "test", "random", {"text_field": "program"})
    assert program[0]["text"] == "gougu_add N_0 N_1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"manual_program": ["g_foo", "N_0"]}, "unknown operator 'g_foo'"),
        ({"manual_program": ["gougu_add", "N_0"]}, "takes 2 operand(s)"),
        ({"manual_program": ["g_half", "N_5"]}, "N_5 is out of range"),
        ({"manual_program": ["g_mul", "N_0", "N_1"]}, "gives 12 = choice 2, the label says 0"),
        ({"manual_program": ["g_add", "N_0", "N_2"]}, "gives 93, which matches no choice"),
        ({"label": 7}, "label 7 is out of range"),
        ({"image": "img/missing.png"}, "FileNotFoundError"),
        ({"proving_sequence": ["a"], "manual_program": None}, "a proving problem"),
    ],
)
def test_bad_problems_are_counted_skips_with_their_reason(tmp_path, change, reason):
    path = _geoqa(tmp_path, [GOOD, {**GOOD, **change}])
    source = build_source(str(path), "geoqa", "test", "random", {})
    assert "__skipped__" not in source[0]
    bad = source[1]
    assert bad["__skipped__"] and reason in bad["reason"] and bad["id"] == "g1"
    # the collator lists the skip; the core's SkipCounter counts it
    batch = ImageTextCollator(lambda im: torch.zeros(3, 4, 4), None, captions="first")([source[0], source[1]])
    assert len(batch["id"]) == 1 and len(batch["skipped"]) == 1 and reason in batch["skipped"][0][1]


def test_a_folder_of_one_record_per_file(tmp_path):
    _png(tmp_path / "image" / "g1.png")
    _png(tmp_path / "image" / "10.png", value=90)
    (tmp_path / "json").mkdir()
    record = {k: v for k, v in GOOD.items() if k != "image"}
    (tmp_path / "json" / "10.json").write_text(json.dumps({**record, "id": 10}))
    (tmp_path / "json" / "g1.json").write_text(json.dumps(record))
    source = build_source(str(tmp_path / "json"), "geoqa", "test", "random", {})
    assert [source[i]["id"] for i in range(2)] == ["10", "g1"]  # by file name, shorter first
    assert source[0]["image"].getpixel((10, 10)) == (90, 90, 90)  # image/<id>.png beside the folder
    with pytest.raises(DataError, match=r"without \*\.json"):
        build_source(str(tmp_path / "image"), "geoqa", "test", "random", {})


def test_unigeo_sub_types_from_their_file(tmp_path):
    path = _geoqa(tmp_path, [GOOD, {**GOOD, "id": "g2"}, {**GOOD, "id": "g3"}])
    (tmp_path / "by_type.json").write_text(json.dumps({"Angle": ["g1"], "Length": ["g2"]}))
    (tmp_path / "by_id.json").write_text(json.dumps({"g3": "Length"}))
    for types, expected in (
        ("by_type.json", ["angle", "length", "other"]),
        ("by_id.json", ["other", "other", "length"]),
    ):
        source = build_source(str(path), "geoqa", "test", "random", {"problem_types": str(tmp_path / types)})
        assert [source[i]["problem_type"] for i in range(3)] == expected


def test_an_unreadable_diagram_is_a_counted_skip(tmp_path):
    path = _geoqa(tmp_path, [GOOD])
    (tmp_path / "img" / "g1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    sample = build_source(str(path), "geoqa", "test", "random", {})[0]
    assert sample["__skipped__"] and sample["path"].endswith("g1.png")


def test_unverified_programs_are_kept_when_asked(tmp_path):
    path = _geoqa(tmp_path, [{**GOOD, "manual_program": ["g_mul", "N_0", "N_1"]}])
    sample = build_source(str(path), "geoqa", "test", "random", {"verify_programs": False})[0]
    assert sample["program"] == ["g_mul", "N_0", "N_1"] and sample["answer"] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"not JSON \(.*line 1\)"),
        (json.dumps({"train": []}), r"holds the splits \['train'\]"),
        (json.dumps([{**GOOD, "subject": None}]), r"test.json\[0\]: no problem text"),
        (json.dumps([GOOD, {k: v for k, v in GOOD.items() if k != "manual_program"}]), r"\[1\]: no program"),
        (json.dumps([{**GOOD, "numbers": ["x"]}]), r"\[0\]: numbers must be numbers"),
        (json.dumps([{k: v for k, v in GOOD.items() if k not in ("choices", "choice_nums")}]), "no choices"),
        (json.dumps([{**GOOD, "choices": ["1", "2"]}]), "2 choices but 4 choice_nums"),
        (json.dumps([{**GOOD, "label": None}]), "label must be a choice index or letter"),
        (json.dumps(["text"]), r"\[0\]: a record must be an object"),
    ],
)
def test_broken_files_raise_data_errors_naming_the_record(tmp_path, content, message):
    path = tmp_path / "test.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        build_source(str(path), "geoqa", "test", "random", {})


def test_unknown_data_options_are_refused():
    with pytest.raises(ConfigError, match="text_feld"):
        check_data_options(["geoqa"], {"text_feld": "question"})


def test_geometry3k_folder(tmp_path):
    problem = tmp_path / "g3k" / "test" / "2401"
    _png(problem / "img_diagram.png")
    data = {
        "id": 2401, "problem_text": "Find y.", "choices": ["21", "21\\sqrt{2}", "21\\sqrt{3}", "42"],
        "answer": "C", "precise_value": [21.0, 29.698, 36.373, 42.0], "problem_type_goal": ["Length"],
    }  # fmt: skip
    (problem / "data.json").write_text(json.dumps(data))
    logic = {
        "diagram_logic_form": ["Equals(LengthOf(Line(A, C)), 21)", "Perpendicular(Line(A, B), Line(B, C))"]
    }
    (problem / "logic_form.json").write_text(json.dumps(logic))
    source = build_source(str(tmp_path / "g3k"), "geometry3k", "test", "random", {})
    sample = source[0]
    assert sample["answer"] == 2 and sample["choice_values"][2] == 36.373
    assert sample["formal"] == "Equals(LengthOf(Line(A, C)), 21); Perpendicular(Line(A, B), Line(B, C))"
    assert sample["text"] == sample["formal"] and sample["problem_type"] == "length"
    with pytest.raises(DataError, match="no split folder 'val'"):
        build_source(str(tmp_path / "g3k"), "geometry3k", "val", "random", {})


def test_pgps9k_annotations_and_geox_export(tmp_path):
    _png(tmp_path / "Diagram" / "img_1.png")
    pgps = {
        "prob_1": {
            "diagram": "img_1.png", "text": "Find x. AB = 6", "parsing_stru_seqs": ["line A B"],
            "parsing_sem_seqs": ["AB = 6"], "expression": "Gougu N_0 V_0 C_2", "answer": "4\\sqrt{2}",
            "choices": ["4", "4\\sqrt{2}", "6", "8"], "type": "Length",
        },
        "prob_2": {
            "diagram": "img_1.png", "text": "Find y.", "expression": "Get N_0", "answer": "9",
            "choices": ["1", "2", "3", "4"], "type": "Angle",
        },
    }  # fmt: skip
    path = tmp_path / "test.json"
    path.write_text(json.dumps(pgps))
    source = build_source(str(path), "pgps9k", "test", "random", {})
    sample = source[0]
    assert sample["answer"] == 1 and sample["formal"] == "line A B; AB = 6"
    assert sample["program"] == ["Gougu", "N_0", "V_0", "C_2"] and sample["answer_value"] == pytest.approx(
        32**0.5
    )
    assert source[1]["__skipped__"] and "matches no choice" in source[1]["reason"]
    _png(tmp_path / "geox" / "a.png")
    geox = [{
        "data_id": 7, "image": "a.png", "var_list": ["3", "\\frac{1}{2}"], "answer": "12",
        "conversations": [{"from": "human", "value": "<image>\nFind x."}, {"from": "gpt", "value": "Get N_0"}],
        "choices": ["12", "13", "14", "15"],
    }]  # fmt: skip
    (tmp_path / "geox" / "test.json").write_text(json.dumps(geox))
    sample = build_source(str(tmp_path / "geox" / "test.json"), "pgps9k", "test", "random", {})[0]
    assert sample["question"] == "Find x." and sample["numbers"] == [3.0, 0.5] and sample["answer"] == 0
    assert sample["var_list"] == ["3", "\\frac{1}{2}"] and sample["program"] == ["Get", "N_0"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("12", 12.0), ("3.5", 3.5), ("\\frac{3}{2}", 1.5), ("2\\sqrt{3}", 2 * 3**0.5), ("\\sqrt{2}", 2**0.5),
     ("4\\pi", 4 * math.pi), ("-2", -2.0)],
)  # fmt: skip
def test_latex_numbers(text, value):
    assert latex_number(text) == pytest.approx(value)


def test_formal_annotations(tmp_path):
    _png(tmp_path / "d" / "1.png")
    caption = "Triangle(A,B,C); Equals(LengthOf(Line(A,C)),3)"
    rows = [{"image": "d/1.png", "caption": caption, "image_id": 1}, {"image": "d/1.png", "caption": " "}]
    (tmp_path / "f.json").write_text(json.dumps(rows))
    source = build_source(str(tmp_path / "f.json"), "geo-formal", "train", "random", {})
    assert source[0]["text"] == caption and source[0]["id"] == "1" and source[0]["choices"] == []
    assert source[1]["__skipped__"] and source[1]["reason"] == "empty caption"
    assert formal_clauses(caption) == ["Triangle(A,B,C)", "Equals(LengthOf(Line(A,C)),3)"]
    # GeoX's pre_caption: lower case, its punctuation set to spaces
    assert pre_caption(caption) == "triangle a,b,c equals lengthof line a,c ,3"
    assert len(pre_caption(" ".join(["w"] * 100)).split()) == 64
    (tmp_path / "g.json").write_text(json.dumps([{"caption": "x"}]))
    with pytest.raises(DataError, match=r"g.json\[0\]: needs an image path"):
        build_source(str(tmp_path / "g.json"), "geo-formal", "train", "random", {})
