"""The GeoQA / UniGeo solution-program executor: verifiable geometry answers without `eval`.

A program is a flat prefix token list, `op arg_1 .. arg_k op arg_1 ..`: each operator is followed by
exactly its arity's operands, and operands are
- `N_i`: the problem's i-th number (`numbers[i]`, the values the question or the figure states),
- `V_i`: the result of the i-th operator executed before this one,
- `C_i`: GeoQA's constant i of `CONSTANTS` = (30, 60, 90, 180, 360, π, 0.618).
The program's answer is the result of its last operator. `g_add N_0 N_1 g_half V_0` = (N_0 + N_1) / 2.

The 18 operators, their order (the official `op_dict`) and semantics follow chen-judge/GeoQA
`ManualProgram/operators.py` (copied unchanged into GeoX's `solver/operators.py`), domain guards included:
`g_minus` is |a - b|; `g_sin`/`g_cos` take degrees that are multiples of 15 in [0, 180], `g_tan` multiples
of 15 in [5, 85]; `g_asin`/`g_acos` need -1 < a < 1 and answer in degrees; `gougu_minus` needs a != b;
`g_bili` and `g_divide` need positive operands. Where the official executor departs from a safe reading
this one departs from it, on purpose:
- it returns `False` from an operator outside its domain and then computes on with 0; here that is a
  `DataError` naming the step (a silently wrong answer could still match a choice);
- it reads an operand's index from its last character only (`N_12` is N_2); here the whole index counts;
- a multiple of 15 is tested within 1e-6, so 45.0000000001 (a float result of an earlier step) is 45.

`choose_answer` is GeoX's top-k protocol: the first beam whose program executes to within 1e-3 of a
choice picks that choice (the first such choice; GeoQA's original loop kept the last).

`execute_batch` / `choose_answers` do the same for many problems at once (evaluation, rewards): each
distinct program is parsed once and run on all its problems' numbers with numpy, NaN where
`execute_program` would raise. Each operator is defined once, elementwise (`Operator.fn`, `.domain`), for
both paths.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from vlzoo.core.errors import DataError

__all__ = [
    "CONSTANTS",
    "OPERATORS",
    "Operator",
    "Step",
    "choose_answer",
    "choose_answers",
    "execute_batch",
    "execute_program",
    "format_trace",
    "program_arity_ok",
    "trace_program",
]

CONSTANTS: tuple[float, ...] = (30.0, 60.0, 90.0, 180.0, 360.0, math.pi, 0.618)
ANSWER_TOLERANCE = 1e-3  # GeoQA's |value - choice| < 0.001
_ANGLE_STEP_TOLERANCE = 1e-6
_OPERAND = re.compile(r"^([NVC])_?(\d+)$")


def _multiple_of_15(a):
    r = np.mod(a, 15.0)
    return np.minimum(r, 15.0 - r) < _ANGLE_STEP_TOLERANCE


def _degrees_in(lo: float, hi: float) -> Callable:
    return lambda a: (
        _multiple_of_15(a) & (a >= lo - _ANGLE_STEP_TOLERANCE) & (a <= hi + _ANGLE_STEP_TOLERANCE)
    )


def _positive(*args):
    return np.logical_and.reduce([np.asarray(a) > 0 for a in args])


@dataclass(frozen=True)
class Operator:
    """`fn` computes the value and `domain` says where the official operator has one (both elementwise:
    numpy, so that the scalar executor and `execute_batch` share one definition); `domain_text` names it."""

    name: str
    arity: int
    fn: Callable[..., Any]
    domain: Callable[..., Any] | None = None
    domain_text: str = ""


# In the official `op_dict` order (index = the operator's id in GeoQA's vocabulary).
OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator("g_equal", 1, lambda a: a),
        Operator("g_double", 1, lambda a: 2.0 * a),
        Operator("g_half", 1, lambda a: a / 2.0),
        Operator("g_add", 2, lambda a, b: a + b),
        Operator("g_minus", 2, lambda a, b: np.abs(a - b)),
        Operator(
            "g_sin",
            1,
            lambda a: np.sin(np.radians(a)),
            _degrees_in(0, 180),
            "a multiple of 15 degrees in [0, 180]",
        ),
        Operator(
            "g_cos",
            1,
            lambda a: np.cos(np.radians(a)),
            _degrees_in(0, 180),
            "a multiple of 15 degrees in [0, 180]",
        ),
        Operator(
            "g_tan",
            1,
            lambda a: np.tan(np.radians(a)),
            _degrees_in(5, 85),
            "a multiple of 15 degrees in [5, 85]",
        ),
        Operator("g_asin", 1, lambda a: np.degrees(np.arcsin(a)), lambda a: (a > -1) & (a < 1), "-1 < a < 1"),
        Operator("g_acos", 1, lambda a: np.degrees(np.arccos(a)), lambda a: (a > -1) & (a < 1), "-1 < a < 1"),
        Operator("gougu_add", 2, lambda a, b: np.sqrt(a * a + b * b)),
        Operator(
            "gougu_minus",
            2,
            lambda a, b: np.sqrt(np.abs(a * a - b * b)),
            lambda a, b: a != b,
            "two different lengths",
        ),
        Operator("g_bili", 3, lambda a, b, c: a / b * c, _positive, "positive operands"),
        Operator("g_mul", 2, lambda a, b: a * b),
        Operator("g_divide", 2, lambda a, b: a / b, _positive, "positive operands"),
        Operator("cal_circle_area", 1, lambda r: r * r * np.pi),
        Operator("cal_circle_perimeter", 1, lambda r: 2.0 * np.pi * r),
        Operator("cal_cone", 2, lambda a, b: a * b * np.pi),
    )
}


@dataclass(frozen=True)
class Step:
    """One executed operator: `V_index = op(operands)`, with the operands' tokens and values."""

    index: int
    op: str
    operands: tuple[str, ...]
    values: tuple[float, ...]
    result: float

    def __str__(self) -> str:
        args = ", ".join(f"{t}={v:g}" for t, v in zip(self.operands, self.values, strict=True))
        return f"V_{self.index} = {self.op}({args}) = {self.result:.6g}"


@dataclass(frozen=True)
class _ParsedStep:
    pos: int
    op: Operator
    operands: tuple[str, ...]
    refs: tuple[tuple[str, int], ...]  # ("N" | "V" | "C", index) per operand


def _parse(tokens: Sequence[str]) -> tuple[_ParsedStep, ...]:
    """The program's steps, checked for what needs no numbers: known operators, each with its arity's
    operands, V_i referring to an earlier step, C_i to a constant. `DataError` naming the token otherwise.
    Cached: beams and datasets repeat a few programs many times."""
    return _parse_cached(tuple(str(t) for t in tokens))


@lru_cache(maxsize=1 << 16)
def _parse_cached(tokens: tuple[str, ...]) -> tuple[_ParsedStep, ...]:
    if not tokens:
        raise DataError("empty program")
    steps: list[_ParsedStep] = []
    pos = 0
    while pos < len(tokens):
        name = tokens[pos]
        op = OPERATORS.get(name)
        if op is None:
            if _OPERAND.match(name):
                raise DataError(f"token {pos} ({name}): an operand where an operator must be (wrong arity?)")
            raise DataError(f"token {pos}: unknown operator {name!r}")
        operands = tuple(tokens[pos + 1 : pos + 1 + op.arity])
        if len(operands) < op.arity or any(t in OPERATORS for t in operands):
            raise DataError(f"token {pos} ({name}): takes {op.arity} operand(s), got {list(operands)}")
        refs = []
        for token in operands:
            match = _OPERAND.match(token)
            if match is None:
                raise DataError(
                    f"token {pos} ({name}): {token!r} is neither an operator nor an operand (N_i, V_i, C_i)"
                )
            kind, index = match.group(1), int(match.group(2))
            size = {"V": len(steps), "C": len(CONSTANTS)}.get(kind)
            if size is not None and index >= size:
                what = "earlier results" if kind == "V" else "constants"
                raise DataError(f"token {pos} ({name}): {token} is out of range: there are {size} {what}")
            refs.append((kind, index))
        steps.append(_ParsedStep(pos, op, operands, tuple(refs)))
        pos += 1 + op.arity
    return tuple(steps)


def trace_program(tokens: Sequence[str], numbers: Sequence[float]) -> list[Step]:
    """Execute `tokens` on `numbers` and return every step; `DataError` for an empty program, an unknown
    token, an operator with too few or too many operands, an index out of range or an operand outside an
    operator's domain (or a non-finite result), naming the token's position."""
    steps: list[Step] = []
    results: list[float] = []
    for step in _parse(tokens):
        where = f"token {step.pos} ({step.op.name})"
        values = []
        for token, (kind, index) in zip(step.operands, step.refs, strict=True):
            if kind == "N" and index >= len(numbers):
                raise DataError(f"{where}: {token} is out of range: there are {len(numbers)} numbers")
            values.append(float({"N": numbers, "V": results, "C": CONSTANTS}[kind][index]))
        op = step.op
        if op.domain is not None and not bool(op.domain(*values)):
            shown = ", ".join(f"{v:g}" for v in values)
            raise DataError(f"{where}: {op.name} takes {op.domain_text}, got {shown}")
        with np.errstate(all="ignore"):
            result = float(op.fn(*values))
        if not math.isfinite(result):
            raise DataError(f"{where}: the result is not finite ({result})")
        steps.append(Step(len(results), op.name, step.operands, tuple(values), result))
        results.append(result)
    return steps


def execute_program(tokens: Sequence[str], numbers: Sequence[float]) -> float:
    """The value of GeoQA program `tokens` on the problem's `numbers` (its last operator's result)."""
    return trace_program(tokens, numbers)[-1].result


def _padded(numbers: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged number lists as one NaN-padded array and their lengths."""
    lengths = np.array([len(n) for n in numbers], dtype=int)
    table = np.full((len(numbers), max(1, int(lengths.max(initial=0)))), np.nan)
    mask = np.arange(table.shape[1]) < lengths[:, None]
    if mask.any():
        table[mask] = np.concatenate([np.asarray(n, dtype=float) for n in numbers if len(n)])
    return table, lengths


def execute_batch(
    programs: Sequence[Sequence[str]], numbers: Sequence[Sequence[float]], owner: Sequence[int] | None = None
) -> np.ndarray:
    """The values of many programs, NaN where `execute_program` would raise. Program i runs on
    `numbers[owner[i]]` (default `numbers[i]`: beams of one problem share its numbers through `owner`).
    Programs are grouped by their tokens, each distinct program parsed once and run on all its problems'
    numbers at once (numpy), so beams that repeat a program (most do) cost one vectorized pass."""
    owner_index = np.arange(len(programs)) if owner is None else np.asarray(owner, dtype=int)
    if len(owner_index) != len(programs) or (owner is None and len(numbers) != len(programs)):
        raise DataError(f"execute_batch: {len(programs)} programs for {len(numbers)} number lists")
    table_all, lengths_all = _padded(numbers)
    out = np.full(len(programs), np.nan)
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, program in enumerate(programs):
        groups[tuple(program)].append(i)
    for program, rows in groups.items():
        try:
            steps = _parse(program)
        except DataError:
            continue
        which = owner_index[rows]
        table, lengths = table_all[which], lengths_all[which]
        ok = np.ones(len(rows), dtype=bool)
        results: list[np.ndarray] = []
        with np.errstate(all="ignore"):
            for step in steps:
                args = []
                for kind, index in step.refs:
                    if kind == "N":
                        ok &= index < lengths
                        args.append(table[:, index] if index < table.shape[1] else np.full(len(rows), np.nan))
                    else:
                        args.append(results[index] if kind == "V" else np.full(len(rows), CONSTANTS[index]))
                if step.op.domain is not None:
                    ok &= np.asarray(step.op.domain(*args), dtype=bool)
                value = np.asarray(step.op.fn(*args), dtype=float) * np.ones(len(rows))
                ok &= np.isfinite(value)
                results.append(value)
        out[rows] = np.where(ok, results[-1], np.nan)
    return out


def choose_answers(
    beams: Sequence[Sequence[Sequence[str]]],
    numbers: Sequence[Sequence[float]],
    choices: Sequence[Sequence[float]],
    tolerance: float = ANSWER_TOLERANCE,
) -> list[int | None]:
    """`choose_answer` for many problems at once: every beam of every problem executed by `execute_batch`,
    then, per problem, the choice reached by its first beam that reaches one (None where none does)."""
    n = len(beams)
    if not n:
        return []
    owner = np.repeat(np.arange(n), [len(b) for b in beams])
    flat = [program for problem in beams for program in problem]
    values = execute_batch(flat, numbers, owner)
    width = max(1, max(len(b) for b in beams))
    grid = np.full((n, width), np.nan)
    slot = np.concatenate([np.arange(len(b)) for b in beams]) if flat else np.zeros(0, int)
    grid[owner, slot] = values
    options, _ = _padded([[_choice_value(x) for x in c] for c in choices])
    hits = np.abs(grid[:, :, None] - options[:, None, :]) < tolerance  # NaN compares False
    reached = hits.any(axis=2)
    first = reached.argmax(axis=1)
    picked = hits[np.arange(n), first].argmax(axis=1)
    return [int(p) if r else None for p, r in zip(picked, reached.any(axis=1), strict=True)]


def program_arity_ok(tokens: Sequence[str]) -> bool:
    """Whether `tokens` is well formed (known operators, each with its arity's operands, V_i referring to
    an earlier step), without numbers: a cheap check for constrained decoding and for data readers."""
    try:
        _parse(tokens)
    except DataError:
        return False
    return True


def _choice_value(choice: float | str) -> float:
    try:
        return float(choice)
    except (TypeError, ValueError):
        raise DataError(f"choice {choice!r} is not a number") from None


def choose_answer(
    programs: Sequence[Sequence[str]],
    numbers: Sequence[float],
    choices: Sequence[float | str],
    tolerance: float = ANSWER_TOLERANCE,
) -> int | None:
    """The index of the choice reached by the first of `programs` (beams, best first) that executes to
    within `tolerance` of one of `choices`; None when none does. A beam that doesn't execute (a DataError)
    is passed over, as GeoQA's test loop passes over beams without a result."""
    values = [_choice_value(c) for c in choices]
    for program in programs:
        try:
            result = execute_program(program, numbers)
        except DataError:
            continue
        for index, value in enumerate(values):
            if abs(result - value) < tolerance:
                return index
    return None


def format_trace(tokens: Sequence[str], numbers: Sequence[float]) -> str:
    """The program and its step-by-step execution as text (what `vlzoo-geometry solve` prints)."""
    lines = [f"program: {' '.join(tokens)}"]
    lines += [f"  N_{i} = {v:g}" for i, v in enumerate(numbers)]
    lines += [f"  {step}" for step in trace_program(tokens, numbers)]
    return "\n".join(lines)
