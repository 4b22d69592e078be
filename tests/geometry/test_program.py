"""The GeoQA program executor: every operator on hand-computed values, the official domain guards as
errors, and GeoX's first-executable-beam answer choice."""

import math
import re

import numpy as np
import pytest

from vlzoo.core import DataError
from vlzoo.geometry import choose_answer, execute_program
from vlzoo.geometry.pgps import PGPS_OPERATORS, execute_pgps
from vlzoo.geometry.program import (
    OPERATORS,
    choose_answers,
    execute_batch,
    format_trace,
    program_arity_ok,
    trace_program,
)

# (program, numbers, value computed by hand)
HAND_WRITTEN = [
    ("g_equal N_0", [65], 65.0),
    ("g_double N_0", [3.5], 7.0),
    ("g_half N_0", [9], 4.5),
    ("g_add N_0 N_1", [40, 75], 115.0),
    ("g_minus N_0 N_1", [40, 75], 35.0),  # |40 - 75|: GeoQA's g_minus is an absolute difference
    ("g_minus C_3 N_0", [50], 130.0),
    ("g_sin N_0", [30], 0.5),
    ("g_cos N_0", [60], 0.5),
    ("g_cos N_0", [180], -1.0),
    ("g_tan N_0", [45], 1.0),
    ("g_asin N_0", [0.5], 30.0),
    ("g_acos N_0", [0.5], 60.0),
    ("gougu_add N_0 N_1", [3, 4], 5.0),
    ("gougu_minus N_0 N_1", [13, 5], 12.0),
    ("gougu_minus N_0 N_1", [5, 13], 12.0),  # sqrt(|a² - b²|): order does not matter
    ("g_bili N_0 N_1 N_2", [2, 6, 9], 3.0),  # 2 / 6 * 9
    ("g_mul N_0 N_1", [2.5, 4], 10.0),
    ("g_divide N_0 N_1", [3, 12], 0.25),
    ("cal_circle_area N_0", [2], 4 * math.pi),
    ("cal_circle_perimeter N_0", [3], 6 * math.pi),
    ("cal_cone N_0 N_1", [2, 5], 10 * math.pi),
    # constants: C_0..C_6 = 30, 60, 90, 180, 360, π, 0.618
    ("g_add C_0 C_1 g_add V_0 C_2", [], 180.0),
    ("g_minus C_4 C_3", [], 180.0),
    ("g_mul C_5 C_6", [], math.pi * 0.618),
    # multi-step: isosceles base angle, (180 - 40) / 2
    ("g_minus C_3 N_0 g_half V_0", [40], 70.0),
    # Rt triangle: leg = hypotenuse * sin 30°
    ("g_sin N_0 g_mul N_1 V_0", [30, 8], 4.0),
    # rhombus side from its diagonals 6 and 8: sqrt(3² + 4²)
    ("g_half N_0 g_half N_1 gougu_add V_0 V_1", [6, 8], 5.0),
    # angle from two sides: asin(4 / 8)
    ("g_divide N_0 N_1 g_asin V_0", [4, 8], 30.0),
    # an index past 9 is read whole (the official executor reads 'N_10' as N_0)
    ("g_equal N_10", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 42], 42.0),
]


def test_every_operator_is_covered_by_a_hand_written_program():
    used = {tok for program, _, _ in HAND_WRITTEN for tok in program.split() if tok in OPERATORS}
    assert used == set(OPERATORS) and len(OPERATORS) == 18


@pytest.mark.parametrize(("program", "numbers", "expected"), HAND_WRITTEN)
def test_hand_written_programs(program, numbers, expected):
    assert execute_program(program.split(), numbers) == pytest.approx(expected, abs=1e-9)


def test_official_operator_order():
    assert list(OPERATORS)[:5] == ["g_equal", "g_double", "g_half", "g_add", "g_minus"]
    assert list(OPERATORS)[-3:] == ["cal_circle_area", "cal_circle_perimeter", "cal_cone"]


def test_trace_lists_every_step_with_its_operands():
    steps = trace_program(["g_minus", "C_3", "N_0", "g_half", "V_0"], [40])
    assert [(s.op, s.operands, s.values, s.result) for s in steps] == [
        ("g_minus", ("C_3", "N_0"), (180.0, 40.0), 140.0),
        ("g_half", ("V_0",), (140.0,), 70.0),
    ]
    text = format_trace(["g_minus", "C_3", "N_0", "g_half", "V_0"], [40])
    assert "N_0 = 40" in text and "V_1 = g_half(V_0=140) = 70" in text


@pytest.mark.parametrize(
    ("program", "numbers", "message"),
    [
        ("g_foo N_0", [1], "unknown operator 'g_foo'"),
        ("g_add N_0", [1], "takes 2 operand(s)"),  # too few
        ("g_half N_0 N_1", [1, 2], "an operand where an operator must be"),  # too many
        ("g_add N_0 g_half N_1", [1, 2], "takes 2 operand(s)"),  # an operator as an operand
        ("g_half N_2", [1, 2], "N_2 is out of range: there are 2 numbers"),
        ("g_half V_0", [1], "V_0 is out of range"),  # no earlier result yet
        ("g_half C_7", [], "C_7 is out of range"),
        ("g_half X_0", [], "'X_0' is neither"),
        ("", [], "empty program"),
        ("g_sin N_0", [20], "multiple of 15"),  # the official guard: 20 is no multiple of 15
        ("g_sin N_0", [195], "multiple of 15"),
        ("g_tan N_0", [90], "multiple of 15 degrees in [5, 85]"),
        ("g_asin N_0", [1.0], "-1 < a < 1"),  # strictly inside, as the official code
        ("g_acos N_0", [-1.5], "-1 < a < 1"),
        ("gougu_minus N_0 N_1", [5, 5], "two different lengths"),
        ("g_divide N_0 N_1", [3, 0], "positive operands"),
        ("g_bili N_0 N_1 N_2", [1, -2, 3], "positive operands"),
    ],
)
def test_bad_programs_raise_a_data_error_naming_the_problem(program, numbers, message):
    with pytest.raises(DataError, match=re.escape(message)):
        execute_program(program.split(), numbers)


def test_error_names_the_token_position():
    with pytest.raises(DataError, match=r"token 2 \(g_sin\)"):
        execute_program(["g_half", "N_0", "g_sin", "V_0"], [50])  # sin 25° is outside the official domain


def test_arity_check_without_numbers():
    assert program_arity_ok(["g_add", "N_0", "N_1", "g_half", "V_0"])
    assert not program_arity_ok(["g_add", "N_0"])
    assert not program_arity_ok(["g_add", "N_0", "N_1", "N_2"])
    assert not program_arity_ok([])


def test_choose_answer_takes_the_first_executable_beam_that_reaches_a_choice():
    numbers = [3, 4]
    choices = [7.0, 5.0, 12.0, "1"]
    beams = [
        ["g_foo", "N_0"],  # unknown operator: passed over
        ["g_mul", "N_0", "N_1"],  # 12 → choice 2
        ["gougu_add", "N_0", "N_1"],  # 5 → choice 1, but comes later
    ]
    assert choose_answer(beams, numbers, choices) == 2
    assert choose_answer(beams[2:], numbers, choices) == 1
    assert choose_answer([["g_minus", "N_0", "N_1"]], numbers, choices) == 3  # |3-4| = 1 matches "1"
    # an executable beam whose value matches no choice does not stop the search
    assert choose_answer([["g_half", "N_0"], ["g_add", "N_0", "N_1"]], numbers, choices) == 0
    assert choose_answer([["g_half", "N_0"]], numbers, choices) is None
    # the tolerance is GeoQA's 1e-3
    assert choose_answer([["g_equal", "N_0"]], [5.0009], choices) == 1
    assert choose_answer([["g_equal", "N_0"]], [5.002], choices) is None


def test_choose_answer_picks_the_first_matching_choice():
    assert choose_answer([["g_equal", "N_0"]], [2.0], [1.0, 2.0, 2.0005, 3.0]) == 1


# ------------------------------------------------------------------------------------- PGPS programs

# (program, var_list, value computed by hand); each relation written out in the comment
PGPS_HAND_WRITTEN = [
    ("Sum N_0 N_1 V_0 Get V_0", ["3", "4"], 7.0),  # 3 + 4 = V0
    ("Multiple N_0 N_1 N_2 V_0 Get V_0", ["2", "3", "4"], 24.0),
    ("Equal N_0 N_1 Get N_0", ["2x+10", "3x-5"], 40.0),  # 2x + 10 = 3x - 5 → x = 15
    ("Iso_Tri_Ang N_0 V_0 Get V_0", ["40"], 70.0),  # 40 + 2 V0 = 180
    ("Gougu N_0 N_1 V_0 Get V_0", ["3", "4"], 5.0),
    ("Gougu N_0 V_0 N_1 Get V_0", ["5", "13"], 12.0),
    ("Gsin V_0 N_0 N_1 Get V_0", ["10", "30"], 5.0),  # V0 / 10 = sin 30°
    ("Gcos V_0 N_0 N_1 Get V_0", ["8", "60"], 4.0),
    ("Gtan N_0 N_1 V_0 Get V_0", ["1", "1"], 45.0),  # tan V0 = 1 / 1
    ("Cos_Law V_0 N_0 N_1 C60 Get V_0", ["3", "8"], 7.0),  # V0² = 9 + 64 - 2·3·8·cos 60°
    ("Sin_Law N_0 N_1 N_2 V_0 Get V_0", ["30", "4", "90"], 8.0),  # sin 30° / 4 = sin 90° / V0
    ("Median N_0 V_0 N_1 Get V_0", ["4", "10"], 7.0),  # 4 + 10 = 2 V0
    ("Geo_Mean N_0 N_1 V_0 Get V_0", ["4", "9"], 6.0),  # 4 · 9 = V0²
    ("Proportion N_0 N_1 N_2 V_0 Get V_0", ["2", "3", "4"], 6.0),  # 2 / 3 = 4 / V0
    ("Proportion N_0 N_1 N_2 V_0 C2 Get V_0", ["1", "2", "9"], 36.0),  # 1 / 2 = √9 / √V0
    ("Ratio N_0 N_1 V_0 Get V_0", ["6", "4"], 1.5),
    ("Ratio N_0 N_1 C2 V_0 Get V_0", ["6", "3"], 4.0),  # (6 / 3)² = V0
    ("Chord2_Ang V_0 N_0 N_1 Get V_0", ["100", "40"], 70.0),  # V0 = (100 + 40) / 2
    ("TanSec_Ang V_0 N_0 N_1 Get V_0", ["40", "100"], 30.0),  # V0 = (100 - 40) / 2
    ("Tria_BH_Area N_0 N_1 V_0 Get V_0", ["6", "5"], 15.0),
    ("Tria_SAS_Area N_0 N_1 N_2 V_0 Get V_0", ["4", "30", "6"], 6.0),  # 4 · 6 · sin 30° / 2
    ("PRK_Perim N_0 N_1 V_0 Get V_0", ["3", "4"], 14.0),
    ("Para_Area N_0 N_1 V_0 Get V_0", ["3", "4"], 12.0),
    ("Rect_Area N_0 N_1 V_0 Get V_0", ["5", "6"], 30.0),
    ("Rhom_Area N_0 N_1 V_0 Get V_0", ["3", "4"], 24.0),  # the official relation: 2ab = c
    ("Kite_Area N_0 N_1 V_0 Get V_0", ["6", "8"], 24.0),
    ("Trap_Area N_0 N_1 N_2 V_0 Get V_0", ["3", "5", "4"], 16.0),
    ("Circle_R_Circum N_0 V_0 Get V_0", ["3"], 6 * math.pi),
    ("Circle_R_Circum N_0 N_1 V_0 Get V_0", ["3", "90"], 1.5 * math.pi),  # a quarter arc
    ("Circle_D_Circum N_0 V_0 Get V_0", ["4"], 4 * math.pi),
    ("Circle_D_Circum N_0 N_1 V_0 Get V_0", ["4", "180"], 2 * math.pi),
    ("Circle_R_Area N_0 V_0 Get V_0", ["2"], 4 * math.pi),
    ("Circle_R_Area N_0 N_1 V_0 Get V_0", ["2", "90"], math.pi),
    ("Circle_D_Area N_0 V_0 Get V_0", ["4"], 4 * math.pi),
    ("Circle_D_Area N_0 N_1 V_0 Get V_0", ["4", "180"], 2 * math.pi),
    ("ArcSeg_Area N_0 N_1 V_0 Get V_0", ["2", "90"], math.pi - 2),  # quarter disc minus the triangle
    ("Ngon_Angsum N_0 V_0 Get V_0", ["6"], 720.0),
    ("RNgon_B_Area C4 N_0 V_0 Get V_0", ["3"], 9.0),  # a square of side 3
    ("RNgon_L_Area C4 N_0 V_0 Get V_0", ["2"], 8.0),  # a square of circumradius 2
    ("RNgon_H_Area C4 N_0 V_0 Get V_0", ["1"], 4.0),  # a square of apothem 1
    # two steps: the second uses the first's unknown; numbers with unknowns and LaTeX
    ("Sum N_0 N_1 C180 Get N_1", ["2x+10", "3x"], 102.0),  # 5x + 10 = 180 → x = 34
    ("Gougu N_0 N_1 V_0 Multiple V_0 C2 V_1 Get V_1", ["\\frac{3}{2}", "2"], 5.0),  # 2 · 2.5
    ("Equal N_0 V_0 Get V_0", ["4\\sqrt{3}"], 4 * math.sqrt(3)),
]


def test_every_pgps_operator_is_covered():
    used = {p.split()[0] for p, _, _ in PGPS_HAND_WRITTEN} | {"Get"}
    assert used == set(PGPS_OPERATORS) and len(PGPS_OPERATORS) == 34


@pytest.mark.parametrize(("program", "var_list", "expected"), PGPS_HAND_WRITTEN)
def test_pgps_hand_written_programs(program, var_list, expected):
    assert execute_pgps(program.split(), var_list) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("program", "var_list", "message"),
    [
        ("Foo N_0 Get N_0", ["1"], "unknown operator 'Foo'"),
        ("Gougu N_0 N_1 Get N_0", ["3", "4"], "takes 3 operands"),
        ("Get N_3", ["1"], "N_3 is out of range"),
        ("Equal N_0 C7 Get N_0", ["1"], "C7 is not a PGPS constant"),
        ("Gougu N_0 V_0 V_1 Get V_0", ["3"], "V_0 is still unknown"),
        ("Gougu N_0 N_1 V_0", ["3", "4"], "no Get step"),
        ("N_0 Get N_0", ["1"], "starts with an operator"),
        ("Get N_0", ["2x%"], "can't read '%'"),
        ("", [], "empty program"),
    ],
)
def test_bad_pgps_programs_raise_data_errors(program, var_list, message):
    with pytest.raises(DataError, match=re.escape(message)):
        execute_pgps(program.split(), var_list)


# ------------------------------------------------------------------------------------- batched


def test_execute_batch_matches_the_executor_program_by_program():
    programs = [p.split() for p, _, _ in HAND_WRITTEN]
    numbers = [n for _, n, _ in HAND_WRITTEN]
    # the same programs on numbers outside their domains, ragged and too short, and malformed programs
    programs += [
        ["g_sin", "N_0"],
        ["g_sin", "N_0"],
        ["g_add", "N_0", "N_1"],
        ["g_foo"],
        ["g_half", "V_0"],
        [],
    ]
    numbers += [[30], [20], [1], [1], [1], []]
    values = execute_batch(programs, numbers)
    for program, nums, value in zip(programs, numbers, values, strict=True):
        try:
            expected = execute_program(program, nums)
        except DataError:
            assert math.isnan(value), (program, nums, value)
        else:
            assert value == pytest.approx(expected, abs=1e-12), (program, nums)
    assert values[-6] == pytest.approx(0.5) and np.isnan(values[-5:]).all()


def test_choose_answers_is_choose_answer_for_many_problems():
    numbers = [[3, 4], [40], [6, 8], [50], [2.0]]
    choices = [[5, 7, 12, 1], [70, 140, 40, 20], [10, 14, 48], [130, 50, 40, 25], [1.0, 2.0, 2.0005]]
    beams = [
        [["gougu_add", "N_0", "N_1"]],
        [["g_half", "N_0"], ["g_minus", "C_3", "N_0", "g_half", "V_0"]],
        [["g_foo"], ["g_sin", "N_0"], ["gougu_add", "N_0", "N_1"]],
        [["g_half", "N_0", "N_0"]],
        [["g_equal", "N_0"]],
    ]
    expected = [choose_answer(b, n, c) for b, n, c in zip(beams, numbers, choices, strict=True)]
    assert expected == [0, 3, 0, None, 1]  # by hand: 5; 20 (the first beam that reaches one); 10; none; 2
    assert choose_answers(beams, numbers, choices) == expected
    assert choose_answers([], [], []) == []
