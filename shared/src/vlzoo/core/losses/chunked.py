"""CLIP and SigLIP losses with O(B · chunk) memory instead of O(B²).

The plain losses keep several ``B × B`` matrices alive (logits, two log-softmaxes, their gradients):
1 GiB each at B = 16k in float32. Here the similarity matrix is only ever formed one block of
``chunk_size`` rows at a time, and each block serves everything that needs it:

* CLIP (:class:`ChunkedClipLoss`, one process or ``local_loss=False``): one forward sweep
  accumulates the row log-sum-exps (image→text) and, online, the column ones (text→image) of the
  same blocks; the backward sweep recomputes each block once and turns it into both directions'
  gradients. Four ``B × B × D`` matmuls in all, where ClipLoss does three and keeps ``B × B``
  tensors instead.
* SigLIP (:class:`ChunkedSigLipLoss`): the sigmoid loss has no normalizer, so the forward sweep
  computes the gradients too (when they will be needed) and the backward only scales them: the same
  three matmuls as the plain loss.

Values and gradients are those of :class:`~vlzoo.core.losses.ClipLoss` /
:class:`~vlzoo.core.losses.SigLipLoss` up to floating-point summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses.contrastive import DistributedLossBase
from vlzoo.core.losses.siglip import SigLipLoss

__all__ = [
    "ChunkedClipLoss",
    "ChunkedSigLipLoss",
    "chunked_clip_loss",
    "chunked_cross_entropy",
    "chunked_sigmoid_loss",
]


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    # Sums over up to B columns lose too much in half precision; keep the softmax statistics in fp32.
    return torch.promote_types(dtype, torch.float32)


def _check_chunk_size(chunk_size: object) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def _blocks(n: int, chunk_size: int, num_cols: int, count: int, like: torch.Tensor, dtype: torch.dtype):
    """Yield ``(rows, views)`` per block of ``chunk_size`` rows: the row slice and ``count`` scratch
    ``[rows, num_cols]`` views of buffers allocated once per sweep.

    Reusing the buffers matters on CPU: a fresh block-sized tensor is a fresh memory mapping whose
    every page faults on first touch, which costs as much as the elementwise work on it.
    """
    buffers = [like.new_empty((min(chunk_size, n), num_cols), dtype=dtype) for _ in range(count)]
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        yield slice(start, stop), [buffer[: stop - start] for buffer in buffers]


def _scores(
    rows: torch.Tensor,
    scale: torch.Tensor,
    cols: torch.Tensor,
    out: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``out = scale * rows @ cols.T (+ bias)``: the matmul in the features' dtype, kept in ``out``'s."""
    scaled = rows * scale  # [rows, D]: cheaper than scaling the [rows, N] block
    if out.dtype != rows.dtype:
        return out.copy_(scaled @ cols.T if bias is None else torch.addmm(bias, scaled, cols.T))
    if bias is None:
        return torch.mm(scaled, cols.T, out=out)
    return torch.addmm(bias, scaled, cols.T, out=out)


def _row_logsumexp(block: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """``logsumexp(block, dim=1)`` through the caller's scratch block (torch.logsumexp allocates one)."""
    row_max = block.amax(dim=1, keepdim=True)
    # A row of -inf (or NaN) would give NaN through -inf - -inf; keep its maximum finite as logsumexp does.
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    return torch.sub(block, row_max, out=scratch).exp_().sum(dim=1).log_().add_(row_max.squeeze(1))


def _rowwise_dot_sum(a: torch.Tensor, b: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``(a * b).sum()`` in ``b``'s (accumulation) dtype, without an [n, D] temporary."""
    # torch.sum sums pairwise; a BLAS dot over millions of float32 terms would drift by ~1e-4.
    total = b.new_zeros((), dtype=_accumulation_dtype(b.dtype))
    for start in range(0, a.shape[0], chunk_size):
        total += (a[start : start + chunk_size].to(total.dtype) * b[start : start + chunk_size]).sum()
    return total


# --------------------------------------------------------------------------- CLIP, both directions


class _FusedClipLoss(torch.autograd.Function):
    """Symmetric CLIP loss of a square batch (image ``i`` pairs with text ``i``), one sweep per pass.

    With ``S = s I T^T``, row / column log-sum-exps ``r_i``, ``c_j``, the smoothed target weights
    ``W = (1 - eps) Id + eps / B`` and ``B`` pairs, the loss is
    ``(sum_i r_i + sum_j c_j) / 2B - (1/B) sum_ij W_ij S_ij``. Its gradient with respect to ``S`` is
    ``G / 2B`` with ``G = P_row + P_col - 2W``, ``P_row = exp(S - r)``, ``P_col = exp(S - c)``; then
    ``dI = (s/2B) G T``, ``dT = (s/2B) G^T I`` and ``ds = (1/2B) sum_ij G_ij I_i·T_j``, the last one
    read off ``I · (G T)`` (what autograd computes for ClipLoss's ``(s * I) @ T.T`` too).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, chunk_size: int, eps: float
    ) -> torch.Tensor:
        n = image.shape[0]
        acc = _accumulation_dtype(image.dtype)
        row_lse = image.new_empty(n, dtype=acc)
        col_max = image.new_full((n,), float("-inf"), dtype=acc)
        col_sum = image.new_zeros(n, dtype=acc)
        # Two blocks alive: the logits and one scratch block that both directions reuse.
        for rows, (logits, scratch) in _blocks(n, chunk_size, n, 2, image, acc):
            _scores(image[rows], scale, text, out=logits)
            row_lse[rows] = _row_logsumexp(logits, scratch)
            # Online column log-sum-exp: rescale the running sums to the new running maximum.
            new_max = torch.maximum(col_max, logits.amax(dim=0))
            col_sum.mul_(torch.exp(col_max - new_max))
            col_sum += torch.sub(logits, new_max, out=scratch).exp_().sum(dim=0)
            col_max = new_max
        col_lse = col_sum.log_().add_(col_max)
        target = _smoothed_dots(image.to(acc), text.to(acc), eps)
        loss = (row_lse.sum() + col_lse.sum()) / (2 * n) - scale.to(acc) * target / n
        ctx.save_for_backward(image, text, scale, row_lse, col_lse)
        ctx.chunk_size, ctx.eps = chunk_size, eps
        return loss.to(image.dtype)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        image, text, scale, row_lse, col_lse = ctx.saved_tensors
        need_image, need_text, need_scale = ctx.needs_input_grad[:3]
        chunk_size, eps = ctx.chunk_size, ctx.eps
        n, acc = image.shape[0], row_lse.dtype
        # dI (before scaling) is needed for ds as well.
        grad_image = image.new_empty(image.shape) if need_image or need_scale else None
        grad_text = torch.zeros_like(text, dtype=acc) if need_text else None
        for rows, (both, probs) in _blocks(n, chunk_size, n, 2, image, acc):
            _scores(image[rows], scale, text, out=both)
            torch.sub(both, row_lse[rows, None], out=probs).exp_()
            # In place into the logits block: G = P_row + P_col (the targets are subtracted below).
            both.sub_(col_lse).exp_().add_(probs)
            both_in = both.to(image.dtype)
            if grad_image is not None:
                torch.mm(both_in, text, out=grad_image[rows])
            if grad_text is not None:
                grad_text.addmm_(both.T, image[rows].to(acc))
        coef = grad_loss.to(acc) / (2 * n)
        s = scale.to(acc)
        grad_scale = None
        # In place from here: every B×D temporary counts against the memory this loss exists to save.
        if grad_image is not None:
            grad_image = grad_image.to(acc).sub_(_smoothed_targets(text, eps).to(acc), alpha=2.0)
            if need_scale:
                # Subtracting the targets first, row by row, as autograd does for ClipLoss: their
                # sum nearly cancels the softmax part, and cancelling before summing keeps it exact.
                grad_scale = (_rowwise_dot_sum(image, grad_image, chunk_size) * coef).to(scale.dtype)
            grad_image = grad_image.mul_(s * coef).to(image.dtype) if need_image else None
        if grad_text is not None:
            grad_text = grad_text.sub_(_smoothed_targets(image, eps).to(acc), alpha=2.0)
            grad_text = grad_text.mul_(s * coef).to(text.dtype)
        return grad_image, grad_text, grad_scale, None, None


def _smoothed_targets(keys: torch.Tensor, eps: float) -> torch.Tensor:
    # Each row's target distribution contracted with the keys: (1 - eps) k_i + (eps / N) sum_j k_j.
    if not eps:
        return keys
    return (1.0 - eps) * keys + (eps / keys.shape[0]) * keys.sum(dim=0)


def _smoothed_dots(image: torch.Tensor, text: torch.Tensor, eps: float) -> torch.Tensor:
    # sum_ij W_ij I_i·T_j without the B×B matrix.
    return (image * _smoothed_targets(text, eps)).sum()


def chunked_clip_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    chunk_size: int = 1024,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``(CE(s I T^T, diag) + CE(s T I^T, diag)) / 2`` (CLIP's loss) without the ``B × B`` logits.

    Args:
        image, text: paired features [B, D]; pair ``i`` is the positive of row ``i`` and column ``i``.
        scale: 0-dim tensor multiplying the dot products.
        chunk_size: rows per block; peak memory is about two ``chunk_size × B`` blocks.
        label_smoothing: as ``F.cross_entropy(label_smoothing=...)``, in both directions.
    """
    if image.shape != text.shape:
        raise ConfigError(
            f"chunked_clip_loss needs paired features, got {tuple(image.shape)} vs {tuple(text.shape)}"
        )
    return _FusedClipLoss.apply(image, text, scale, _check_chunk_size(chunk_size), float(label_smoothing))


# ------------------------------------------------------------------------------ CLIP, one direction


class _ChunkedCrossEntropy(torch.autograd.Function):
    """``mean_i CE(scale * q_i @ k.T, target = i + offset)`` with label smoothing, row-block by row-block.

    With ``lse_i = logsumexp_j(s q_i·k_j)`` and the smoothed target vector
    ``t_i = (1 - eps) k_{i+offset} + (eps / N) sum_j k_j``, the loss is
    ``(1/n) sum_i [lse_i - s q_i·t_i]``. Writing ``P`` for the row softmax, its gradients are
    ``dq_i = (s/n)(sum_j P_ij k_j - t_i)``, ``dk_j = (s/n)(sum_i P_ij q_i - (1-eps) q_{j-offset}
    - (eps/N) sum_i q_i)`` and ``ds = (1/n) sum_i q_i·(sum_j P_ij k_j - t_i)``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        q: torch.Tensor,
        k: torch.Tensor,
        scale: torch.Tensor,
        offset: int,
        chunk_size: int,
        label_smoothing: float,
    ) -> torch.Tensor:
        n = q.shape[0]
        acc = _accumulation_dtype(q.dtype)
        lse = q.new_empty(n, dtype=acc)
        for rows, (block, scratch) in _blocks(n, chunk_size, k.shape[0], 2, q, acc):
            lse[rows] = _row_logsumexp(_scores(q[rows], scale, k, out=block), scratch)
        target = _offset_targets(k, offset, n, label_smoothing)
        target_logits = scale.to(acc) * (q.to(acc) * target.to(acc)).sum()
        loss = (lse.sum() - target_logits) / n
        ctx.save_for_backward(q, k, scale, lse)
        ctx.offset, ctx.chunk_size, ctx.label_smoothing = offset, chunk_size, label_smoothing
        return loss.to(q.dtype)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        q, k, scale, lse = ctx.saved_tensors
        offset, chunk_size, eps = ctx.offset, ctx.chunk_size, ctx.label_smoothing
        need_q, need_k, need_s = ctx.needs_input_grad[:3]
        n, num_cols = q.shape[0], k.shape[0]
        acc = lse.dtype
        grad_q = q.new_empty(q.shape) if need_q or need_s else None
        grad_k = torch.zeros_like(k, dtype=acc) if need_k else None
        for rows, (probs,) in _blocks(n, chunk_size, num_cols, 1, q, acc):
            _scores(q[rows], scale, k, out=probs).sub_(lse[rows, None]).exp_()
            if grad_q is not None:
                torch.mm(probs.to(q.dtype), k, out=grad_q[rows])
            if grad_k is not None:
                grad_k.addmm_(probs.T, q[rows].to(acc))
        # Subtract the target terms, which are cheap (O(n·D)) and need no blocking.
        coef = grad_loss.to(acc) / n
        s = scale.to(acc)
        grad_s = None
        if grad_q is not None:
            grad_q = grad_q.to(acc).sub_(_offset_targets(k, offset, n, eps).to(acc))
            if need_s:
                grad_s = (_rowwise_dot_sum(q, grad_q, chunk_size) * coef).to(scale.dtype)
            grad_q = grad_q.mul_(s * coef).to(q.dtype) if need_q else None
        if grad_k is not None:
            grad_k[offset : offset + n].sub_(q.to(acc), alpha=1.0 - eps)
            if eps:
                grad_k -= (eps / num_cols) * q.to(acc).sum(dim=0)
            grad_k = grad_k.mul_(s * coef).to(k.dtype)
        return grad_q, grad_k, grad_s, None, None, None


def _offset_targets(k: torch.Tensor, offset: int, n: int, label_smoothing: float) -> torch.Tensor:
    # Row i's target distribution, already contracted with the keys: sum_j t_ij k_j.
    target = k[offset : offset + n]
    if label_smoothing:
        target = (1.0 - label_smoothing) * target + (label_smoothing / k.shape[0]) * k.sum(dim=0)
    return target


def chunked_cross_entropy(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: torch.Tensor,
    offset: int = 0,
    chunk_size: int = 1024,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``F.cross_entropy(scale * q @ k.T, arange(n) + offset, label_smoothing=...)`` without the n×N logits.

    Args:
        q: query rows [n, D]; row ``i``'s positive is key ``i + offset``.
        k: keys [N, D] with ``offset + n <= N``.
        scale: 0-dim tensor multiplying the dot products.
        chunk_size: rows per block; peak memory is a few ``chunk_size × N`` blocks.
    """
    if offset < 0 or offset + q.shape[0] > k.shape[0]:
        raise ConfigError(
            f"positives out of range: rows {offset}..{offset + q.shape[0] - 1} of keys {tuple(k.shape)}"
        )
    return _ChunkedCrossEntropy.apply(q, k, scale, offset, _check_chunk_size(chunk_size), label_smoothing)


class ChunkedClipLoss(DistributedLossBase):
    """:class:`~vlzoo.core.losses.ClipLoss` with peak memory O(B · chunk_size) instead of O(B²).

    Same arguments, value and gradients as ClipLoss (including ``label_smoothing`` and every
    distributed mode, whose semantics are in :mod:`vlzoo.core.losses.contrastive`). On one process,
    and with ``local_loss=False`` on the gathered batch, the two directions are the rows and the
    columns of one square matrix: :func:`chunked_clip_loss` serves both from one sweep over its
    blocks. With ``local_loss`` the directions are two different ``b × B`` strips (this rank's images
    against all texts, its texts against all images, positives at ``rank * b``), one
    :func:`chunked_cross_entropy` each. The backward recomputes the blocks, so it costs one more
    ``B × B × D`` matmul than ClipLoss.
    """

    def __init__(
        self,
        chunk_size: int = 1024,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        label_smoothing: float = 0.0,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        group: object | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__(local_loss, gather_with_grad, rank, world_size, group, check_inputs)
        self.chunk_size = _check_chunk_size(chunk_size)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Loss of paired ``image_features`` [b, D] and ``text_features`` [b, D]."""
        scale = self.checked_inputs(image_features, text_features, logit_scale)
        rows = self.pair_rows(image_features, text_features, *self.resolve_world())
        eps = self.label_smoothing
        if not rows.local:
            loss = chunked_clip_loss(rows.images, rows.texts, scale, self.chunk_size, eps)
        else:

            def direction(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
                return chunked_cross_entropy(queries, keys, scale, rows.offset, self.chunk_size, eps)

            loss = 0.5 * (direction(rows.images, rows.all_texts) + direction(rows.texts, rows.all_images))
        return self.result(loss, output_dict)

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}, {super().extra_repr()}, label_smoothing={self.label_smoothing}"


# ------------------------------------------------------------------------------------------ SigLIP


# 1/15, 1/13, ..., 1/1: log1p(x) = 2 atanh(t) = 2 (t + t^3/3 + ... + t^15/15 + O(t^17)) with t = x / (2 + x).
_LOG1P_SERIES = tuple(1.0 / k for k in range(15, 0, -2))


def _softplus_sum(block: torch.Tensor) -> torch.Tensor:
    """``F.softplus(block).sum()``, but vectorized on CPU, piece by cache-sized piece.

    ``softplus(u) = max(u, 0) + log1p(e^-|u|)``. torch's CPU ``log``/``log1p``/``softplus`` kernels run
    about 30x slower than ``exp``, so in float32 the ``log1p`` is the atanh series above: with
    ``x = e^-|u|`` in (0, 1], ``t <= 1/3`` and the truncation error is below 1e-8 relative, i.e.
    below float32's rounding. Float64 keeps torch's kernel.
    """
    if block.dtype == torch.float64 or block.device.type != "cpu":
        return F.softplus(block, threshold=40.0 if block.dtype == torch.float64 else 20.0).sum()
    total = block.new_zeros(())
    # About 1M elements (4 MiB) per piece: the passes below stay in cache, and there are few enough
    # pieces that per-op overhead (a thread-pool barrier each) stays small.
    for piece in block.split(max(1, (1 << 20) // max(1, block.shape[-1]))):
        t = piece.abs().neg_().exp_()
        t.div_(t + 2.0)
        t_squared = t * t
        series = torch.full_like(t, _LOG1P_SERIES[0])
        for coef in _LOG1P_SERIES[1:]:
            series.mul_(t_squared).add_(coef)
        total += 2.0 * t.mul_(series).sum() + piece.clamp_min(0).sum()
    return total


class _ChunkedSigmoidLoss(torch.autograd.Function):
    """``sum_ij softplus(-y_ij z_ij)`` with ``z = s I T^T + b``, one row block at a time.

    ``y_ij = +1`` where ``j == i`` (when ``with_positives``), else -1. The gradient with respect to
    ``z`` is ``sigmoid(z) - [y = +1]``, known as soon as the block is: the forward sweep computes
    ``dI = s G T``, ``dT = s G^T I``, ``ds = sum I·(G T)``, ``db = sum G`` when asked to, and the
    backward only multiplies them by the incoming gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        image: torch.Tensor,
        text: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor,
        with_positives: bool,
        chunk_size: int,
        with_grads: bool,
    ) -> torch.Tensor:
        n = image.shape[0]
        acc = _accumulation_dtype(image.dtype)
        total = image.new_zeros((), dtype=acc)
        grad_image = image.new_empty(image.shape) if with_grads else None
        grad_text = torch.zeros_like(text, dtype=acc) if with_grads else None
        grad_bias = image.new_zeros((), dtype=acc)
        for rows, (neg_margin,) in _blocks(n, chunk_size, text.shape[0], 1, image, acc):
            _scores(image[rows], scale, text, out=neg_margin, bias=bias)
            # -y*z: z itself off the diagonal (y = -1), its negation on it.
            positives = neg_margin.diagonal(offset=rows.start) if with_positives else None
            if positives is not None:
                positives.neg_()
            total += _softplus_sum(neg_margin)
            if not with_grads:
                continue
            # d softplus(-y z) / dz = -y sigmoid(-y z): sigmoid of the block, negated on the diagonal.
            grads = neg_margin.sigmoid_()
            if positives is not None:
                positives.neg_()
            grad_bias += grads.sum()
            torch.mm(grads.to(image.dtype), text, out=grad_image[rows])
            grad_text.addmm_(grads.T, image[rows].to(acc))
        if with_grads:
            grad_scale = _rowwise_dot_sum(image, grad_image, chunk_size)
            s = scale.to(acc)
            ctx.save_for_backward(
                (grad_image.to(acc) * s).to(image.dtype),
                (grad_text * s).to(text.dtype),
                grad_scale.to(scale.dtype),
                grad_bias.to(bias.dtype),
            )
        return total.to(image.dtype)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        if not ctx.saved_tensors:
            raise RuntimeError("chunked_sigmoid_loss was called with with_grads=False; it has no gradient")
        grads = tuple(g * grad_loss.to(g.dtype) for g in ctx.saved_tensors)
        return (*grads, None, None, None)


def chunked_sigmoid_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    with_positives: bool,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """:func:`~vlzoo.core.losses.siglip.sigmoid_block_loss` without the ``b × b`` block in memory.

    ``-sum_ij log sigmoid(y_ij (s I_i·T_j + b))`` over ``image`` [n, D] × ``text`` [m, D], with
    ``y_ii = +1`` when ``with_positives`` (then ``n == m``) and -1 elsewhere; not normalized. The
    gradients are computed in the same sweep when autograd will want them.
    """
    if with_positives and image.shape[0] != text.shape[0]:
        raise ConfigError(
            f"with_positives needs as many texts as images, got {tuple(image.shape)} vs {tuple(text.shape)}"
        )
    with_grads = torch.is_grad_enabled() and any(t.requires_grad for t in (image, text, scale, bias))
    return _ChunkedSigmoidLoss.apply(
        image, text, scale, bias, with_positives, _check_chunk_size(chunk_size), with_grads
    )


class ChunkedSigLipLoss(SigLipLoss):
    """:class:`~vlzoo.core.losses.SigLipLoss` with peak memory O(b · chunk_size) instead of O(b²).

    Same arguments (plus ``chunk_size``), value, gradients and distributed exchanges as SigLipLoss;
    every ``b × b`` block of image-text pairs is scored ``chunk_size`` rows at a time by
    :func:`chunked_sigmoid_loss`.
    """

    def __init__(
        self,
        chunk_size: int = 1024,
        rank: int | None = None,
        world_size: int | None = None,
        dist_impl: str = "bidir",
        *,
        group: object | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__(rank, world_size, dist_impl, group=group, check_inputs=check_inputs)
        self.chunk_size = _check_chunk_size(chunk_size)

    def block_loss(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor,
        with_positives: bool,
    ) -> torch.Tensor:
        return chunked_sigmoid_loss(
            image_features, text_features, logit_scale, logit_bias, with_positives, self.chunk_size
        )

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}, {super().extra_repr()}"
