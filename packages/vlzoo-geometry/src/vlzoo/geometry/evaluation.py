"""Geometry problem solving, scored the GeoQA / UniGeo / GeoX way, with the baselines that need no model.

**GeoQA / UniGeo calculation (and geo-toyworld)**: a model generates `num_beams` programs per problem,
best first; the executor runs them and the first beam that reaches a choice (within 1e-3) answers
(`vlzoo.geometry.choose_answer`). Top-1 looks at the best beam only, top-10 at the first ten (GeoX's
protocol, as GeoQA's `NGS_Aux_test.py` with beam 10); a problem no beam answers is wrong. Accuracy is
reported overall and per problem type (UniGeo's angle / length / other).

**Geometry3K / PGPS9K**: scored by value (GeoX's `eval/score_geometry3k.py`): completion accuracy, the
predicted value within 5e-3 of the answer; choice accuracy, the value within 5e-2 of the right choice.
`value_accuracy` computes both from predicted values.

**Baselines** (computed beside every model, on the same problems):
- `choice prior`: a uniform guess among the choices (25% with four);
- `text-only`: the program most often annotated, in the training split, for the same question wording
  (point names by order of mention, numbers masked), executed on the problem's numbers; where it reaches no
  choice, a uniform guess (expected credit 1/4). What a solver without the diagram can read from the text.

**The model's face** (agreed with the GeoX model, `vlzoo.geometry.geox`):

    model.generate_programs(batch, num_beams: int) -> list[list[list[str]]]

`batch` is the collated batch of sample dicts (`vlzoo.geometry.data.toyworld`): `image` a float tensor
`[B, C, H, W]` preprocessed with the model's evaluation transform, every other key a list over the batch
(`question`, `numbers`, `choices`, ...); the result holds, per problem, `num_beams` programs best first,
each a list of GeoQA tokens. Optionally `model.kept_patches(batch) -> Tensor[B, gh, gw]` (GS-Former's
sampler: which diagram patches the queries attended to, 1 kept, 0 masked) is drawn over the report's
diagrams.

`vlzoo-geometry eval geoqa --model NAME` runs it (`--model none`: the baselines only; `--predictions
F.jsonl`: beams generated elsewhere, e.g. GeoX's `eval/inference.py` output, scored as a row) and prints
the paper-style table; with `--out`, writes `metrics.json`, `table.md`, `programs.jsonl` (every problem's
beams, the choice they reach, the annotated program) and `examples.png` (diagrams with question, best
program, its value, the choice; right and wrong ones). `vlzoo-geometry eval pgps` scores Geometry3K /
PGPS9K by value.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import Dataset

from vlzoo.core.data import build_source, is_skipped
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import (
    active_skips,
    eval_loader,
    evaluation_runner,
    load_eval_model,
    report_metrics,
    resolve_eval_data,
    save_figure,
    write_report,
)
from vlzoo.geometry.data import GEO_TOYWORLD, GEO_TOYWORLD_FILE
from vlzoo.geometry.data.geometry3k import CHOICE_SNAP
from vlzoo.geometry.pgps import execute_pgps
from vlzoo.geometry.program import choose_answer, choose_answers, execute_program

__all__ = [
    "COMPLETION_TOLERANCE",
    "GEO_COLUMNS",
    "choice_prior",
    "evaluate_geoqa",
    "evaluate_pgps",
    "first_pgps_value",
    "geo_table_markdown",
    "geoqa_accuracy",
    "plot_examples",
    "print_geo_table",
    "question_template",
    "read_predictions",
    "text_only_programs",
    "value_accuracy",
]

COMPLETION_TOLERANCE = 5e-3  # GeoX's Geometry3K / PGPS9K completion: |pred - answer| < 5e-3
# The columns of the GeoQA / UniGeo tables: (header, metric key); then Top-k for the beams evaluated.
GEO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Top-1", "top1"),
    ("Angle", "angle/top1"),
    ("Length", "length/top1"),
    ("Other", "other/top1"),
    ("Needs diagram", "diagram/top1"),  # geo-toyworld: the problems only the figure answers
)


# ------------------------------------------------------------------------------------------ metrics


def _answers(
    beams: Sequence[Sequence[Sequence[str]]], numbers: Sequence, choice_values: Sequence, k: int
) -> list[int | None]:
    return choose_answers([b[:k] for b in beams], numbers, choice_values)


def geoqa_accuracy(
    beams: Sequence[Sequence[Sequence[str]]],
    numbers: Sequence[Sequence[float]],
    choice_values: Sequence[Sequence[float]],
    answers: Sequence[int],
    problem_types: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 10),
    needs_diagram: Sequence[bool] | None = None,
) -> dict[str, float]:
    """Top-k accuracy (the choice of the first of the best k beams that reaches one is right), overall and
    per problem type (`<type>/top<k>`, `<type>/n`), plus `no_answer@<k>` (no beam reached a choice) and,
    given `needs_diagram` with some True, `diagram/top<k>` on the problems that need the figure."""
    n = len(beams)
    if n == 0:
        raise ConfigError("geoqa_accuracy: no problems")
    metrics: dict[str, float] = {"n": float(n)}
    types = list(problem_types) if problem_types is not None else ["other"] * n
    for k in ks:
        chosen = _answers(beams, numbers, choice_values, k)
        hits = np.array([c == a for c, a in zip(chosen, answers, strict=True)], dtype=float)
        metrics[f"top{k}"] = float(hits.mean())
        metrics[f"no_answer@{k}"] = float(np.mean([c is None for c in chosen]))
        for t in sorted(set(types)):
            mask = np.array([x == t for x in types])
            metrics[f"{t}/top{k}"] = float(hits[mask].mean())
            metrics[f"{t}/n"] = float(mask.sum())
        if needs_diagram is not None and any(needs_diagram):
            metrics[f"diagram/top{k}"] = float(hits[np.asarray(needs_diagram, dtype=bool)].mean())
    return metrics


def value_accuracy(
    predictions: Sequence[float | None],
    answer_values: Sequence[float],
    choice_values: Sequence[Sequence[float]],
    answers: Sequence[int],
) -> dict[str, float]:
    """Geometry3K / PGPS9K: `completion` (|pred - answer| < 5e-3) and `choice` (pred within 5e-2 of the
    right choice, the nearest one); a missing prediction (None, NaN) is wrong in both."""
    completion, choice = [], []
    for pred, gt, values, answer in zip(predictions, answer_values, choice_values, answers, strict=True):
        ok = pred is not None and math.isfinite(pred)
        completion.append(ok and abs(pred - gt) < COMPLETION_TOLERANCE)
        if ok and values:
            nearest = int(np.argmin([abs(pred - v) for v in values]))
            choice.append(nearest == answer and abs(pred - values[nearest]) < CHOICE_SNAP)
        else:
            choice.append(False)
    return {
        "completion": float(np.mean(completion)),
        "choice": float(np.mean(choice)),
        "n": float(len(choice)),
    }


def choice_prior(choice_values: Sequence[Sequence[float]]) -> float:
    """The expected accuracy of a uniform guess among each problem's choices."""
    return float(np.mean([1.0 / len(c) for c in choice_values]))


_NAME = re.compile(r"(?<![A-Za-z])[A-Z](?=[A-Z ,.=∥⊥)]|$)|(?<=[A-Z])[A-Z]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def question_template(question: str) -> str:
    """The question's wording with point names by order of mention and numbers masked:
    "EF = 10, EH = 6. Find FH." → "ab = #, ac = #. Find bc."."""
    names: dict[str, str] = {}

    def rename(m: re.Match) -> str:
        return names.setdefault(m[0], chr(ord("a") + min(len(names), 25)))

    return _NUMBER.sub("#", _NAME.sub(rename, question))


def text_only_programs(
    train_questions: Sequence[str], train_programs: Sequence[Sequence[str]]
) -> dict[str, list[str]]:
    """The most frequent training program per question wording; key "" holds the most frequent overall."""
    by_wording: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for question, program in zip(train_questions, train_programs, strict=True):
        key = " ".join(program)
        by_wording[question_template(question)][key] += 1
        overall[key] += 1
    if not overall:
        raise ConfigError("text-only baseline: no training problems")
    table = {w: c.most_common(1)[0][0].split() for w, c in by_wording.items()}
    table[""] = overall.most_common(1)[0][0].split()
    return table


def _text_only_accuracy(
    table: Mapping[str, list[str]], problems: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    credit, types = [], []
    for p in problems:
        program = table.get(question_template(p["question"]), table[""])
        chosen = choose_answer([program], p["numbers"], p["choice_values"])
        credit.append(1.0 / len(p["choice_values"]) if chosen is None else float(chosen == p["answer"]))
        types.append(p["problem_type"])
    out = {"top1": float(np.mean(credit))}
    for t in sorted(set(types)):
        out[f"{t}/top1"] = float(np.mean([c for c, x in zip(credit, types, strict=True) if x == t]))
    diagram = [c for c, p in zip(credit, problems, strict=True) if p.get("needs_diagram")]
    if diagram:
        out["diagram/top1"] = float(np.mean(diagram))
    return out


# ------------------------------------------------------------------------------------------- tables


def _columns(k: int) -> tuple[tuple[str, str], ...]:
    return (*GEO_COLUMNS, (f"Top-{k}", f"top{k}")) if k > 1 else GEO_COLUMNS


def _row_cells(metrics: Mapping[str, float], k: int) -> list[str]:
    return [f"{100 * metrics[key]:.1f}" if key in metrics else "–" for _, key in _columns(k)]


def geo_table_markdown(rows: Mapping[str, Mapping[str, float]], k: int = 10) -> str:
    """The paper-style table (accuracy in %) as Markdown: one row per method; the last column top-`k`."""
    columns = _columns(k)
    lines = ["| Method | " + " | ".join(h for h, _ in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    lines += [f"| {name} | " + " | ".join(_row_cells(m, k)) + " |" for name, m in rows.items()]
    return "\n".join(lines) + "\n"


def print_geo_table(
    rows: Mapping[str, Mapping[str, float]], title: str, k: int = 10, console: Console | None = None
) -> None:
    table = Table(title=title)
    table.add_column("Method")
    for header, _ in _columns(k):
        table.add_column(header, justify="right")
    for name, metrics in rows.items():
        table.add_row(name, *_row_cells(metrics, k))
    (console or Console()).print(table)


# ------------------------------------------------------------------------------------------- report


def plot_examples(
    problems: Sequence[Mapping[str, Any]],
    beams: Sequence[Sequence[Sequence[str]]],
    path: str | Path,
    overlays: Sequence[np.ndarray | None] | None = None,
    n: int = 8,
) -> Path:
    """Diagrams with the question, the best program, its value and the chosen vs the right choice; with
    `overlays` ([gh, gw] masks, 1 = kept), the masked-out patches are greyed over the diagram."""
    n = min(n, len(problems))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.4 * cols, 4.0 * rows))
    for i in range(n):
        p, b = problems[i], beams[i]
        ax = fig.add_subplot(rows, cols, i + 1)
        image = np.asarray(p["image"])
        ax.imshow(image)
        if overlays is not None and overlays[i] is not None:
            mask = np.asarray(overlays[i], dtype=float)
            ax.imshow(
                1 - mask,
                cmap="Greys",
                alpha=0.35,
                extent=(0, image.shape[1], image.shape[0], 0),
                vmin=0,
                vmax=1,
            )
        chosen = choose_answer(b, p["numbers"], p["choice_values"])
        best = " ".join(b[0]) if b else "(none)"
        try:
            value = f"{execute_program(b[0], p['numbers']):.4g}" if b else "–"
        except DataError:
            value = "error"
        verdict = "✓" if chosen == p["answer"] else "✗"
        picked = p["choices"][chosen] if chosen is not None else "none"
        ax.set_title(
            f"{_wrap(p['question'], 44)}\n{_wrap(best, 44)} = {value}\n{verdict} chose {picked}, "
            f"answer {p['choices'][p['answer']]}",
            fontsize=6.5,
            color="#1a9850" if chosen == p["answer"] else "#b2182b",
        )
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join([*lines, line])


# ------------------------------------------------------------------------------------------- runner


def _problems(source: Dataset) -> list[dict[str, Any]]:
    """Every readable problem of `source` as its sample dict (skips counted in the evaluation's ledger)."""
    problems, skipped = [], []
    for i in range(len(source)):
        sample = source[i]
        if is_skipped(sample):
            skipped.append((sample["path"], sample["reason"]))
        else:
            problems.append(sample)
    ledger = active_skips()
    if ledger is not None:
        ledger.count({"id": [p["id"] for p in problems], "skipped": skipped})
        ledger.check()
    return problems


def _kind(data: str, data_kind: str | None) -> str:
    if data_kind:
        return data_kind
    return GEO_TOYWORLD if Path(data).name == GEO_TOYWORLD_FILE else "geoqa"


def _generate(
    net: nn.Module, name: str, source: Dataset, num_beams: int, batch_size: int, workers: int
) -> tuple[list[list[list[str]]], list[np.ndarray | None]]:
    """Every problem's beams (in source order, skipped samples dropped) and the sampler's kept patches."""
    if not callable(getattr(net, "generate_programs", None)):
        raise ConfigError(f"eval geoqa: model {name!r} has no generate_programs(batch, num_beams)")
    beams: list[list[list[str]]] = []
    kept: list[np.ndarray | None] = []
    with torch.no_grad():
        for batch in eval_loader(net, source, batch_size, workers, captions=False, count_skips=False):
            if not batch["id"]:
                continue
            out = net.generate_programs(batch, num_beams)
            if len(out) != len(batch["id"]):
                raise ConfigError(
                    f"{name}.generate_programs returned {len(out)} problems for {len(batch['id'])}"
                )
            beams += [[list(map(str, b)) for b in problem] for problem in out]
            masks = net.kept_patches(batch) if callable(getattr(net, "kept_patches", None)) else None
            kept += [None] * len(out) if masks is None else [m.float().cpu().numpy() for m in masks]
    return beams, kept


@evaluation_runner
def evaluate_geoqa(
    model: str | nn.Module,
    *,
    data: str = GEO_TOYWORLD,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 16,
    workers: int = 0,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    num_beams: int = 10,
    train_data: str | None = None,
    train_split: str = "train",
    predictions: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """GeoQA / UniGeo top-1 / top-10 accuracy per problem type of `model` (`"none"`: baselines only), with
    the choice-prior and text-only baselines (`train_data` / `train_split`: the problems the text-only
    baseline learns its programs from; default the same file's `train_split` when it holds splits).
    `predictions`: a JSONL of beams generated elsewhere, scored as a row of its own (see `read_predictions`)."""
    path = resolve_eval_data(data, data_dir)
    kind = _kind(path, data_kind)
    source = build_source(path, kind, split, "first", {"text_field": "question"})
    problems = _problems(source)
    if not problems:
        raise ConfigError(f"eval geoqa: no readable problem in {path}")
    rows: dict[str, dict[str, float]] = {}
    train_path = (
        resolve_eval_data(train_data, data_dir) if train_data else (path if kind == GEO_TOYWORLD else None)
    )
    if train_path is not None:
        train = build_source(train_path, _kind(train_path, data_kind), train_split, "first", {})
        train_problems = [
            train.entries[i].fields for i in range(len(train)) if train.entries[i].reason is None
        ]
        table = text_only_programs(
            [p["question"] for p in train_problems], [p["program"] for p in train_problems]
        )
        rows["text-only"] = _text_only_accuracy(table, problems)
    rows["choice prior"] = {"top1": choice_prior([p["choice_values"] for p in problems])}
    if predictions is not None:
        given = read_predictions(predictions)
        rows = {
            Path(predictions).stem: _score(
                problems, [given.get(str(p["id"]), []) for p in problems], num_beams
            ),
            **rows,
        }
        rows[Path(predictions).stem]["missing"] = float(sum(str(p["id"]) not in given for p in problems))
    beams: list[list[list[str]]] = []
    kept: list[np.ndarray | None] = []
    name = "none"
    if not (isinstance(model, str) and model.lower() == "none"):
        net, name = load_eval_model(model, pretrained)
        beams, kept = _generate(net, name, source, num_beams, batch_size, workers)
        rows = {name: _score(problems, beams, num_beams), **rows}
    metrics: dict[str, Any] = {"model": name, "data": str(path), "split": split, "num_beams": num_beams}
    metrics["rows"] = rows
    title = f"GeoQA-style accuracy (%) on {Path(path).name}:{split}, {len(problems)} problems"
    print_geo_table(rows, title, num_beams)
    if out is not None:
        out = Path(out)
        write_report(out, {k: v for k, v in metrics.items() if k != "rows"} | _flat(rows), title=title)
        (out / "table.md").write_text(geo_table_markdown(rows, num_beams))
        if beams:
            _write_programs(out / "programs.jsonl", problems, beams)
            shown = _mixed_examples(problems, beams, 8)  # right and wrong ones, half each where possible
            plot_examples(
                [problems[i] for i in shown],
                [beams[i] for i in shown],
                out / "examples.png",
                [kept[i] for i in shown],
            )
    return metrics | _flat(rows)


def _score(problems: Sequence[Mapping[str, Any]], beams: Sequence, num_beams: int) -> dict[str, float]:
    return geoqa_accuracy(
        beams,
        [p["numbers"] for p in problems],
        [p["choice_values"] for p in problems],
        [p["answer"] for p in problems],
        [p["problem_type"] for p in problems],
        ks=(1, num_beams) if num_beams != 1 else (1,),
        needs_diagram=[bool(p.get("needs_diagram")) for p in problems],
    )


def read_predictions(path: str | Path) -> dict[str, list[list[str]]]:
    """Beams generated elsewhere, by problem id: a JSONL with one line per problem, `question_id` (or `id`)
    and `text` (or `beams`): a list of programs best first, each a string of tokens or a token list (GeoX's
    `eval/inference.py` writes `question_id` and its ten beams as `text`)."""
    out: dict[str, list[list[str]]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{n}: not JSON ({err.msg})") from None
        key = row.get("question_id", row.get("id")) if isinstance(row, dict) else None
        beams = row.get("text", row.get("beams")) if isinstance(row, dict) else None
        if key is None or beams is None:
            raise DataError(f"{path}:{n}: needs question_id (or id) and text (or beams)")
        beams = [beams] if isinstance(beams, str) else beams
        out[str(key)] = [b.split() if isinstance(b, str) else [str(t) for t in b] for b in beams]
    return out


def first_pgps_value(beams: Sequence[Sequence[str]], var_list: Sequence[str]) -> float | None:
    """The value of the first beam that executes as a PGPS program (None when none does)."""
    for beam in beams:
        try:
            return execute_pgps(beam, var_list)
        except DataError:
            continue
    return None


@evaluation_runner
def evaluate_pgps(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 16,
    workers: int = 0,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    num_beams: int = 10,
    **_: Any,
) -> dict[str, Any]:
    """Geometry3K / PGPS9K completion and choice accuracy (GeoX's `score_geometry3k.py`): the model's
    beams run as PGPS programs on each problem's `var_list`, the first that executes gives the value;
    beside the choice prior."""
    kind = data_kind or "pgps9k"
    source = build_source(resolve_eval_data(data, data_dir), kind, split, "first", {"text_field": "question"})
    problems = _problems(source)
    if not problems:
        raise ConfigError(f"eval pgps: no readable problem in {data}")
    net, name = load_eval_model(model, pretrained)
    beams, _kept = _generate(net, name, source, num_beams, batch_size, workers)
    values = [first_pgps_value(b, p.get("var_list", [])) for b, p in zip(beams, problems, strict=True)]
    gts = [p.get("answer_value", p["choice_values"][p["answer"]]) for p in problems]
    scores = value_accuracy(
        values, gts, [p["choice_values"] for p in problems], [p["answer"] for p in problems]
    )
    metrics = {"model": name, "data": str(data), "split": split, "num_beams": num_beams, **scores}
    metrics["choice prior"] = choice_prior([p["choice_values"] for p in problems])
    title = f"Geometry3K/PGPS9K-style accuracy on {Path(data).name}:{split}, {len(problems)} problems"
    report_metrics(metrics, title=title, out=out)
    if out is not None:
        with open(Path(out) / "programs.jsonl", "w", encoding="utf-8") as f:
            for p, b, v, gt in zip(problems, beams, values, gts, strict=True):
                row = {"id": p["id"], "beams": [" ".join(x) for x in b], "value": v, "answer_value": gt}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return metrics


def _mixed_examples(problems: Sequence[Mapping[str, Any]], beams: Sequence, n: int) -> list[int]:
    chosen = choose_answers(beams, [p["numbers"] for p in problems], [p["choice_values"] for p in problems])
    right = [i for i, (c, p) in enumerate(zip(chosen, problems, strict=True)) if c == p["answer"]]
    wrong = sorted(set(range(len(problems))) - set(right))
    take = min(len(right), max(n // 2, n - len(wrong)))
    return sorted(right[:take] + wrong[: n - take])


def _flat(rows: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {f"{name}/{k}": v for name, metrics in rows.items() for k, v in metrics.items()}


def _write_programs(path: Path, problems: Sequence[Mapping[str, Any]], beams: Sequence) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for p, b in zip(problems, beams, strict=True):
            chosen = choose_answer(b, p["numbers"], p["choice_values"])
            record = {"id": p["id"], "question": p["question"], "beams": [" ".join(x) for x in b]}
            record |= {"chosen": chosen, "answer": p["answer"], "annotated": " ".join(p["program"])}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
