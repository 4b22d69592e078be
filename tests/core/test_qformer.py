"""The Q-Former bridge: what each slot may see in each mode, the per-layer patch-mask and query hooks, and
BLIP-2's stage-1 objectives each learning what it must on a small synthetic task."""

from __future__ import annotations

import pytest
import torch

from vlzoo.core.errors import DataError
from vlzoo.core.models import QFormer, QFormerConfig

CLS, SEP, DEC, FIRST_WORD, CLASSES, WIDTH = 1, 2, 3, 4, 4, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**kw) -> QFormerConfig:
    base = dict(
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
        cross_attention_freq=1,
        encoder_width=WIDTH,
        num_query_tokens=4,
        vocab_size=FIRST_WORD + CLASSES,
        max_position_embeddings=16,
        embed_dim=16,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    return QFormerConfig(**{**base, **kw})


def synthetic_pairs(classes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features: 6 patches, each its class's prototype plus noise; text: [CLS] word [SEP]."""
    prototypes = torch.randn(CLASSES, WIDTH, generator=torch.Generator().manual_seed(123))
    images = prototypes[classes][:, None] + torch.randn(len(classes), 6, WIDTH, generator=generator)
    text = torch.stack(
        [torch.full_like(classes, CLS), FIRST_WORD + classes, torch.full_like(classes, SEP)], dim=1
    )
    return images, text


def train(model: QFormer, steps: int = 150, seed: int = 0) -> QFormer:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-3)
    model.train()
    for _ in range(steps):
        images, text = synthetic_pairs(torch.randperm(CLASSES, generator=generator), generator)
        losses = model.stage1_losses(images, text, bos_token_id=DEC)
        optimizer.zero_grad()
        (losses["itc"] + losses["itm"] + losses["lm"]).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained() -> QFormer:
    torch.manual_seed(0)
    return train(QFormer(tiny_config()))


def assert_learned_the_three_objectives(model: QFormer, seed: int = 99) -> None:
    """ITC retrieves the right text, ITM scores true pairs above false ones, LM writes the image's word."""
    generator = torch.Generator().manual_seed(seed)
    itc_hits = lm_hits = total = 0
    itm_true, itm_false = [], []
    with torch.no_grad():
        for _ in range(8):
            classes = torch.randperm(CLASSES, generator=generator)
            images, text = synthetic_pairs(classes, generator)
            mask = torch.ones_like(text)
            feats = model.image_features(images)
            query = model.encode(feats)
            image_emb = torch.nn.functional.normalize(model.vision_proj(query.query_states), dim=-1)
            text_emb = model.text_embedding(text, mask)
            sim = torch.einsum("bqe,te->btq", image_emb, text_emb).amax(-1)
            itc_hits += int((sim.argmax(1) == torch.arange(CLASSES)).sum())
            for shift in range(CLASSES):  # shift 0: true pairs; else every image with another's text
                rolled = text.roll(shift, dims=0)
                p_match = model.itm_logits(feats, rolled, mask).softmax(-1)[:, 1]
                (itm_true if shift == 0 else itm_false).append(p_match)
            start = torch.full((CLASSES, 1), DEC)
            out = model.encode(feats, start, torch.ones_like(start), mode="causal")
            word = model.lm_head(out.last_hidden_state[:, out.query_length]).argmax(-1)
            lm_hits += int((word == FIRST_WORD + classes).sum())
            total += CLASSES
    assert itc_hits / total > 0.75, itc_hits / total  # chance: 0.25
    assert lm_hits / total > 0.75, lm_hits / total  # chance: 0.25
    assert torch.cat(itm_true).mean() > torch.cat(itm_false).mean() + 0.1


def test_stage1_objectives_learn_what_they_must(trained):
    assert_learned_the_three_objectives(trained)


def test_the_losses_start_near_chance_and_fall(trained):
    torch.manual_seed(0)
    fresh = QFormer(tiny_config()).eval()  # the trained model's initial weights
    images, text = synthetic_pairs(torch.arange(CLASSES), torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    before = fresh.stage1_losses(images, text, bos_token_id=DEC)
    assert before["itc"].item() == pytest.approx(torch.tensor(float(CLASSES)).log().item(), abs=0.3)
    torch.manual_seed(0)
    after = trained.stage1_losses(images, text, bos_token_id=DEC)
    for key in ("itc", "itm", "lm"):
        assert after[key] < before[key], key


def test_text_only_and_causal_passes_see_what_they_may():
    torch.manual_seed(0)
    model = QFormer(tiny_config()).eval()
    feats = torch.randn(2, 6, WIDTH)
    text = torch.tensor([[CLS, 4, 5, 6, SEP], [CLS, 7, 6, SEP, 0]])
    changed = text.clone()
    changed[:, 3] = 5
    with torch.no_grad():
        causal = model.encode(feats, text, mode="causal").last_hidden_state
        causal_changed = model.encode(feats, changed, mode="causal").last_hidden_state
        joint = model.encode(feats, text).last_hidden_state
        joint_changed = model.encode(feats, changed).last_hidden_state
        queries_alone = model.encode(feats).last_hidden_state
    q = model.cfg.num_query_tokens
    # causal (LM): queries never see text; text at t never sees t+1..
    assert torch.allclose(causal[:, :q], queries_alone, atol=1e-5)
    assert torch.allclose(causal[:, : q + 3], causal_changed[:, : q + 3], atol=1e-5)
    assert not torch.allclose(causal[:, q + 3], causal_changed[:, q + 3])
    # bidirectional (ITM): queries read the text
    assert not torch.allclose(joint[:, :q], joint_changed[:, :q])


class HalfMasked(QFormer):
    """Lets the queries see only the first half of the patches, from layer 0 on; queries shifted by a constant."""

    def queries(self, image_embeds):
        return super().queries(image_embeds) + 1.0

    def patch_mask(self, layer, image_embeds, mask):
        if layer != 0:
            return mask
        keep = torch.zeros_like(mask)
        keep[:, : mask.shape[1] // 2] = 1
        return keep * mask


def test_a_subclass_masks_patches_out_of_the_cross_attention_per_layer():
    torch.manual_seed(0)
    model = HalfMasked(tiny_config()).eval()
    feats = torch.randn(2, 6, WIDTH)
    hidden_changed, seen_changed = feats.clone(), feats.clone()
    hidden_changed[:, 3:] += 5.0  # the masked half
    seen_changed[:, :3] += 5.0
    with torch.no_grad():
        base = model.encode(feats)
        assert torch.allclose(model.encode(hidden_changed).query_states, base.query_states, atol=1e-5)
        assert not torch.allclose(model.encode(seen_changed).query_states, base.query_states)
        plain = QFormer(tiny_config())
        plain.load_state_dict(model.state_dict())
        assert not torch.allclose(
            plain.eval().encode(hidden_changed).query_states, plain.encode(feats).query_states
        )
    assert (
        list(base.patch_masks) == [0]
        and base.image_mask[:, :3].eq(1).all()
        and base.image_mask[:, 3:].eq(0).all()
    )
    # the LM pass reuses the query pass's masks instead of asking the hook again
    reused = model.encode(
        feats, torch.tensor([[DEC, 4]] * 2), mode="causal", patch_masks={0: torch.ones(2, 6)}
    )
    assert reused.patch_masks == {0: reused.image_mask} and reused.image_mask.eq(1).all()


def test_itc_itm_need_two_pairs():
    model = QFormer(tiny_config())
    images, text = synthetic_pairs(torch.tensor([0]), torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match="at least 2"):
        model.stage1_losses(images, text, bos_token_id=DEC)
