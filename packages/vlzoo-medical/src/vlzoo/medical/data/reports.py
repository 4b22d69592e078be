"""Image-report pairs of the medical datasets, as vlzoo sources yielding sample dicts.

- `RocoPairs`: ROCO's `captions.txt` (`id<TAB>caption` per line, no header) plus an image folder whose
  files are named by id (`ROCO_00020.jpg`).
- `MimicReports`: a MIMIC-CXR-style CSV: an image path column and either `findings` / `impression`
  columns (as the MIMIC-CXR section parser writes them) or a free-text `report` with `FINDINGS:` /
  `IMPRESSION:` headers; `section` picks one or both (concatenated, findings first).
- `MedConceptPairs`: MedConcept-23M JSON lines (`caption`, `image`, `umls_meta_info: [{umls_cui,
  start_char, end_char}, ...]`, or the minimal `[[start, end], ...]`): samples carry `"concepts"`, a list
  of `{"cui", "start", "end", "name"}` (character spans into the caption, `name` its text; `cui` is None
  in the minimal form).
- `VolumeReports`: 3D volume-report pairs from a CSV or JSONL whose volume column holds a NIfTI file or a
  DICOM series folder; samples carry the `Volume` (RAS, HU) as `"image"`, for the model's
  `volume_transform`.

As everywhere in vlzoo, a file that can't be parsed raises `DataError` naming it, while a bad sample
becomes a skip marker with its reason: "report has no text", a concept span outside its caption, an image
that is missing or unreadable. JSONL and CSV files that carry a `split` field are filtered by split.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vlzoo.core.data import (
    IMAGE_EXTENSIONS,
    CaptionMode,
    ImageTextSource,
    Record,
    Sample,
    load_record,
    read_csv_rows,
    read_jsonl,
    skip_marker,
)
from vlzoo.core.errors import DataError
from vlzoo.medical.data.images import DICOM_IMAGE_SUFFIXES
from vlzoo.medical.data.volumes import read_volume

NO_TEXT = "report has no text"
SECTIONS = ("findings", "impression", "both")
_SPLIT_ALIASES = {"val": {"val", "validate", "validation"}, "test": {"test"}, "train": {"train"}}


class ReportPairs(ImageTextSource):
    """An `ImageTextSource` whose records may carry a problem found while reading the index file (a report
    with no text, a concept span outside the caption): such a record's sample is a skip marker."""

    def __init__(self, records: list[Record], captions: CaptionMode, where: Any, problems: Mapping[int, str]):
        super().__init__(records, captions, where)
        self.problems = dict(problems)

    def __getitem__(self, index: int) -> Sample:
        rec_index, _ = self._index[index]
        problem = self.problems.get(rec_index)
        if problem is not None:
            rec = self.records[rec_index]
            return skip_marker(rec.sample_id, rec.image_path, problem)
        return super().__getitem__(index)


def _keep_split(entry_split: Any, split: str | None) -> bool:
    if split is None or entry_split is None:
        return True
    return str(entry_split).lower() in _SPLIT_ALIASES.get(split, {split})


def _check_split(records: list[Record], splits_seen: set[str], split: str | None, where: Path) -> None:
    if not records:
        raise DataError(f"{where}: no sample in split {split!r}; the file has splits {sorted(splits_seen)}")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


# ------------------------------------------------------------------------------------------------ ROCO


class RocoPairs(ReportPairs):
    """ROCO: `captions.txt` lines `id<TAB>caption` and `image_root/<id>.<ext>` (default: the `images`
    folder next to the file). `min_words` skips shorter captions (PTUnifier drops those under 3 words)."""

    def __init__(
        self,
        path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        captions: CaptionMode = "first",
        min_words: int = 0,
    ):
        self.path = Path(path)
        root = Path(image_root) if image_root is not None else self.path.parent / "images"
        if not root.is_dir():
            raise DataError(f"{self.path}: the image folder {root} does not exist")
        extensions = {*IMAGE_EXTENSIONS, *DICOM_IMAGE_SUFFIXES}
        by_id = {
            p.stem: p for p in root.iterdir() if p.suffix.lower() in extensions
        }  # one listing, not N stats
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError as err:
            raise DataError(f"{self.path}: file not found") from err
        except UnicodeDecodeError as err:
            raise DataError(f"{self.path}: not UTF-8 text: {err}") from err
        records: list[Record] = []
        problems: dict[int, str] = {}
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise DataError(f"{self.path}: line {lineno} has no tab between the id and the caption")
            sample_id, caption = (part.strip() for part in line.split("\t", 1))
            if lineno == 1 and sample_id.lower() in ("id", "image_id", "name"):
                continue  # a header line
            image = by_id.get(sample_id)
            if not caption:
                problems[len(records)] = NO_TEXT
            elif min_words and len(caption.split()) < min_words:
                problems[len(records)] = f"report has fewer than {min_words} words"
            elif image is None:
                problems[len(records)] = f"no image named {sample_id}.* in {root}"
            records.append(Record(image or root / sample_id, [caption], sample_id, {}))
        super().__init__(records, captions, self.path, problems)


# ------------------------------------------------------------------------------------------- MIMIC-CXR

_SECTION_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z &/]*[A-Z]):", re.MULTILINE)


def report_sections(report: str) -> dict[str, str]:
    """`{"findings": ..., "impression": ...}` of a free-text radiology report with upper-case headers
    (`FINDINGS:`, `IMPRESSION:`); other sections are kept under their lower-cased header names."""
    sections: dict[str, str] = {}
    matches = list(_SECTION_HEADER.finditer(report))
    for m, nxt in zip(matches, [*matches[1:], None]):
        body = report[m.end() : nxt.start() if nxt else len(report)]
        sections[m.group(1).strip().lower()] = " ".join(body.split())
    return sections


def pick_section(findings: str, impression: str, section: str) -> str:
    """One section of a report, or `"both"`: findings then impression, joined by a space."""
    if section == "findings":
        return findings
    if section == "impression":
        return impression
    return " ".join(t for t in (findings, impression) if t)


class MimicReports(ReportPairs):
    """MIMIC-CXR-style report CSV: `img_key` (image path, relative to `image_root`, default the CSV's
    folder), and `findings` / `impression` columns or a free-text `report` column split into sections.
    `section`: `"findings"`, `"impression"` or `"both"`. A `split` column (MIMIC-CXR-JPG's train /
    validate / test) is filtered by `split` (`"val"` matches `"validate"`)."""

    def __init__(
        self,
        path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        img_key: str = "path",
        section: str = "both",
        split: str | None = None,
        id_key: str | None = None,
        captions: CaptionMode = "first",
    ):
        if section not in SECTIONS:
            raise DataError(f"{path}: section must be one of {SECTIONS}, got {section!r}")
        self.path = Path(path)
        root = Path(image_root) if image_root is not None else self.path.parent
        rows, columns = read_csv_rows(self.path)
        has_sections = "findings" in columns or "impression" in columns
        free_text = next((c for c in ("report", "text") if c in columns), None)
        if img_key not in columns:
            raise DataError(f"{self.path}: no image column {img_key!r}; the columns are {columns}")
        if not has_sections and free_text is None:
            raise DataError(
                f"{self.path}: no report column: expected 'findings' / 'impression' or 'report'; "
                f"the columns are {columns}"
            )
        records: list[Record] = []
        problems: dict[int, str] = {}
        splits_seen = {str(r.get("split")) for r in rows if r.get("split")}
        for i, row in enumerate(rows):
            if not _keep_split(row.get("split"), split):
                continue
            if has_sections:
                findings, impression = _text(row.get("findings")), _text(row.get("impression"))
            else:
                parts = report_sections(row.get(free_text) or "")  # type: ignore[arg-type]
                findings, impression = parts.get("findings", ""), parts.get("impression", "")
            text = pick_section(findings, impression, section)
            if not text:
                problems[len(records)] = f"{NO_TEXT} (section {section!r})"
            extra = {
                k: v for k, v in row.items() if k and k not in (img_key, "findings", "impression", free_text)
            }
            sample_id = row[id_key] if id_key else i
            records.append(Record(root / row[img_key], [text], sample_id, extra))
        _check_split(records, splits_seen, split, self.path)
        super().__init__(records, captions, self.path, problems)


# ------------------------------------------------------------------------------------------ MedConcept


def parse_concepts(caption: str, meta: Any) -> tuple[list[dict[str, Any]], str | None]:
    """`(concepts, problem)` from a MedConcept `umls_meta_info` value: dicts with `umls_cui`, `start_char`,
    `end_char`, or `[start, end]` pairs. A span must satisfy `0 ≤ start < end ≤ len(caption)`."""
    if meta is None:
        return [], None
    if not isinstance(meta, list):
        return [], f"umls_meta_info is a {type(meta).__name__}, not a list"
    concepts = []
    for item in meta:
        if isinstance(item, dict):
            cui, start, end = item.get("umls_cui"), item.get("start_char"), item.get("end_char")
        elif isinstance(item, list | tuple) and len(item) == 2:
            cui, (start, end) = None, item
        else:
            return [], f"umls_meta_info entry {item!r} is neither a dict nor a [start, end] pair"
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            return [], f"concept span ({start!r}, {end!r}) is not a pair of integers"
        if not 0 <= start < end <= len(caption):
            return [], f"concept span [{start}, {end}) lies outside the caption of length {len(caption)}"
        concepts.append({"cui": cui, "start": start, "end": end, "name": caption[start:end]})
    return concepts, None


def _strip_caption(caption: str, concepts: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The caption without surrounding whitespace (as the samples carry it), spans shifted to match."""
    lead = len(caption) - len(caption.lstrip())
    stripped = caption.strip()
    shifted = []
    for c in concepts:
        start, end = max(c["start"] - lead, 0), min(c["end"] - lead, len(stripped))
        if start < end:
            shifted.append({**c, "start": start, "end": end, "name": stripped[start:end]})
    return stripped, shifted


class MedConceptPairs(ReportPairs):
    """MedConcept-style JSONL: `image` (relative to `image_root`, default the file's folder), `caption` and
    `umls_meta_info`; samples carry `"text"` and `"concepts"` (see the module docstring). A line with a
    `split` field is kept only in that split."""

    def __init__(
        self,
        path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        split: str | None = None,
        captions: CaptionMode = "first",
        img_key: str = "image",
        caption_key: str = "caption",
    ):
        self.path = Path(path)
        root = Path(image_root) if image_root is not None else self.path.parent
        records: list[Record] = []
        problems: dict[int, str] = {}
        splits_seen: set[str] = set()
        for lineno, obj in read_jsonl(self.path):
            if obj.get("split") is not None:
                splits_seen.add(str(obj["split"]))
            if not _keep_split(obj.get("split"), split):
                continue
            if img_key not in obj:
                raise DataError(f"{self.path}: line {lineno} has no key {img_key!r}; it has {sorted(obj)}")
            raw = obj.get(caption_key)
            raw = raw if isinstance(raw, str) else ""
            concepts, problem = parse_concepts(raw, obj.get("umls_meta_info"))
            caption, concepts = _strip_caption(raw, concepts)
            if not caption:
                problem = NO_TEXT
            if problem is not None:
                problems[len(records)] = f"line {lineno}: {problem}"
            extra = {k: v for k, v in obj.items() if k not in (img_key, caption_key, "umls_meta_info")}
            extra["concepts"] = concepts
            sample_id = obj.get("id", obj.get("fig_id", lineno - 1))
            records.append(Record(root / obj[img_key], [caption], sample_id, extra))
        _check_split(records, splits_seen, split, self.path)
        super().__init__(records, captions, self.path, problems)


# ------------------------------------------------------------------------------------- volume reports


class VolumeReports(ReportPairs):
    """3D volume-report pairs from a CSV or JSONL file: `volume_key` is a NIfTI file or a DICOM series
    folder (relative to `volume_root`, default the file's folder), `report_key` a report string or a list
    of them. Samples: `{"image": Volume (RAS, file units), "text" | "texts", "id", "path", ...}`; an
    unreadable volume (a corrupt NIfTI, a series with a missing slice) becomes a skip marker naming why."""

    def __init__(
        self,
        path: str | os.PathLike,
        split: str | None = None,
        volume_root: str | os.PathLike | None = None,
        volume_key: str = "volume",
        report_key: str = "report",
        captions: CaptionMode = "first",
        id_key: str = "id",
    ):
        self.path = Path(path)
        root = Path(volume_root) if volume_root is not None else self.path.parent
        if self.path.suffix.lower() in (".csv", ".tsv"):
            rows, _ = read_csv_rows(self.path, "\t" if self.path.suffix.lower() == ".tsv" else ",")
            entries: Iterable[tuple[int, dict[str, Any]]] = enumerate(rows, 2)
        else:
            entries = read_jsonl(self.path)
        records: list[Record] = []
        problems: dict[int, str] = {}
        splits_seen: set[str] = set()
        for lineno, obj in entries:
            if obj.get("split"):
                splits_seen.add(str(obj["split"]))
            if not _keep_split(obj.get("split"), split):
                continue
            for key in (volume_key, report_key):
                if key not in obj:
                    raise DataError(f"{self.path}: line {lineno} has no key {key!r}; it has {sorted(obj)}")
            reports = obj[report_key] if isinstance(obj[report_key], list) else [obj[report_key]]
            reports = [r.strip() for r in reports if isinstance(r, str) and r.strip()]
            if not reports:
                problems[len(records)] = NO_TEXT
            extra = {k: v for k, v in obj.items() if k not in (volume_key, report_key, id_key) and k}
            sample_id = obj.get(id_key, len(records))
            records.append(Record(root / obj[volume_key], reports, sample_id, extra))
        _check_split(records, splits_seen, split, self.path)
        super().__init__(records, captions, self.path, problems)

    def __getitem__(self, index: int) -> Sample:
        rec_index, cap_index = self._index[index]
        rec = self.records[rec_index]
        if rec_index in self.problems:
            return skip_marker(rec.sample_id, rec.image_path, self.problems[rec_index])
        # A DICOM series is a folder, not a file with a suffix: read every volume with `read_volume`.
        return load_record(rec, self.captions, cap_index, decode=_read_volume)


def _read_volume(path: Any, name: str) -> Any:
    return read_volume(path)


# --------------------------------------------------------------------------------- data-kind builders


def _option(options: Mapping[str, Any], key: str, default: str) -> str:
    """A datamodule option for this format: the user's value, else this format's own default."""
    return str(options.get(key) or default)


def build_roco(path: str, split: str, captions: str, options: Mapping[str, Any]) -> ReportPairs:
    return RocoPairs(path, image_root=options.get("image_root"), captions=captions)  # type: ignore[arg-type]


def build_mimic(path: str, split: str, captions: str, options: Mapping[str, Any]) -> ReportPairs:
    return MimicReports(
        path,
        img_key=_option(options, "img_key", "path"),
        section=str(options.get("section", "both")),
        split=split,
        captions=captions,  # type: ignore[arg-type]
    )


def build_medconcept(path: str, split: str, captions: str, options: Mapping[str, Any]) -> ReportPairs:
    return MedConceptPairs(
        path,
        split=split,
        captions=captions,  # type: ignore[arg-type]
        img_key=_option(options, "img_key", "image"),
        caption_key=_option(options, "caption_key", "caption"),
    )


def build_volume_reports(path: str, split: str, captions: str, options: Mapping[str, Any]) -> ReportPairs:
    return VolumeReports(
        path,
        split=split,
        captions=captions,  # type: ignore[arg-type]
        volume_key=_option(options, "img_key", "volume"),
        report_key=_option(options, "caption_key", "report"),
    )


__all__ = [
    "NO_TEXT",
    "SECTIONS",
    "MedConceptPairs",
    "MimicReports",
    "ReportPairs",
    "RocoPairs",
    "VolumeReports",
    "build_medconcept",
    "build_mimic",
    "build_roco",
    "build_volume_reports",
    "parse_concepts",
    "pick_section",
    "report_sections",
]
