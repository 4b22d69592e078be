"""GS-Former: hard Gumbel-softmax samplers (binary masks forward, softmax gradients backward) that mask
patches out of the cross-attention, queries = learnable + vote-generated, and the ITC / ITM / LM objectives
each learning what it must."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from vlzoo.core.errors import ConfigError
from vlzoo.core.models import QFormerConfig
from vlzoo.geometry.gsformer import GSFormer, GSFormerConfig, GumbelSampler

CLS, SEP, DEC, FIRST_WORD, CLASSES, WIDTH = 1, 2, 3, 4, 4, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(
    vote: bool = True,
    samplers: tuple[int, ...] = (1, 2, 3),
    layers: int = 4,
    cross_attention_freq: int = 1,
    **kw,
) -> GSFormer:
    qformer = QFormerConfig(
        hidden_size=32,
        num_layers=layers,
        num_heads=4,
        intermediate_size=64,
        cross_attention_freq=cross_attention_freq,
        encoder_width=WIDTH,
        num_query_tokens=4,
        vocab_size=FIRST_WORD + CLASSES,
        max_position_embeddings=16,
        embed_dim=16,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    cfg = GSFormerConfig(
        qformer=qformer,
        vote_generator=vote,
        vote_layers=1,
        vote_heads=4,
        vote_ffn=32,
        sampler_layers=samplers,
        **kw,
    )
    return GSFormer(cfg)


def synthetic_pairs(classes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features: 6 patches, each its class's prototype plus noise; text: [CLS] word [SEP]."""
    prototypes = torch.randn(CLASSES, WIDTH, generator=torch.Generator().manual_seed(123))
    images = prototypes[classes][:, None] + torch.randn(len(classes), 6, WIDTH, generator=generator)
    text = torch.stack(
        [torch.full_like(classes, CLS), FIRST_WORD + classes, torch.full_like(classes, SEP)], dim=1
    )
    return images, text


# ------------------------------------------------------------------------------------------- samplers


def test_a_sampler_is_binary_forward_and_backpropagates_the_gumbel_softmax():
    torch.manual_seed(0)
    sampler = GumbelSampler(WIDTH, tau=0.1).train()
    x = torch.randn(3, 10, WIDTH, requires_grad=True)
    weights = torch.randn(3, 10)
    torch.manual_seed(7)
    hard = sampler(x)
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and 0 < hard.sum() < hard.numel()
    (hard * weights).sum().backward()
    hard_grad = x.grad.clone()
    # the same Gumbel noise, soft: the straight-through estimator's backward is the soft sample's
    x.grad = None
    torch.manual_seed(7)
    soft = F.gumbel_softmax(sampler.logits(x), tau=0.1, hard=False, dim=-1)[..., 1]
    (soft * weights).sum().backward()
    assert torch.equal(hard, (soft > 0.5).float())
    assert torch.allclose(hard_grad, x.grad, atol=1e-6) and hard_grad.abs().sum() > 0


def test_a_sampler_in_eval_keeps_the_patches_whose_keep_logit_wins():
    torch.manual_seed(0)
    sampler = GumbelSampler(WIDTH, tau=0.1).eval()
    x = torch.randn(2, 10, WIDTH)
    logits = sampler.logits(x)
    assert torch.equal(sampler(x), (logits[..., 1] > logits[..., 0]).float())
    assert torch.equal(sampler(x), sampler(x))


def test_samplers_mask_the_cross_attention_cumulatively_at_their_layers():
    torch.manual_seed(0)
    model = tiny().train()
    feats = model.image_features(torch.randn(2, 12, WIDTH))
    torch.manual_seed(3)
    out = model.encode(feats)
    assert list(out.patch_masks) == [1, 2, 3]
    masks = list(out.patch_masks.values())
    for earlier, later in itertools.pairwise(masks):
        assert set(later.unique().tolist()) <= {0.0, 1.0}
        assert bool((later <= earlier).all())  # a patch dropped stays dropped
    assert torch.equal(out.image_mask, masks[-1])
    # each layer's mask is its sampler's decision times the mask before it (same noise replayed), except
    # the [CLS] token (the first), which no sampler drops
    torch.manual_seed(3)
    model.queries(feats)  # the vote generator draws no noise, but keep the order of the forward
    first = model.samplers["1"](feats)
    assert torch.equal(masks[0][:, 1:], first[:, 1:])
    assert bool((out.image_mask[:, 0] == 1).all())


def test_the_loss_reaches_the_samplers_and_the_vote_generator():
    torch.manual_seed(0)
    model = tiny().train()
    images, text = synthetic_pairs(torch.arange(CLASSES), torch.Generator().manual_seed(0))
    out = model.pretraining_losses(images, text, torch.ones_like(text), bos_token_id=DEC)
    out["loss"].backward()
    for name in ("1", "2", "3"):
        grad = model.samplers[name].logits.weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.vote_generator.proj.weight.grad.abs().sum() > 0
    assert 0.0 < out["kept"] < 1.0 and out["sparsity"] > 0


def test_the_sparsity_term_alone_teaches_the_samplers_to_drop_patches():
    torch.manual_seed(0)
    model = tiny().train()
    optimizer = torch.optim.SGD([p for s in model.samplers.values() for p in s.parameters()], lr=0.5)
    feats = model.image_features(torch.randn(8, 12, WIDTH)).detach()

    def kept() -> float:
        with torch.no_grad():
            return float(model.eval().encode(feats).image_mask.mean())

    before = kept()
    model.train()
    for _ in range(25):
        masks = list(model.encode(feats).patch_masks.values())
        loss = torch.stack([m.mean() for m in masks]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert before > 0.1 and kept() < before / 2, (before, kept())


def test_dropping_every_patch_leaves_the_queries_the_cls_token_only():
    """Why [CLS] is kept: with a real mask, dropping every token would shift every attention score alike and
    attend exactly as keeping every one (softmax's shift invariance), so the losses couldn't object to the
    sparsity term's collapse. With [CLS] kept, dropping every patch is seeing the [CLS] token only."""
    torch.manual_seed(0)
    feats = torch.randn(3, 9, WIDTH)
    for keep_first in (0, 1):
        model = tiny(vote=False, samplers=(0,), layers=2, keep_first=keep_first).eval()
        with torch.no_grad():
            model.samplers["0"].logits.bias.copy_(torch.tensor([50.0, -50.0]))  # every patch dropped
            dropped = model.query_output(feats)
            assert bool((dropped.image_mask[:, keep_first:] == 0).all())
            model.samplers["0"].logits.bias.copy_(torch.tensor([-50.0, 50.0]))  # every patch kept
            kept = model.query_output(feats).query_states
            cls_only = feats.clone()
            cls_only[:, 1:] = feats[:, :1]  # attending to [CLS] alone = every token being [CLS]
            only_cls = model.query_output(cls_only).query_states
        if keep_first:
            assert not torch.allclose(dropped.query_states, kept, atol=1e-3)
            assert torch.allclose(dropped.query_states, only_cls, atol=1e-4)
        else:  # without it, dropping everything changes nothing: the collapse the losses can't see
            assert torch.allclose(dropped.query_states, kept, atol=1e-4)


def test_sampler_layers_must_exist_and_precede_a_cross_attention():
    with pytest.raises(ConfigError, match="sampler_layers"):
        tiny(samplers=(2, 9))
    with pytest.raises(ConfigError, match="mask nothing"):
        tiny(samplers=(1, 3), cross_attention_freq=2)


# -------------------------------------------------------------------------------------------- queries


def test_queries_are_the_learnable_ones_plus_those_voted_from_the_image():
    torch.manual_seed(0)
    model = tiny().eval()
    feats = torch.randn(2, 12, WIDTH)
    queries = model.queries(feats)
    generated = model.vote_generator(feats)
    assert torch.allclose(queries, model.query_tokens + generated)
    assert torch.allclose(generated[:, 0:1].expand_as(generated), generated)  # one vote, every query
    assert not torch.allclose(queries[0], queries[1])  # they depend on the image


def test_the_plain_q_former_ablation_has_fixed_queries_and_no_masks():
    torch.manual_seed(0)
    model = tiny(vote=False, samplers=()).eval()
    feats = torch.randn(2, 12, WIDTH)
    assert model.vote_generator is None and len(model.samplers) == 0
    assert torch.equal(model.queries(feats)[0], model.queries(feats)[1])
    out = model.encode(model.image_features(feats))
    assert out.patch_masks == {} and out.image_mask.eq(1).all()


# ------------------------------------------------------------------------------------------ objectives


@pytest.mark.slow
def test_itc_itm_and_lm_each_learn_what_they_must():
    """After GS-Former's pre-training objective (itc + itm + lm + sparsity) on image ↔ word pairs: ITC
    retrieves each image's text, ITM scores true pairs above false ones, the LM writes the image's word."""
    torch.manual_seed(0)
    model = tiny(samplers=(1,), layers=2)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-3)
    for _ in range(150):
        model.train()
        images, text = synthetic_pairs(torch.randperm(CLASSES, generator=generator), generator)
        loss = model.pretraining_losses(images, text, torch.ones_like(text), bos_token_id=DEC)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    generator = torch.Generator().manual_seed(99)
    itc = lm = total = 0
    itm_true, itm_false = [], []
    with torch.no_grad():
        for _ in range(8):
            classes = torch.randperm(CLASSES, generator=generator)
            images, text = synthetic_pairs(classes, generator)
            mask = torch.ones_like(text)
            feats = model.image_features(images)
            image_emb = F.normalize(model.vision_proj(model.encode(feats).query_states), dim=-1)
            sim = torch.einsum("bqe,te->btq", image_emb, model.text_embedding(text, mask)).amax(-1)
            itc += int((sim.argmax(1) == torch.arange(CLASSES)).sum())
            for shift in range(CLASSES):
                p_match = model.itm_logits(feats, text.roll(shift, dims=0), mask).softmax(-1)[:, 1]
                (itm_true if shift == 0 else itm_false).append(p_match)
            start = torch.full((CLASSES, 1), DEC)
            out = model.encode(feats, start, torch.ones_like(start), mode="causal")
            lm += int(
                (
                    model.lm_head(out.last_hidden_state[:, out.query_length]).argmax(-1)
                    == FIRST_WORD + classes
                ).sum()
            )
            total += CLASSES
    assert itc / total > 0.75, itc / total  # chance 0.25
    assert lm / total > 0.75, lm / total  # chance 0.25
    assert torch.cat(itm_true).mean() > torch.cat(itm_false).mean() + 0.1
