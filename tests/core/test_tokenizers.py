"""CLIP BPE tokenizer (offline) against open_clip's, and transformers tokenizers from a local directory."""

from __future__ import annotations

import open_clip
import pytest
import torch

import vlzoo.core as vz
from vlzoo.core.errors import DataError
from vlzoo.core.towers.tokenizers import ClipTokenizer, HFTokenizer

CAPTIONS = [
    "a small red circle above a blue square",
    "A PHOTO of a dog's tail, isn't it?!  3 cats & 12 birds",
    "naïve café — résumé &amp; co.",
    "",
    "word " * 100,
    "emoji 🙂 and 中文 and ünïcödé",
    "tabs\tand\nnewlines   between words",
]


@pytest.mark.parametrize("context_length", [77, 16])
def test_clip_tokenizer_matches_open_clip(context_length):
    ours = ClipTokenizer(context_length)(CAPTIONS)
    reference = open_clip.tokenize(CAPTIONS, context_length=context_length)
    assert ours.input_ids.dtype == torch.long
    assert torch.equal(ours.input_ids, reference)
    # the mask covers start..end tokens and nothing after
    eot_position = (reference == 49407).int().argmax(dim=1, keepdim=True)
    assert torch.equal(ours.attention_mask.bool(), torch.arange(context_length) <= eot_position)


def test_truncated_caption_still_ends_with_eot():
    ids = ClipTokenizer(8)(["one two three four five six seven eight nine ten"]).input_ids[0]
    assert ids[0].item() == 49406 and ids[-1].item() == 49407


def test_clip_decode_roundtrip():
    tok = ClipTokenizer()
    assert tok.decode(tok("a small red circle above a blue square").input_ids[0]) == (
        "a small red circle above a blue square"
    )


def test_model_tokenizer_uses_the_towers_context_length():
    tok = vz.get_tokenizer("clip-vit-tiny")
    assert tok(["a red circle"]).input_ids.shape == (1, 32)


def test_non_string_caption_is_rejected():
    with pytest.raises(DataError, match="strings, got an item of type int"):
        ClipTokenizer()(["fine", 3])


def test_hf_tokenizer_from_local_directory(tiny_bert_dir):
    tok = HFTokenizer(str(tiny_bert_dir), context_length=10)
    out = tok(["a red circle", "the small blue square above a green triangle left of the dog"])
    assert out.input_ids.shape == out.attention_mask.shape == (2, 10)
    assert out.attention_mask[0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # [CLS] a red circle [SEP]
    assert out.attention_mask[1].all()  # truncated to 10
    assert tok.decode(out.input_ids[0]) == "a red circle"


def test_hf_tokenizer_offsets_give_each_tokens_characters(tiny_bert_dir):
    caption = "a red  circle, x-rays"
    out = HFTokenizer(str(tiny_bert_dir), context_length=12)([caption])
    assert out.offsets is not None and out.offsets.shape == (1, 12, 2)
    tokens = HFTokenizer(str(tiny_bert_dir)).backend.convert_ids_to_tokens(out.input_ids[0])
    real = [i for i, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]", "[PAD]")]
    # Each real token's span, cut from the caption, is the token itself (minus WordPiece's "##").
    spans = [caption[int(out.offsets[0, i, 0]) : int(out.offsets[0, i, 1])] for i in real]
    assert (
        spans
        == [tokens[i].removeprefix("##") for i in real]
        == ["a", "red", "circle", ",", "x", "-", "ray", "s"]
    )
    special = [i for i in range(12) if i not in real]
    assert out.offsets[0, special].eq(0).all()  # [CLS], [SEP] and padding cover no characters
    assert out.to("cpu").offsets is not None


def test_hf_tokenizer_offsets_can_be_turned_off(tiny_bert_dir):
    assert HFTokenizer(str(tiny_bert_dir), return_offsets=False)(["a red circle"]).offsets is None
