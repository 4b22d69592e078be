"""Text-based person search (TBPS) annotations: CUHK-PEDES, ICFG-PEDES, RSTPReid, SYNTH-PEDES, LUPerson-T.

Every format is one JSON list of image entries; they differ in a few keys (as the official loaders of IRRA
and PLIP read them):

| format        | file (as released)                          | image key   | identity | split        |
|---------------|---------------------------------------------|-------------|----------|--------------|
| `cuhk-pedes`  | `CUHK-PEDES/reid_raw.json`                  | `file_path` | `id`     | `split`      |
| `icfg-pedes`  | `ICFG-PEDES/ICFG-PEDES.json` (or `ICFG_PEDES.json`) | `file_path` | `id` | `split`   |
| `rstpreid`    | `RSTPReid/data_captions.json`               | `img_path`  | `id`     | `split`      |
| `synth-pedes` | `SYNTH-PEDES/synthpedes_dataset.json`       | `file_path` | `id`     | none: train  |
| `luperson-t`  | LUPerson-T pseudo-caption JSON              | `file_path` | none     | none: train  |

`split` is `"train"`, `"test"`, anything else is validation (IRRA's rule). Images are under the
annotation's folder's `imgs/` when there is one (CUHK-PEDES, ICFG-PEDES, RSTPReid ship that way), else
the folder itself (SYNTH-PEDES's `Part1/...`); `image_root` overrides.

`TbpsAnnotations(path, split)` is a map-style source of the core's kind (`ImageTextSource`): in training
(`captions="each"`) each caption is its own sample; every sample carries `pid`, the identity, and
`image_id`, the image's index in the file. Training pids are contiguous from 0 in the order of the sorted
raw ids (IRRA's `id - 1` for CUHK-PEDES, whose training ids already run 1..N); validation and test keep the
raw id as pid, as IRRA does. Evaluation (`captions="all"`) keeps one gallery entry per image and every one
of its captions as a query (`texts`). A LUPerson-T image has no identity: each image is its own pid.

Bad input: an unreadable or malformed file, an entry without its image key or caption list, a non-integer
id, or an identity in two splits is a `DataError` naming the file and the entry; a missing image or an
empty caption list is a counted skip (the core's skip markers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vlzoo.core.data import CaptionMode, ImageTextSource, Record
from vlzoo.core.errors import DataError

__all__ = ["TBPS_FORMATS", "TbpsAnnotations", "TbpsFormat", "build_tbps", "read_tbps_entries", "split_of"]


@dataclass(frozen=True)
class TbpsFormat:
    """How one TBPS dataset spells its annotation."""

    name: str
    files: tuple[str, ...]  # the released annotation file names (data_kind: auto recognises them)
    image_key: str = "file_path"
    id_key: str | None = "id"  # None: no identities (each image its own)
    has_split: bool = True  # False: every entry is training data
    passthrough: tuple[str, ...] = ()  # per-entry keys kept on the samples


TBPS_FORMATS: dict[str, TbpsFormat] = {
    f.name: f
    for f in (
        TbpsFormat("cuhk-pedes", ("reid_raw.json",), passthrough=("attributes", "family", "negative_texts")),
        TbpsFormat("icfg-pedes", ("icfg-pedes.json", "icfg_pedes.json")),
        TbpsFormat("rstpreid", ("data_captions.json",), image_key="img_path"),
        TbpsFormat(
            "synth-pedes",
            ("synthpedes_dataset.json",),
            has_split=False,
            passthrough=("attributes", "prompt_caption"),
        ),
        TbpsFormat("luperson-t", (), id_key=None, has_split=False),
    )
}


def split_of(value: Any) -> str:
    """IRRA's rule: "train" and "test" are themselves, anything else is validation."""
    return value if value in ("train", "test") else "val"


def read_tbps_entries(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The annotation's entries (a JSON list of objects); `DataError` naming the file otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text: {err}") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON: {err.msg} (line {err.lineno})") from err
    if not isinstance(data, list):
        raise DataError(
            f"{path}: a TBPS annotation is a JSON list of image entries, got a {type(data).__name__}"
        )
    bad = next((i for i, e in enumerate(data) if not isinstance(e, dict)), None)
    if bad is not None:
        raise DataError(f"{path}: entry {bad} is a JSON {type(data[bad]).__name__}, not an object")
    return data


def _raw_id(entry: Mapping[str, Any], fmt: TbpsFormat, index: int, path: Path) -> int:
    if fmt.id_key is None:
        return index
    if fmt.id_key not in entry:
        raise DataError(f"{path}: entry {index} has no {fmt.id_key!r}; it has {sorted(entry)}")
    value = entry[fmt.id_key]
    try:
        if isinstance(value, bool) or float(value) != int(value):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: entry {index} has id {value!r}, not an integer") from None


def _check_entry(entry: Mapping[str, Any], fmt: TbpsFormat, index: int, path: Path) -> None:
    if fmt.image_key not in entry:
        hint = " (RSTPReid names it img_path)" if "img_path" in entry else ""
        raise DataError(f"{path}: entry {index} has no {fmt.image_key!r}{hint}; it has {sorted(entry)}")
    captions = entry.get("captions")
    if not isinstance(captions, list):
        raise DataError(f"{path}: entry {index} has no 'captions' list (got {type(captions).__name__})")


def _check_splits(splits_of_id: Mapping[int, dict[str, int]], path: Path) -> None:
    """An identity must belong to one split: a person seen in training and searched for in the test would
    make the test measure memory, not search."""
    for raw, where in splits_of_id.items():
        if len(where) > 1:
            named = ", ".join(f"{s} (entry {i})" for s, i in sorted(where.items()))
            raise DataError(f"{path}: identity {raw} appears in more than one split: {named}")


class TbpsAnnotations(ImageTextSource):
    """One split of a TBPS annotation file (see the module docstring for the formats and pid rules).

    Args:
        path: the annotation JSON.
        split: "train", "test" or "val"; a format without splits has only "train".
        fmt: a name of `TBPS_FORMATS`; None picks it by file name (default CUHK-PEDES's keys).
        image_root: where `file_path`/`img_path` are relative to (default `<folder>/imgs` if it exists,
            else `<folder>`).
        captions: "each" (one sample per caption, training), "all" (one per image with every caption:
            evaluation), "random" or "first".
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        fmt: str | None = None,
        image_root: str | os.PathLike | None = None,
        captions: CaptionMode = "each",
    ):
        self.path = Path(path)
        self.format = TBPS_FORMATS[fmt] if fmt is not None else format_for(self.path)
        if split not in ("train", "test", "val"):
            raise DataError(f"{self.path}: split must be 'train', 'test' or 'val', got {split!r}")
        root = Path(image_root) if image_root is not None else _default_root(self.path)
        entries = read_tbps_entries(self.path)
        kept: list[tuple[int, int, dict[str, Any]]] = []  # (entry index, raw id, entry)
        splits_of_id: dict[int, dict[str, int]] = {}
        for i, entry in enumerate(entries):
            _check_entry(entry, self.format, i, self.path)
            raw = _raw_id(entry, self.format, i, self.path)
            entry_split = split_of(entry.get("split")) if self.format.has_split else "train"
            splits_of_id.setdefault(raw, {}).setdefault(entry_split, i)
            if entry_split == split:
                kept.append((i, raw, entry))
        _check_splits(splits_of_id, self.path)
        if not kept:
            found = sorted({s for where in splits_of_id.values() for s in where})
            raise DataError(f"{self.path}: no entry in split {split!r}; the file has {found}")
        # Training pids run 0..N-1 over the split's identities (what classifier-style losses index).
        contiguous = {raw: p for p, raw in enumerate(sorted({raw for _, raw, _ in kept}))}
        self.num_identities = len(contiguous)
        records = [
            Record(
                image_path=root / str(entry[self.format.image_key]),
                captions=list(entry["captions"]),
                sample_id=i,
                extra={
                    "pid": contiguous[raw] if split == "train" else raw,
                    "person_id": raw,
                    "image_id": i,
                    **{k: entry[k] for k in self.format.passthrough if k in entry},
                },
            )
            for i, raw, entry in kept
        ]
        super().__init__(records, captions, self.path)


def format_for(path: Path) -> TbpsFormat:
    """The format a file's name says (CUHK-PEDES's keys for an unknown name)."""
    name = path.name.lower()
    return next((f for f in TBPS_FORMATS.values() if name in f.files), TBPS_FORMATS["cuhk-pedes"])


def _default_root(path: Path) -> Path:
    return path.parent / "imgs" if (path.parent / "imgs").is_dir() else path.parent


def build_tbps(fmt: str):
    """The data-kind builder of format `fmt` (`register_data_kind`)."""

    def build(path: str, split: str, captions: str, options: Mapping[str, Any]) -> Dataset:
        return TbpsAnnotations(
            path,
            split=split_of(split) if split != "train" else "train",
            fmt=fmt,
            image_root=options.get("image_root"),
            captions=captions,  # type: ignore[arg-type]
        )

    return build


def tbps_suffixes(fmt: str) -> Sequence[str]:
    """File names `data_kind: auto` recognises as format `fmt`."""
    return TBPS_FORMATS[fmt].files
