"""geo-toyworld: its programs reproduce what its figures measure, its diagrams carry what the diagram
questions need, and the diagram is needed for them."""

import json
import math
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from vlzoo.core import ConfigError
from vlzoo.core.data import build_source, get_generated_dataset
from vlzoo.geometry import choose_answer, execute_program
from vlzoo.geometry.data import format_value, generate_problem, write_geo_toyworld
from vlzoo.geometry.program import OPERATORS


def _all(records):
    return [r for split in records.values() for r in split]


def test_programs_round_trip_to_the_labelled_choice(geo_records):
    for r in _all(geo_records):
        value = execute_program(r["manual_program"], r["numbers"])
        assert value == pytest.approx(r["choice_nums"][r["label"]], abs=1e-6), r["id"]
        assert choose_answer([r["manual_program"]], r["numbers"], r["choice_nums"]) == r["label"], r["id"]


def _angle(p, v, q):
    u, w = np.subtract(p, v), np.subtract(q, v)
    return math.degrees(math.acos(np.dot(u, w) / np.linalg.norm(u) / np.linalg.norm(w)))


def test_answers_are_what_the_figure_measures(geo_records):
    """Where the question names a segment or a three-letter angle, measure it on the figure's stored
    points (rotated, mirrored, but to scale): the labelled choice is that measurement."""
    checked = Counter()
    for r in _all(geo_records):
        pts = r["points"]
        answer = r["choice_nums"][r["label"]]
        if m := re.search(r"[Ff]ind ([A-Z]{2})\.$", r["subject"]):
            a, b = m.group(1)
            assert math.dist(pts[a], pts[b]) == pytest.approx(answer, rel=1e-3), r["id"]
            checked["segment"] += 1
        elif m := re.search(r"[Ff]ind ∠([A-Z]{3})\.$", r["subject"]):
            a, v, b = m.group(1)
            assert _angle(pts[a], pts[v], pts[b]) == pytest.approx(answer, abs=1e-2), r["id"]
            checked["angle"] += 1
    assert checked["segment"] >= 30 and checked["angle"] >= 5, checked


def test_every_operator_occurs():
    used = {tok for i in range(400) for tok in generate_problem(0, "train", i).program if tok in OPERATORS}
    assert used == set(OPERATORS)


def test_diagram_questions_hold_no_value_and_their_values_are_drawn(geo_toyworld, geo_records):
    n_diagram = 0
    for r in _all(geo_records):
        drawn = [label["text"] for label in r["labels"]]
        image = np.asarray(Image.open(geo_toyworld.parent / r["image"]).convert("L"))
        if r["structure"]:  # ∠1's value in the text, the figure names the angles 1 and 2
            assert f"∠1 = {r['numbers'][0]:g}°" in r["subject"] and sorted(drawn) == ["1", "2"], r["id"]
        elif r["needs_diagram"] and r["family"] != "parallel":
            n_diagram += 1
            assert not re.search(r"\d", r["subject"]), r["subject"]
            for n in r["numbers"]:
                assert {format_value(n), format_value(n, "°")} & set(drawn), (r["id"], n, drawn)
                assert f",{n:g})" in r["formal"], (r["id"], n)
        elif not r["needs_diagram"]:
            for n in r["numbers"]:  # text questions state their values, the figure shows none
                assert f"{n:g}" in r["subject"], (r["subject"], n)
            assert not [t for t in drawn if re.search(r"\d\d|°", t)], drawn
        for label in r["labels"]:  # every drawn value is inside the image and inked
            x0, y0, x1, y1 = (round(c) for c in label["box"])
            assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0], label
            assert image[y0:y1, x0:x1].min() < 128, (r["id"], label)
    assert n_diagram >= 40


def test_the_diagram_is_needed_for_the_diagram_questions():
    """A text-only solver that runs, for each question wording (point names canonical), the program most
    often seen with it, is often wrong on the diagram questions: their wording doesn't fix the program."""
    problems = [generate_problem(0, "train", i) for i in range(1000)]
    programs = defaultdict(Counter)

    def key(
        p,
    ):  # point names by order of first mention: "EF = 10, EH = 6. Find FH." → "ab = 10, ac = 6. Find bc."
        names = {}
        return re.sub(
            r"[A-Z](?=[A-Z ,.=∥⊥]|$)", lambda m: names.setdefault(m[0], "abcdefghijk"[len(names)]), p.question
        )

    for p in problems:
        programs[key(p)][" ".join(p.program)] += 1
    diagram = [p for p in problems if p.needs_diagram]
    text = [p for p in problems if not p.needs_diagram]
    structure = [p for p in problems if p.structure]
    oracle = lambda ps: np.mean([programs[key(p)].most_common(1)[0][0] == " ".join(p.program) for p in ps])  # noqa: E731
    assert 0.5 < len(diagram) / len(problems) < 0.85 and 0.25 < len(structure) / len(problems) < 0.45
    assert oracle(diagram) < 0.6
    assert oracle(structure) < 0.3  # one wording, five programs: the figure's family decides
    assert oracle(text) > 0.95  # the text questions, by contrast, name what to compute


def test_structure_questions_share_their_words_and_values_across_families():
    """Same wording, same values of ∠1 and the same candidate answers in every family, so neither the text
    nor the choices tell which program applies; the answer is the angle marked 2, measured on the figure."""
    problems = [p for p in (generate_problem(0, "train", i) for i in range(600)) if p.structure]
    by_family = defaultdict(set)
    for p in problems:
        by_family[p.family].add(p.numbers[0])
        assert re.fullmatch(r"As shown in the figure, ∠1 = \d+°\. Find ∠2\.", p.question), p.question
        label = {t: (a, v, b) for a, v, b, t in p.diagram.angle_values}
        assert _angle(*(p.diagram.points[n] for n in label["1"])) == pytest.approx(p.numbers[0], abs=1e-6)
        assert _angle(*(p.diagram.points[n] for n in label["2"])) == pytest.approx(p.answer_value, abs=1e-6)
        assert len({round(v, 6) for v in [p.answer_value, *p.distractors]}) == 5  # five distinct readings
    assert len(by_family) == 5 and len({frozenset(v) for v in by_family.values()}) == 1, by_family
    programs = {" ".join(p.program) for p in problems}
    assert len(programs) == 5


def test_choices_are_four_distinct_values_with_a_uniform_answer(geo_records):
    labels = Counter()
    for r in _all(geo_records):
        values = r["choice_nums"]
        assert len(values) == len(r["choices"]) == 4
        assert min(abs(a - b) for i, a in enumerate(values) for b in values[i + 1 :]) > 0.05
        labels[r["label"]] += 1
    assert set(labels) == {0, 1, 2, 3} and min(labels.values()) > 0.12 * sum(labels.values())


def test_seeded_and_reproducible(tmp_path):
    a = write_geo_toyworld(tmp_path / "a", 10, 2, 2, seed=3)
    b = write_geo_toyworld(tmp_path / "b", 10, 2, 2, seed=3)
    c = write_geo_toyworld(tmp_path / "c", 10, 2, 2, seed=4)
    assert a.read_text() == b.read_text() != c.read_text()
    assert (tmp_path / "a/train/000003.png").read_bytes() == (tmp_path / "b/train/000003.png").read_bytes()
    with pytest.raises(ConfigError, match="image_size"):
        write_geo_toyworld(tmp_path / "d", 1, 1, 1, image_size=32)


def test_files_in_the_three_formats(geo_toyworld, geo_records):
    root = geo_toyworld.parent
    image = Image.open(root / geo_records["test"][0]["image"])
    assert image.format == "PNG" and image.size == (128, 128)
    per_split = json.loads((root / "geoqa" / "test.json").read_text())
    assert [r["id"] for r in per_split] == [r["id"] for r in geo_records["test"]]
    formal = json.loads((root / "unified_formal_annotations.json").read_text())
    assert {f["image_id"]: f["caption"] for f in formal}["test/000004"] == geo_records["test"][4]["formal"]
    assert get_generated_dataset("geo-toyworld").kind == "geo-toyworld"


SAMPLE_KEYS = {
    "image", "id", "path", "question", "choices", "choice_values", "answer", "program", "numbers", "formal",
    "problem_type", "text", "needs_diagram",
}  # fmt: skip


def test_data_kind_yields_the_sample_dict(geo_toyworld, geo_records):
    test = build_source(str(geo_toyworld), "geo-toyworld", "test", "random", {"text_field": "question"})
    assert len(test) == 60 and test.skipped == []
    sample, record = test[7], geo_records["test"][7]
    assert set(sample) == SAMPLE_KEYS
    assert sample["image"].mode == "RGB" and sample["image"].size == (128, 128)
    assert sample["text"] == sample["question"] == record["subject"]
    assert sample["program"] == record["manual_program"] and sample["answer"] == record["label"]
    assert sample["problem_type"] in {"angle", "length", "other"}
    formal = build_source(str(geo_toyworld), "geo-toyworld", "test", "random", {})[7]
    assert formal["text"] == record["formal"].strip() and formal["text"].startswith(
        ("Triangle", "Circle", "Parallel", "Rect", "Para", "Rhombus", "Cone", "PointLies")
    )
