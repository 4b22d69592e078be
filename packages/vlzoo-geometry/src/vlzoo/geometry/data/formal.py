"""GeoX's unified formal annotations: diagram ↔ formal description pairs, the GS-Former's alignment data.

The file (GeoX's `data/alignment/unified_formal_annotations.json`, read by its `GeoCapDataset`) is a list
of `{"image": <path relative to the file or image_root>, "caption": <formal description>, "image_id": ...}`.
A formal description is a list of clauses in Geometry3K's logic-form language joined by "; ":
"Triangle(A,B,C); Perpendicular(Line(A,C),Line(B,C)); Equals(LengthOf(Line(A,C)),3)".

Data kind `geo-formal` yields the package's sample dict with `formal` (and `text`) the caption and the
problem fields empty (`question` "", no choices, `answer` -1). `pre_caption` is GeoX's caption cleaning
(its `TextProcessor.pre_caption`: lower case, `[.!"()*#:;~]` to spaces, at most 64 words), which the
alignment stage applies before tokenizing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlzoo.core.errors import DataError
from vlzoo.geometry.data.geoqa import GeoEntry, GeoProblemSet, _load_json

__all__ = ["build_geo_formal", "formal_clauses", "pre_caption", "read_formal_annotations"]

_PUNCTUATION = re.compile(r"([.!\"()*#:;~])")


def pre_caption(caption: str, max_words: int = 64) -> str:
    """GeoX's caption cleaning before tokenization (lower case, punctuation to spaces, `max_words` words)."""
    words = _PUNCTUATION.sub(" ", caption.lower()).split()
    return " ".join(words[:max_words])


def formal_clauses(formal: str) -> list[str]:
    """ "A(B); C(D)" → ["A(B)", "C(D)"]."""
    return [c.strip() for c in formal.split(";") if c.strip()]


def read_formal_annotations(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None
) -> list[GeoEntry]:
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: must hold a list of {{image, caption, image_id}}")
    root = Path(image_root) if image_root else Path(path).parent
    entries = []
    for i, record in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(record, Mapping) or not isinstance(record.get("image"), str):
            raise DataError(f"{where}: needs an image path")
        caption = record.get("caption")
        if not isinstance(caption, str):
            raise DataError(f"{where}: needs a caption (the formal description)")
        fields = {
            "id": str(record.get("image_id", i)),
            "question": "",
            "choices": [],
            "choice_values": [],
            "answer": -1,
            "program": [],
            "numbers": [],
            "formal": caption.strip(),
            "problem_type": "other",
            "needs_diagram": False,
        }
        reason = None if caption.strip() else "empty caption"
        entries.append(GeoEntry(fields, root / record["image"], where, reason))
    return entries


def build_geo_formal(path: str, split: str, captions: str, options: Mapping[str, Any]) -> GeoProblemSet:
    """Data kind `geo-formal`: one unified-formal-annotations file."""
    return GeoProblemSet(read_formal_annotations(path, options.get("image_root")), path, "formal")
