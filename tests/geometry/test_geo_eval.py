"""GeoQA-style scoring (top-1 / top-10 by executed beams, per problem type), Geometry3K value scoring, the
baselines that need no model, the paper-style table and the `solve` / `render` / `eval` commands."""

import json

import numpy as np
import pytest
from PIL import Image

from vlzoo.core import DataError
from vlzoo.geometry.cli import extract_numbers, main
from vlzoo.geometry.evaluation import (
    choice_prior,
    evaluate_geoqa,
    first_pgps_value,
    geo_table_markdown,
    geoqa_accuracy,
    plot_examples,
    question_template,
    text_only_programs,
    value_accuracy,
)


def test_top1_and_top10_follow_the_first_executable_beam():
    numbers = [[3, 4], [40], [6, 8], [50]]
    choices = [[5, 7, 12, 1], [70, 140, 40, 20], [10, 14, 48, 2], [130, 50, 40, 25]]
    answers = [0, 0, 0, 0]
    beams = [
        [["gougu_add", "N_0", "N_1"]],  # right at once
        [["g_half", "N_0"], ["g_minus", "C_3", "N_0", "g_half", "V_0"]],  # 20 = choice 3: wrong, stops there
        [["g_foo"], ["g_sin", "N_0"], ["gougu_add", "N_0", "N_1"]],  # unexecutable beams first, then right
        [["g_half", "N_0", "N_0"]],  # nothing executes: no answer
    ]
    types, diagram = ["length", "angle", "length", "angle"], [False, True, True, False]
    m = geoqa_accuracy(beams, numbers, choices, answers, types, ks=(1, 10), needs_diagram=diagram)
    assert m["top1"] == 0.25 and m["top10"] == 0.5  # #0; then #0 and #2
    assert m["length/top1"] == 0.5 and m["length/top10"] == 1.0 and m["angle/top10"] == 0.0
    assert m["no_answer@1"] == 0.5 and m["no_answer@10"] == 0.25  # #2 and #3 at top-1, #3 at top-10
    assert m["angle/n"] == 2 and m["n"] == 4
    assert m["diagram/top1"] == 0.0 and m["diagram/top10"] == 0.5  # problems #1 and #2


def test_value_accuracy_uses_geox_tolerances():
    values = [[1.0, 2.0, 3.0, 4.0]] * 4
    m = value_accuracy([2.004, 2.04, 2.2, None], [2.0, 2.0, 2.0, 2.0], values, [1, 1, 1, 1])
    assert m["completion"] == 0.25  # only |2.004 - 2| < 5e-3
    assert m["choice"] == 0.5  # 2.004 and 2.04 snap to choice 1 within 5e-2; 2.2 does not


def test_pgps_value_is_the_first_executable_beam():
    beams = [["Foo", "N_0"], ["Gougu", "N_0", "N_1", "V_0"], ["Gougu", "N_0", "N_1", "V_0", "Get", "V_0"]]
    assert first_pgps_value(beams, ["3", "4"]) == 5.0  # the first two don't execute (no Get in the second)
    assert first_pgps_value(beams[:2], ["3", "4"]) is None


def test_question_template_masks_names_and_numbers():
    assert question_template("In right triangle EFH, EF = 10, EH = 6.5. Find FH.") == (
        "In right triangle abc, ab = #, ac = #. Find bc."
    )
    assert question_template("As shown in the figure, find ∠PQR.") == "As shown in the figure, find ∠abc."


def test_text_only_baseline_learns_programs_per_wording():
    table = text_only_programs(
        ["AB = 3, BC = 4. Find AC.", "DE = 5, EF = 6. Find DF.", "PQ = 1, QR = 1. Find PR.", "Find ∠A."],
        [
            ["gougu_add", "N_0", "N_1"],
            ["gougu_add", "N_0", "N_1"],
            ["g_add", "N_0", "N_1"],
            ["g_half", "N_0"],
        ],
    )
    assert table["ab = #, bc = #. Find ac."] == ["gougu_add", "N_0", "N_1"]  # 2 votes against 1
    assert table[""] == ["gougu_add", "N_0", "N_1"]  # the most frequent overall, for unseen wordings
    assert choice_prior([[1, 2, 3, 4], [1, 2]]) == pytest.approx((0.25 + 0.5) / 2)


def test_baselines_on_geo_toyworld(geo_toyworld, tmp_path):
    metrics = evaluate_geoqa("none", data=str(geo_toyworld), out=tmp_path / "report")
    assert metrics["choice prior/top1"] == 0.25
    # the text names the program of text questions, not of diagram questions: clearly above chance, far
    # from perfect
    assert 0.4 < metrics["text-only/top1"] < 0.9
    assert metrics["text-only/diagram/top1"] < metrics["text-only/top1"]  # worse where only the figure tells
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| text-only |" in table and "| choice prior | 25.0 |" in table
    assert (
        json.loads((tmp_path / "report" / "metrics.json").read_text())["text-only/top1"]
        == metrics["text-only/top1"]
    )


def test_table_rows_and_columns():
    md = geo_table_markdown({"geox-tiny": {"top1": 0.5, "angle/top1": 0.25, "top10": 0.75}})
    assert md.splitlines()[0] == "| Method | Top-1 | Angle | Length | Other | Needs diagram | Top-10 |"
    assert md.splitlines()[2] == "| geox-tiny | 50.0 | 25.0 | – | – | – | 75.0 |"
    three = geo_table_markdown({"geox-tiny": {"top1": 0.5, "top3": 0.6}}, k=3)
    assert three.splitlines()[0].endswith("| Top-3 |") and three.splitlines()[2].endswith("| 60.0 |")


def test_the_report_shows_right_and_wrong_answers():
    from vlzoo.geometry.evaluation import _mixed_examples

    problems = [{"numbers": [i], "choice_values": [i, -1.0], "answer": 0} for i in range(1, 11)]
    right, wrong = [["g_equal", "N_0"]], [["g_double", "N_0"]]
    beams = [right if i in (2, 5, 6, 7, 9) else wrong for i in range(10)]
    assert _mixed_examples(problems, beams, 4) == [0, 1, 2, 5]  # two right (2, 5), two wrong (0, 1)
    assert _mixed_examples(problems, [wrong] * 10, 4) == [0, 1, 2, 3]


def test_examples_plot_overlays_the_kept_patches(geo_toyworld, tmp_path):
    from vlzoo.core.data import build_source

    source = build_source(str(geo_toyworld), "geo-toyworld", "test", "first", {})
    problems = [source[i] for i in range(2)]
    beams = [[p["program"]] for p in problems]
    plain = plot_examples(problems, beams, tmp_path / "plain.png", n=2)
    masks = [np.eye(4), np.zeros((4, 4))]
    overlaid = plot_examples(problems, beams, tmp_path / "over.png", overlays=masks, n=2)
    a, b = np.asarray(Image.open(plain)), np.asarray(Image.open(overlaid))
    assert a.shape == b.shape and (a != b).any()


def test_solve_with_a_program_prints_steps_and_answer(geo_toyworld, capsys):
    diagram = geo_toyworld.parent / "test" / "000000.png"
    question = "In triangle ABC, AB = AC, ∠A = 40°. Find ∠B."
    assert extract_numbers(question) == [40.0]
    rc = main(["solve", str(diagram), question, "--choices", "40", "70", "140", "50",
               "--program", "g_minus C_3 N_0 g_half V_0"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "V_0 = g_minus(C_3=180, N_0=40) = 140" in out and "V_1 = g_half(V_0=140) = 70" in out
    assert out.strip().endswith("answer: B. 70")
    rc = main(["solve", str(diagram), question, "--choices", "1", "2", "--program", "g_foo N_0"])
    assert rc == 1 and "unknown operator 'g_foo'" in capsys.readouterr().out


def test_render_and_eval_commands(geo_toyworld, tmp_path, capsys):
    assert main(["render", "--out", str(tmp_path / "fig"), "--n", "5"]) == 0
    assert len(list((tmp_path / "fig" / "train").glob("*.png"))) == 5
    assert Image.open(tmp_path / "fig" / "contact_sheet.png").size == (5 * 128, 128)
    assert "[g" in capsys.readouterr().out  # each problem's program
    out = tmp_path / "r"
    assert main(["eval", "geoqa", "--model", "none", "--data", str(geo_toyworld), "--out", str(out)]) == 0
    assert "| choice prior | 25.0 |" in (out / "table.md").read_text()


def test_a_model_is_scored_on_the_programs_it_generates(geo_toyworld, tmp_path):
    """The runner with a real (untrained) geox-tiny: the report's beams score to the reported metrics."""
    from vlzoo.core.data import build_source

    options = {"split": "val", "num_beams": 3, "batch_size": 20}  # 20 problems
    metrics = evaluate_geoqa("geox-tiny", data=str(geo_toyworld), out=tmp_path, **options)
    lines = [json.loads(line) for line in (tmp_path / "programs.jsonl").read_text().splitlines()]
    source = build_source(str(geo_toyworld), "geo-toyworld", "val", "first", {})
    assert [x["id"] for x in lines] == [source.entries[i].fields["id"] for i in range(len(source))]
    beams = [[b.split() for b in x["beams"]] for x in lines]
    assert all(1 <= len(b) <= 3 for b in beams)
    fields = [e.fields for e in source.entries]
    again = geoqa_accuracy(
        beams, [f["numbers"] for f in fields], [f["choice_values"] for f in fields], [f["answer"] for f in fields],
        ks=(1, 3),
    )  # fmt: skip
    assert metrics["geox-tiny/top1"] == again["top1"] and metrics["geox-tiny/top3"] == again["top3"]
    assert metrics["geox-tiny/top3"] >= metrics["geox-tiny/top1"]
    table = (tmp_path / "table.md").read_text()
    assert (tmp_path / "examples.png").is_file() and "| geox-tiny |" in table and "| Top-3 |" in table


def test_solve_with_a_model_prints_its_beams_and_runs_the_best(geo_toyworld, tmp_path, capsys):
    diagram = geo_toyworld.parent / "test" / "000001.png"
    argv = [
        "solve",
        str(diagram),
        "As shown in the figure, find ∠Q.",
        "--numbers",
        "30",
        "--choices",
        "75",
        "150",
    ]
    rc = main([*argv, "--model", "geox-tiny", "--num-beams", "2"])
    out = capsys.readouterr().out
    beams = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(("  0: ", "  1: "))]
    program = next(line for line in out.splitlines() if line.startswith("program: "))[len("program: ") :]
    assert 1 <= len(beams) <= 2 and program in beams
    assert (rc == 1) == ("answer: none" in out)
    assert ("N_0 = 30" in out) != ("does not execute" in out)  # the trace, or why there is none
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["solve", str(broken), "Find x.", "--choices", "1", "--model", "geox-tiny"]) == 2
    assert "broken.png: unreadable diagram" in capsys.readouterr().err


def test_predictions_generated_elsewhere_are_scored(geo_toyworld, geo_records, tmp_path):
    """GeoX's inference output (question_id, text = beams): here an unexecutable first beam and the
    annotated program second for every third problem, one problem missing."""
    lines = []
    for i, r in enumerate(geo_records["test"][1:], start=1):
        beams = ["g_foo N_0", " ".join(r["manual_program"])] if i % 3 == 0 else ["g_foo N_0"]
        lines.append(json.dumps({"question_id": r["id"], "text": beams}))
    path = tmp_path / "geox_answers.jsonl"
    path.write_text("\n".join(lines) + "\n")
    metrics = evaluate_geoqa("none", data=str(geo_toyworld), predictions=str(path), num_beams=2)
    n = len(geo_records["test"])
    assert metrics["geox_answers/top1"] == 0.0
    assert metrics["geox_answers/top2"] == pytest.approx(len(range(3, n, 3)) / n)
    assert metrics["geox_answers/missing"] == 1.0
    path.write_text('{"question_id": 1}\n')
    with pytest.raises(DataError, match=r"geox_answers.jsonl:1: needs question_id \(or id\) and text"):
        evaluate_geoqa("none", data=str(geo_toyworld), predictions=str(path))
