"""ICDAR-style detection annotations: per-image ground-truth text files and the datasets built on them.

A ground-truth file has one word per line, `x1,y1,x2,y2,...,xn,yn,transcription`: ICDAR 2015 writes four
points (clockwise from the word's top-left), Total-Text-style (MMOCR's txt conversion) polygons more. The
transcription may itself contain commas; `###` marks a don't-care region. ICDAR 2015's files start with a
UTF-8 byte-order mark, which is dropped.

A dataset is either a folder with `images/` and `gt/` (gt file `gt_<image stem>.txt` as ICDAR 2015 names
them, or `<image stem>.txt`), or an index JSON `{"splits": {"train": [{"image": ..., "gt": ...}, ...]}}`
(paths relative to the JSON) as `ocr-toyworld` writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from vlzoo.core import DataError
from vlzoo.core.data import IMAGE_EXTENSIONS

DONT_CARE = "###"


@dataclass(frozen=True)
class TextInstance:
    """One annotated word: its polygon `[N, 2]` float32 and transcription (`###` = don't care)."""

    polygon: np.ndarray
    text: str

    @property
    def ignore(self) -> bool:
        return self.text == DONT_CARE


@dataclass(frozen=True)
class DetectionRecord:
    """One image of a detection dataset: where it is and its words (read when the record is built)."""

    image_path: Path
    gt_path: Path | None
    instances: list[TextInstance] = field(default_factory=list)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def parse_gt_line(line: str, where: str, points: int | None = None) -> TextInstance:
    """One gt line → `TextInstance`; `where` ("file:line") names it in errors. `points`: the number of
    polygon points every line has (4 for ICDAR 2015), or None to take every leading number as a coordinate
    (then a line of numbers only ends in its transcription)."""
    tokens = [t.strip() for t in line.split(",")]
    if points is not None:
        n = 2 * points
        if len(tokens) <= n or not all(_is_number(t) for t in tokens[:n]):
            raise DataError(f"{where}: expected {n} coordinates and a transcription, got {line!r}")
    else:
        n = next((i for i, t in enumerate(tokens) if not _is_number(t)), len(tokens))
        if n == len(tokens):
            n -= 1  # a numeric transcription ("2014")
    if n % 2:
        raise DataError(f"{where}: an odd number of coordinates ({n}) in {line!r}")
    if n < 6:
        raise DataError(f"{where}: a polygon needs at least 3 points, got {n // 2} in {line!r}")
    polygon = np.array([float(t) for t in tokens[:n]], dtype=np.float32).reshape(-1, 2)
    text = ",".join(line.split(",")[n:]).strip()
    geom = shapely.Polygon(polygon)
    if not geom.is_valid:
        raise DataError(
            f"{where}: the polygon is self-intersecting or degenerate ({shapely.is_valid_reason(geom)})"
        )
    return TextInstance(polygon, text)


def read_gt_file(path: str | Path, points: int | None = None) -> list[TextInstance]:
    """Every word of a gt file (blank lines skipped); a bad line is a `DataError` naming file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the ground truth ({err})") from err
    return [parse_gt_line(line, f"{path}:{i}", points) for i, line in enumerate(lines, 1) if line.strip()]


def format_gt_line(polygon: np.ndarray, text: str) -> str:
    coords = ",".join(str(round(float(v))) for v in np.asarray(polygon).reshape(-1))
    return f"{coords},{text}"


def write_gt_file(path: str | Path, instances: list[TextInstance]) -> None:
    Path(path).write_text(
        "".join(format_gt_line(i.polygon, i.text) + "\n" for i in instances), encoding="utf-8"
    )


def _gt_for(image: Path, gt_dir: Path) -> Path:
    for name in (f"gt_{image.stem}.txt", f"{image.stem}.txt"):
        if (gt_dir / name).is_file():
            return gt_dir / name
    raise DataError(f"{image}: no ground truth gt_{image.stem}.txt or {image.stem}.txt in {gt_dir}")


def _folder_records(root: Path, points: int | None) -> list[DetectionRecord]:
    images = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise DataError(f"{root / 'images'}: no images")
    records = []
    for image in images:
        gt = _gt_for(image, root / "gt")
        records.append(DetectionRecord(image, gt, read_gt_file(gt, points)))
    return records


def read_index(path: str | Path, split: str, points: int | None = None) -> list[DetectionRecord]:
    """The records of `split` of an index JSON."""
    path = Path(path)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the dataset index ({err})") from err
    splits = index.get("splits") if isinstance(index, dict) else None
    if not isinstance(splits, dict) or split not in splits:
        raise DataError(f"{path}: no split {split!r} (splits: {sorted(splits or {})})")
    records = []
    for i, entry in enumerate(splits[split]):
        if not isinstance(entry, dict) or "image" not in entry or "gt" not in entry:
            raise DataError(f"{path}: splits.{split}[{i}] needs 'image' and 'gt', got {entry!r}")
        gt = path.parent / entry["gt"]
        records.append(DetectionRecord(path.parent / entry["image"], gt, read_gt_file(gt, points)))
    return records


def read_detection_records(
    path: str | Path, split: str = "train", points: int | None = None
) -> list[DetectionRecord]:
    """The records of a detection dataset: a folder with `images/` and `gt/`, or an index JSON's `split`."""
    path = Path(path)
    if path.is_dir():
        if not (path / "images").is_dir() or not (path / "gt").is_dir():
            raise DataError(f"{path}: a detection dataset folder needs images/ and gt/ subfolders")
        return _folder_records(path, points)
    if path.suffix == ".json":
        return read_index(path, split, points)
    raise DataError(f"{path}: not a detection dataset (a folder with images/ and gt/, or an index .json)")


def iter_words(records: list[DetectionRecord]) -> Iterator[tuple[Path, TextInstance]]:
    for record in records:
        for instance in record.instances:
            yield record.image_path, instance


__all__ = [
    "DONT_CARE",
    "DetectionRecord",
    "TextInstance",
    "format_gt_line",
    "iter_words",
    "parse_gt_line",
    "read_detection_records",
    "read_gt_file",
    "read_index",
    "write_gt_file",
]
