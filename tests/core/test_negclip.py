"""NegCLIP's loss (hard-negative captions as extra image→text columns) and its path from toyworld's records
through the collator and the dual encoder."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from helpers import negclip_dist_worker

import vlzoo.core as vz
from vlzoo.core.data import ImageTextCollator, KarpathySplits, ToyWorld, write_toyworld
from vlzoo.core.losses import LOSSES, ClipLoss, NegClipLoss


def _features(b: int = 6, n: int = 6, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    unit = [F.normalize(torch.randn(k, d, generator=g), dim=-1).requires_grad_() for k in (b, b, n)]
    return (*unit, torch.tensor(7.0, requires_grad=True))


def test_negclip_is_registered_and_without_negatives_is_clip():
    images, texts, _, scale = _features()
    assert LOSSES["negclip"] is NegClipLoss
    torch.testing.assert_close(NegClipLoss()(images, texts, scale), ClipLoss()(images, texts, scale))


def test_negatives_are_extra_columns_of_the_image_to_text_direction_only():
    images, texts, negatives, scale = _features(b=5, n=3)
    loss = NegClipLoss()(images, texts, scale, negative_text_features=negatives)
    # the official NegCLIP code: texts and negatives stacked as columns, only the real captions' rows back
    labels = torch.arange(5)
    i2t = scale * images @ torch.cat([texts, negatives]).T  # [5, 8]
    t2i = scale * texts @ images.T
    expected = 0.5 * (F.cross_entropy(i2t, labels) + F.cross_entropy(t2i, labels))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert negatives.grad is not None and negatives.grad.abs().sum() > 0
    # a negative identical to an image's own caption halves that image's probability: the loss must grow
    harder = NegClipLoss()(images, texts, scale, negative_text_features=texts.detach())
    assert harder > ClipLoss()(images, texts, scale) + 0.1


def test_toyworld_records_carry_the_distractor_captions(tmp_path):
    world = ToyWorld("train", 5, 32, seed=0)
    assert world[0]["negative_texts"] == world[1]["texts"] and world[1]["negative_texts"] == world[0]["texts"]
    assert world[4]["negative_texts"] == []  # odd n: the last image's distractor is not in the split
    index = write_toyworld(tmp_path, n_train=4, n_val=0, n_test=0, image_size=32)
    source = KarpathySplits(index, "train", captions="first")
    assert (
        source[2]["negative_texts"] == world[3]["texts"] and source[3]["negative_texts"] == world[2]["texts"]
    )


def test_a_negclip_model_trains_on_the_distractor_captions(tmp_path):
    """The collator tokenizes one distractor caption per image; a model whose loss takes negatives encodes
    them (its loss differs from plain CLIP's on the same batch), one whose loss doesn't leaves them."""
    index = write_toyworld(tmp_path, n_train=8, n_val=0, n_test=0, image_size=64)
    source = KarpathySplits(index, "train", captions="first")
    collate = ImageTextCollator(
        vz.get_transforms("clip-vit-tiny", train=False), vz.get_tokenizer("clip-vit-tiny"), captions="first"
    )
    batch = collate([source[i] for i in range(8)])
    assert batch["negative_text"].input_ids.shape[0] == 8
    torch.manual_seed(0)
    model = vz.create_model("clip-vit-tiny", loss="negclip")
    out = model(batch)
    assert "negative_text_features" in out
    plain = ClipLoss()(out["image_features"], out["text_features"], out["logit_scale"])
    assert out["loss"] > plain  # eight more columns in every image's softmax
    out["loss"].backward()
    assert model.text.transformer.get_input_embeddings().weight.grad is not None
    clip = vz.create_model("clip-vit-tiny")
    assert "negative_text_features" not in clip(batch)


@pytest.mark.distributed
def test_two_ranks_recombine_to_the_global_batch(tmp_path):
    """2 gloo processes, each with half the images, captions and negatives: with gather_with_grad the per-rank
    losses add up to W × the single-process loss and each rank holds W × the gradient of its own slice."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    world = 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(
        negclip_dist_worker.worker,
        args=(world, port, str(tmp_path)),
        nprocs=world,
        join=True,
        start_method="spawn",
    )
    per_rank = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    want = negclip_dist_worker.loss_and_grads(negclip_dist_worker.global_inputs(world))
    for mode in ("local", "global"):
        got = [rank[mode] for rank in per_rank]
        torch.testing.assert_close(sum(g["loss"] for g in got), world * want["loss"])
        torch.testing.assert_close(sum(g["grad_scale"] for g in got), world * want["grad_scale"])
        for key in ("grad_image", "grad_text", "grad_negative"):
            torch.testing.assert_close(
                torch.cat([g[key] for g in got]), world * want[key], msg=f"{mode} {key}"
            )
