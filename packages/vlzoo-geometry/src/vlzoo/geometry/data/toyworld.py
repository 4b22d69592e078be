"""geo-toyworld: seeded textbook geometry problems with real PNG diagrams, solution programs and choices.

Why it exists: GeoX's stages (diagram MAE, formal-language LM, diagram ↔ formal alignment, instruction
tuning to programs) and their tests need problems that ship with the code, go through the real file
formats (PNG diagrams, GeoQA-style JSON, GeoX's formal annotations) and that a tiny model can learn on a
CPU. Five figure families, drawn to scale like textbook figures (labelled points, right-angle squares, tick
marks for equal sides, angle arcs, values written beside sides and angles), randomly rotated and mirrored,
their point names drawn at random:
- `right_triangle`: Pythagoras (`gougu_add` / `gougu_minus`) and trigonometry (`g_sin`, `g_cos`, `g_tan`,
  `g_asin` / `g_acos` through `g_divide`);
- `triangle`: angle sums, isosceles triangles (tick marks), a segment parallel to a side (`g_bili`);
- `circle`: central and inscribed angles, Thales, area and circumference, tangents, chords, a cone's
  lateral area (`cal_cone`);
- `parallel`: two parallel lines and a transversal, angles marked 1 and 2 (equal or supplementary);
- `quadrilateral`: rectangle diagonal / perimeter / area, parallelogram angles, rhombus side from the
  diagonals.
Together they use all 18 GeoQA operators. Every answer is measured on the constructed figure (a length
between its points, an angle between its rays, an area from its radius) and the generator checks that
the solution program executes to it, so programs and figures can't drift apart.

Three kinds of question. A share `structure_fraction` (default 35%) are structure questions, in one
wording over every family: "As shown in the figure, ∠1 = 40°. Find ∠2." The value is in the text; which
two angles the figure marks 1 and 2 (a right triangle's acute angles, an isosceles triangle's base and apex,
an inscribed and the central angle on one arc, equal angles at parallels, a parallelogram's adjacent angles)
decides the program, as in GeoQA's many "如图，∠1 = 40°，则∠2 =" problems. Text alone can't do better than
guessing one of five programs; a solver that sees the figure's coarse structure gets them all. The rest, in
the proportion `diagram_fraction` (default one half):
- text questions state their values ("In right triangle ABC, ∠C is a right angle, AC = 6, BC = 8. Find
  AB."); the figure shows the marks only;
- diagram questions (`needs_diagram`) hold no value: "As shown in the figure, find AB." The values are
  written on the figure only, and which program applies (is AB the hypotenuse or a leg? is ∠2 equal or
  supplementary to ∠1?) is only visible there. `numbers` are then the figure's values in the order the
  formal description states them (what a diagram parser reads); for text questions, in text order (as
  GeoQA's numbers are). A parallel-lines question needs the figure either way (which angle ∠2 is, only
  the figure shows), so about 60% of the problems need it. A text-only solver (the most frequent program
  per question wording) gets about half of those right, and all the text questions. With the structure
  questions, about three quarters of the problems need the figure.

The four choices are the answer, the values of the programs a solver that misreads the figure would run,
and nearby values; the answer's position is uniform.

**The sample dict** (every geometry reader yields it, through `vlzoo.geometry.data.geoqa.GeoProblemSet`):
    image          PIL.Image, RGB: the diagram
    id             str
    path           str: the diagram's file
    question       str: the problem text
    choices        list[str]: the four choices as printed ("5", "4√3", "70°")
    choice_values  list[float]: their values (GeoQA's `choice_nums`)
    answer         int: index of the right choice (GeoQA's `label`)
    program        list[str]: the solution program, GeoQA prefix tokens ("g_minus C_3 N_0 g_half V_0")
    numbers        list[float]: the problem's numbers N_0, N_1, ...
    formal         str: the diagram's formal description ("Triangle(A,B,C); ..."; "" if the source has none)
    problem_type   str: "angle" | "length" | "other" (UniGeo's calculation sub-types)
    text           str: the field the core's collator tokenizes, chosen by the data option `text_field`
                   ("formal" by default: diagram ↔ formal pairs for alignment; or "question", "program")
    needs_diagram  bool: the question can't be answered without the figure (False for benchmarks)

`write_geo_toyworld(root, ...)` writes `root/<split>/<nnnnnn>.png` and
- `root/geo-toyworld.json`: `{"train": [record, ...], "val": [...], "test": [...]}`, records in GeoQA's
  field names (`subject`, `choices`, `choice_nums`, `label`, `manual_program`, `numbers`) plus `formal`,
  `problem_type`, `needs_diagram`, `structure`, `family`, `points` and `labels` (each drawn value's text
  and pixel box);
  data kind `geo-toyworld` (generated dataset `geo-toyworld`: `data: geo-toyworld` in a recipe);
- `root/geoqa/<split>.json`: the same records one list per split (data kind `geoqa`);
- `root/unified_formal_annotations.json`: GeoX's alignment format, `{"image", "caption", "image_id"}`
  (data kind `geo-formal`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlzoo.core.errors import ConfigError
from vlzoo.geometry.program import execute_program

__all__ = [
    "FAMILIES",
    "GEO_TOYWORLD_FILE",
    "Diagram",
    "GeoProblem",
    "format_value",
    "generate_problem",
    "render_diagram",
    "write_geo_toyworld",
]

GEO_TOYWORLD_FILE = "geo-toyworld.json"
FORMAL_FILE = "unified_formal_annotations.json"
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
POINT_NAMES = "ABCDEFGHKLMNPQRST"  # no O (circle centres), no I/J (read as 1)
TRIPLES = ((3, 4, 5), (6, 8, 10), (5, 12, 13), (8, 15, 17), (9, 12, 15), (12, 16, 20), (7, 24, 25))

XY = tuple[float, float]


# ---------------------------------------------------------------------------------------------- figures


@dataclass
class Diagram:
    """What a figure shows, in figure coordinates (y up, any scale): drawn to scale by `render_diagram`."""

    points: dict[str, XY] = field(default_factory=dict)
    segments: list[tuple[str, str]] = field(default_factory=list)
    dashed: list[tuple[str, str]] = field(default_factory=list)
    circles: list[tuple[str, float]] = field(default_factory=list)  # (centre point, radius)
    ellipses: list[tuple[str, float, float]] = field(default_factory=list)  # (centre, rx, ry): a cone's base
    right_angles: list[tuple[str, str, str]] = field(default_factory=list)  # (A, vertex, B)
    ticks: list[tuple[str, str, int]] = field(default_factory=list)  # equal sides: (A, B, number of ticks)
    arcs: list[tuple[str, str, str]] = field(default_factory=list)  # marked angles (A, vertex, B)
    side_values: list[tuple[str, str, str]] = field(default_factory=list)  # (A, B, text) beside a side
    angle_values: list[tuple[str, str, str, str]] = field(default_factory=list)  # (A, V, B, text) in an angle
    formal: list[str] = field(default_factory=list)

    def seg(self, *pairs: str, dashed: bool = False) -> None:
        (self.dashed if dashed else self.segments).extend((p[0], p[1]) for p in pairs)

    def transformed(self, angle: float, mirror: bool) -> Diagram:
        """The same figure rotated by `angle` (radians) after an optional mirror: distances and angles keep."""
        c, s = math.cos(angle), math.sin(angle)
        sign = -1.0 if mirror else 1.0
        moved = {k: (c * sign * x - s * y, s * sign * x + c * y) for k, (x, y) in self.points.items()}
        return replace(self, points=moved)


@dataclass
class GeoProblem:
    """One generated problem: its figure, question, solution program and measured answer."""

    family: str
    diagram: Diagram
    question: str
    program: list[str]
    numbers: list[float]
    answer_value: float
    problem_type: str
    needs_diagram: bool
    distractors: list[float]
    unit: str = ""  # "°" for angles
    structure: bool = False  # the question text is shared by figures whose programs differ

    @property
    def formal(self) -> str:
        return "; ".join(self.diagram.formal)


def _dist(p: XY, q: XY) -> float:
    return math.hypot(p[0] - q[0], p[1] - q[1])


def _angle_at(points: dict[str, XY], a: str, v: str, b: str) -> float:
    """∠avb in degrees, measured on the figure."""
    (ax, ay), (vx, vy), (bx, by) = points[a], points[v], points[b]
    u, w = (ax - vx, ay - vy), (bx - vx, by - vy)
    cos = (u[0] * w[0] + u[1] * w[1]) / (math.hypot(*u) * math.hypot(*w))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def _names(rng: np.random.Generator, n: int) -> list[str]:
    return [str(c) for c in rng.choice(list(POINT_NAMES), n, replace=False)]


def format_value(value: float, unit: str = "") -> str:
    """A value as a textbook prints it: 5, 2.5, 4√3, 6π, 70°."""
    if unit == "°":
        return f"{value:g}°" if abs(value - round(value, 1)) < 1e-6 else f"{value:.1f}°"
    for root in (2, 3):
        k = value / math.sqrt(root)
        if abs(k - round(k)) < 1e-6 and abs(value - round(value)) > 1e-6:
            return f"{round(k)}√{root}" if round(k) != 1 else f"√{root}"
    k = value / math.pi
    if abs(k - round(k, 2)) < 1e-6 and abs(value - round(value)) > 1e-6:
        return f"{round(k, 2):g}π"
    return f"{value:g}" if abs(value - round(value, 2)) < 1e-9 else f"{value:.2f}"


def _side(d: Diagram, a: str, b: str, value: float, shown: bool) -> str:
    """`a b` as a name; adds its value to the figure and the formal description when `shown`."""
    if shown:
        d.side_values.append((a, b, format_value(value)))
        d.formal.append(f"Equals(LengthOf(Line({a},{b})),{value:g})")
    return a + b


def _angle_value(d: Diagram, a: str, v: str, b: str, value: float, shown: bool) -> None:
    d.arcs.append((a, v, b))
    if shown:
        d.angle_values.append((a, v, b, format_value(value, "°")))
        d.formal.append(f"Equals(MeasureOf(Angle({a},{v},{b})),{value:g})")


# -------------------------------------------------------------------------------------- the families
# Each family builds one figure and one question; `shown` says whether the values are on the figure
# (a diagram question) or in the text. Programs follow GeoQA's conventions, answers are measured.


def _right_triangle(rng: np.random.Generator, shown: bool) -> GeoProblem:
    a_, b_, c_ = _names(rng, 3)  # the right angle at c_
    d = Diagram()
    variant = rng.integers(3) if not shown else rng.integers(2)
    if variant == 0:  # Pythagoras: two sides given, the third asked
        p, q, h = TRIPLES[rng.integers(len(TRIPLES))]
        if rng.random() < 0.5:
            p, q = q, p
        d.points = {c_: (0.0, 0.0), a_: (float(p), 0.0), b_: (0.0, float(q))}
    else:  # trigonometry: an angle of 30/45/60 at a_ and one side
        angle = float(rng.choice([30, 45, 60]))
        h = float(rng.choice([4, 6, 8, 10, 12]))
        d.points = {c_: (0.0, 0.0), a_: (h * math.cos(math.radians(angle)), 0.0)}
        d.points[b_] = (0.0, h * math.sin(math.radians(angle)))
    d.seg(a_ + b_, b_ + c_, c_ + a_)
    d.right_angles.append((a_, c_, b_))
    d.formal += [f"Triangle({a_},{b_},{c_})", f"Perpendicular(Line({a_},{c_}),Line({b_},{c_}))"]
    pts = d.points
    legs = {a_ + c_: _dist(pts[a_], pts[c_]), b_ + c_: _dist(pts[b_], pts[c_])}
    hyp = _dist(pts[a_], pts[b_])
    intro = f"In right triangle {a_}{b_}{c_}, ∠{c_} is a right angle"
    if variant == 0:
        ask = str(rng.choice([a_ + b_, a_ + c_, b_ + c_]))
        given = [(n, v) for n, v in [(a_ + b_, hyp), *legs.items()] if n != ask]
        numbers = [round(v) for _, v in given]
        for name, value in given:
            _side(d, name[0], name[1], value, shown)
        program = ["gougu_add", "N_0", "N_1"] if ask == a_ + b_ else ["gougu_minus", "N_0", "N_1"]
        answer = hyp if ask == a_ + b_ else legs[ask]
        wrong = [math.hypot(*numbers), math.sqrt(abs(numbers[0] ** 2 - numbers[1] ** 2)), sum(numbers)]
        text = ", ".join(f"{n} = {v:g}" for n, v in zip((g[0] for g in given), numbers, strict=True))
        return _problem(
            "right_triangle", d, intro, text, ask, program, numbers, answer, "length", shown, wrong
        )
    if variant == 1 and shown:  # angle and hypotenuse on the figure: BC is opposite or adjacent?
        ask = str(rng.choice([b_ + c_, a_ + c_]))
        _angle_value(d, b_, a_, c_, angle, True)
        _side(d, a_, b_, h, True)
        numbers = [angle, h]
        op = "g_sin" if ask == b_ + c_ else "g_cos"
        program = [op, "N_0", "g_mul", "N_1", "V_0"]
        wrong = [h * math.sin(math.radians(angle)), h * math.cos(math.radians(angle)), h * 0.5]
        return _problem(
            "right_triangle", d, intro, "", ask, program, numbers, legs[ask], "length", shown, wrong
        )
    kind = rng.integers(4)
    if kind == 0:  # sin / cos: an angle and the hypotenuse
        ask = str(rng.choice([b_ + c_, a_ + c_]))
        op = "g_sin" if ask == b_ + c_ else "g_cos"
        numbers = [angle, h]
        text = f"∠{a_} = {angle:g}°, {a_}{b_} = {h:g}"
        program, answer, ptype = [op, "N_0", "g_mul", "N_1", "V_0"], legs[ask], "length"
        wrong = [h * math.sin(math.radians(angle)), h * math.cos(math.radians(angle)), h / 2]
    elif kind == 1:  # tan: an angle and the adjacent leg (a whole length)
        adjacent = float(rng.choice([2, 3, 4, 5, 6]))
        d.points = {c_: (0.0, 0.0), a_: (adjacent, 0.0), b_: (0.0, adjacent * math.tan(math.radians(angle)))}
        ask, numbers = b_ + c_, [angle, adjacent]
        text = f"∠{a_} = {angle:g}°, {a_}{c_} = {adjacent:g}"
        program, ptype = ["g_tan", "N_0", "g_mul", "N_1", "V_0"], "length"
        answer = _dist(d.points[b_], d.points[c_])
        wrong = [adjacent / math.tan(math.radians(angle)), adjacent * 2, _dist(d.points[a_], d.points[b_])]
    else:  # asin / acos: two sides, the angle asked (only 30° / 60° have whole sides)
        hyp_len = float(rng.choice([4, 6, 8, 10]))
        angle = 30.0
        d.points = {c_: (0.0, 0.0), a_: (hyp_len * math.cos(math.radians(angle)), 0.0)}
        d.points[b_] = (0.0, hyp_len / 2)
        opposite = kind == 2
        numbers = [hyp_len / 2, hyp_len]
        text = f"{b_ + c_ if opposite else a_ + c_} = {hyp_len / 2:g}, {a_}{b_} = {hyp_len:g}"
        if not opposite:  # cos A = AC / AB with AC the short leg: A is the 60° angle
            d.points = {
                c_: (0.0, 0.0),
                a_: (hyp_len / 2, 0.0),
                b_: (0.0, hyp_len * math.sin(math.radians(60))),
            }
        program = ["g_divide", "N_0", "N_1", "g_asin" if opposite else "g_acos", "V_0"]
        answer = _angle_at(d.points, b_, a_, c_)
        ask, ptype, wrong = f"∠{a_}", "angle", [30.0, 60.0, 45.0, 90.0 - answer]
        d.arcs.append((b_, a_, c_))
    return _problem("right_triangle", d, intro, text, ask, program, numbers, answer, ptype, shown, wrong)


def _triangle_points(d: Diagram, names: tuple[str, str, str], beta: float, gamma: float) -> None:
    """Triangle a b c with ∠b = beta, ∠c = gamma, bc = 10 (law of sines)."""
    a_, b_, c_ = names
    t = 10.0 * math.sin(math.radians(gamma)) / math.sin(math.radians(beta + gamma))
    d.points = {b_: (0.0, 0.0), c_: (10.0, 0.0)}
    d.points[a_] = (t * math.cos(math.radians(beta)), t * math.sin(math.radians(beta)))
    d.seg(a_ + b_, b_ + c_, c_ + a_)
    d.formal.append(f"Triangle({a_},{b_},{c_})")


def _triangle(rng: np.random.Generator, shown: bool) -> GeoProblem:
    a_, b_, c_ = _names(rng, 3)
    d = Diagram()
    variant = rng.integers(4)
    intro = f"In triangle {a_}{b_}{c_}"
    if variant == 0:  # two angles given, the third asked
        beta, gamma = (float(v) for v in rng.choice(np.arange(30, 95, 5), 2, replace=False))
        _triangle_points(d, (a_, b_, c_), beta, gamma)
        given = [(b_, a_, c_, beta), (a_, c_, b_, gamma)]
        for p, v, q, value in given:
            _angle_value(d, p, v, q, value, shown)
        numbers = [beta, gamma]
        text = f"∠{b_} = {beta:g}°, ∠{c_} = {gamma:g}°"
        answer = _angle_at(d.points, b_, a_, c_)
        wrong = [(180 - beta) / 2, abs(beta - gamma), 180 - beta]
        program = ["g_add", "N_0", "N_1", "g_minus", "C_3", "V_0"]
        return _problem("triangle", d, intro, text, f"∠{a_}", program, numbers, answer, "angle", shown, wrong)
    if variant in (1, 2):  # isosceles (tick marks): apex angle given → base angle, or the reverse
        base = float(rng.choice(np.arange(35, 80, 5)))
        _triangle_points(d, (a_, b_, c_), base, base)
        d.ticks += [(a_, b_, 1), (a_, c_, 1)]
        d.formal.append(f"Equals(LengthOf(Line({a_},{b_})),LengthOf(Line({a_},{c_})))")
        apex = 180.0 - 2 * base
        intro += f", {a_}{b_} = {a_}{c_}"
        if variant == 1:
            _angle_value(d, b_, a_, c_, apex, shown)
            numbers, text, ask = [apex], f"∠{a_} = {apex:g}°", f"∠{b_}"
            answer = _angle_at(d.points, a_, b_, c_)
            program = ["g_minus", "C_3", "N_0", "g_half", "V_0"]
            wrong = [180 - apex, apex, 90 - apex / 2 + 10]
        else:
            _angle_value(d, a_, b_, c_, base, shown)
            numbers, text, ask = [base], f"∠{b_} = {base:g}°", f"∠{a_}"
            answer = _angle_at(d.points, b_, a_, c_)
            program = ["g_double", "N_0", "g_minus", "C_3", "V_0"]
            wrong = [(180 - base) / 2, 180 - base, base]
        return _problem("triangle", d, intro, text, ask, program, numbers, answer, "angle", shown, wrong)
    # a segment d e parallel to the base: ad / ab = de / bc
    beta, gamma = (float(v) for v in rng.choice(np.arange(45, 80, 5), 2, replace=False))
    _triangle_points(d, (a_, b_, c_), beta, gamma)
    d_, e_ = [n for n in _names(rng, 8) if n not in (a_, b_, c_)][:2]
    k = int(rng.choice([2, 3, 4]))
    ad = float(rng.choice([1, 2, 3]))
    ab = ad * k
    bc = float(k * rng.choice([2, 3, 4, 5]))
    # rescale the figure so that the sides are the problem's: ab and bc as given (the shape is kept apart
    # from ab / bc's own ratio, so set the triangle by its sides: b at 0, c at bc, a at ab along beta)
    d.points = {b_: (0.0, 0.0), c_: (bc, 0.0)}
    d.points[a_] = (ab * math.cos(math.radians(beta)), ab * math.sin(math.radians(beta)))
    t = ad / ab
    pa, pb, pc = d.points[a_], d.points[b_], d.points[c_]
    d.points[d_] = (pa[0] + t * (pb[0] - pa[0]), pa[1] + t * (pb[1] - pa[1]))
    d.points[e_] = (pa[0] + t * (pc[0] - pa[0]), pa[1] + t * (pc[1] - pa[1]))
    d.seg(d_ + e_)
    d.formal += [
        f"PointLiesOnLine({d_},Line({a_},{b_}))",
        f"PointLiesOnLine({e_},Line({a_},{c_}))",
        f"Parallel(Line({d_},{e_}),Line({b_},{c_}))",
    ]
    intro += f", {d_}{e_} ∥ {b_}{c_}"
    _side(d, a_, d_, ad, shown)
    _side(d, a_, b_, ab, shown)
    _side(d, b_, c_, bc, shown)
    numbers = [ad, ab, bc]
    text = f"{a_}{d_} = {ad:g}, {a_}{b_} = {ab:g}, {b_}{c_} = {bc:g}"
    answer = _dist(d.points[d_], d.points[e_])
    wrong = [ab / ad * bc, bc - ad, bc / 2 if k != 2 else bc / 3]
    program = ["g_bili", "N_0", "N_1", "N_2"]
    return _problem("triangle", d, intro, text, d_ + e_, program, numbers, answer, "length", shown, wrong)


def _on_circle(d: Diagram, name: str, centre: str, r: float, degrees: float) -> None:
    cx, cy = d.points[centre]
    d.points[name] = (cx + r * math.cos(math.radians(degrees)), cy + r * math.sin(math.radians(degrees)))
    d.formal.append(f"PointLiesOnCircle({name},Circle({centre}))")


def _circle(rng: np.random.Generator, shown: bool) -> GeoProblem:
    a_, b_, c_ = _names(rng, 3)
    d = Diagram(points={"O": (0.0, 0.0)})
    variant = rng.integers(7)
    intro = "In ⊙O"
    if variant in (0, 1, 2):  # central / inscribed / Thales
        r = 5.0
        d.circles.append(("O", r))
        d.formal.append("Circle(O)")
        if variant == 2:  # a b a diameter: the angle in a semicircle is right
            x = float(rng.choice(np.arange(25, 70, 5)))
            _on_circle(d, a_, "O", r, 180.0)
            _on_circle(d, b_, "O", r, 0.0)
            _on_circle(d, c_, "O", r, 2 * x)  # central ∠c o b = 2x, so inscribed ∠c a b = x
            d.seg(a_ + b_, a_ + c_, b_ + c_)
            d.formal.append(f"PointLiesOnLine(O,Line({a_},{b_}))")
            d.right_angles.append((a_, c_, b_))
            _angle_value(d, c_, a_, b_, x, shown)
            intro += f", {a_}{b_} is a diameter"
            numbers, text, ask = [x], f"∠{c_}{a_}{b_} = {x:g}°", f"∠{a_}{b_}{c_}"
            answer = _angle_at(d.points, a_, b_, c_)
            program, wrong = ["g_minus", "C_2", "N_0"], [x, 2 * x, 180 - x]
            return _problem("circle", d, intro, text, ask, program, numbers, answer, "angle", shown, wrong)
        central = float(rng.choice(np.arange(40, 170, 10)))
        start = float(rng.uniform(200, 250))
        _on_circle(d, a_, "O", r, start)
        _on_circle(d, b_, "O", r, start + central)
        _on_circle(d, c_, "O", r, start + central + (360 - central) * rng.uniform(0.35, 0.65))
        d.seg(a_ + c_, b_ + c_, "O" + a_, "O" + b_)
        if variant == 0:
            _angle_value(d, a_, "O", b_, central, shown)
            numbers, text, ask = [central], f"∠{a_}O{b_} = {central:g}°", f"∠{a_}{c_}{b_}"
            answer = _angle_at(d.points, a_, c_, b_)
            program, wrong = ["g_half", "N_0"], [central * 2 % 360 or 90, central, 180 - central]
        else:
            _angle_value(d, a_, c_, b_, central / 2, shown)
            numbers, text, ask = [central / 2], f"∠{a_}{c_}{b_} = {central / 2:g}°", f"∠{a_}O{b_}"
            answer = _angle_at(d.points, a_, "O", b_)
            program, wrong = ["g_double", "N_0"], [central / 4, central / 2, 180 - central / 2]
        return _problem("circle", d, intro, text, ask, program, numbers, answer, "angle", shown, wrong)
    if variant == 3:  # area or circumference from the radius
        r = float(rng.choice([2, 3, 4, 5, 6]))
        d.circles.append(("O", r))
        d.formal.append("Circle(O)")
        _on_circle(d, a_, "O", r, float(rng.uniform(0, 360)))
        d.seg("O" + a_)
        _side(d, "O", a_, r, shown)
        numbers, text = [r], f"the radius O{a_} = {r:g}"
        if rng.random() < 0.5:
            program, answer, ask, ptype = (
                ["cal_circle_area", "N_0"],
                math.pi * r * r,
                "the area of ⊙O",
                "other",
            )
        else:
            program, answer, ptype = ["cal_circle_perimeter", "N_0"], 2 * math.pi * r, "length"
            ask = "the circumference of ⊙O"
        wrong = [math.pi * r * r, 2 * math.pi * r, math.pi * r, 4 * math.pi * r * r]
        return _problem("circle", d, intro, text, ask, program, numbers, answer, ptype, shown, wrong)
    if variant in (4, 5):  # tangent p a: o a ⊥ p a / a chord and its distance from the centre
        leg, dist_, hyp = TRIPLES[rng.integers(4)]
        if variant == 4:
            r, op = float(leg), float(hyp)
            d.circles.append(("O", r))
            d.formal.append("Circle(O)")
            theta = float(rng.uniform(0, 360))
            _on_circle(d, a_, "O", r, theta)
            towards = math.radians(theta) + math.acos(r / op)  # ∠a o b: o a ⊥ a b
            d.points[b_] = (op * math.cos(towards), op * math.sin(towards))
            d.seg("O" + a_, "O" + b_, a_ + b_)
            d.right_angles.append(("O", a_, b_))
            d.formal.append(f"Tangent(Line({b_},{a_}),Circle(O))")
            intro += f", {b_}{a_} is tangent to ⊙O at {a_}"
            _side(d, "O", b_, op, shown)
            _side(d, "O", a_, r, shown)
            numbers, text, ask = [op, r], f"O{b_} = {op:g}, O{a_} = {r:g}", a_ + b_
            answer = _dist(d.points[a_], d.points[b_])
            wrong = [math.hypot(op, r), op - r, (op + r) / 2]
            program = ["gougu_minus", "N_0", "N_1"]
            return _problem("circle", d, intro, text, ask, program, numbers, answer, "length", shown, wrong)
        r, m = float(hyp), float(dist_)
        d.circles.append(("O", r))
        d.formal.append("Circle(O)")
        half = math.degrees(math.acos(m / r))
        mid = float(rng.uniform(0, 360))
        _on_circle(d, a_, "O", r, mid - half)
        _on_circle(d, b_, "O", r, mid + half)
        d.points[c_] = (m * math.cos(math.radians(mid)), m * math.sin(math.radians(mid)))
        d.seg(a_ + b_, "O" + a_)
        d.seg("O" + c_, dashed=True)
        d.right_angles.append(("O", c_, b_))
        d.formal += [f"PointLiesOnLine({c_},Line({a_},{b_}))", f"Perpendicular(Line(O,{c_}),Line({a_},{b_}))"]
        _side(d, "O", a_, r, shown)
        _side(d, "O", c_, m, shown)
        intro += f", O{c_} ⊥ {a_}{b_} at {c_}"
        numbers, text, ask = [r, m], f"the radius is {r:g}, O{c_} = {m:g}", a_ + b_
        answer = _dist(d.points[a_], d.points[b_])
        wrong = [math.sqrt(r * r - m * m), 2 * (r - m), math.hypot(r, m)]
        program = ["gougu_minus", "N_0", "N_1", "g_double", "V_0"]
        return _problem("circle", d, intro, text, ask, program, numbers, answer, "length", shown, wrong)
    # a cone: base radius r, slant height l → lateral area π r l
    r, slant = float(rng.choice([2, 3, 4])), float(rng.choice([5, 6, 8, 10]))
    height = math.sqrt(slant * slant - r * r)
    d.points = {"O": (0.0, 0.0), a_: (-r, 0.0), b_: (r, 0.0), c_: (0.0, height)}
    d.ellipses.append(("O", r, r * 0.3))
    d.seg(c_ + a_, c_ + b_)
    d.seg("O" + b_, "O" + c_, dashed=True)
    d.right_angles.append((c_, "O", b_))
    d.formal += [f"Cone({c_},Circle(O))", f"Equals(LengthOf(Line(O,{b_})),RadiusOf(Circle(O)))"]
    _side(d, "O", b_, r, shown)
    _side(d, c_, a_, slant, shown)
    intro = f"A cone with apex {c_} stands on the circle ⊙O"
    numbers, text, ask = (
        [r, slant],
        f"the base radius O{b_} = {r:g}, the slant height {c_}{a_} = {slant:g}",
        "",
    )
    answer = math.pi * r * _dist(d.points[c_], d.points[a_])
    wrong = [math.pi * r * r, 2 * math.pi * r * slant, math.pi * r * r + math.pi * r * slant]
    program = ["cal_cone", "N_0", "N_1"]
    return _problem(
        "circle",
        d,
        intro,
        text,
        "the lateral area of the cone",
        program,
        numbers,
        answer,
        "other",
        shown,
        wrong,
    )


# The four angles at a crossing of the transversal with a parallel: (ray, ray), measured φ or 180 - φ.
_SLOTS = {"up-right": True, "up-left": False, "down-left": True, "down-right": False}  # True: measures φ


def _parallel_lines(
    d: Diagram, names: tuple[str, ...], phi: float, hx: float, crossings: bool
) -> dict[str, dict[str, str]]:
    """Draw parallels AB (y = 6) and CD (y = 0) cut by the transversal EF at G and H (H at x = `hx`, EF at `phi`
    degrees), with their formal description (`crossings`: also G on AB and H on CD); returns, for G and H,
    the point each way (up/down/left/right) along the lines, which names the four angles at each crossing."""
    a_, b_, c_, d_, e_, f_, g_, h_ = names
    top, bottom = 6.0, 0.0
    gx = hx + (top - bottom) / math.tan(math.radians(phi))
    ux, uy = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    d.points = {
        a_: (min(gx, hx) - 4, top), b_: (max(gx, hx) + 4, top), g_: (gx, top),
        c_: (min(gx, hx) - 4, bottom), d_: (max(gx, hx) + 4, bottom), h_: (hx, bottom),
        e_: (gx + 3 * ux, top + 3 * uy), f_: (hx - 3 * ux, bottom - 3 * uy),
    }  # fmt: skip
    d.seg(a_ + b_, c_ + d_, e_ + f_)
    on_parallels = [f"PointLiesOnLine({g_},Line({a_},{b_}))", f"PointLiesOnLine({h_},Line({c_},{d_}))"]
    d.formal += [
        f"Parallel(Line({a_},{b_}),Line({c_},{d_}))",
        *(on_parallels if crossings else []),
        f"PointLiesOnLine({g_},Line({e_},{f_}))",
        f"PointLiesOnLine({h_},Line({e_},{f_}))",
    ]
    return {
        g_: {"up": e_, "down": h_, "left": a_, "right": b_},
        h_: {"up": g_, "down": f_, "left": c_, "right": d_},
    }


def _parallel(rng: np.random.Generator, shown: bool) -> GeoProblem:
    a_, b_, c_, d_, e_, f_, g_, h_ = _names(rng, 8)
    phi = float(rng.choice([v for v in range(35, 150, 5) if v != 90]))
    d = Diagram()
    rays = _parallel_lines(d, (a_, b_, c_, d_, e_, f_, g_, h_), phi, float(rng.uniform(3, 5)), crossings=True)
    marks = []
    for label in ("1", "2"):  # on a diagram question ∠1 shows its value instead of its name
        while True:
            vertex = g_ if rng.random() < 0.5 else h_
            slot = str(rng.choice(list(_SLOTS)))
            if (vertex, slot) not in [(m[0], m[1]) for m in marks]:
                break
        vertical, horizontal = slot.split("-")
        p, q = rays[vertex][vertical], rays[vertex][horizontal]
        marks.append((vertex, slot, p, q))
        d.arcs.append((p, vertex, q))
        value = float(round(_angle_at(d.points, p, vertex, q)))
        if shown and label == "1":
            d.angle_values.append((p, vertex, q, format_value(value, "°")))
            d.formal.append(f"Equals(MeasureOf(Angle({p},{vertex},{q})),{value:g})")
        else:
            d.angle_values.append((p, vertex, q, label))
            d.formal.append(f"Equals(MeasureOf(Angle({p},{vertex},{q})),MeasureOf(Angle({label})))")
    one, two = marks
    value = float(round(_angle_at(d.points, one[2], one[0], one[3])))
    equal = _SLOTS[one[1]] == _SLOTS[two[1]]
    program = ["g_equal", "N_0"] if equal else ["g_minus", "C_3", "N_0"]
    answer = _angle_at(d.points, two[2], two[0], two[3])
    intro = f"{a_}{b_} ∥ {c_}{d_}, the line {e_}{f_} crosses them at {g_} and {h_}"
    wrong = [180 - value if equal else value, 90 - value / 2 if value < 90 else value - 90, abs(90 - value)]
    # ∠2 equal to ∠1 or its supplement: only the figure tells, whether ∠1's value is in the text or on it
    given = f"∠1 = {value:g}°"
    return _problem("parallel", d, intro, given, "∠2", program, [value], answer, "angle", shown, wrong, True)


def _quadrilateral(rng: np.random.Generator, shown: bool) -> GeoProblem:
    a_, b_, c_, d_ = _names(rng, 4)
    d = Diagram()
    variant = rng.integers(5)
    if variant <= 2:  # rectangle: diagonal, perimeter, area
        p, q, h = TRIPLES[rng.integers(len(TRIPLES))]
        d.points = {a_: (0.0, float(q)), b_: (0.0, 0.0), c_: (float(p), 0.0), d_: (float(p), float(q))}
        d.seg(a_ + b_, b_ + c_, c_ + d_, d_ + a_)
        d.right_angles += [(a_, b_, c_), (b_, c_, d_), (c_, d_, a_), (d_, a_, b_)]
        d.formal.append(f"Rectangle({a_},{b_},{c_},{d_})")
        _side(d, a_, b_, q, shown)
        _side(d, b_, c_, p, shown)
        numbers, text = [float(q), float(p)], f"{a_}{b_} = {q}, {b_}{c_} = {p}"
        intro = f"In rectangle {a_}{b_}{c_}{d_}"
        if variant == 0:
            d.seg(a_ + c_)
            program, answer, ask, ptype = (
                ["gougu_add", "N_0", "N_1"],
                _dist(d.points[a_], d.points[c_]),
                a_ + c_,
                "length",
            )
        elif variant == 1:
            program, ptype = ["g_add", "N_0", "N_1", "g_double", "V_0"], "length"
            answer = sum(_dist(d.points[x], d.points[y]) for x, y in d.segments)
            ask = f"the perimeter of {a_}{b_}{c_}{d_}"
        else:
            program, ptype = ["g_mul", "N_0", "N_1"], "other"
            answer = _dist(d.points[a_], d.points[b_]) * _dist(d.points[b_], d.points[c_])
            ask = f"the area of {a_}{b_}{c_}{d_}"
        wrong = [float(p * q), float(2 * (p + q)), float(h), float(p + q)]
        return _problem("quadrilateral", d, intro, text, ask, program, numbers, answer, ptype, shown, wrong)
    if variant == 3:  # parallelogram: the adjacent angle is supplementary, the opposite one equal
        x = float(rng.choice([v for v in range(40, 145, 5) if v != 90]))
        w, s = 8.0, 5.0
        d.points = {b_: (0.0, 0.0), c_: (w, 0.0)}
        d.points[a_] = (
            s * math.cos(math.radians(180 - x)),
            s * math.sin(math.radians(180 - x)),
        )  # ∠d a b = x
        d.points[d_] = (d.points[a_][0] + w, d.points[a_][1])
        d.seg(a_ + b_, b_ + c_, c_ + d_, d_ + a_)
        d.formal.append(f"Parallelogram({a_},{b_},{c_},{d_})")
        _angle_value(d, d_, a_, b_, x, shown)
        ask_vertex = str(rng.choice([b_, c_, d_]))
        ring = [a_, b_, c_, d_, a_, b_]
        i = ring.index(ask_vertex, 1)
        answer = _angle_at(d.points, ring[i - 1], ask_vertex, ring[i + 1])
        program = ["g_equal", "N_0"] if ask_vertex == c_ else ["g_minus", "C_3", "N_0"]
        wrong = [x, 180 - x, 90 - x / 2 if x < 90 else x - 90]
        intro = f"In parallelogram {a_}{b_}{c_}{d_}"
        return _problem(
            "quadrilateral",
            d,
            intro,
            f"∠{a_} = {x:g}°",
            f"∠{ask_vertex}",
            program,
            [x],
            answer,
            "angle",
            shown,
            wrong,
        )
    # rhombus: its side from the diagonals (they bisect each other at right angles)
    p, q, h = TRIPLES[rng.integers(len(TRIPLES))]
    e_ = next(n for n in _names(rng, 6) if n not in (a_, b_, c_, d_))
    d.points = {
        a_: (-float(p), 0.0),
        c_: (float(p), 0.0),
        b_: (0.0, -float(q)),
        d_: (0.0, float(q)),
        e_: (0.0, 0.0),
    }
    d.seg(a_ + b_, b_ + c_, c_ + d_, d_ + a_)
    d.seg(a_ + c_, b_ + d_, dashed=True)
    d.right_angles.append((c_, e_, d_))
    d.formal += [f"Rhombus({a_},{b_},{c_},{d_})", f"PointLiesOnLine({e_},Line({a_},{c_}))"]
    d.formal.append(f"PointLiesOnLine({e_},Line({b_},{d_}))")
    _side(d, a_, c_, 2 * p, shown)
    _side(d, b_, d_, 2 * q, shown)
    numbers = [float(2 * p), float(2 * q)]
    text = f"the diagonals {a_}{c_} = {2 * p}, {b_}{d_} = {2 * q}"
    answer = _dist(d.points[a_], d.points[b_])
    wrong = [float(2 * h), float(p + q), math.hypot(2 * p, 2 * q) / 4]
    program = ["g_half", "N_0", "g_half", "N_1", "gougu_add", "V_0", "V_1"]
    intro = f"In rhombus {a_}{b_}{c_}{d_}"
    return _problem(
        "quadrilateral", d, intro, text, a_ + b_, program, numbers, answer, "length", shown, wrong
    )


# ----------------------------------------------------------------------------- structure questions
# "As shown in the figure, ∠1 = 40°. Find ∠2." in the same words over every family: which two angles the
# figure marks 1 and 2 (the acute angles of a right triangle, a base and the apex of an isosceles one, an
# inscribed and the central angle on one arc, alternate or corresponding angles at parallels, adjacent
# angles of a parallelogram) decides the program, the value is in the text. GeoQA's "如图，∠1 = 40°，则∠2 ="
# questions are of this kind. The values of ∠1 are shared by all families and none where two families'
# answers coincide (30°, 45°, 60°; below 35° the parallels get too flat to read), so neither the value nor
# the choices tell the family.
PAIR_VALUES = (35, 40, 50, 55, 65, 70)
PAIR_PROGRAMS = {
    "right_triangle": ["g_minus", "C_2", "N_0"],  # the other acute angle: 90 - x
    "triangle": ["g_double", "N_0", "g_minus", "C_3", "V_0"],  # the apex of an isosceles: 180 - 2x
    "circle": ["g_double", "N_0"],  # the central angle on the inscribed one's arc: 2x
    "parallel": ["g_equal", "N_0"],  # alternate or corresponding: x
    "quadrilateral": ["g_minus", "C_3", "N_0"],  # adjacent angles of a parallelogram: 180 - x
}


def _mark(d: Diagram, label: str, a: str, v: str, b: str) -> None:
    """Angle a v b marked with an arc and named `label` on the figure (its value is not drawn)."""
    d.arcs.append((a, v, b))
    d.angle_values.append((a, v, b, label))
    d.formal.append(f"Equals(MeasureOf(Angle({a},{v},{b})),MeasureOf(Angle({label})))")


def _angle_pair(family: str, rng: np.random.Generator) -> GeoProblem:
    """A structure question on a figure of `family` (see above); the answer is measured on the figure."""
    x = float(rng.choice(PAIR_VALUES))
    d = Diagram()
    if family == "right_triangle":
        a_, b_, c_ = _names(rng, 3)
        d.points = {
            c_: (0.0, 0.0),
            a_: (8 * math.cos(math.radians(x)), 0.0),
            b_: (0.0, 8 * math.sin(math.radians(x))),
        }
        d.seg(a_ + b_, b_ + c_, c_ + a_)
        d.right_angles.append((a_, c_, b_))
        d.formal += [f"Triangle({a_},{b_},{c_})", f"Perpendicular(Line({a_},{c_}),Line({b_},{c_}))"]
        one, two = (b_, a_, c_), (a_, b_, c_)
    elif family == "triangle":
        a_, b_, c_ = _names(rng, 3)
        _triangle_points(d, (a_, b_, c_), x, x)
        d.ticks += [(a_, b_, 1), (a_, c_, 1)]
        d.formal.append(f"Equals(LengthOf(Line({a_},{b_})),LengthOf(Line({a_},{c_})))")
        one, two = (a_, b_, c_), (b_, a_, c_)
    elif family == "circle":
        a_, b_, c_ = _names(rng, 3)
        d.points = {"O": (0.0, 0.0)}
        d.circles.append(("O", 5.0))
        d.formal.append("Circle(O)")
        start = float(rng.uniform(200, 250))
        _on_circle(d, a_, "O", 5.0, start)
        _on_circle(d, b_, "O", 5.0, start + 2 * x)
        _on_circle(d, c_, "O", 5.0, start + 2 * x + (360 - 2 * x) * rng.uniform(0.35, 0.65))
        d.seg(a_ + c_, b_ + c_, "O" + a_, "O" + b_)
        one, two = (a_, c_, b_), (a_, "O", b_)
    elif family == "parallel":
        a_, b_, c_, d_, e_, f_, g_, h_ = _names(rng, 8)
        phi = x if rng.random() < 0.5 else 180.0 - x  # the transversal leans either way
        rays = _parallel_lines(d, (a_, b_, c_, d_, e_, f_, g_, h_), phi, 4.0, crossings=False)
        measures_x = [slot for slot, is_phi in _SLOTS.items() if is_phi == (phi == x)]
        s1 = str(rng.choice(measures_x))  # ∠1 at the upper crossing, ∠2 at the lower one: equal angles
        s2 = str(rng.choice(measures_x))
        one = (rays[g_][s1.split("-")[0]], g_, rays[g_][s1.split("-")[1]])
        two = (rays[h_][s2.split("-")[0]], h_, rays[h_][s2.split("-")[1]])
    else:  # parallelogram a b c d: ∠1 at a, ∠2 at the adjacent b
        a_, b_, c_, d_ = _names(rng, 4)
        d.points = {
            b_: (0.0, 0.0),
            c_: (8.0, 0.0),
            a_: (5.0 * math.cos(math.radians(x)), 5.0 * math.sin(math.radians(x))),
        }
        d.points[d_] = (d.points[a_][0] + 8.0, d.points[a_][1])
        d.seg(a_ + b_, b_ + c_, c_ + d_, d_ + a_)
        d.formal.append(f"Parallelogram({a_},{b_},{c_},{d_})")
        one, two = (a_, b_, c_), (b_, a_, d_)
    _mark(d, "1", *one)
    _mark(d, "2", *two)
    measured = float(round(_angle_at(d.points, *one), 6))
    answer = _angle_at(d.points, *two)
    others = [
        execute_program(p, [measured]) for f, p in PAIR_PROGRAMS.items() if f != family
    ]  # what reading another family's figure would give
    wrong = [others[i] for i in rng.permutation(len(others))]
    problem = _problem(
        family, d, "As shown in the figure", f"∠1 = {x:g}°", "∠2", PAIR_PROGRAMS[family], [x], answer,
        "angle", False, wrong, True,
    )  # fmt: skip
    problem.structure = True
    return problem


def _problem(
    family: str,
    d: Diagram,
    intro: str,
    given: str,
    ask: str,
    program: list[str],
    numbers: list[float],
    answer: float,
    problem_type: str,
    shown: bool,
    wrong: list[float],
    needs_diagram: bool | None = None,
) -> GeoProblem:
    asked = f"find {ask}" if ask else "find it"
    question = (
        f"As shown in the figure, {asked}." if shown else f"{intro}, {given}. {asked[0].upper()}{asked[1:]}."
    )
    value = execute_program(program, numbers)
    if abs(value - answer) > 1e-6:  # the program must reproduce what the figure measures
        raise AssertionError(
            f"geo-toyworld {family}: {program} on {numbers} gives {value}, the figure {answer}"
        )
    unit = "°" if problem_type == "angle" else ""
    needs = shown if needs_diagram is None else needs_diagram
    return GeoProblem(
        family, d, question, program, [float(n) for n in numbers], answer, problem_type, needs, wrong, unit
    )


FAMILIES: dict[str, Callable[[np.random.Generator, bool], GeoProblem]] = {
    "right_triangle": _right_triangle,
    "triangle": _triangle,
    "circle": _circle,
    "parallel": _parallel,
    "quadrilateral": _quadrilateral,
}


def generate_problem(
    seed: int, split: str, index: int, diagram_fraction: float = 0.5, structure_fraction: float = 0.35
) -> GeoProblem:
    """Problem `index` of `split`: the family cycles with the index (balanced splits), the rest is drawn
    from a generator seeded by (seed, split, index), so any problem is reproducible on its own. A share
    `structure_fraction` are structure questions (`_angle_pair`), the rest values-in-text or values-on-figure
    questions in the proportion `diagram_fraction`."""
    key = [seed, SPLIT_SEEDS.get(split, 3 + sum(map(ord, split))), index]
    rng = np.random.default_rng(key)
    family = list(FAMILIES)[index % len(FAMILIES)]
    if np.random.default_rng([*key, 7]).random() < structure_fraction:  # own stream: the others keep theirs
        problem = _angle_pair(family, rng)
    else:
        problem = FAMILIES[family](rng, bool(rng.random() < diagram_fraction))
    # the figure's pose on the page: rotated and mirrored at random (cones stay upright)
    if not problem.diagram.ellipses:
        problem.diagram = problem.diagram.transformed(
            float(rng.uniform(0, 2 * math.pi)), bool(rng.random() < 0.5)
        )
    return problem


def make_choices(problem: GeoProblem, rng: np.random.Generator) -> tuple[list[float], int]:
    """Four distinct choices (the answer and distractors; values at least 0.05 apart), answer at random."""
    answer = problem.answer_value
    values = [answer]
    upper = 180.0 if problem.problem_type == "angle" else math.inf
    fillers = [answer * 2, answer / 2, answer + 10 if problem.unit else answer + 2, answer * 1.5, answer + 1]
    for v in [*problem.distractors, *fillers, *(answer + 3 * k for k in range(1, 20))]:
        v = round(v, 9)
        if 0 < v < upper and all(abs(v - w) > 0.05 for w in values):
            values.append(float(v))
        if len(values) == 4:
            break
    order = rng.permutation(4)
    shuffled = [round(values[i], 9) for i in order]  # 4.0, not the figure's 3.9999999999999996
    return shuffled, int(np.flatnonzero(order == 0)[0])


# ------------------------------------------------------------------------------------------- drawing

INK = (20, 20, 20)
MARK = (40, 40, 160)  # marks and values in a second colour, as textbooks print them


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def render_diagram(diagram: Diagram, size: int = 128, supersample: int = 3) -> tuple[Image.Image, list[dict]]:
    """The figure as a white RGB image `size`², drawn at `supersample`× and downsampled (antialiased), plus
    each written value's `{"text", "box": [x0, y0, x1, y1]}` in output pixels."""
    big = size * supersample
    pts = diagram.points
    xs = [p[0] for p in pts.values()] + [pts[c][0] + s * r for c, r in diagram.circles for s in (-1, 1)]
    ys = [p[1] for p in pts.values()] + [pts[c][1] + s * r for c, r in diagram.circles for s in (-1, 1)]
    xs += [pts[c][0] + s * rx for c, rx, _ in diagram.ellipses for s in (-1, 1)]
    ys += [pts[c][1] + s * ry for c, _, ry in diagram.ellipses for s in (-1, 1)]
    margin = 0.16 * big  # room for the labels outside the figure
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9)
    scale = (big - 2 * margin) / span
    ox = margin + ((big - 2 * margin) - (max(xs) - min(xs)) * scale) / 2 - min(xs) * scale
    oy = margin + ((big - 2 * margin) - (max(ys) - min(ys)) * scale) / 2 + max(ys) * scale

    def px(name_or_xy: str | XY) -> np.ndarray:
        x, y = pts[name_or_xy] if isinstance(name_or_xy, str) else name_or_xy
        return np.array([ox + x * scale, oy - y * scale])

    image = Image.new("RGB", (big, big), "white")
    draw = ImageDraw.Draw(image)
    width = max(1, round(1.1 * supersample))
    centroid = np.mean([px(n) for n in pts], axis=0)
    for centre, r in diagram.circles:
        (cx, cy), rr = px(centre), r * scale
        draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], outline=INK, width=width)
    for centre, rx, ry in diagram.ellipses:
        (cx, cy) = px(centre)
        draw.ellipse(
            [cx - rx * scale, cy - ry * scale, cx + rx * scale, cy + ry * scale], outline=INK, width=width
        )
    for a, b in diagram.segments:
        draw.line([tuple(px(a)), tuple(px(b))], fill=INK, width=width)
    for a, b in diagram.dashed:
        p, q = px(a), px(b)
        n = max(2, int(np.linalg.norm(q - p) / (4 * supersample)))
        for i in range(0, n, 2):
            draw.line([tuple(p + (q - p) * i / n), tuple(p + (q - p) * (i + 1) / n)], fill=INK, width=width)
    mark = 0.045 * big
    for a, v, b in diagram.right_angles:
        pv = px(v)
        u = (px(a) - pv) / np.linalg.norm(px(a) - pv) * mark
        w = (px(b) - pv) / np.linalg.norm(px(b) - pv) * mark
        draw.line([tuple(pv + u), tuple(pv + u + w), tuple(pv + w)], fill=MARK, width=width)
    for a, b, n in diagram.ticks:
        p, q = px(a), px(b)
        along = (q - p) / np.linalg.norm(q - p)
        normal = np.array([-along[1], along[0]]) * mark * 0.7
        mid = (p + q) / 2
        for k in range(n):
            c = mid + along * (k - (n - 1) / 2) * mark * 0.5
            draw.line([tuple(c - normal), tuple(c + normal)], fill=MARK, width=width)
    for a, v, b in diagram.arcs:
        pv = px(v)
        t1 = math.degrees(math.atan2(*(px(a) - pv)[::-1]))
        t2 = math.degrees(math.atan2(*(px(b) - pv)[::-1]))
        if (t2 - t1) % 360 > 180:
            t1, t2 = t2, t1
        r = mark * 1.3
        draw.arc([pv[0] - r, pv[1] - r, pv[0] + r, pv[1] + r], t1, t2, fill=MARK, width=width)
    font = _font(int(0.085 * big))
    for name in pts:
        p = px(name)
        out = p - centroid
        out = out / np.linalg.norm(out) if np.linalg.norm(out) > 1e-6 else np.array([0.7, 0.7])
        _text(draw, p + out * 0.07 * big, name, font, INK)
    boxes = []
    value_font = _font(int(0.08 * big))
    for a, b, text in diagram.side_values:
        p, q = px(a), px(b)
        mid = (p + q) / 2
        normal = np.array([-(q - p)[1], (q - p)[0]]) / np.linalg.norm(q - p)
        if np.dot(normal, mid - centroid) < 0:
            normal = -normal
        boxes.append((text, _text(draw, mid + normal * 0.065 * big, text, value_font, MARK)))
    for a, v, b, text in diagram.angle_values:
        pv = px(v)
        u = (px(a) - pv) / np.linalg.norm(px(a) - pv)
        w = (px(b) - pv) / np.linalg.norm(px(b) - pv)
        bisector = u + w if np.linalg.norm(u + w) > 1e-6 else np.array([-u[1], u[0]])
        bisector /= np.linalg.norm(bisector)
        # further out in a narrow angle, so that the text clears both rays
        half = math.acos(max(-1.0, min(1.0, float(np.dot(u, w))))) / 2
        reach = min(0.24, 0.07 + 0.045 / max(math.sin(half), 0.15))
        boxes.append((text, _text(draw, pv + bisector * reach * big, text, value_font, MARK)))
    out = image.resize((size, size), Image.Resampling.LANCZOS)
    labels = [{"text": t, "box": [round(c / supersample, 1) for c in box]} for t, box in boxes]
    return out, labels


def _text(draw: ImageDraw.ImageDraw, centre: np.ndarray, text: str, font: Any, fill: tuple) -> list[float]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    at = (float(centre[0] - (x1 - x0) / 2 - x0), float(centre[1] - (y1 - y0) / 2 - y0))
    draw.text(at, text, font=font, fill=fill)
    return list(draw.textbbox(at, text, font=font))


# ------------------------------------------------------------------------------------------- writing


def problem_record(problem: GeoProblem, image_path: str, sample_id: str, rng: np.random.Generator) -> dict:
    """A GeoQA-style JSON record (GeoQA's field names, plus the formal description and the figure)."""
    values, label = make_choices(problem, rng)
    return {
        "id": sample_id,
        "image": image_path,
        "subject": problem.question,
        "choices": [format_value(v, problem.unit) for v in values],
        "choice_nums": values,
        "label": label,
        "manual_program": problem.program,
        "numbers": problem.numbers,
        "problem_type": problem.problem_type,
        "formal": problem.formal,
        "needs_diagram": problem.needs_diagram,
        "structure": problem.structure,
        "family": problem.family,
        "answer_value": problem.answer_value,
        "points": {k: [round(x, 4), round(y, 4)] for k, (x, y) in problem.diagram.points.items()},
    }


def write_geo_toyworld(
    root: str | os.PathLike,
    n_train: int = 500,
    n_val: int = 100,
    n_test: int = 100,
    image_size: int = 128,
    seed: int = 0,
    diagram_fraction: float = 0.5,
    structure_fraction: float = 0.35,
) -> Path:
    """Write geo-toyworld under `root` (see the module docstring); returns `root/geo-toyworld.json`."""
    if image_size < 64:
        raise ConfigError(
            f"geo-toyworld: image_size must be at least 64 (labels stay legible), got {image_size}"
        )
    for name, share in (("diagram_fraction", diagram_fraction), ("structure_fraction", structure_fraction)):
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"geo-toyworld: {name} must lie in [0, 1], got {share}")
    root = Path(root)
    splits: dict[str, list[dict]] = {}
    formal: list[dict] = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        records = []
        for index in range(n):
            problem = generate_problem(seed, split, index, diagram_fraction, structure_fraction)
            image, labels = render_diagram(problem.diagram, image_size)
            rel = f"{split}/{index:06d}.png"
            image.save(root / rel)
            rng = np.random.default_rng([seed, SPLIT_SEEDS.get(split, 3), index, 1])
            record = problem_record(problem, rel, f"{split}/{index:06d}", rng)
            record["labels"] = labels
            records.append(record)
            formal.append({"image": rel, "caption": problem.formal, "image_id": record["id"]})
        splits[split] = records
        (root / "geoqa").mkdir(exist_ok=True)
        # the same records one file per split, their diagram paths relative to that file
        _write_json(root / "geoqa" / f"{split}.json", [{**r, "image": f"../{r['image']}"} for r in records])
    _write_json(root / FORMAL_FILE, formal)
    return _write_json(root / GEO_TOYWORLD_FILE, splits)  # last: its presence means the dataset is complete


def _write_json(path: Path, obj: Any) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=None))
    tmp.replace(path)
    return path
