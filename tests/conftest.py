"""Fixtures shared by every test folder. Nothing here reaches the network: caches live in temp dirs and
the Hugging Face hub is switched to offline mode; what a test needs (a tokenizer, a BERT) it makes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own $VLZOO_HOME so no test reads another's (or the user's) cached weights."""
    monkeypatch.setenv("VLZOO_HOME", str(tmp_path_factory.mktemp("vlzoo_home")))


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (a module opts in with `pytestmark = pytest.mark.usefixtures(...)`).

    Tiny models and probes (tens of features, hundreds of rows, one token at a time) gain nothing from a
    second thread: each op's OpenMP fork-join costs more than its arithmetic, and on a busy machine a parallel
    region waits a scheduler slice for its second thread (~20 ms per L-BFGS step instead of 0.3 ms)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "a",
    "the",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "triangle",
    "above",
    "below",
    "left",
    "right",
    "of",
    "small",
    "large",
    "dog",
    "cat",
    "photo",
    "chest",
    "x",
    "-",
    "ray",
    "##s",
    ".",
    ",",
]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialized 2-layer BERT and its WordPiece tokenizer, saved by transformers itself."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny_bert")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(TINY_VOCAB) + "\n")
    BertTokenizerFast.from_pretrained(root).save_pretrained(root)  # reads vocab.txt, writes the rest
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(root)
    return root
