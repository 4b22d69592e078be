"""GeoQA / GeoQA+ / UniGeo calculation problems from their JSON exports, and the geometry sample set.

The upstream releases are Python pickles (GeoQA's `train.pk` / `test.pk`, UniGeo's `calculation_*.pk`):
vlzoo never unpickles a downloaded file, so it reads their JSON exports, one list of records per file, in
the pickles' own field names (chen-judge/GeoQA `utils.py`, GeoX `eval/score_geoqa.py`):
    subject | English_problem | question   the problem text (GeoQA's Chinese `subject`, UniGeo's English)
    choices                                the printed choices; `choice_nums` their values
    label                                  the right choice's index (else `answer` if a letter "A".."D";
                                           UniGeo's `answer` is the worked solution, never read)
    manual_program                         the annotated program, GeoQA prefix tokens (list or one string)
    numbers                                N_0, N_1, ...
    image                                  the diagram: a path (relative to the file or `image_root`) or
                                           the pickle's gray array as nested lists; missing → `<id>.png`
    problem_type | sub_type                optional: angle / length / other (or the data option
                                           `problem_types`: UniGeo's `sub_dataset_dict`, id → type)
    formal                                 optional: the diagram's formal description (geo-toyworld)
A UniGeo proving problem (`problem_form`, `proving_sequence`, no program) is a counted skip. Field names
checked against chen-judge/UniGeo `utils.py` (`English_problem`, `manual_program`, `numbers`,
`choice_nums`, `label`, `id`, `formal_point`). Export a pickle once, where you trust it:
`json.dump([{**r, "image": r["image"].tolist()} for r in pk], f)`.

Every reader of this package yields the sample dict documented in `vlzoo.geometry.data.toyworld`
through `GeoProblemSet`. What is wrong with the file itself (not JSON, not a list, a record without its
question, program or choices, a non-number) is a `DataError` naming the file and the record's index; what
is wrong with one problem (a program with an unknown operator or the wrong arity, a label out of range, an
annotated program that reaches no choice or another one than the label, an unreadable diagram) is a
counted skip: the sample is a skip marker carrying the reason, which the collator lists and the core's
`SkipCounter` counts. `GeoProblemSet.skipped` lists the records refused at reading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from vlzoo.core.data import SAMPLE_ERRORS, decode_image, skip_marker
from vlzoo.core.errors import DataError
from vlzoo.geometry.program import ANSWER_TOLERANCE, trace_program

__all__ = [
    "TEXT_FIELDS",
    "GeoEntry",
    "GeoProblemSet",
    "build_geo_toyworld",
    "build_geoqa",
    "parse_geoqa_record",
    "read_geoqa_json",
    "read_problem_types",
]

TEXT_FIELDS = ("formal", "question", "program")
QUESTION_KEYS = ("English_problem", "subject", "question", "problem_text", "text")
PROGRAM_KEYS = ("manual_program", "program")
TYPE_KEYS = ("problem_type", "sub_type", "type")
LETTERS = "ABCDEFGH"


@dataclass
class GeoEntry:
    """One problem before its diagram is decoded: the sample's fields, where its diagram is, and why the
    problem is refused (`reason`), if it is."""

    fields: dict[str, Any]
    image: str | Path | np.ndarray | None
    where: str
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class GeoProblemSet(Dataset):
    """Geometry problems as the package's sample dicts (see `vlzoo.geometry.data.toyworld`), the diagram
    decoded on access; a refused problem or an unreadable diagram yields a skip marker with its reason."""

    def __init__(self, entries: list[GeoEntry], where: str | os.PathLike, text_field: str = "formal"):
        if text_field not in TEXT_FIELDS:
            raise DataError(f"{where}: text_field must be one of {TEXT_FIELDS}, got {text_field!r}")
        if not entries:
            raise DataError(f"{where}: no problems")
        self.entries = entries
        self.where = str(where)
        self.text_field = text_field

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [(e.where, e.reason) for e in self.entries if e.reason is not None]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        sample_id = entry.fields.get("id", index)
        if entry.reason is not None:
            return skip_marker(sample_id, entry.where, entry.reason)
        sample = {**entry.fields, **entry.extra}
        try:
            sample["image"] = _decode(entry.image)
        except SAMPLE_ERRORS as err:
            return skip_marker(sample_id, _where(entry), f"{type(err).__name__}: {err}")
        sample["path"] = _where(entry)
        sample["text"] = _text(sample, self.text_field)
        return sample


def _where(entry: GeoEntry) -> str:
    return str(entry.image) if isinstance(entry.image, str | Path) else entry.where


def _decode(image: str | Path | np.ndarray | None) -> Image.Image:
    if image is None:
        raise ValueError("the problem has no diagram")
    if isinstance(image, np.ndarray):  # a GeoQA pickle's gray diagram, exported as nested lists
        if image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(f"a diagram array must be 2-D or 3-D, got shape {image.shape}")
        return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).convert("RGB")
    return decode_image(image, image)


def _text(sample: Mapping[str, Any], text_field: str) -> str:
    """What the collator tokenizes; a problem without a formal description gives its question instead."""
    if text_field == "program":
        return " ".join(sample["program"])
    if text_field == "formal" and sample.get("formal"):
        return str(sample["formal"])
    return str(sample["question"])


# ----------------------------------------------------------------------------------------- records


def _first(record: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((record[k] for k in keys if k in record and record[k] is not None), None)


def _floats(values: Any, what: str, where: str) -> list[float]:
    if not isinstance(values, list | tuple):
        raise DataError(f"{where}: {what} must be a list of numbers, got {type(values).__name__}")
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} must be numbers, got {values}") from None


def _label(record: Mapping[str, Any], n_choices: int, where: str) -> int:
    label = record.get("label", record.get("answer"))
    if isinstance(label, str) and len(label) == 1 and label.upper() in LETTERS:
        return LETTERS.index(label.upper())
    if isinstance(label, int | np.integer) and not isinstance(label, bool):
        return int(label)
    raise DataError(f"{where}: label must be a choice index or letter, got {label!r}")


def _program_reason(program: list[str], numbers: list[float], values: list[float], label: int) -> str | None:
    """Why an annotated program can't stand for its problem (None if it can)."""
    try:
        value = trace_program(program, numbers)[-1].result
    except DataError as err:
        return f"program {' '.join(program)!r}: {err}"
    reached = [i for i, v in enumerate(values) if abs(value - v) < ANSWER_TOLERANCE]
    if not reached:
        return f"the program gives {value:g}, which matches no choice {values}"
    if reached[0] != label:
        return f"the program gives {value:g} = choice {reached[0]}, the label says {label}"
    return None


def parse_geoqa_record(
    record: Any, where: str, base: Path, image_root: str | os.PathLike | None = None, verify: bool = True
) -> GeoEntry:
    """One GeoQA / UniGeo record → a `GeoEntry` (see the module docstring for the fields)."""
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: a record must be an object, got {type(record).__name__}")
    question = _first(record, QUESTION_KEYS)
    if not isinstance(question, str):
        raise DataError(f"{where}: no problem text (one of {list(QUESTION_KEYS)})")
    sample_id = str(record.get("id", where))
    program = _first(record, PROGRAM_KEYS)
    if program is None and ("proving_sequence" in record or "problem_form" in record):
        return GeoEntry({"id": sample_id}, None, where, "a proving problem: no calculation program")
    if isinstance(program, str):
        program = program.split()
    if not isinstance(program, list | tuple) or not all(isinstance(t, str) for t in program):
        raise DataError(f"{where}: no program (one of {list(PROGRAM_KEYS)}, a list of tokens)")
    numbers = _floats(record.get("numbers", []), "numbers", where)
    if "choice_nums" in record:
        values = _floats(record["choice_nums"], "choice_nums", where)
    elif "choices" in record:
        values = _floats(record["choices"], "choices (no choice_nums)", where)
    else:
        raise DataError(f"{where}: no choices (choice_nums or choices)")
    choices = [str(c) for c in record.get("choices", values)]
    if len(choices) != len(values):
        raise DataError(f"{where}: {len(choices)} choices but {len(values)} choice_nums")
    label = _label(record, len(values), where)
    fields = {
        "id": sample_id,
        "question": question.strip(),
        "choices": choices,
        "choice_values": values,
        "answer": label,
        "program": list(program),
        "numbers": numbers,
        "formal": str(record.get("formal") or ""),
        "problem_type": str(_first(record, TYPE_KEYS) or "other").lower(),
        "needs_diagram": bool(record.get("needs_diagram", False)),
    }
    reason = None
    if not 0 <= label < len(values):
        reason = f"label {label} is out of range for {len(values)} choices"
    elif verify:
        reason = _program_reason(fields["program"], numbers, values, label)
    return GeoEntry(fields, _image_of(record, sample_id, base, image_root, where), where, reason)


def _image_of(
    record: Mapping[str, Any], sample_id: str, base: Path, image_root: str | os.PathLike | None, where: str
) -> Path | np.ndarray:
    image = record.get("image")
    root = Path(image_root) if image_root else base
    if isinstance(image, str):
        return root / image
    if isinstance(image, list):
        try:
            return np.asarray(image, dtype=np.float32)
        except ValueError:
            raise DataError(f"{where}: image is a ragged nested list, not a diagram array") from None
    if image is None:
        return root / f"{sample_id}.png"
    raise DataError(f"{where}: image must be a path or a nested list, got {type(image).__name__}")


def _load_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not JSON ({err.msg}, line {err.lineno})") from None


def read_geoqa_json(
    path: str | os.PathLike,
    split: str | None = None,
    image_root: str | os.PathLike | None = None,
    verify: bool = True,
) -> list[GeoEntry]:
    """The records of a GeoQA / UniGeo JSON export: a list, or (geo-toyworld) `{split: list}`, or a folder
    of one record per `*.json` file (diagrams then under `image_root`, default the folder's sibling
    `image/`)."""
    if Path(path).is_dir():
        files = sorted(
            Path(path).glob("*.json"), key=lambda f: (len(f.stem), f.stem)
        )  # 2.json before 10.json
        if not files:
            raise DataError(f"{path}: a folder without *.json problems")
        root = Path(image_root) if image_root else Path(path).parent / "image"
        return [parse_geoqa_record(_load_json(f), str(f), root, None, verify) for f in files]
    data = _load_json(path)
    if isinstance(data, Mapping):
        if split is None or split not in data:
            raise DataError(f"{path}: holds the splits {sorted(data)}; asked for {split!r}")
        data = data[split]
    if not isinstance(data, list):
        raise DataError(f"{path}: must hold a list of problems, got {type(data).__name__}")
    base = Path(path).parent
    return [parse_geoqa_record(r, f"{path}[{i}]", base, image_root, verify) for i, r in enumerate(data)]


# ------------------------------------------------------------------------------------- data kinds


def _verify(options: Mapping[str, Any]) -> bool:
    return bool(options.get("verify_programs", True))


def read_problem_types(path: str | os.PathLike) -> dict[str, str]:
    """UniGeo's sub-types (its `sub_dataset_dict`, exported to JSON) as {problem id: type}: the file maps
    either id → type or type → [ids]."""
    data = _load_json(path)
    if not isinstance(data, Mapping):
        raise DataError(f"{path}: must hold an object (id → type, or type → [ids])")
    if all(isinstance(v, list) for v in data.values()):
        return {str(i): str(t).lower() for t, ids in data.items() for i in ids}
    return {str(i): str(t).lower() for i, t in data.items()}


def build_geoqa(path: str, split: str, captions: str, options: Mapping[str, Any]) -> GeoProblemSet:
    """Data kind `geoqa`: one GeoQA / GeoQA+ / UniGeo JSON export per split; the option `problem_types`
    names UniGeo's sub-type file (see `read_problem_types`)."""
    entries = read_geoqa_json(path, None, options.get("image_root"), _verify(options))
    if options.get("problem_types"):
        types = read_problem_types(options["problem_types"])
        for entry in entries:
            entry.fields["problem_type"] = types.get(
                entry.fields.get("id", ""), entry.fields.get("problem_type")
            )
    return GeoProblemSet(entries, path, options.get("text_field") or "formal")


def build_geo_toyworld(path: str, split: str, captions: str, options: Mapping[str, Any]) -> GeoProblemSet:
    """Data kind `geo-toyworld`: `geo-toyworld.json`, every split in one file."""
    entries = read_geoqa_json(path, split, options.get("image_root"), _verify(options))
    return GeoProblemSet(entries, f"{path}:{split}", options.get("text_field") or "formal")
