"""CLIP BPE tokenizer (offline) against open_clip's, and transformers tokenizers from a local directory."""

from __future__ import annotations

import open_clip
import pytest
import torch

import vlzoo.core as vz
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
    with pytest.raises(TypeError, match="int"):
        ClipTokenizer()(["fine", 3])


def test_hf_tokenizer_from_local_directory(tiny_bert_dir):
    tok = HFTokenizer(str(tiny_bert_dir), context_length=10)
    out = tok(["a red circle", "the small blue square above a green triangle left of the dog"])
    assert out.input_ids.shape == out.attention_mask.shape == (2, 10)
    assert out.attention_mask[0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # [CLS] a red circle [SEP]
    assert out.attention_mask[1].all()  # truncated to 10
    assert tok.decode(out.input_ids[0]) == "a red circle"
