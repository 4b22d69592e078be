"""The chunked CLIP and SigLIP losses against open_clip's ClipLoss / SigLipLoss (a test-only dependency)
and against formulas written here, plus the property they exist for: no ``B × B`` tensor is ever made.

The distributed cases (local_loss + gather_with_grad, the SigLIP exchanges) run in
tests/core/test_losses_distributed.py through tests/helpers/losses_dist_worker.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss as OpenClipLoss
from open_clip.loss import SigLipLoss as OpenSigLipLoss
from torch.utils._python_dispatch import TorchDispatchMode

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses import (
    ChunkedClipLoss,
    ChunkedSigLipLoss,
    ClipLoss,
    build_loss,
    chunked_clip_loss,
    chunked_cross_entropy,
    chunked_sigmoid_loss,
)

F64 = torch.float64
TOL64 = {"rtol": 1e-10, "atol": 1e-12}
# float32: the summation order differs from the plain losses', over up to B² terms.
TOL32 = {"rtol": 2e-5, "atol": 1e-6}


def pair(n: int, dim: int = 16, seed: int = 0, dtype: torch.dtype = F64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(n, dim, generator=gen, dtype=F64), dim=-1)
    text = F.normalize(torch.randn(n, dim, generator=gen, dtype=F64), dim=-1)
    text[3] = text[1]  # a duplicate caption: still only its own pair is the positive
    return image.to(dtype).requires_grad_(), text.to(dtype).requires_grad_()


def leaf(value: float, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, requires_grad=True)


def assert_same(loss: torch.Tensor, expected: torch.Tensor, inputs: list[torch.Tensor], **tol) -> None:
    torch.testing.assert_close(loss, expected, **tol)
    got = torch.autograd.grad(loss, inputs, retain_graph=True)
    want = torch.autograd.grad(expected, inputs, retain_graph=True)
    for name, g, w in zip(("image", "text", "scale", "bias"), got, want):
        torch.testing.assert_close(g, w, **tol, msg=lambda m, name=name: f"gradient of {name}: {m}")


def smoothed_clip_reference(image, text, scale, eps):
    """CLIP's symmetric cross-entropy with smoothed one-hot targets, spelled out on the full matrix."""
    n = image.shape[0]
    targets = (1 - eps) * torch.eye(n, dtype=image.dtype) + eps / n
    logits = scale * image @ text.T
    row = -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    col = -(targets * torch.log_softmax(logits, dim=0)).sum(dim=0).mean()
    return 0.5 * (row + col)


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op produces (autograd's included)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


# ------------------------------------------------------------------------------------------------ CLIP


@pytest.mark.parametrize(("batch", "chunk_size"), [(24, 8), (29, 8), (29, 64), (31, 1)])
def test_fused_clip_equals_open_clip(batch: int, chunk_size: int) -> None:
    image, text = pair(batch, seed=batch)
    scale = leaf(14.0)
    loss = ChunkedClipLoss(chunk_size=chunk_size)(image, text, scale)
    assert_same(loss, OpenClipLoss()(image, text, scale), [image, text, scale], **TOL64)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_fused_clip_label_smoothing_equals_the_smoothed_cross_entropy(eps: float) -> None:
    image, text = pair(27, seed=5)
    scale = leaf(9.0)
    loss = chunked_clip_loss(image, text, scale, chunk_size=5, label_smoothing=eps)
    assert_same(loss, smoothed_clip_reference(image, text, scale, eps), [image, text, scale], **TOL64)
    # ... and what ClipLoss(label_smoothing) computes.
    expected = ClipLoss(label_smoothing=eps)(image, text, scale)
    assert_same(loss, expected, [image, text, scale], **TOL64)
    # Smoothing changes the value: the reference would not pass without it.
    assert not torch.allclose(loss, OpenClipLoss()(image, text, scale))


def test_fused_clip_float32_at_clip_max_scale_equals_open_clip() -> None:
    # logit_scale 100 (CLIP's clamp) puts exp() at its widest range; unit features as the towers give.
    image, text = pair(300, dim=64, seed=7, dtype=torch.float32)
    scale = leaf(100.0, torch.float32)
    loss = ChunkedClipLoss(chunk_size=64)(image, text, scale)
    assert_same(loss, OpenClipLoss()(image, text, scale), [image, text, scale], **TOL32)


def test_fused_clip_only_the_gradients_asked_for() -> None:
    image, text = pair(20, seed=8)
    text = text.detach()
    scale = torch.tensor(6.0, dtype=F64)  # a constant temperature
    loss = ChunkedClipLoss(chunk_size=6)(image, text, scale)
    expected = OpenClipLoss()(image, text, scale)
    (got,) = torch.autograd.grad(loss, [image])
    (want,) = torch.autograd.grad(expected, [image])
    torch.testing.assert_close(got, want, **TOL64)
    # The scale's gradient alone (it reads the image-side product) still equals ClipLoss's.
    image = image.detach()
    scale = leaf(6.0)
    loss, expected = ChunkedClipLoss(chunk_size=6)(image, text, scale), OpenClipLoss()(image, text, scale)
    torch.testing.assert_close(torch.autograd.grad(loss, scale)[0], torch.autograd.grad(expected, scale)[0])


def test_fused_clip_bfloat16_keeps_float32_statistics() -> None:
    image, text = pair(64, dim=32, seed=9, dtype=torch.bfloat16)
    scale = leaf(20.0, torch.float32)
    loss = chunked_clip_loss(image, text, scale.to(torch.bfloat16), chunk_size=16)
    assert loss.dtype == torch.bfloat16
    expected = OpenClipLoss()(image.float(), text.float(), scale)
    torch.testing.assert_close(loss.float(), expected, rtol=1e-2, atol=1e-2)
    loss.backward()
    assert image.grad.dtype == torch.bfloat16 and torch.isfinite(image.grad.float()).all()


def test_chunked_cross_entropy_local_strip_with_smoothing() -> None:
    # The local_loss layout: 6 rows whose positives start at column 12 of 18 gathered columns.
    rows, cols = pair(6, seed=10)[0], pair(18, seed=11)[1]
    scale = leaf(4.0)
    for eps in (0.0, 0.25):
        loss = chunked_cross_entropy(rows, cols, scale, offset=12, chunk_size=4, label_smoothing=eps)
        expected = F.cross_entropy(scale * rows @ cols.T, torch.arange(6) + 12, label_smoothing=eps)
        assert_same(loss, expected, [rows, cols, scale], **TOL64)


def test_fused_clip_never_forms_the_batch_by_batch_matrix() -> None:
    batch, chunk_size, dim = 256, 32, 8
    image, text = pair(batch, dim=dim, seed=12, dtype=torch.float32)
    scale = leaf(10.0, torch.float32)
    with LargestTensor() as chunked:
        ChunkedClipLoss(chunk_size=chunk_size)(image, text, scale).backward()
    with LargestTensor() as plain:
        OpenClipLoss()(image, text, scale).backward()
    assert plain.largest >= batch * batch  # the probe sees the plain loss's logits
    assert chunked.largest <= chunk_size * batch


def test_fused_clip_nan_is_not_hidden() -> None:
    image, text = torch.randn(6, 4), torch.randn(6, 4)
    image[2, 1] = math.nan
    assert torch.isnan(ChunkedClipLoss(chunk_size=4, check_inputs=False)(image, text, torch.tensor(2.0)))


# ---------------------------------------------------------------------------------------------- SigLIP


@pytest.mark.parametrize(("batch", "chunk_size"), [(24, 8), (29, 8), (29, 64), (13, 1)])
def test_chunked_siglip_equals_open_clip(batch: int, chunk_size: int) -> None:
    image, text = pair(batch, seed=20 + batch)
    scale, bias = leaf(10.0), leaf(-4.0)
    loss = ChunkedSigLipLoss(chunk_size=chunk_size)(image, text, scale, bias)
    expected = OpenSigLipLoss()(image, text, scale, bias)
    assert_same(loss, expected, [image, text, scale, bias], **TOL64)


def test_chunked_siglip_float32_equals_open_clip() -> None:
    # SigLIP's initialization (t' = log 10, b = -10) and a trained-looking temperature: both regimes
    # of the float32 softplus (negatives near 0, positives far out).
    image, text = pair(300, dim=64, seed=21, dtype=torch.float32)
    for scale_value, bias_value in ((10.0, -10.0), (60.0, -5.0)):
        scale, bias = leaf(scale_value, torch.float32), leaf(bias_value, torch.float32)
        loss = ChunkedSigLipLoss(chunk_size=64)(image, text, scale, bias)
        expected = OpenSigLipLoss()(image, text, scale, bias)
        assert_same(loss, expected, [image, text, scale, bias], **TOL32)


def test_chunked_sigmoid_block_without_positives_and_without_grad() -> None:
    images, texts = pair(7, seed=22)[0], pair(11, seed=23)[1]
    scale, bias = leaf(3.0), leaf(-1.0)
    loss = chunked_sigmoid_loss(images, texts, scale, bias, with_positives=False, chunk_size=3)
    # All pairs are negatives (y = -1): -log sigmoid(-z) = softplus(z), written out.
    logits = scale * images @ texts.T + bias
    expected = torch.log1p(torch.exp(logits)).sum()
    assert_same(loss, expected, [images, texts, scale, bias], **TOL64)
    with torch.no_grad():
        torch.testing.assert_close(
            chunked_sigmoid_loss(images, texts, scale, bias, with_positives=False, chunk_size=3),
            expected.detach(),
        )
    with pytest.raises(ConfigError, match="as many texts as images"):
        chunked_sigmoid_loss(images, texts, scale, bias, with_positives=True)


def test_chunked_siglip_float32_softplus_over_its_whole_range() -> None:
    # On CPU the float32 softplus is a series (torch's log1p is slow there): check every pair's term,
    # one pair at a time, from e^-80 (near float32's smallest normal) to 40 where softplus(z) = z.
    one, zero = torch.tensor(1.0), torch.tensor(0.0)
    for z in torch.linspace(-80, 40, 241).tolist():
        got = chunked_sigmoid_loss(torch.ones(1, 1), torch.full((1, 1), z), one, zero, with_positives=False)
        expected = math.log1p(math.exp(z)) if z < 30 else z + math.log1p(math.exp(-z))
        assert got.item() == pytest.approx(expected, rel=1e-6), f"softplus({z})"


def test_chunked_siglip_never_forms_the_batch_by_batch_matrix() -> None:
    batch, chunk_size = 256, 32
    image, text = pair(batch, dim=8, seed=24, dtype=torch.float32)
    scale, bias = leaf(10.0, torch.float32), leaf(-10.0, torch.float32)
    with LargestTensor() as chunked:
        ChunkedSigLipLoss(chunk_size=chunk_size)(image, text, scale, bias).backward()
    with LargestTensor() as plain:
        OpenSigLipLoss()(image, text, scale, bias).backward()
    assert plain.largest >= batch * batch
    assert chunked.largest <= chunk_size * batch


def test_chunked_siglip_nan_is_not_hidden() -> None:
    image, text = torch.randn(6, 4), torch.randn(6, 4)
    text[5, 0] = math.nan
    loss = ChunkedSigLipLoss(chunk_size=4, check_inputs=False)(
        image, text, torch.tensor(2.0), torch.tensor(-1.0)
    )
    assert torch.isnan(loss)


# ----------------------------------------------------------------------------------------- construction


def test_build_by_name_and_bad_chunk_sizes() -> None:
    loss = build_loss("chunked_siglip", chunk_size=16, dist_impl="gather")
    assert isinstance(loss, ChunkedSigLipLoss) and loss.chunk_size == 16 and loss.dist_impl == "gather"
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="chunk_size must be a positive int"):
            ChunkedClipLoss(chunk_size=bad)
        with pytest.raises(ConfigError, match="chunk_size must be a positive int"):
            ChunkedSigLipLoss(chunk_size=bad)
    with pytest.raises(ConfigError, match="label_smoothing"):
        ChunkedClipLoss(label_smoothing=1.0)
    with pytest.raises(ConfigError, match=r"paired features.*\(4, 8\).*\(5, 8\)"):
        chunked_clip_loss(torch.randn(4, 8), torch.randn(5, 8), torch.tensor(1.0))
