"""Single-process tests of vlzoo.core.losses against formulas written here from first principles,
and against open_clip (a test-only dependency)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vlzoo.core import distributed
from vlzoo.core.errors import ConfigError
from vlzoo.core.losses import (
    ChunkedClipLoss,
    ClipLoss,
    DistillationLoss,
    FilipLoss,
    MultiPositiveClipLoss,
    SigLipLoss,
    chunked_cross_entropy,
)

TOL = {"rtol": 1e-6, "atol": 1e-6}
F64 = torch.float64


# ----------------------------------------------------------------------------------------- helpers


def features(n: int, dim: int = 16, seed: int = 0, duplicate: bool = False) -> torch.Tensor:
    """Unit-norm float64 leaf features; with ``duplicate`` row 3 repeats row 1 (a duplicate caption)."""
    gen = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, dim, generator=gen, dtype=F64), dim=-1)
    if duplicate:
        x[3] = x[1]
    return x.requires_grad_()


def scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=F64, requires_grad=True)


def grads(loss: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, inputs, retain_graph=True))


def assert_same_value_and_grads(loss, expected, inputs, **tol) -> None:
    tol = tol or TOL
    torch.testing.assert_close(loss, expected, **tol)
    for got, want in zip(grads(loss, inputs), grads(expected, inputs)):
        torch.testing.assert_close(got, want, **tol)


def ref_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_j t_ij log p_ij with p the row softmax (spelled out)."""
    log_p = logits - torch.log(torch.exp(logits).sum(dim=1, keepdim=True))
    return -(targets * log_p).sum(dim=1).mean()


def ref_clip(image, text, scale, label_smoothing=0.0):
    n = image.shape[0]
    targets = (1 - label_smoothing) * torch.eye(n, dtype=F64) + label_smoothing / n
    return 0.5 * (
        ref_cross_entropy(scale * image @ text.T, targets)
        + ref_cross_entropy(scale * text @ image.T, targets)
    )


def ref_siglip(image, text, scale, bias):
    n = image.shape[0]
    labels = 2 * torch.eye(n, dtype=F64) - 1
    z = scale * image @ text.T + bias
    return -torch.log(1 / (1 + torch.exp(-labels * z))).sum() / n


def ref_multi_positive(image, text, scale, image_ids, text_ids):
    pos = (image_ids[:, None] == text_ids[None, :]).to(F64)
    return 0.5 * (
        ref_cross_entropy(scale * image @ text.T, pos / pos.sum(1, keepdim=True))
        + ref_cross_entropy(scale * text @ image.T, pos.T / pos.T.sum(1, keepdim=True))
    )


def ref_late_interaction(a, a_mask, b, b_mask) -> torch.Tensor:
    """s[i, j] = mean over real tokens of a_i of the max over real tokens of b_j of the dot product."""
    rows = []
    for i in range(a.shape[0]):
        row = []
        for j in range(b.shape[0]):
            best = [
                torch.stack([a[i, k] @ b[j, r] for r in range(b.shape[1]) if b_mask[j, r]]).max()
                for k in range(a.shape[1])
                if a_mask[i, k]
            ]
            row.append(torch.stack(best).mean())
        rows.append(torch.stack(row))
    return torch.stack(rows)


def ref_filip(image, image_mask, text, text_mask, scale):
    eye = torch.eye(image.shape[0], dtype=F64)
    i2t = ref_late_interaction(image, image_mask, text, text_mask)
    t2i = ref_late_interaction(text, text_mask, image, image_mask)
    return 0.5 * (ref_cross_entropy(scale * i2t, eye) + ref_cross_entropy(scale * t2i, eye))


# -------------------------------------------------------------------------------------------- CLIP


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_clip_loss_matches_reference(label_smoothing: float) -> None:
    image, text, scale = features(9, seed=1), features(9, seed=2, duplicate=True), scalar(7.0)
    loss = ClipLoss(label_smoothing=label_smoothing)(image, text, scale)
    expected = ref_clip(image, text, scale, label_smoothing)
    assert_same_value_and_grads(loss, expected, [image, text, scale])


def test_clip_loss_matches_open_clip() -> None:
    from open_clip.loss import ClipLoss as OpenClipLoss

    image, text, scale = features(12, seed=3), features(12, seed=4, duplicate=True), scalar(20.0)
    assert_same_value_and_grads(
        ClipLoss()(image, text, scale), OpenClipLoss()(image, text, scale), [image, text, scale]
    )


def test_clip_loss_output_dict() -> None:
    image, text, scale = features(4, seed=5), features(4, seed=6), scalar(5.0)
    out = ClipLoss()(image, text, scale, output_dict=True)
    assert set(out) == {"contrastive_loss"}
    torch.testing.assert_close(out["contrastive_loss"], ClipLoss()(image, text, scale))


# ------------------------------------------------------------------------------------------ SigLIP


@pytest.mark.parametrize("dist_impl", ["gather", "bidir", "shift"])
def test_siglip_matches_reference_and_open_clip(dist_impl: str) -> None:
    from open_clip.loss import SigLipLoss as OpenSigLipLoss

    # A large scale puts some logits far beyond softplus's linear threshold.
    image, text, scale, bias = (
        features(10, seed=7),
        features(10, seed=8, duplicate=True),
        scalar(30.0),
        scalar(-4.0),
    )
    loss = SigLipLoss(dist_impl=dist_impl)(image, text, scale, bias)
    inputs = [image, text, scale, bias]
    assert_same_value_and_grads(loss, ref_siglip(image, text, scale, bias), inputs)
    assert_same_value_and_grads(loss, OpenSigLipLoss()(image, text, scale, bias), inputs)


def test_siglip_float32_matches_open_clip() -> None:
    from open_clip.loss import SigLipLoss as OpenSigLipLoss

    image = features(64, dim=32, seed=9).detach().float().requires_grad_()
    text = features(64, dim=32, seed=10).detach().float().requires_grad_()
    scale, bias = torch.tensor(10.0, requires_grad=True), torch.tensor(-10.0, requires_grad=True)
    assert_same_value_and_grads(
        SigLipLoss()(image, text, scale, bias),
        OpenSigLipLoss()(image, text, scale, bias),
        [image, text, scale, bias],
        rtol=1e-5,
        atol=1e-6,
    )


# ---------------------------------------------------------------------------------- multi-positive


def test_multi_positive_matches_reference_with_duplicate_captions() -> None:
    # 4 images with 3 captions each, plus a duplicate image id (two images of one identity).
    image_ids = torch.tensor([0, 1, 2, 3, 1])
    text_ids = torch.arange(4).repeat_interleave(3)
    image, text, scale = features(5, seed=11), features(12, seed=12, duplicate=True), scalar(9.0)
    loss_fn = MultiPositiveClipLoss()
    loss = loss_fn(image, text, scale, image_ids, text_ids)
    assert_same_value_and_grads(
        loss, ref_multi_positive(image, text, scale, image_ids, text_ids), [image, text, scale]
    )
    positives = image_ids[:, None] == text_ids[None, :]
    torch.testing.assert_close(loss_fn(image, text, scale, positives=positives), loss)


def test_multi_positive_reduces_to_clip_with_unique_ids() -> None:
    image, text, scale = features(8, seed=13), features(8, seed=14, duplicate=True), scalar(6.0)
    ids = torch.arange(8)
    assert_same_value_and_grads(
        MultiPositiveClipLoss()(image, text, scale, ids, ids),
        ClipLoss()(image, text, scale),
        [image, text, scale],
    )


def test_multi_positive_rejects_rows_without_positive() -> None:
    image, text, scale = features(3, seed=15), features(3, seed=16), scalar(1.0)
    with pytest.raises(ConfigError, match="no positive"):
        MultiPositiveClipLoss()(image, text, scale, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    with pytest.raises(ConfigError, match="either"):
        MultiPositiveClipLoss()(image, text, scale, torch.arange(3), torch.arange(3), positives=torch.eye(3))


# -------------------------------------------------------------------------------------------- FILIP


def test_filip_matches_reference_with_padding() -> None:
    gen = torch.Generator().manual_seed(17)
    image = torch.randn(4, 5, 8, generator=gen, dtype=F64).requires_grad_()
    text_values = torch.randn(4, 6, 8, generator=gen, dtype=F64)
    text_values[2] = text_values[0]  # duplicate caption
    text = text_values.requires_grad_()
    text_mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    image_mask = torch.ones(4, 5, dtype=torch.bool)
    image_mask[1, 3:] = False
    scale = scalar(3.0)
    expected = ref_filip(image, image_mask, text, text_mask.bool(), scale)
    for chunk_size in (None, 1, 3):
        loss = FilipLoss(chunk_size=chunk_size)(
            image, text, scale, image_mask=image_mask, text_mask=text_mask
        )
        assert_same_value_and_grads(loss, expected, [image, text, scale])


def test_filip_without_masks_and_padding_values_are_ignored() -> None:
    gen = torch.Generator().manual_seed(18)
    image = torch.randn(3, 4, 8, generator=gen, dtype=F64, requires_grad=True)
    text = torch.randn(3, 5, 8, generator=gen, dtype=F64, requires_grad=True)
    scale, all_real = scalar(2.0), torch.ones(3, 5, dtype=torch.bool)
    loss = FilipLoss()(image, text, scale)
    assert_same_value_and_grads(
        loss,
        ref_filip(image, torch.ones(3, 4, dtype=torch.bool), text, all_real, scale),
        [image, text, scale],
    )
    # Whatever sits in padding positions must not change the loss, nor receive gradient.
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[:, 3:] = False
    padded = text.detach().clone()
    padded[:, 3:] = 1e3
    padded.requires_grad_()
    base = FilipLoss()(image, text, scale, text_mask=mask)
    other = FilipLoss()(image, padded, scale, text_mask=mask)
    torch.testing.assert_close(base, other)
    (grad_padded,) = torch.autograd.grad(other, [padded])
    assert torch.all(grad_padded[:, 3:] == 0)


# ------------------------------------------------------------------------------------- distillation


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distillation_matches_reference(temperature: float) -> None:
    gen = torch.Generator().manual_seed(19)
    student = torch.randn(2, 3, 7, generator=gen, dtype=F64, requires_grad=True)
    teacher = torch.randn(2, 3, 7, generator=gen, dtype=F64, requires_grad=True)
    loss = DistillationLoss(temperature)(student, teacher)
    p_t = torch.softmax(teacher.detach().reshape(6, 7) / temperature, dim=-1)
    p_s = torch.softmax(student.reshape(6, 7) / temperature, dim=-1)
    expected = temperature**2 * (p_t * (torch.log(p_t) - torch.log(p_s))).sum(dim=-1).mean()
    torch.testing.assert_close(loss, expected, **TOL)
    torch.testing.assert_close(grads(loss, [student])[0], grads(expected, [student])[0], **TOL)
    loss.backward()
    assert teacher.grad is None  # the teacher is a target, never trained by this loss


def test_distillation_is_zero_for_equal_logits_and_checks_inputs() -> None:
    logits = torch.randn(4, 5, dtype=F64)
    assert DistillationLoss(2.0)(logits, logits.clone()).abs().item() < 1e-12
    with pytest.raises(ConfigError, match=r"\(4, 5\).*\(4, 6\)"):
        DistillationLoss()(logits, torch.randn(4, 6))
    with pytest.raises(ConfigError, match="temperature"):
        DistillationLoss(0.0)


# ----------------------------------------------------------------------------------------- chunked


@pytest.mark.parametrize("batch", [24, 29])  # a multiple of chunk_size and not
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_chunked_clip_matches_clip(batch: int, label_smoothing: float) -> None:
    image, text, scale = features(batch, seed=20), features(batch, seed=21, duplicate=True), scalar(11.0)
    inputs = [image, text, scale]
    loss = ChunkedClipLoss(chunk_size=8, label_smoothing=label_smoothing)(image, text, scale)
    assert_same_value_and_grads(loss, ClipLoss(label_smoothing=label_smoothing)(image, text, scale), inputs)
    assert_same_value_and_grads(loss, ref_clip(image, text, scale, label_smoothing), inputs)


def test_chunked_cross_entropy_with_offset_matches_cross_entropy() -> None:
    # The local_loss layout: 5 local rows whose positives start at column 10 of 15 gathered columns.
    rows, cols, scale = features(5, seed=22), features(15, seed=23), scalar(4.0)
    for smoothing in (0.0, 0.3):
        loss = chunked_cross_entropy(rows, cols, scale, offset=10, chunk_size=2, label_smoothing=smoothing)
        expected = F.cross_entropy(scale * rows @ cols.T, torch.arange(5) + 10, label_smoothing=smoothing)
        assert_same_value_and_grads(loss, expected, [rows, cols, scale])
    with pytest.raises(ConfigError, match="out of range"):
        chunked_cross_entropy(rows, cols, scale, offset=11)


def test_chunked_clip_float32_and_partial_grads() -> None:
    image = features(50, dim=32, seed=24).detach().float().requires_grad_()
    text = features(50, dim=32, seed=25).detach().float()  # no gradient wanted for texts
    scale = torch.tensor(30.0, requires_grad=True)
    loss = ChunkedClipLoss(chunk_size=16)(image, text, scale)
    expected = ClipLoss()(image, text, scale)
    assert_same_value_and_grads(loss, expected, [image, scale], rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------------------------- bad input

LOSSES_2D = {
    "clip": lambda: ClipLoss(),
    "chunked": lambda: ChunkedClipLoss(chunk_size=4),
    "siglip": lambda: SigLipLoss(),
}


def call(name: str, image, text, scale, bias=None):
    loss_fn = LOSSES_2D[name]()
    if name == "siglip":
        return loss_fn(image, text, scale, torch.tensor(-1.0) if bias is None else bias)
    return loss_fn(image, text, scale)


@pytest.mark.parametrize("name", list(LOSSES_2D))
def test_mismatched_shapes_name_both_shapes(name: str) -> None:
    scale = torch.tensor(1.0)
    with pytest.raises(ConfigError, match=r"batch sizes differ.*\(4, 8\).*\(5, 8\)"):
        call(name, torch.randn(4, 8), torch.randn(5, 8), scale)
    with pytest.raises(ConfigError, match=r"feature dims differ.*\(4, 8\).*\(4, 6\)"):
        call(name, torch.randn(4, 8), torch.randn(4, 6), scale)
    with pytest.raises(ConfigError, match=r"2 dims.*\(4, 2, 8\)"):
        call(name, torch.randn(4, 2, 8), torch.randn(4, 8), scale)


@pytest.mark.parametrize("name", list(LOSSES_2D))
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_features_raise(name: str, bad: float) -> None:
    image = torch.randn(4, 8)
    image[2, 3] = bad
    with pytest.raises(ConfigError, match=r"image_features of shape \(4, 8\) has 1 non-finite"):
        call(name, image, torch.randn(4, 8), torch.tensor(1.0))


@pytest.mark.parametrize("name", list(LOSSES_2D))
def test_python_float_logit_scale_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=r"logit_scale must be a torch\.Tensor"):
        call(name, torch.randn(4, 8), torch.randn(4, 8), 10.0)
    with pytest.raises(ConfigError, match="logit_scale is not finite"):
        call(name, torch.randn(4, 8), torch.randn(4, 8), torch.tensor(math.nan))
    with pytest.raises(ConfigError, match=r"exactly one element, got shape \(2,\)"):
        call(name, torch.randn(4, 8), torch.randn(4, 8), torch.ones(2))


def test_siglip_refuses_float_bias() -> None:
    with pytest.raises(ConfigError, match=r"logit_bias must be a torch\.Tensor"):
        SigLipLoss()(torch.randn(4, 8), torch.randn(4, 8), torch.tensor(1.0), -10.0)


def test_other_losses_check_shapes() -> None:
    scale = torch.tensor(1.0)
    with pytest.raises(ConfigError, match=r"batch sizes differ.*\(2, 3, 8\).*\(3, 4, 8\)"):
        FilipLoss()(torch.randn(2, 3, 8), torch.randn(3, 4, 8), scale)
    with pytest.raises(ConfigError, match=r"text_mask must have shape \(2, 4\)"):
        FilipLoss()(torch.randn(2, 3, 8), torch.randn(2, 4, 8), scale, text_mask=torch.ones(2, 5))
    with pytest.raises(ConfigError, match=r"text_mask: items \[1\] have no real token"):
        FilipLoss()(
            torch.randn(2, 3, 8), torch.randn(2, 4, 8), scale, text_mask=torch.tensor([[1, 0, 0, 0], [0] * 4])
        )
    with pytest.raises(ConfigError, match=r"feature dims differ.*\(3, 8\).*\(5, 4\)"):
        MultiPositiveClipLoss()(torch.randn(3, 8), torch.randn(5, 4), scale, torch.arange(3), torch.arange(5))
    with pytest.raises(ConfigError, match=r"text_ids must be a tensor of shape \(5,\), got \(4,\)"):
        MultiPositiveClipLoss()(torch.randn(3, 8), torch.randn(5, 8), scale, torch.arange(3), torch.arange(4))


def test_nan_loss_is_not_hidden_when_checks_are_off() -> None:
    # With the input checks disabled a NaN must still show up in the loss, never become 0.
    image = torch.randn(4, 8)
    image[0, 0] = math.nan
    text, scale = torch.randn(4, 8), torch.tensor(1.0)
    for loss_fn in (ClipLoss(check_inputs=False), ChunkedClipLoss(2, check_inputs=False)):
        assert torch.isnan(loss_fn(image, text, scale))
    assert torch.isnan(SigLipLoss(check_inputs=False)(image, text, scale, torch.tensor(0.0)))


def test_world_size_without_process_group_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no initialized process group"):
        ClipLoss(world_size=2, rank=0)(torch.randn(4, 8), torch.randn(4, 8), torch.tensor(1.0))


def test_distributed_helpers_are_identity_when_not_distributed() -> None:
    assert not distributed.is_distributed()
    assert distributed.get_rank() == 0
    assert distributed.get_world_size() == 1
    x = torch.randn(3, 4, requires_grad=True)
    assert distributed.all_gather_features(x, with_grad=True) is x
    assert distributed.all_gather_features(x, with_grad=False) is x


def test_build_loss_by_name() -> None:
    from vlzoo.core.losses import LOSSES, build_loss

    loss = build_loss("chunked_clip", chunk_size=4, label_smoothing=0.1)
    assert isinstance(loss, ChunkedClipLoss) and loss.chunk_size == 4
    assert set(LOSSES) >= {"clip", "siglip", "chunked_clip", "multi_positive_clip", "filip", "distill"}
    with pytest.raises(ConfigError, match="unknown loss 'nope'"):
        build_loss("nope")
    with pytest.raises(ConfigError, match="bad arguments for loss 'clip'"):
        build_loss("clip", chunk_size=4)


def test_register_loss_makes_a_domain_loss_buildable_and_refuses_another_owner() -> None:
    import types

    from vlzoo.core.losses import _LOSSES, LOSSES, build_loss, register_loss

    class ScaledClipLoss(ClipLoss):
        pass

    # a second module defining a loss of the same name, as another domain package would
    other = types.new_class("OtherLoss", (ClipLoss,))
    other.__module__ = "vlzoo.other_domain.losses"
    try:
        assert register_loss("scaled_clip_test", ScaledClipLoss) is ScaledClipLoss
        assert isinstance(build_loss("scaled_clip_test", label_smoothing=0.1), ScaledClipLoss)
        register_loss("scaled_clip_test", ScaledClipLoss)  # the same module again (a reload) replaces
        with pytest.raises(ConfigError, match=rf"registered twice: by {__name__} \(ScaledClipLoss\) and by "):
            register_loss("scaled_clip_test", other)
        with pytest.raises(ConfigError, match=r"by vlzoo\.core\.losses\.contrastive \(ClipLoss\) and by "):
            register_loss("clip")(other)
        assert LOSSES["clip"] is ClipLoss
        with pytest.raises(TypeError):
            LOSSES["clip"] = other  # read-only: registration goes through register_loss
        with pytest.raises(ConfigError, match=r"not an nn\.Module class"):
            register_loss("not_a_loss", object)
    finally:
        _LOSSES.pop("scaled_clip_test", None)


def test_output_dict_keys_come_from_the_loss_class() -> None:
    from vlzoo.core.losses import DistributedLossBase, PairRows

    image, text = torch.randn(4, 8), torch.randn(4, 8)
    scale = torch.tensor(10.0)
    assert set(ClipLoss()(image, text, scale, output_dict=True)) == {"contrastive_loss"}
    assert DistributedLossBase.output_key == "contrastive_loss"
    rows = ClipLoss(local_loss=True).pair_rows(image, text, rank=0, world_size=1)
    assert isinstance(rows, PairRows) and (rows.offset, rows.local) == (0, False)  # one process: no gather
    assert all(a is b for a, b in zip(rows[:4], (image, text, image, text)))
