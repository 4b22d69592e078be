"""CLIP loss with O(B · chunk) memory instead of O(B²).

The plain loss keeps several ``B × B`` matrices alive (logits, two log-softmaxes, their gradients):
4 GiB each at B = 32k in float32. Here the forward pass only keeps one log-sum-exp per row, and the
backward pass recomputes the logits one block of rows at a time. Value and gradients are those of
:class:`~vlzoo.core.losses.ClipLoss` up to floating-point summation order.
"""

from __future__ import annotations

import torch

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses.contrastive import DistributedLossBase

__all__ = ["ChunkedClipLoss", "chunked_cross_entropy"]


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    # Sums over up to B columns lose too much in half precision; keep the softmax statistics in fp32.
    return torch.promote_types(dtype, torch.float32)


class _ChunkedCrossEntropy(torch.autograd.Function):
    """``mean_i CE(scale * q_i @ k.T, target = i + offset)`` with label smoothing, row-block by row-block.

    With ``lse_i = logsumexp_j(s q_i·k_j)`` and the smoothed target vector
    ``t_i = (1 - eps) k_{i+offset} + (eps / N) sum_j k_j``, the loss is
    ``(1/n) sum_i [lse_i - s q_i·t_i]``. Writing ``P`` for the row softmax, its gradients are
    ``dq_i = (s/n)(sum_j P_ij k_j - t_i)``, ``dk_j = (s/n)(sum_i P_ij q_i - (1-eps) q_{j-offset}
    - (eps/N) sum_i q_i)`` and ``ds = (1/n) sum_i (sum_j P_ij q_i·k_j - q_i·t_i)``.
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
        scaled_q = q * scale
        lse = torch.empty(n, dtype=acc, device=q.device)
        for start in range(0, n, chunk_size):
            block = scaled_q[start : start + chunk_size] @ k.T
            lse[start : start + chunk_size] = torch.logsumexp(block.to(acc), dim=1)
        target = _smoothed_targets(k, offset, n, label_smoothing)
        target_logits = (scaled_q.to(acc) * target.to(acc)).sum()
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
        grad_q = torch.empty_like(q) if need_q else None
        grad_k = torch.zeros_like(k, dtype=acc) if need_k else None
        grad_s = torch.zeros((), dtype=acc, device=q.device)
        s = scale.to(acc)
        for start in range(0, n, chunk_size):
            q_block = q[start : start + chunk_size]
            dots = (q_block @ k.T).to(acc)
            # In place: two blocks alive at a time (dots and probs) is what bounds peak memory.
            probs = torch.mul(dots, s).sub_(lse[start : start + chunk_size, None]).exp_()
            if need_s:
                # torch.sum sums pairwise; a BLAS dot over millions of float32 terms drifts by ~1e-4.
                grad_s += dots.mul_(probs).sum()
            del dots
            probs = probs.to(q.dtype)
            if need_q:
                grad_q[start : start + chunk_size] = probs @ k
            if need_k:
                grad_k.addmm_(probs.T.to(acc), q_block.to(acc))
        # Subtract the target terms, which are cheap (O(n·D)) and need no blocking.
        target = _smoothed_targets(k, offset, n, eps)
        coef = grad_loss.to(acc) / n
        if need_s:
            grad_s = (grad_s - (q.to(acc) * target.to(acc)).sum()) * coef
        if need_q:
            grad_q = ((grad_q.to(acc) - target.to(acc)) * (s * coef)).to(q.dtype)
        if need_k:
            grad_k[offset : offset + n] -= (1.0 - eps) * q.to(acc)
            if eps:
                grad_k -= (eps / num_cols) * q.to(acc).sum(dim=0)
            grad_k = (grad_k * (s * coef)).to(k.dtype)
        return grad_q, grad_k, (grad_s.to(scale.dtype) if need_s else None), None, None, None


def _smoothed_targets(k: torch.Tensor, offset: int, n: int, label_smoothing: float) -> torch.Tensor:
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
    return _ChunkedCrossEntropy.apply(q, k, scale, offset, chunk_size, label_smoothing)


class ChunkedClipLoss(DistributedLossBase):
    """:class:`~vlzoo.core.losses.ClipLoss` with peak memory O(B · chunk_size) instead of O(B²).

    Same arguments, value and gradients as ClipLoss (including ``label_smoothing`` and every
    distributed mode, whose semantics are in :mod:`vlzoo.core.losses.contrastive`). Each direction is
    one :func:`chunked_cross_entropy` call: image rows against text columns, then text rows
    against image columns. With ``local_loss`` the rows are this rank's and the columns the
    gathered ones, with the positives at ``rank * b``. The backward recomputes the logits, so it
    costs about one more ``B × B × D`` matmul than ClipLoss.
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
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive int, got {chunk_size!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.chunk_size = chunk_size
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

        def direction(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
            return chunked_cross_entropy(
                queries, keys, scale, rows.offset, self.chunk_size, self.label_smoothing
            )

        loss = 0.5 * (direction(rows.images, rows.all_texts) + direction(rows.texts, rows.all_images))
        return self.result(loss, output_dict)

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}, {super().extra_repr()}, label_smoothing={self.label_smoothing}"
