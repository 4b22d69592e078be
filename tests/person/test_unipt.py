"""UniPT's modules do what the paper and its code say: a contrast without temperature on max-pooled tokens,
BERT's MLM masking, and a masked-image regression whose target is the frozen CLIP's tokens."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vlzoo.core import create_model, get_tokenizer
from vlzoo.core.errors import ConfigError
from vlzoo.person.unipt import IGNORE_INDEX, mask_tokens, masked_max, random_masking, unipt_contrastive_loss


@pytest.fixture(scope="module")
def unipt():
    torch.manual_seed(0)
    return create_model("unipt-tiny")


@pytest.fixture(scope="module")
def batch(unipt):
    torch.manual_seed(1)
    tokenizer = get_tokenizer(unipt)
    text = tokenizer(
        ["a man in a red jacket", "a woman with long black hair", "a man", "blue shorts and a bag"]
    )
    return {"image": torch.randn(4, 3, 64, 32), "text": text}


def test_contrast_is_cosine_cross_entropy_with_no_temperature():
    # Orthonormal pairs: similarities are exactly the identity, so each row's CE is log(1 + 3/e) by hand.
    features = torch.eye(4, 8)
    assert unipt_contrastive_loss(features, features).item() == pytest.approx(
        math.log(1 + 3 / math.e), abs=1e-6
    )
    # Scaling the features changes nothing (they are normalized; no learned scale multiplies them) ...
    v, t = torch.randn(6, 16), torch.randn(6, 16)
    loss = unipt_contrastive_loss(v, t)
    assert unipt_contrastive_loss(7 * v, 0.1 * t).item() == pytest.approx(loss.item(), rel=1e-5)
    # ... and it is the symmetric CE of the raw cosine similarities.
    sim = F.normalize(v, dim=1) @ F.normalize(t, dim=1).T
    labels = torch.arange(6)
    expected = (F.cross_entropy(sim, labels) + F.cross_entropy(sim.T, labels)) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_model_has_no_temperature_and_its_loss_is_the_formula(unipt, batch):
    names = [n for n, _ in unipt.named_parameters()] + [n for n, _ in unipt.named_buffers()]
    assert not [n for n in names if "scale" in n or "temp" in n]
    unipt.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        out = unipt(batch)
        image = unipt.encode_image(batch["image"])
        text = unipt.encode_text(batch["text"])
    sim = image @ text.T
    labels = torch.arange(4)
    expected = (F.cross_entropy(sim, labels) + F.cross_entropy(sim.T, labels)) / 2
    assert out["cl_loss"].item() == pytest.approx(expected.item(), rel=1e-4)


def test_max_pooling_ignores_padded_tokens():
    tokens = torch.tensor([[[1.0, 5.0], [2.0, 0.0], [9.0, 9.0]]])
    assert masked_max(tokens, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 5.0]]
    assert masked_max(tokens).tolist() == [[9.0, 9.0]]


def test_mlm_masks_only_real_non_special_tokens_and_labels_them():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 100, (400, 30))
    ids[:, 0], ids[:, 20], ids[:, 21:] = 2, 3, 0  # [CLS] ... [SEP] then padding
    mask = (ids != 0).long()
    special = torch.tensor([0, 2, 3])
    masked, labels = mask_tokens(
        ids, mask, special, mask_id=4, vocab_size=100, probability=0.15, generator=generator
    )
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, [0, 20]].any() and not chosen[:, 21:].any()  # specials and padding never
    assert torch.equal(labels[chosen], ids[chosen]) and chosen.any(1).all()  # labels = originals, one per row
    assert 0.13 < chosen[:, 1:20].float().mean().item() < 0.18
    replaced = masked[chosen] == 4
    assert 0.75 < replaced.float().mean().item() < 0.85  # BERT's 80 % [MASK]
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_random_masking_partitions_the_patches():
    keep, hidden = random_masking(3, 32, 0.5, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert keep.shape == (3, 16) and hidden.shape == (3, 16)
    assert torch.equal(torch.cat([keep, hidden], 1).sort(1).values, torch.arange(32).expand(3, -1))
    with pytest.raises(ConfigError):
        random_masking(1, 4, 1.0, torch.device("cpu"))


def test_regression_target_is_the_frozen_clips_tokens_and_gets_no_gradient(unipt, batch):
    unipt.train()
    assert not unipt.clip.training  # the teacher stays in eval mode
    assert not any(p.requires_grad for p in unipt.clip.parameters())
    torch.manual_seed(0)
    out = unipt(batch)
    unipt.zero_grad(set_to_none=True)
    out["loss"].backward()
    assert all(p.grad is None for p in unipt.clip.parameters())
    assert unipt.visual.trunk.patch_embed.proj.weight.grad is not None and unipt.mask_token.grad is not None
    target = out["mim_target"]
    assert not target.requires_grad
    # The target is CLIP's tokens after its blocks and projection, without the final LayerNorm (the code's).
    c = unipt.clip.trunk
    with torch.no_grad():
        tokens = c.blocks(c.norm_pre(c._pos_embed(c.patch_embed(batch["image"]))))
        assert torch.allclose(target, c.head(tokens)[:, 1:], atol=1e-6)
        assert not torch.allclose(target, c.head(c.norm(tokens))[:, 1:], atol=1e-3)
    # The masked half is predicted: its loss term compares predictions with the masked patches' targets.
    ids_mask = out["ids_mask"]
    gathered = target.gather(1, ids_mask[..., None].expand(-1, -1, target.shape[-1]))
    assert out["mim_prediction"].shape == gathered.shape
    # The target does not depend on the student's weights.
    with torch.no_grad():
        unipt.visual.trunk.patch_embed.proj.weight.add_(1.0)
        assert torch.allclose(unipt.clip_tokens(batch["image"])[:, 1:], target, atol=1e-6)
        unipt.visual.trunk.patch_embed.proj.weight.sub_(1.0)


def test_unipt_reads_pedestrian_images_at_its_height_and_width(unipt):
    from PIL import Image

    from vlzoo.core import get_transforms
    from vlzoo.core.errors import DataError

    assert get_transforms(unipt, train=False)(Image.new("RGB", (50, 100))).shape == (3, 64, 32)
    with pytest.raises(DataError, match=r"built for 64×32 .*got 64×64"):
        unipt.encode_image(torch.zeros(1, 3, 64, 64))
