"""The METER-style fusion encoder: shapes, masks, bidirectional self-attention and cross-modal flow."""

from __future__ import annotations

import pytest
import torch
from transformers.models.bert.modeling_bert import BertAttention

from vlzoo.core.models.fusion import CoAttentionLayer, FusionConfig, FusionEncoder

TEXT_WIDTH, IMAGE_WIDTH = 24, 40


def _encoder(attn_implementation: str = "sdpa", **kwargs) -> FusionEncoder:
    torch.manual_seed(0)
    cfg = FusionConfig(
        **{
            "hidden_size": 32,
            "num_layers": 2,
            "num_heads": 4,
            "attn_implementation": attn_implementation,
            **kwargs,
        }
    )
    return FusionEncoder(cfg, text_width=TEXT_WIDTH, image_width=IMAGE_WIDTH).eval()


def _inputs(batch: int = 2, text_len: int = 6, image_len: int = 5):
    generator = torch.Generator().manual_seed(1)
    text = torch.randn(batch, text_len, TEXT_WIDTH, generator=generator)
    image = torch.randn(batch, image_len, IMAGE_WIDTH, generator=generator)
    return text, image


def test_output_shapes_and_pooled_pair_feature():
    encoder = _encoder()
    text, image = _inputs()
    out = encoder(text, image)
    assert out.text_tokens.shape == (2, 6, 32)
    assert out.image_tokens.shape == (2, 5, 32)
    # Each pooler is BERT's: tanh(W x_0 + b) on its stream's first token; the pair feature is [text, image].
    pooler = encoder.text_pooler.dense
    expected_text = torch.tanh(out.text_tokens[:, 0] @ pooler.weight.T + pooler.bias)
    torch.testing.assert_close(out.text_pooled, expected_text)
    torch.testing.assert_close(out.pooled, torch.cat([out.text_pooled, out.image_pooled], dim=-1))
    assert out.pooled.shape == (2, 64)


def test_layers_are_transformers_bert_attention_blocks():
    encoder = _encoder()
    assert len(encoder.text_layers) == len(encoder.image_layers) == 2
    layer = encoder.text_layers[0]
    assert isinstance(layer, CoAttentionLayer)
    assert isinstance(layer.attention, BertAttention) and isinstance(layer.crossattention, BertAttention)
    assert not layer.attention.self.is_causal  # what BertLayer(add_cross_attention=True) would make causal
    # BERT's init: N(0, 0.02) weights, zero biases
    weight = layer.attention.self.query.weight
    assert abs(weight.std().item() - 0.02) < 0.003
    assert layer.attention.self.query.bias.abs().max() == 0


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_padded_text_tokens_change_nothing(impl):
    encoder = _encoder(impl)
    text, image = _inputs()
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    padded = encoder(text, image, text_mask=mask)
    # The same first caption without its padding, and with different values in the padded slots.
    short = encoder(text[:1, :4], image[:1])
    garbage = text.clone()
    garbage[0, 4:] = 100.0
    repadded = encoder(garbage, image, text_mask=mask)
    torch.testing.assert_close(padded.text_tokens[0, :4], short.text_tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.image_tokens[0], short.image_tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.pooled[0], short.pooled[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(repadded.image_tokens, padded.image_tokens, atol=1e-5, rtol=1e-5)
    # without the mask, the padded slots would be attended to
    unmasked = encoder(text, image)
    assert not torch.allclose(unmasked.image_tokens[0], short.image_tokens[0], atol=1e-3)


def test_padded_image_tokens_change_nothing():
    encoder = _encoder()
    text, image = _inputs()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    padded = encoder(text, image, image_mask=mask)
    short = encoder(text[:1], image[:1, :3])
    torch.testing.assert_close(padded.text_tokens[0], short.text_tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.image_tokens[0, :3], short.image_tokens[0], atol=1e-5, rtol=1e-5)


def test_self_attention_is_bidirectional_when_every_token_is_real():
    # With no padding transformers builds no mask at all; a causal layer would then ignore later tokens.
    encoder = _encoder()
    text, image = _inputs()
    changed = text.clone()
    changed[:, -1] += 1.0
    first, second = encoder(text, image), encoder(changed, image)
    assert not torch.allclose(first.text_tokens[:, 0], second.text_tokens[:, 0], atol=1e-4)


def test_each_stream_attends_to_the_other():
    encoder = _encoder()
    text, image = _inputs()
    base = encoder(text, image)
    other_image = encoder(text, image + 1.0)
    other_text = encoder(text + 1.0, image)
    assert not torch.allclose(base.text_tokens, other_image.text_tokens, atol=1e-4)
    assert not torch.allclose(base.image_tokens, other_text.image_tokens, atol=1e-4)


def test_one_layer_matches_a_first_principles_co_attention_step():
    encoder = _encoder(num_layers=1)
    text, image = _inputs(batch=1, text_len=3, image_len=2)
    out = encoder(text, image)

    def attend(layer_attention, queries, keys):
        heads, size = 4, 8
        self_ = layer_attention.self
        q = (queries @ self_.query.weight.T + self_.query.bias).view(-1, heads, size).transpose(0, 1)
        k = (keys @ self_.key.weight.T + self_.key.bias).view(-1, heads, size).transpose(0, 1)
        v = (keys @ self_.value.weight.T + self_.value.bias).view(-1, heads, size).transpose(0, 1)
        weights = torch.softmax(q @ k.transpose(1, 2) / size**0.5, dim=-1)
        context = (weights @ v).transpose(0, 1).reshape(-1, heads * size)
        dense = layer_attention.output.dense
        return layer_attention.output.LayerNorm(context @ dense.weight.T + dense.bias + queries)

    def block(layer, x, other):
        x = attend(layer.attention, x, x)
        x = attend(layer.crossattention, x, other)
        hidden = torch.nn.functional.gelu(
            x @ layer.intermediate.dense.weight.T + layer.intermediate.dense.bias
        )
        out_dense = layer.output.dense
        return layer.output.LayerNorm(hidden @ out_dense.weight.T + out_dense.bias + x)

    types = encoder.modality_embeddings.weight
    x = text[0] @ encoder.text_proj.weight.T + encoder.text_proj.bias + types[0]
    y = image[0] @ encoder.image_proj.weight.T + encoder.image_proj.bias + types[1]
    with torch.no_grad():
        torch.testing.assert_close(
            out.text_tokens[0], block(encoder.text_layers[0], x, y), atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(
            out.image_tokens[0], block(encoder.image_layers[0], y, x), atol=1e-5, rtol=1e-4
        )


def test_gradient_checkpointing_keeps_outputs_and_gradients():
    encoder = _encoder(dropout=0.0).train()
    text, image = _inputs()
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    plain = encoder(text, image, text_mask=mask).pooled.square().sum()
    plain.backward()
    grads = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()
    encoder.set_grad_checkpointing(True)
    checkpointed = encoder(text, image, text_mask=mask).pooled.square().sum()
    checkpointed.backward()
    torch.testing.assert_close(checkpointed, plain)
    for before, param in zip(grads, encoder.parameters()):
        torch.testing.assert_close(param.grad, before, atol=1e-6, rtol=1e-5)


def test_bad_inputs_are_named():
    encoder = _encoder()
    text, image = _inputs()
    with pytest.raises(ValueError, match="text \\[B, L, D\\] and image \\[B, N, D\\]"):
        encoder(text[0], image)
    with pytest.raises(ValueError, match="not a multiple of num_heads"):
        FusionConfig(hidden_size=30, num_heads=4).bert_config()
