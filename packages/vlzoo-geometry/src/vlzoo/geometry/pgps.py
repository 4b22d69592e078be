"""PGPS9K / Geometry3K solution programs: the PGPS operator set, each step an equation, solved with sympy.

A PGPS program (mingliangzhang2018/PGPS `datasets/operators.py`, used unchanged by GeoX's
`solver/operators.py`) is a sequence of steps `Op arg .. arg`; each step but `Get` states a relation
between its operands (`Gougu a b c`: a² + b² = c²), and `Get x` answers with x's value. Operands: `N_i`
(or `Ni`) the problem's i-th number — a value or an expression with unknowns as the benchmarks write them
("2x+5", "\\frac{1}{2}", "4\\sqrt{3}"), `V_i` an intermediate unknown, `C0.5, C2, ..., C360` constants.
The relations (angles in degrees), as the official docstrings state them:

    Sum a.. z: a+..=z        Multiple a.. z: a*..=z    Equal a b: a=b            Iso_Tri_Ang a b: a+2b=180
    Gougu a b c: a²+b²=c²    Gsin|Gcos|Gtan a b c: sin|cos|tan(c)=a/b        Median a b c: a+c=2b
    Cos_Law a b c d: a²=b²+c²-2bc·cos d                  Sin_Law a b c d: sin(a)/b=sin(c)/d
    Geo_Mean a b c: ab=c²    Proportion a b c d [e]: a/b=c/d [a/b=(c/d)^(1/e)]
    Ratio a b c [d]: a/b=c [(a/b)^c=d]                   Chord2_Ang a b c: a=(b+c)/2
    TanSec_Ang a b c: a=(c-b)/2                          Tria_BH_Area a b c: ab/2=c
    Tria_SAS_Area a b c d: ac·sin(b)/2=d                 PRK_Perim a b c: 2(a+b)=c
    Para_Area|Rect_Area a b c: ab=c                      Rhom_Area a b c: 2ab=c    Kite_Area a b c: ab/2=c
    Trap_Area a b c d: (a+b)c/2=d                        Circle_R_Circum a b [c]: 2πa=b [2πab/360=c]
    Circle_D_Circum a b [c]: πa=b [πab/360=c]            Circle_R_Area a b [c]: πa²=b [πa²b/360=c]
    Circle_D_Area a b [c]: πa²/4=b [πa²b/4/360=c]        ArcSeg_Area a b c: πa²b/360 - a²sin(b)/2 = c
    Ngon_Angsum a b: (a-2)·180=b                          RNgon_B_Area a b c: ab²/(4tan(180/a))=c
    RNgon_L_Area a b c: ab²sin(360/a)/2=c                 RNgon_H_Area a b c: ab²tan(180/a)=c

Steps are solved in order, as the official executor does: after each step, every equation left with one
unknown is solved for it, and solved values are substituted into the others. Of several roots the
smallest positive real one is taken (the official `choose_result` prefers the positive root), else the
first real one. Departures, on purpose: π is exact (the official code writes 3.141593), numbers are
parsed by a small LaTeX-arithmetic parser here (the official code uses sympy's `parse_latex`, i.e. ANTLR),
nothing is `eval`-ed (the official code `eval`s operator names), and an unknown operator, a wrong arity, an
index out of range, an unsolvable step or a `Get` of a value still unknown is a `DataError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy

from vlzoo.core.errors import DataError

__all__ = ["PGPS_CONSTANTS", "PGPS_OPERATORS", "PGPSOperator", "execute_pgps", "parse_number_expression"]

PGPS_CONSTANTS = ("C0.5", "C2", "C3", "C4", "C5", "C6", "C8", "C60", "C90", "C180", "C360")
_PI = sympy.pi


def _deg(x: sympy.Expr) -> sympy.Expr:
    return x * _PI / 180


@dataclass(frozen=True)
class PGPSOperator:
    name: str
    arities: tuple[int, ...]  # the arities it takes; (3, -1): three or more
    relation: Callable[[list[sympy.Expr]], sympy.Expr]  # the equation, as an expression equal to 0

    def takes(self, n: int) -> bool:
        return n in self.arities or (-1 in self.arities and n >= min(a for a in self.arities if a > 0))


def _sum(a: list) -> sympy.Expr:
    return sympy.Add(*a[:-1]) - a[-1]


def _product(a: list) -> sympy.Expr:
    return sympy.Mul(*a[:-1]) - a[-1]


def _proportion(a: list) -> sympy.Expr:
    if len(a) == 4:
        return a[0] * a[3] - a[1] * a[2]
    return a[0] * a[3] ** (1 / a[4]) - a[1] * a[2] ** (1 / a[4])


def _ratio(a: list) -> sympy.Expr:
    return a[0] / a[1] - a[2] if len(a) == 3 else (a[0] / a[1]) ** a[2] - a[3]


def _circle(scale: sympy.Expr, power: int) -> Callable[[list], sympy.Expr]:
    def relation(a: list) -> sympy.Expr:
        whole = scale * a[0] ** power
        return whole - a[1] if len(a) == 2 else whole * a[1] / 360 - a[2]

    return relation


PGPS_OPERATORS: dict[str, PGPSOperator] = {
    op.name: op
    for op in (
        PGPSOperator("Get", (1,), lambda a: a[0]),
        PGPSOperator("Sum", (3, -1), _sum),
        PGPSOperator("Multiple", (3, -1), _product),
        PGPSOperator("Equal", (2,), lambda a: a[0] - a[1]),
        PGPSOperator("Iso_Tri_Ang", (2,), lambda a: a[0] + 2 * a[1] - 180),
        PGPSOperator("Gougu", (3,), lambda a: a[0] ** 2 + a[1] ** 2 - a[2] ** 2),
        PGPSOperator("Gsin", (3,), lambda a: a[0] / a[1] - sympy.sin(_deg(a[2]))),
        PGPSOperator("Gcos", (3,), lambda a: a[0] / a[1] - sympy.cos(_deg(a[2]))),
        PGPSOperator("Gtan", (3,), lambda a: a[0] / a[1] - sympy.tan(_deg(a[2]))),
        PGPSOperator(
            "Cos_Law",
            (4,),
            lambda a: a[1] ** 2 + a[2] ** 2 - a[0] ** 2 - 2 * a[1] * a[2] * sympy.cos(_deg(a[3])),
        ),
        PGPSOperator("Sin_Law", (4,), lambda a: a[3] * sympy.sin(_deg(a[0])) - a[1] * sympy.sin(_deg(a[2]))),
        PGPSOperator("Median", (3,), lambda a: a[0] - 2 * a[1] + a[2]),
        PGPSOperator("Geo_Mean", (3,), lambda a: a[0] * a[1] - a[2] ** 2),
        PGPSOperator("Proportion", (4, 5), _proportion),
        PGPSOperator("Ratio", (3, 4), _ratio),
        PGPSOperator("Chord2_Ang", (3,), lambda a: 2 * a[0] - a[1] - a[2]),
        PGPSOperator("TanSec_Ang", (3,), lambda a: 2 * a[0] + a[1] - a[2]),
        PGPSOperator("Tria_BH_Area", (3,), lambda a: a[0] * a[1] / 2 - a[2]),
        PGPSOperator("Tria_SAS_Area", (4,), lambda a: a[0] * a[2] * sympy.sin(_deg(a[1])) / 2 - a[3]),
        PGPSOperator("PRK_Perim", (3,), lambda a: 2 * a[0] + 2 * a[1] - a[2]),
        PGPSOperator("Para_Area", (3,), lambda a: a[0] * a[1] - a[2]),
        PGPSOperator("Rect_Area", (3,), lambda a: a[0] * a[1] - a[2]),
        PGPSOperator("Rhom_Area", (3,), lambda a: 2 * a[0] * a[1] - a[2]),
        PGPSOperator("Kite_Area", (3,), lambda a: a[0] * a[1] / 2 - a[2]),
        PGPSOperator("Trap_Area", (4,), lambda a: (a[0] + a[1]) * a[2] / 2 - a[3]),
        PGPSOperator("Circle_R_Circum", (2, 3), _circle(2 * _PI, 1)),
        PGPSOperator("Circle_D_Circum", (2, 3), _circle(_PI, 1)),
        PGPSOperator("Circle_R_Area", (2, 3), _circle(_PI, 2)),
        PGPSOperator("Circle_D_Area", (2, 3), _circle(_PI / 4, 2)),
        PGPSOperator(
            "ArcSeg_Area",
            (3,),
            lambda a: _PI * a[0] ** 2 * a[1] / 360 - a[0] ** 2 * sympy.sin(_deg(a[1])) / 2 - a[2],
        ),
        PGPSOperator("Ngon_Angsum", (2,), lambda a: (a[0] - 2) * 180 - a[1]),
        PGPSOperator("RNgon_B_Area", (3,), lambda a: a[0] * a[1] ** 2 / 4 / sympy.tan(_PI / a[0]) - a[2]),
        PGPSOperator("RNgon_L_Area", (3,), lambda a: a[0] * a[1] ** 2 * sympy.sin(2 * _PI / a[0]) / 2 - a[2]),
        PGPSOperator("RNgon_H_Area", (3,), lambda a: a[0] * a[1] ** 2 * sympy.tan(_PI / a[0]) - a[2]),
    )
}

# ----------------------------------------------------------------------------------- number parsing

_TOKEN = re.compile(r"\s*(\\frac|\\sqrt|\\pi|\\cdot|\\times|\d+\.?\d*|\.\d+|[a-z]|[-+*/^(){}])")


class _Parser:
    """expr := term (('+'|'-') term)*; term := factor (('*'|'/')? factor)*; factor := ('-'|'+') factor | atom
    ('^' atom)?; atom := number | letter | \\pi | \\frac{expr}{expr} | \\sqrt{expr} | (expr) | {expr}."""

    def __init__(self, text: str):
        self.text = text
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                if text[pos:].strip() == "":
                    break
                raise DataError(f"number {text!r}: can't read {text[pos:]!r}")
            self.tokens.append(m.group(1))
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise DataError(f"number {self.text!r}: expected {expected or 'more'}, got {token!r}")
        self.i += 1
        return token

    def parse(self) -> sympy.Expr:
        value = self.expr()
        if self.peek() is not None:
            raise DataError(f"number {self.text!r}: unexpected {self.peek()!r}")
        return value

    def expr(self) -> sympy.Expr:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> sympy.Expr:
        value = self.factor()
        while (token := self.peek()) is not None and token not in ("+", "-", ")", "}"):
            if token in ("*", "/", "\\cdot", "\\times"):
                self.take()
                value = value / self.factor() if token == "/" else value * self.factor()
            else:  # implicit multiplication: 2x, 4\sqrt{3}
                value = value * self.factor()
        return value

    def factor(self) -> sympy.Expr:
        if self.peek() in ("-", "+"):
            return -self.factor() if self.take() == "-" else self.factor()
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return base ** self.atom()
        return base

    def atom(self) -> sympy.Expr:
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            return sympy.Rational(token) if "." not in token else sympy.Float(token)
        if token == "\\pi":
            return _PI
        if token in ("(", "{"):
            value = self.expr()
            self.take(")" if token == "(" else "}")
            return value
        if token == "\\frac":
            num = self.atom()
            return num / self.atom()
        if token == "\\sqrt":
            return sympy.sqrt(self.atom())
        if re.fullmatch(r"[a-z]", token):
            return sympy.Symbol(token)
        raise DataError(f"number {self.text!r}: unexpected {token!r}")


def parse_number_expression(text: str | float | int) -> sympy.Expr:
    """A benchmark's number as a sympy expression: "12", "2x+5", "\\frac{1}{2}", "4\\sqrt{3}", "3\\pi"."""
    if isinstance(text, int | float):
        return sympy.Float(text) if isinstance(text, float) else sympy.Integer(text)
    return _Parser(str(text).replace("$", "")).parse()


# ---------------------------------------------------------------------------------------- executor

_OPERAND = re.compile(r"^(?:([NV])_?(\d+)|C(\d+(?:\.\d+)?))$")


def _operand(token: str, numbers: Sequence[sympy.Expr], where: str) -> sympy.Expr:
    m = _OPERAND.match(token)
    if m is None:
        raise DataError(f"{where}: {token!r} is neither an operator nor an operand (N_i, V_i, C<value>)")
    if m.group(3) is not None:
        if token not in PGPS_CONSTANTS:
            raise DataError(f"{where}: {token} is not a PGPS constant {PGPS_CONSTANTS}")
        return sympy.nsimplify(m.group(3))
    kind, index = m.group(1), int(m.group(2))
    if kind == "V":
        return sympy.Symbol(f"V_{index}")
    if index >= len(numbers):
        raise DataError(f"{where}: {token} is out of range: there are {len(numbers)} numbers")
    return numbers[index]


def _steps(tokens: Sequence[str]) -> list[tuple[int, str, list[str]]]:
    steps: list[tuple[int, str, list[str]]] = []
    for pos, token in enumerate(tokens):
        if token in PGPS_OPERATORS:
            steps.append((pos, token, []))
        elif re.fullmatch(r"[A-Z][A-Za-z0-9_]*", token) and not _OPERAND.match(token):
            raise DataError(f"token {pos}: unknown operator {token!r}")
        elif not steps:
            raise DataError(f"token {pos}: a program starts with an operator, got {token!r}")
        else:
            steps[-1][2].append(token)
    return steps


def _root(symbol: sympy.Symbol, roots: list, where: str) -> sympy.Expr:
    real = []
    for r in roots:
        value = complex(sympy.N(r))
        if abs(value.imag) < 1e-9:
            real.append((value.real, r))
    if not real:
        raise DataError(f"{where}: no real value of {symbol}")
    positive = sorted((v, r) for v, r in real if v > 0)
    return sympy.Float(positive[0][0] if positive else real[0][0])


def _propagate(equations: list[sympy.Expr], known: dict[sympy.Symbol, sympy.Expr], where: str) -> None:
    """Solve every equation left with one unknown, substitute, repeat until nothing changes."""
    changed = True
    while changed:
        changed = False
        for eq in list(equations):
            eq_now = eq.subs(known)
            free = sorted(eq_now.free_symbols, key=str)
            if len(free) == 0:
                equations.remove(eq)
                continue
            if len(free) > 1:
                continue
            (symbol,) = free
            try:
                roots = sympy.solve(eq_now, symbol)
            except (NotImplementedError, ValueError) as err:
                raise DataError(f"{where}: can't solve {eq_now} = 0 for {symbol} ({err})") from None
            known[symbol] = _root(symbol, roots, where)
            equations.remove(eq)
            changed = True


def execute_pgps(tokens: Sequence[str], numbers: Sequence[str | float]) -> float:
    """The value a PGPS program's `Get` answers, on the problem's `numbers` (`var_list`)."""
    tokens = [str(t) for t in tokens]
    if not tokens:
        raise DataError("empty program")
    values = [parse_number_expression(n) for n in numbers]
    known: dict[sympy.Symbol, sympy.Expr] = {}
    equations: list[sympy.Expr] = []
    answer: float | None = None
    for pos, name, args in _steps(tokens):
        op = PGPS_OPERATORS[name]
        where = f"token {pos} ({name})"
        if not op.takes(len(args)):
            raise DataError(
                f"{where}: takes {'/'.join(map(str, op.arities)).replace('-1', 'more')} operands, got {args}"
            )
        operands = [_operand(t, values, where) for t in args]
        if name == "Get":
            value = sympy.N(operands[0].subs(known))
            if value.free_symbols:
                raise DataError(f"{where}: {args[0]} is still unknown ({value})")
            answer = float(value)
            continue
        equations.append(op.relation(operands))
        _propagate(equations, known, where)
    if answer is None:
        raise DataError("the program has no Get step: it answers nothing")
    return answer
