"""`local_bert_dir`: a BERT config and tokenizer folder written locally, loaded by transformers like a hub id."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoTokenizer

from vlzoo.core.weights import local_bert_dir

CONFIG = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def test_the_folder_loads_through_transformers_and_keeps_its_words_whole():
    folder = local_bert_dir("tiny-test-bert", ["pedestrian", "backpack"], CONFIG, punctuation=".,")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.tokenize("Pedestrian, backpack.") == ["pedestrian", ",", "backpack", "."]
    assert tokenizer.tokenize("bag") == ["b", "##a", "##g"]  # any lower-case word still tokenizes
    model = AutoModel.from_config(AutoConfig.from_pretrained(folder))  # random weights: config only
    assert model.config.hidden_size == 32 and model.config.vocab_size == len(tokenizer)


def test_written_once_and_a_changed_vocabulary_is_a_new_folder():
    first = local_bert_dir("tiny-test-bert", ["pedestrian"], CONFIG, punctuation=".")
    stamp = (Path(first) / "config.json").stat().st_mtime_ns
    assert local_bert_dir("tiny-test-bert", ["pedestrian"], CONFIG, punctuation=".") == first
    assert (Path(first) / "config.json").stat().st_mtime_ns == stamp
    other = local_bert_dir("tiny-test-bert", ["pedestrian", "handbag"], CONFIG, punctuation=".")
    assert other != first and Path(other).parent == Path(first).parent
    assert not [p for p in Path(first).parent.iterdir() if p.name.startswith(".")]  # no staging left
