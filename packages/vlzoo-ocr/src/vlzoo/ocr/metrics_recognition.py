"""Word accuracy and 1 − NED for scene-text recognition, as PARSeq scores its benchmarks.

>>> recognition_metrics(["Hello", "w0rld"], ["hello", "world"])   # {'accuracy': 50.0, 'one_minus_ned': 90.0}

Predictions and labels go through the same normalization (`vlzoo.ocr.data.labels.normalize_label`:
whitespace removed, NFKD to ASCII, case folded for a one-case charset, characters outside the charset
dropped); the charset defaults to the 36-character evaluation charset (0-9a-z). NED is the ICDAR 2019
definition PARSeq uses: edit distance / max(len(prediction), len(label)), averaged over words; two empty
strings are equal (distance 0), a case PARSeq never meets since it drops empty labels when loading.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlzoo.core import DataError
from vlzoo.ocr.data.labels import CHARSET_36, normalize_label

__all__ = ["edit_distances", "recognition_metrics"]


def _codes(words: Sequence[str], width: int, pad: int) -> np.ndarray:
    out = np.full((len(words), width), pad, dtype=np.int64)
    for i, w in enumerate(words):
        out[i, : len(w)] = [ord(c) for c in w]
    return out


def edit_distances(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Levenshtein distances of the pairs `(a[k], b[k])` (unit costs), all pairs at once: the dynamic
    programme runs over character positions and is vectorized over the pairs."""
    if len(a) != len(b):
        raise DataError(f"edit_distances needs as many strings on each side, got {len(a)} and {len(b)}")
    n = len(a)
    la = np.array([len(w) for w in a], dtype=np.int64)
    lb = np.array([len(w) for w in b], dtype=np.int64)
    wa, wb = int(la.max(initial=0)), int(lb.max(initial=0))
    ca, cb = _codes(a, wa, -1), _codes(b, wb, -2)  # different pads: cells past a length are never read
    prev = np.broadcast_to(np.arange(wb + 1), (n, wb + 1)).copy()  # row 0: distance from "" to b[:j]
    result = np.where(la == 0, lb, 0)
    for i in range(1, wa + 1):
        row = np.empty_like(prev)
        row[:, 0] = i
        substitution = prev[:, :-1] + (ca[:, i - 1 : i] != cb)
        deletion = prev[:, 1:] + 1
        best = np.minimum(substitution, deletion)
        for j in range(1, wb + 1):  # insertion depends on the cell to the left: sequential along b
            row[:, j] = np.minimum(best[:, j - 1], row[:, j - 1] + 1)
        done = la == i
        result[done] = row[done, lb[done]]
        prev = row
    return result


def recognition_metrics(
    predictions: Sequence[str], labels: Sequence[str], charset: str | None = None
) -> dict[str, float]:
    """`{"accuracy", "one_minus_ned"}` in percent over the words, after normalizing both sides to `charset`
    (default the 36-character 0-9a-z evaluation charset)."""
    if len(predictions) != len(labels):
        raise DataError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise DataError("recognition_metrics needs at least one word")
    charset = charset or CHARSET_36
    preds = [normalize_label(p, charset) for p in predictions]
    gts = [normalize_label(g, charset) for g in labels]
    dist = edit_distances(preds, gts).astype(np.float64)
    longest = np.maximum([len(p) for p in preds], [len(g) for g in gts])
    ned = np.divide(dist, longest, out=np.zeros_like(dist), where=longest > 0)
    correct = np.array([p == g for p, g in zip(preds, gts)])
    return {"accuracy": 100.0 * float(correct.mean()), "one_minus_ned": 100.0 * (1.0 - float(ned.mean()))}
