"""Programs/s of the GeoQA program executor on geo-toyworld's annotated programs: one program at a time
(`execute_program`, a Python loop over problems) against the batched executor (`execute_batch`: each
distinct program parsed once and run on all its problems' numbers with numpy), and GeoX's answer choice
over beams (ten a problem) the same two ways (`choose_answer` per problem vs `choose_answers`).

The beams mix the annotated program with plausible wrong ones (another program of the toy world, a
truncated one, an unknown operator) in a shuffled order, as a model's beams would. Both paths are checked
to agree before timing; the median over repeats is reported. Ratio = batched / one at a time.

    python benchmarks/geometry_executor.py                    # 5000 problems, 3 repeats
    python benchmarks/geometry_executor.py --problems 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from vlzoo.geometry import choose_answer, execute_program
from vlzoo.geometry.data import generate_problem
from vlzoo.geometry.data.toyworld import make_choices
from vlzoo.geometry.program import choose_answers, execute_batch


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=5000)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    problems = [generate_problem(0, "train", i) for i in range(args.problems)]
    programs, numbers = [p.program for p in problems], [p.numbers for p in problems]
    choices = [make_choices(p, np.random.default_rng(i))[0] for i, p in enumerate(problems)]
    pool = sorted({tuple(p) for p in programs})
    rng = random.Random(0)
    beams = []
    for p in programs:
        candidates = [
            p,
            p[:-1],
            ["g_unknown", "N_0"],
            *(list(rng.choice(pool)) for _ in range(args.beams - 3)),
        ]
        rng.shuffle(candidates)
        beams.append(candidates)

    loop_values = np.array([execute_program(p, n) for p, n in zip(programs, numbers, strict=True)])
    assert np.allclose(loop_values, execute_batch(programs, numbers), rtol=0, atol=1e-12)
    loop_answers = [choose_answer(b, n, c) for b, n, c in zip(beams, numbers, choices, strict=True)]
    assert loop_answers == choose_answers(beams, numbers, choices)

    rates: dict[str, list[float]] = {k: [] for k in ("loop", "batch", "choose_loop", "choose_batch")}
    n = len(problems)
    for _ in range(args.repeats):  # alternate, so that a change in load affects both alike
        rates["loop"].append(
            n / _timed(lambda: [execute_program(p, x) for p, x in zip(programs, numbers)])[0]
        )
        rates["batch"].append(n / _timed(lambda: execute_batch(programs, numbers))[0])
        loop = lambda: [choose_answer(b, x, c) for b, x, c in zip(beams, numbers, choices)]  # noqa: E731
        rates["choose_loop"].append(n / _timed(loop)[0])
        rates["choose_batch"].append(n / _timed(lambda: choose_answers(beams, numbers, choices))[0])
    med = {k: statistics.median(v) for k, v in rates.items()}
    answered = sum(a is not None for a in loop_answers) / n
    print(f"{n} geo-toyworld problems, {len(pool)} distinct programs, {args.repeats} repeats (median)")
    print(f"execute_program, one at a time: {med['loop']:>12,.0f} programs/s")
    print(
        f"execute_batch:                  {med['batch']:>12,.0f} programs/s   ratio {med['batch'] / med['loop']:.1f}x"
    )
    beams_note = f"({args.beams} beams a problem, {answered:.0%} answered)"
    print(f"choose_answer, one at a time:   {med['choose_loop']:>12,.0f} problems/s {beams_note}")
    print(
        f"choose_answers, batched:        {med['choose_batch']:>12,.0f} problems/s "
        f"ratio {med['choose_batch'] / med['choose_loop']:.1f}x"
    )


if __name__ == "__main__":
    main()
