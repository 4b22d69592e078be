"""Character sets and label normalization for scene-text recognition, as the STR literature evaluates.

>>> charset = load_charset(None)                      # the 94 printable ASCII characters (training default)
>>> normalize_label("Caf\u00e9 Noir", CHARSET_36)        # 'cafenoir'
>>> CharTokenizer(CHARSET_94, max_length=25)(["Hi!"])  # LongTensor [1, 27]: [B] H i ! [E] [P] ...

The rules are PARSeq's (`strhub/data/dataset.py`, `strhub/data/utils.py CharsetAdapter`), in this order:
whitespace removed, Unicode NFKD then ASCII (accents dropped), case folded when the charset has one case only
(the 36-character evaluation charset is lowercase), characters outside the charset dropped. Token ids follow
PARSeq and OpenOCR's `dptr_parseq`: `[E]` (end) = 0, the charset's characters 1..C, then `[B]` (begin) and
`[P]` (pad), so the head predicts `C + 1` classes and never `[B]` or `[P]`.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vlzoo.core import ConfigError, DataError

__all__ = [
    "CHARSETS",
    "CHARSET_36",
    "CHARSET_94",
    "CharTokenizer",
    "filter_charset",
    "load_charset",
    "normalize_label",
    "normalize_unicode",
]

# PARSeq's configs/charset/36_lowercase.yaml and 94_full.yaml (the same characters as OpenOCR's
# EN_symbol_dict.txt).
CHARSET_36 = string.digits + string.ascii_lowercase
CHARSET_94 = string.digits + string.ascii_lowercase + string.ascii_uppercase + string.punctuation
CHARSETS = {"36": CHARSET_36, "94": CHARSET_94, "lowercase": CHARSET_36, "full": CHARSET_94}


def load_charset(spec: str | Path | None = None) -> str:
    """A charset by name (`"94"`/`"full"`, `"36"`/`"lowercase"`; None = 94) or from a file with one
    character per line (OpenOCR's dictionary files; blank lines ignored). Duplicates are a `ConfigError`:
    two ids for one character would split its probability."""
    if spec is None:
        return CHARSET_94
    if str(spec) in CHARSETS:
        return CHARSETS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"charset {str(spec)!r} is neither a name ({sorted(CHARSETS)}) nor a file")
    chars: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line:
            continue
        if len(line) != 1:
            raise ConfigError(f"{path}:{lineno}: a charset file holds one character per line, got {line!r}")
        if line in chars:
            raise ConfigError(f"{path}:{lineno}: character {line!r} is listed twice")
        chars.append(line)
    if not chars:
        raise ConfigError(f"{path}: the charset file is empty")
    return "".join(chars)


def normalize_unicode(label: str) -> str:
    """Whitespace removed, then NFKD decomposition kept to its ASCII part ("é" → "e", "ﬁ" → "fi")."""
    label = "".join(label.split())
    return unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()


def filter_charset(label: str, charset: str) -> str:
    """PARSeq's CharsetAdapter: fold the case when the charset has one case only, then drop what is outside."""
    if charset == charset.lower():
        label = label.lower()
    elif charset == charset.upper():
        label = label.upper()
    return re.sub(f"[^{re.escape(charset)}]", "", label)


def normalize_label(label: str, charset: str = CHARSET_94, unicode: bool = True) -> str:
    """A label (or a prediction) as it is trained on and scored: `normalize_unicode` then `filter_charset`."""
    return filter_charset(normalize_unicode(label) if unicode else label, charset)


@dataclass(frozen=True)
class CharTokenizer:
    """Labels → `LongTensor[B, max_length + 2]`: `[B]`, the characters' ids, `[E]`, then `[P]` padding.

    Labels are normalized to the charset first; one longer than `max_length` after that is a `DataError`
    (datasets skip such samples before they reach a batch, as PARSeq does)."""

    charset: str = CHARSET_94
    max_length: int = 25

    @property
    def eos_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return len(self.charset) + 1

    @property
    def pad_id(self) -> int:
        return len(self.charset) + 2

    @property
    def num_classes(self) -> int:
        """What the head predicts: `[E]` and the characters."""
        return len(self.charset) + 1

    def __call__(self, labels: Sequence[str]) -> torch.Tensor:
        index = {c: i + 1 for i, c in enumerate(self.charset)}
        out = torch.full((len(labels), self.max_length + 2), self.pad_id, dtype=torch.long)
        out[:, 0] = self.bos_id
        for row, label in enumerate(labels):
            text = normalize_label(label, self.charset)
            if len(text) > self.max_length:
                raise DataError(f"label {label!r} has {len(text)} characters, more than {self.max_length}")
            out[row, 1 : len(text) + 1] = torch.tensor([index[c] for c in text], dtype=torch.long)
            out[row, len(text) + 1] = self.eos_id
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Predicted class ids `[B, T]` (0 = `[E]`, c = charset[c - 1]) → strings, cut at the first `[E]`."""
        rows = ids.tolist()
        out = []
        for row in rows:
            end = row.index(self.eos_id) if self.eos_id in row else len(row)
            out.append("".join(self.charset[i - 1] for i in row[:end] if 0 < i <= len(self.charset)))
        return out
