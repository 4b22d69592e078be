"""A tiny BERT (config + fast WordPiece tokenizer, random weights) written locally for the `-tiny` models.

The full-size person models name `bert-base-uncased`; their tiny variants need a BERT whose tokenizer files
exist without the hub. The vocabulary holds BERT's special tokens, single characters and their `##`
continuations (so any lower-case caption tokenizes) and whole words of the person and face captions (so
the toy worlds' captions stay short).
"""

from __future__ import annotations

from vlzoo.core.weights import local_bert_dir

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

TINY_BERT_CONFIG = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}


def tiny_bert_dir(max_positions: int = 128) -> str:
    """A local folder with a tiny BERT config and its WordPiece tokenizer (`vlzoo.core.weights.local_bert_dir`)."""
    return local_bert_dir(
        "tiny-person-bert",
        _WORDS.split(),
        {**TINY_BERT_CONFIG, "max_position_embeddings": max_positions},
        punctuation=".,;:!?'\"()-/&",
    )
