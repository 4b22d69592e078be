"""Word accuracy and 1-NED against values computed by hand, with PARSeq's normalization of both sides."""

from __future__ import annotations

import pytest

from vlzoo.core import DataError
from vlzoo.ocr.data.labels import CHARSET_36, CHARSET_94
from vlzoo.ocr.metrics_recognition import edit_distances, recognition_metrics


def test_edit_distances_of_textbook_pairs():
    a = ["kitten", "flaw", "", "abc", "intention", "same", ""]
    b = ["sitting", "lawn", "", "", "execution", "same", "xy"]
    assert edit_distances(a, b).tolist() == [3, 2, 0, 3, 5, 0, 2]


def test_one_wrong_character_in_two_words():
    # "w0rld" vs "world": 1 edit over max length 5 → NED 0.2; mean NED 0.1
    m = recognition_metrics(["Hello", "w0rld"], ["hello", "world"])
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["one_minus_ned"] == pytest.approx(90.0)


def test_unicode_whitespace_and_case_are_normalized_on_both_sides():
    # NFKD: "Café" → "Cafe", the ligature "ﬁ" → "fi"; whitespace removed; lowercase charset folds case
    m = recognition_metrics(["CAFE", "file", "newyork"], ["Café", "\ufb01le", "New York"])
    assert m == {"accuracy": 100.0, "one_minus_ned": 100.0}


def test_characters_outside_the_charset_are_dropped():
    # 36 chars: "don't!" → "dont"; "€5" → "5" (the euro sign has no ASCII decomposition)
    assert recognition_metrics(["dont", "5"], ["don't!", "\u20ac5"]) == {
        "accuracy": 100.0,
        "one_minus_ned": 100.0,
    }
    # 94 chars keep punctuation and case: "dont" vs "don't!" is 2 edits over 6; "hello" vs "Hello" 1 over 5
    m = recognition_metrics(["dont", "hello"], ["don't!", "Hello"], charset=CHARSET_94)
    assert m["accuracy"] == 0.0
    assert m["one_minus_ned"] == pytest.approx(100.0 * (1 - (2 / 6 + 1 / 5) / 2))


def test_an_empty_prediction_is_fully_wrong_and_lengths_differ():
    # "" vs "abc": NED 1; "abcd" vs "ab": 2 edits over 4 → 0.5; "ab" vs "ab": 0 → mean NED 0.5
    m = recognition_metrics(["", "abcd", "ab"], ["abc", "ab", "ab"], charset=CHARSET_36)
    assert m["accuracy"] == pytest.approx(100.0 / 3)
    assert m["one_minus_ned"] == pytest.approx(50.0)


def test_bad_input_is_refused():
    with pytest.raises(DataError, match="2 predictions for 1 labels"):
        recognition_metrics(["a", "b"], ["a"])
    with pytest.raises(DataError, match="at least one word"):
        recognition_metrics([], [])


def test_character_confusions_by_hand():
    from vlzoo.ocr.evaluation_recognition import character_confusions

    c = character_confusions(["cat", "dg", "bird", "xbat"], ["cat", "dog", "bard", "bat"])
    assert c["substitutions"] == {"a→i": 1}  # bird / bard
    assert c["deletions"] == {"o": 1}  # dg / dog
    assert c["insertions"] == {"x": 1}  # xbat / bat
    assert c["error_rate"]["o"] == 1.0 and c["error_rate"]["a"] == pytest.approx(
        1 / 3, abs=1e-4
    )  # a: 3 times


def test_eval_recognition_names_benchmarks_and_weights_the_combined_row(ocr_words, tmp_path):
    import json

    import torch

    from vlzoo.core import create_model
    from vlzoo.core.eval import get_eval_task
    from vlzoo.ocr import cli  # noqa: F401  (registers the ocr evaluation tasks)
    from vlzoo.ocr.data.lmdb import create_lmdb

    labels = (ocr_words / "test" / "labels.txt").read_text().splitlines()
    for name, rows in (("SVT", labels[:3]), ("IIIT5k", labels[3:8])):
        (tmp_path / f"{name}.txt").write_text("\n".join(rows) + "\n")
        create_lmdb(ocr_words / "test", tmp_path / f"{name}.txt", tmp_path / name)
    torch.manual_seed(0)
    model = create_model("dptr-parseq-tiny")
    task = get_eval_task("recognition", "ocr")
    data = f"{tmp_path / 'SVT'},{tmp_path / 'IIIT5k'}"
    metrics = task.run(model, data=data, workers=0, out=tmp_path / "report", ar=False)
    assert list(metrics["benchmarks"]) == ["IIIT5k", "SVT"]  # PARSeq's table order, not the order given
    b = metrics["benchmarks"]
    assert (b["IIIT5k"]["samples"], b["SVT"]["samples"], metrics["combined"]["samples"]) == (5, 3, 8)
    want = (5 * b["IIIT5k"]["one_minus_ned"] + 3 * b["SVT"]["one_minus_ned"]) / 8
    assert metrics["combined"]["one_minus_ned"] == pytest.approx(want)
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["combined"]["samples"] == 8
    assert (tmp_path / "report" / "crops.png").stat().st_size > 1000
    assert set(json.loads((tmp_path / "report" / "confusions.json").read_text())) == {
        "substitutions",
        "deletions",
        "insertions",
        "error_rate",
    }
