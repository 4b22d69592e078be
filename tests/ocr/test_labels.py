"""Charsets, PARSeq's label normalization order and the character tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlzoo.core import ConfigError, DataError
from vlzoo.ocr.data.labels import (
    CHARSET_36,
    CHARSET_94,
    CharTokenizer,
    filter_charset,
    load_charset,
    normalize_label,
)


def test_default_charsets():
    assert len(CHARSET_94) == 94 and len(set(CHARSET_94)) == 94
    assert all(33 <= ord(c) <= 126 for c in CHARSET_94)  # printable ASCII without space
    assert CHARSET_36 == "0123456789abcdefghijklmnopqrstuvwxyz"
    assert load_charset(None) == CHARSET_94 and load_charset("36") == CHARSET_36


def test_charset_file(tmp_path: Path):
    path = tmp_path / "dict.txt"
    path.write_text("a\nb\n\n#\n", encoding="utf-8")
    assert load_charset(path) == "ab#"
    path.write_text("a\nab\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dict.txt:2: .*one character per line"):
        load_charset(path)
    path.write_text("a\nb\na\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dict.txt:3: character 'a' is listed twice"):
        load_charset(path)
    with pytest.raises(ConfigError, match="neither a name"):
        load_charset(tmp_path / "missing.txt")


def test_case_folds_before_the_charset_filter():
    # PARSeq folds first: "ABC" kept as "abc" under the lowercase charset, not removed
    assert filter_charset("ABC-9", CHARSET_36) == "abc9"
    assert filter_charset("ABC-9", "ABC") == "ABC"
    assert filter_charset("AbC", "AbC") == "AbC"  # a mixed-case charset keeps case
    assert normalize_label(" Ñandú  Straße ", CHARSET_94) == "NanduStrae"  # ß has no ASCII decomposition
    assert normalize_label("\u2460x", CHARSET_36) == "1x"  # NFKD: circled one → 1


def test_tokenizer_layout_and_round_trip():
    tok = CharTokenizer("abc", max_length=4)
    ids = tok(["ab", "", "CAB"])  # "CAB" has no C in the charset... but the charset is lowercase → "cab"
    assert (tok.eos_id, tok.bos_id, tok.pad_id, tok.num_classes) == (0, 4, 5, 4)
    assert ids.tolist() == [[4, 1, 2, 0, 5, 5], [4, 0, 5, 5, 5, 5], [4, 3, 1, 2, 0, 5]]
    assert tok.decode(torch.tensor([[1, 2, 0, 3], [3, 3, 3, 3], [0, 1, 1, 1]])) == ["ab", "cccc", ""]
    with pytest.raises(DataError, match="has 5 characters, more than 4"):
        tok(["abcab"])
