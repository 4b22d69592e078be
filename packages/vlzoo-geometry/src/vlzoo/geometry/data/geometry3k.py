"""Geometry3K and PGPS9K problems (diagram, problem text, logic forms, choices) as geometry sample dicts.

- **Geometry3K** (Inter-GPS's release): `root/<split>/<id>/data.json` + `img_diagram.png`, the logic
  forms in `logic_form.json` beside them (or a `diagram_logic_form` list in data.json). data.json holds
  `problem_text`, `choices` (four strings), `answer` (a letter), `precise_value` (the choices' values),
  `problem_type_goal` (["Length"], ["Angle"], ["Area"], ...). Data kind `geometry3k`, `path` the root.
- **PGPS9K** (its own release): one JSON object keyed by problem id, each with `diagram` (a file under
  `image_root`, default `<file's folder>/Diagram`), `text`, `parsing_stru_seqs` and `parsing_sem_seqs`
  (the structural and semantic clauses: the formal description), `expression` (the PGPS solution program),
  `answer` (a number), `choices`, `type`. Data kind `pgps9k`.
- GeoX's test exports of both (`data/{pgps9k,geometry3k}/test.json`): a list with `data_id`, `image`,
  `var_list`, `conversations` (human question, then the target program), `answer`, `choices`; read by the
  same `pgps9k` kind (a list instead of an object).
PGPS programs run on `vlzoo.geometry.pgps.execute_pgps(program, var_list)` (equations solved with sympy),
not on the GeoQA executor: a PGPS sample carries `var_list` (its numbers as written, "2x+5") beside
`numbers` (their values, empty when one holds an unknown) and `answer_value`. Original PGPS9K annotations
carry no var_list (PGPS extracts the numbers from the text in its own preprocessing), so their programs
are kept for training but run only from GeoX's export. Both benchmarks are scored by value: completion
and choice accuracy (`vlzoo.geometry.evaluation.value_accuracy`).

The answer is a choice index: Geometry3K's letter, PGPS9K's value snapped to the choice within GeoX's
5e-2 (a value matching no choice is a counted skip).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlzoo.core.errors import DataError
from vlzoo.geometry.data.geoqa import LETTERS, GeoEntry, GeoProblemSet, _load_json

__all__ = [
    "CHOICE_SNAP",
    "build_geometry3k",
    "build_pgps9k",
    "latex_number",
    "read_geometry3k",
    "read_pgps9k",
]

CHOICE_SNAP = 5e-2  # GeoX eval/score_geometry3k.py: a value within 5e-2 of a choice picks it
_TYPE_WORDS = {"length": "length", "angle": "angle", "area": "area", "ratio": "ratio"}


def latex_number(text: str) -> float:
    """A number as the benchmarks write it: "12", "3.5", "\\frac{3}{2}", "2\\sqrt{3}", "4\\pi"."""
    s = str(text).replace(" ", "").replace("$", "")
    factor = 1.0
    for pattern, value in ((r"\\pi", 3.141592653589793),):
        if re.search(pattern, s):
            s, factor = re.sub(pattern, "", s), factor * value
    root = re.fullmatch(r"(.*?)\\sqrt\{?([\d.]+)\}?", s)
    if root:
        s, factor = root.group(1), factor * float(root.group(2)) ** 0.5
    frac = re.fullmatch(r"\\frac\{([\d.]+)\}\{([\d.]+)\}", s)
    if frac:
        return float(frac.group(1)) / float(frac.group(2)) * factor
    if s in ("", "+"):
        return factor
    if s == "-":
        return -factor
    return float(s) * factor


def _problem_type(value: Any) -> str:
    word = (value[0] if isinstance(value, list) and value else value) or "other"
    return _TYPE_WORDS.get(str(word).lower(), "other")


# -------------------------------------------------------------------------------------- Geometry3K


def _geometry3k_entry(folder: Path) -> GeoEntry:
    where = str(folder / "data.json")
    data = _load_json(folder / "data.json")
    if not isinstance(data, Mapping):
        raise DataError(f"{where}: must hold an object")
    missing = [k for k in ("problem_text", "choices", "answer") if k not in data]
    if missing:
        raise DataError(f"{where}: missing {missing}")
    logic = data.get("diagram_logic_form")
    if (folder / "logic_form.json").is_file():
        logic = _load_json(folder / "logic_form.json").get("diagram_logic_form", logic)
    choices = [str(c) for c in data["choices"]]
    try:
        values = [float(v) for v in data.get("precise_value") or [latex_number(c) for c in choices]]
    except (TypeError, ValueError):
        raise DataError(f"{where}: choices are not numbers: {choices}") from None
    answer = str(data["answer"]).strip().upper()
    fields = {
        "id": str(data.get("id", folder.name)),
        "question": str(data["problem_text"]).strip(),
        "choices": choices,
        "choice_values": values,
        "answer": LETTERS.index(answer) if len(answer) == 1 and answer in LETTERS else -1,
        "program": [],
        "numbers": [],
        "formal": "; ".join(str(c) for c in logic or []),
        "problem_type": _problem_type(data.get("problem_type_goal")),
        "needs_diagram": False,
    }
    reason = None if 0 <= fields["answer"] < len(choices) else f"answer {data['answer']!r} names no choice"
    return GeoEntry(fields, folder / "img_diagram.png", where, reason)


def read_geometry3k(root: str | os.PathLike, split: str) -> list[GeoEntry]:
    folder = Path(root) / split
    if not folder.is_dir():
        raise DataError(f"{root}: no split folder {split!r}")
    problems = sorted((p for p in folder.iterdir() if (p / "data.json").is_file()), key=lambda p: p.name)
    return [_geometry3k_entry(p) for p in problems]


def build_geometry3k(path: str, split: str, captions: str, options: Mapping[str, Any]) -> GeoProblemSet:
    """Data kind `geometry3k`: the release's root folder, one subfolder per split."""
    return GeoProblemSet(
        read_geometry3k(path, split), f"{path}:{split}", options.get("text_field") or "formal"
    )


# ------------------------------------------------------------------------------------------- PGPS9K


def _pgps_entry(record: Any, key: str, where: str, image_root: Path) -> GeoEntry:
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: a problem must be an object")
    if "conversations" in record:  # GeoX's export
        turns = record["conversations"]
        question = str(turns[0]["value"]).replace("<image>", "").strip()
        program = str(turns[1]["value"]).split() if len(turns) > 1 else []
        formal, image = "", record.get("image", f"{record.get('data_id', key)}.png")
        var_list = [str(v) for v in record.get("var_list", [])]
    else:
        missing = [k for k in ("diagram", "text", "answer", "choices") if k not in record]
        if missing:
            raise DataError(f"{where}: missing {missing}")
        question, image = str(record["text"]).strip(), record["diagram"]
        program, var_list = str(record.get("expression", "")).split(), []
        clauses = [*record.get("parsing_stru_seqs", []), *record.get("parsing_sem_seqs", [])]
        formal = "; ".join(str(c) for c in clauses)
    try:
        values = [latex_number(c) for c in record["choices"]]
        answer = latex_number(record["answer"])
    except (TypeError, ValueError, KeyError) as err:
        raise DataError(f"{where}: answer and choices must be numbers ({err})") from None
    try:  # the numbers as values where they are values; `var_list` keeps them as written ("2x+5")
        numbers = [latex_number(v) for v in var_list]
    except ValueError:
        numbers = []
    near = [i for i, v in enumerate(values) if abs(v - answer) < CHOICE_SNAP]
    fields = {
        "id": str(record.get("data_id", key)),
        "question": question,
        "choices": [str(c) for c in record["choices"]],
        "choice_values": values,
        "answer": near[0] if near else -1,
        "program": program,
        "numbers": numbers,
        "formal": formal,
        "problem_type": _problem_type(record.get("type")),
        "needs_diagram": False,
    }
    reason = None if near else f"the answer {answer:g} matches no choice {values}"
    extra = {"answer_value": answer, "var_list": var_list}
    return GeoEntry(fields, image_root / str(image), where, reason, extra=extra)


def read_pgps9k(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[GeoEntry]:
    data = _load_json(path)
    root = Path(image_root) if image_root else Path(path).parent / "Diagram"
    if isinstance(data, Mapping):
        items = list(data.items())
    elif isinstance(data, list):
        root = Path(image_root) if image_root else Path(path).parent
        items = [(str(i), r) for i, r in enumerate(data)]
    else:
        raise DataError(f"{path}: must hold an object keyed by problem id or a list")
    return [_pgps_entry(record, key, f"{path}[{key}]", root) for key, record in items]


def build_pgps9k(path: str, split: str, captions: str, options: Mapping[str, Any]) -> GeoProblemSet:
    """Data kind `pgps9k`: one PGPS9K annotation file (or GeoX's export) per split."""
    entries = read_pgps9k(path, options.get("image_root"))
    return GeoProblemSet(entries, path, options.get("text_field") or "formal")
