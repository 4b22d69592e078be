"""Process-group helpers for the contrastive losses.

Everything here degrades to the identity (rank 0 of a world of 1) when ``torch.distributed`` is
missing or has no initialized process group, so the losses can call these helpers unconditionally.

Two ways of moving features between ranks are provided:

* :func:`all_gather_features` concatenates every rank's batch (CLIP-style losses that need all
  columns of the logit matrix);
* :func:`neighbour_exchange` / :func:`neighbour_exchange_bidir` pass a tensor around the ring one
  hop at a time (SigLIP), so that a rank holds at most a neighbour's batch at once.

All of them are differentiable where asked: the backward pass sends each gradient back to the rank
that owns the tensor, so that the gradient a rank receives for its local features includes the
terms computed on every other rank.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

try:
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_fn

    _HAS_DIST = dist.is_available()
except ImportError:  # builds of torch without distributed support
    dist = None  # type: ignore[assignment]
    dist_fn = None  # type: ignore[assignment]
    _HAS_DIST = False

__all__ = [
    "all_gather_features",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "neighbour_exchange",
    "neighbour_exchange_bidir",
]

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


def is_distributed() -> bool:
    """True when torch.distributed is usable and a default process group has been initialized."""
    return _HAS_DIST and dist.is_initialized()


def get_rank(group: ProcessGroup | None = None) -> int:
    """Rank of this process in ``group`` (default group when None); 0 when not distributed."""
    return dist.get_rank(group=group) if is_distributed() else 0


def get_world_size(group: ProcessGroup | None = None) -> int:
    """Number of processes in ``group`` (default group when None); 1 when not distributed."""
    return dist.get_world_size(group=group) if is_distributed() else 1


def _global_rank(group: ProcessGroup | None, group_rank: int) -> int:
    # Point-to-point ops address peers by global rank, whereas ring neighbours are group ranks.
    if group is None or group is dist.group.WORLD:
        return group_rank
    return dist.get_global_rank(group, group_rank)


def all_gather_features(x: torch.Tensor, with_grad: bool, group: ProcessGroup | None = None) -> torch.Tensor:
    """Concatenate ``x`` from every rank of ``group`` along dim 0, in rank order.

    Every rank must pass a tensor of the same shape. Returns ``x`` itself when not distributed.

    Args:
        x: this rank's tensor, ``[b, ...]``.
        with_grad: if True the gather is differentiable: the gradient of the result is summed over
            ranks and each rank gets back the slice that belongs to its ``x``. This is what makes the
            sum of per-rank losses exact (see :mod:`vlzoo.core.losses`). If False the other ranks'
            slices are constants and only this rank's own slot carries ``x``'s graph: cheaper, but
            the gradient terms that other ranks compute for ``x`` are lost.
        group: process group; the default group when None.
    """
    world_size = get_world_size(group)
    if world_size == 1:
        return x
    if with_grad:
        with warnings.catch_warnings():
            # Deprecated in recent torch in favour of functional collectives whose backward is not
            # defined for every backend (gloo among them); this one still works everywhere.
            warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather", FutureWarning)
            parts = dist_fn.all_gather(x, group=group or dist.group.WORLD)
        return torch.cat(parts, dim=0)
    x_contig = x.contiguous()
    slots = [torch.empty_like(x_contig) for _ in range(world_size)]
    dist.all_gather(slots, x_contig.detach(), group=group)
    # The collective returns fresh tensors with no history; put our own tensor back so that at
    # least the local terms of the loss reach this rank's encoder.
    slots[get_rank(group)] = x
    return torch.cat(slots, dim=0)


def _exchange(tensor: torch.Tensor, send_to: int, recv_from: int, group: ProcessGroup | None) -> torch.Tensor:
    received = torch.empty_like(tensor)
    ops = [
        dist.P2POp(dist.isend, tensor.contiguous(), _global_rank(group, send_to), group=group),
        dist.P2POp(dist.irecv, received, _global_rank(group, recv_from), group=group),
    ]
    for request in dist.batch_isend_irecv(ops):
        request.wait()
    return received


class _NeighbourExchange(torch.autograd.Function):
    """Send to one neighbour, receive from the other; backward runs the same hop in reverse."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, send_to: int, recv_from: int, group) -> torch.Tensor:  # type: ignore[override]
        ctx.send_to, ctx.recv_from, ctx.group = send_to, recv_from, group
        return _exchange(tensor, send_to, recv_from, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        # The gradient of what we received belongs to the rank we received it from, and the
        # gradient of what we sent comes back from the rank we sent it to.
        grad_in = _NeighbourExchange.apply(grad.contiguous(), ctx.recv_from, ctx.send_to, ctx.group)
        return grad_in, None, None, None


def neighbour_exchange(
    tensor: torch.Tensor, send_to: int, recv_from: int, group: ProcessGroup | None = None
) -> torch.Tensor:
    """Send ``tensor`` to group rank ``send_to`` and return what group rank ``recv_from`` sent us.

    Differentiable: the gradient of the result travels back to ``recv_from``, and ``tensor``'s
    gradient is what ``send_to`` computed for it. Every rank of the ring must call it together.
    """
    return _NeighbourExchange.apply(tensor, send_to, recv_from, group)


def _exchange_bidir(
    to_left: torch.Tensor, to_right: torch.Tensor, left: int, right: int, group: ProcessGroup | None
) -> tuple[torch.Tensor, torch.Tensor]:
    from_left = torch.empty_like(to_right)
    from_right = torch.empty_like(to_left)
    left_g, right_g = _global_rank(group, left), _global_rank(group, right)
    # Each send is matched by the peer's receive of the same direction: our "to right" is our right
    # neighbour's "from left". Posting them in the same order on every rank keeps gloo's pairwise
    # ordering consistent even when left == right (a ring of two).
    ops = [
        dist.P2POp(dist.isend, to_right.contiguous(), right_g, group=group, tag=1),
        dist.P2POp(dist.isend, to_left.contiguous(), left_g, group=group, tag=2),
        dist.P2POp(dist.irecv, from_left, left_g, group=group, tag=1),
        dist.P2POp(dist.irecv, from_right, right_g, group=group, tag=2),
    ]
    for request in dist.batch_isend_irecv(ops):
        request.wait()
    return from_left, from_right


class _NeighbourExchangeBidir(torch.autograd.Function):
    """Swap tensors with both ring neighbours at once; backward swaps the gradients back."""

    @staticmethod
    def forward(ctx, to_left: torch.Tensor, to_right: torch.Tensor, left: int, right: int, group):  # type: ignore[override]
        ctx.left, ctx.right, ctx.group = left, right, group
        return _exchange_bidir(to_left, to_right, left, right, group)

    @staticmethod
    def backward(ctx, grad_from_left: torch.Tensor, grad_from_right: torch.Tensor):  # type: ignore[override]
        # What came from the left goes back left; our left neighbour then returns the gradient of
        # the tensor we sent it, and likewise on the right. So the backward is the same swap.
        grad_to_left, grad_to_right = _NeighbourExchangeBidir.apply(
            grad_from_left.contiguous(), grad_from_right.contiguous(), ctx.left, ctx.right, ctx.group
        )
        return grad_to_left, grad_to_right, None, None, None


def neighbour_exchange_bidir(
    to_left: torch.Tensor,
    to_right: torch.Tensor,
    left: int,
    right: int,
    group: ProcessGroup | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Send ``to_left`` to group rank ``left`` and ``to_right`` to ``right``; both hops at once.

    Returns ``(from_left, from_right)``: what the left neighbour sent right and what the right
    neighbour sent left. Differentiable in both inputs.
    """
    return _NeighbourExchangeBidir.apply(to_left, to_right, left, right, group)
