"""Hugging Face model folders written locally: what a `-tiny` model names instead of a hub id, so that it
builds, trains and tests with no hub at all."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from vlzoo.core.weights.hub import cache_dir

__all__ = ["local_bert_dir"]

# BERT's special tokens, at ids 0-4 here (BERT's own vocab puts them elsewhere: only their names matter).
_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


def wordpiece_vocab(words: Iterable[str], punctuation: str) -> list[str]:
    """Special tokens, `punctuation`, single characters and their `##` continuations (so any lower-case
    text tokenizes), then `words` (so a domain's own captions stay short)."""
    chars = list(_CHARS)
    whole = [w for w in dict.fromkeys(words) if w not in chars]
    return [*_SPECIALS, *punctuation, *chars, *[f"##{c}" for c in chars], *whole]


def local_bert_dir(name: str, words: Iterable[str], config: Mapping[str, int], punctuation: str) -> str:
    """A folder with a BERT config (`config`'s fields, vocab size from the vocabulary) and its fast WordPiece
    tokenizer, for random-weight BERTs; `transformers` loads it like a hub id.

    Written once under `$VLZOO_HOME/hf/<name>-<hash>` (the hash covers vocabulary and config, so a change is
    a new folder) through a staging folder renamed into place, so that parallel workers never read half a
    folder.
    """
    from transformers import BertConfig, BertTokenizerFast

    vocab = wordpiece_vocab(words, punctuation)
    config = {**config, "vocab_size": len(vocab)}
    digest = hashlib.sha256(("\n".join(vocab) + repr(sorted(config.items()))).encode()).hexdigest()[:12]
    target = cache_dir() / "hf" / f"{name}-{digest}"
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-{uuid.uuid4().hex[:6]}-", dir=target.parent))
    try:
        (staging / "vocab.txt").write_text("\n".join(vocab) + "\n")
        # Read back from vocab.txt (the one constructor argument every transformers version agrees on).
        BertTokenizerFast.from_pretrained(staging, do_lower_case=True).save_pretrained(staging)
        BertConfig(**config).save_pretrained(staging)
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():  # not another process winning the race: a real error
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)
