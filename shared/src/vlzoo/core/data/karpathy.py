"""The Karpathy split JSON writer: one format every generated dataset of the zoo writes and
`KarpathySplits` reads.

    {"dataset": NAME, ...meta, "images": [{"filepath", "filename", "split", "imgid", "sentids",
                                             "sentences": [{"raw", "tokens", "imgid", "sentid"}], ...extra}]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from vlzoo.core.errors import ConfigError

# The keys an image record passed to `write_karpathy_json` must have; every other key is copied after
# "sentences", in the record's order (a generator's ground truth: "scene", "case", "class_name", ...).
IMAGE_KEYS = ("filepath", "filename", "split", "imgid", "captions")


def karpathy_images(
    images: Iterable[Mapping[str, Any]], tokenize: Callable[[str], list[str]] = str.split
) -> list[dict[str, Any]]:
    """Karpathy image entries from records with `IMAGE_KEYS`; sentence ids run on across images."""
    entries: list[dict[str, Any]] = []
    sentid = 0
    for record in images:
        missing = [key for key in IMAGE_KEYS if key not in record]
        if missing:
            raise ConfigError(f"Karpathy image record without {missing}: {sorted(record)}")
        imgid = record["imgid"]
        sentences = [
            {"raw": text, "tokens": tokenize(text), "imgid": imgid, "sentid": sentid + j}
            for j, text in enumerate(record["captions"])
        ]
        sentid += len(sentences)
        extra = {k: v for k, v in record.items() if k not in IMAGE_KEYS}
        entries.append(
            {
                "filepath": record["filepath"],
                "filename": record["filename"],
                "split": record["split"],
                "imgid": imgid,
                "sentids": [s["sentid"] for s in sentences],
                "sentences": sentences,
                **extra,
            }
        )
    return entries


def write_karpathy_json(
    path: str | os.PathLike,
    images: Iterable[Mapping[str, Any]],
    dataset: str,
    *,
    tokenize: Callable[[str], list[str]] = str.split,
    **meta: Any,
) -> Path:
    """Write a Karpathy split JSON at `path` (read it with `KarpathySplits`); returns the path.

    `images` are records with `IMAGE_KEYS` (`captions`: that image's sentences, in order) plus any extra
    keys; `meta` are top-level keys written after `"dataset"`.
    """
    path = Path(path)
    path.write_text(json.dumps({"dataset": dataset, **meta, "images": karpathy_images(images, tokenize)}))
    return path


__all__ = ["IMAGE_KEYS", "karpathy_images", "write_karpathy_json"]
