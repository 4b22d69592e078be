"""A tiny BERT (config + fast WordPiece tokenizer, random weights) written locally for the `-tiny` models.

The full-size person models name `bert-base-uncased`; their tiny variants need a BERT whose tokenizer files
exist without the hub. The vocabulary holds BERT's special tokens, single characters and their `##`
continuations (so any lower-case caption tokenizes) and whole words of the person and face captions (so
the toy worlds' captions stay short).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from vlzoo.core.weights import cache_dir

__all__ = ["TINY_BERT_CONFIG", "tiny_bert_dir"]

# Words of the generated captions: person-toyworld's parts and face-toyworld's attributes.
_WORDS = """
a an the with and in of on wearing carrying has have is who no without his her their this photo picture
person pedestrian man woman men women boy girl lady guy male female young old face portrait
short long hair bald bangs fringe black brown blonde blond grey gray white red blue green yellow purple
shirt jacket coat trousers shorts skirt shoes bag backpack handbag pants top jeans dress
smiling smile smiles neutral expression mouth open closed glasses eyeglasses spectacles hat cap beard
bearded mustache moustache shaved clean earrings pale skin dark light tanned slightly big small
"""

# Special tokens in BERT's order of ids 0-4 here (BERT's own vocab puts them elsewhere: only names matter).
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

TINY_BERT_CONFIG = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}


def _vocab() -> list[str]:
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    punct = list(".,;:!?'\"()-/&")
    words = [w for w in dict.fromkeys(_WORDS.split()) if w not in chars]
    return [*_SPECIALS, *punct, *chars, *[f"##{c}" for c in chars], *words]


def tiny_bert_dir(max_positions: int = 128) -> str:
    """A local directory with a tiny BERT config and its WordPiece tokenizer, written once under
    `$VLZOO_HOME/hf/` (the name hashes the contents) through a staging folder renamed into place, so that
    parallel workers never read half a directory."""
    from transformers import BertConfig, BertTokenizerFast

    vocab = _vocab()
    config = {**TINY_BERT_CONFIG, "max_position_embeddings": max_positions, "vocab_size": len(vocab)}
    digest = hashlib.sha256(("\n".join(vocab) + repr(sorted(config.items()))).encode()).hexdigest()[:12]
    target = cache_dir() / "hf" / f"tiny-person-bert-{digest}"
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-{uuid.uuid4().hex[:6]}-", dir=target.parent))
    try:
        (staging / "vocab.txt").write_text("\n".join(vocab) + "\n")
        BertTokenizerFast.from_pretrained(staging, do_lower_case=True).save_pretrained(staging)
        BertConfig(**config).save_pretrained(staging)
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():  # not another process winning the race: a real error
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)
