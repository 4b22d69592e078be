"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023, https://arxiv.org/abs/2303.15343)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from vlzoo.core.distributed import all_gather_features, neighbour_exchange, neighbour_exchange_bidir
from vlzoo.core.errors import ConfigError
from vlzoo.core.losses.contrastive import DistributedLossBase

__all__ = ["SigLipLoss", "sigmoid_block_loss"]

_DIST_IMPLS = ("gather", "bidir", "shift")


def sigmoid_block_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    with_positives: bool,
) -> torch.Tensor:
    """``-sum_ij log sigmoid(y_ij * z_ij)`` over one block of pairs, not normalized.

    ``z = logit_scale * I @ T.T + logit_bias``; ``y`` is +1 on the diagonal when ``with_positives``
    (the rank's own texts) and -1 everywhere else. Written as ``softplus(-y * z)`` with the sign
    flipped in place on the diagonal, which avoids building a ``±1`` label matrix and the two
    elementwise products over the block that it would cost.
    """
    neg_margin = torch.addmm(logit_bias, logit_scale * image_features, text_features.T)
    # z is already -y*z off the diagonal (y = -1); only the positives need their sign flipped.
    if with_positives:
        neg_margin.diagonal().neg_()
    # Beyond `threshold` softplus returns its input; exp(-threshold) must be below the dtype's
    # resolution for that to be exact (20 suffices for float32, not for float64).
    threshold = 40.0 if neg_margin.dtype == torch.float64 else 20.0
    return F.softplus(neg_margin, threshold=threshold).sum()


class SigLipLoss(DistributedLossBase):
    """Sigmoid loss over all image-text pairs with a learnable temperature and bias.

    The loss of a rank is ``-(1/b) sum_{i local} sum_{j global} log sigmoid(y_ij z_ij)``: its ``b``
    images against every text of the global batch, divided by the *local* batch size as in the
    paper. One process with the whole batch divides by ``B``, so ``sum_r L_r = W * L(global batch)``
    and the gradient identities of :mod:`vlzoo.core.losses.contrastive` hold as stated there (DDP's
    mean over ranks is the single-process gradient).

    Each rank only ever forms ``b × b`` blocks: the texts of the other ranks are brought in one block
    at a time (all differentiable, so the gradients reach the rank that owns the texts):

    * ``"gather"``: all-gather every rank's texts ([B, D], cheap) and loop over the blocks;
    * ``"shift"``: pass texts around the ring, ``W - 1`` one-way hops;
    * ``"bidir"``: pass texts both ways at once, about ``W / 2`` hops.

    Args:
        rank, world_size: None reads them from ``torch.distributed`` at call time.
        dist_impl: how texts travel between ranks (above).
        group: process group; the default group when None.
        check_inputs: raise ConfigError on non-finite features (one device sync per call).
    """

    def __init__(
        self,
        rank: int | None = None,
        world_size: int | None = None,
        dist_impl: str = "bidir",
        *,
        group: object | None = None,
        check_inputs: bool = True,
    ) -> None:
        # Every rank scores its own images against all texts, and the exchanges carry gradients.
        super().__init__(True, True, rank, world_size, group, check_inputs)
        if dist_impl not in _DIST_IMPLS:
            raise ConfigError(f"dist_impl must be one of {_DIST_IMPLS}, got {dist_impl!r}")
        self.dist_impl = dist_impl

    def _other_texts(self, texts: torch.Tensor, rank: int, world_size: int) -> Iterator[torch.Tensor]:
        # Yields the texts of every other rank exactly once, in an order that depends on dist_impl.
        left, right = (rank - 1) % world_size, (rank + 1) % world_size
        if self.dist_impl == "gather":
            gathered = all_gather_features(texts, with_grad=True, group=self.group).chunk(world_size)
            yield from (block for r, block in enumerate(gathered) if r != rank)
        elif self.dist_impl == "shift":
            for _ in range(world_size - 1):
                texts = neighbour_exchange(texts, send_to=right, recv_from=left, group=self.group)
                yield texts
        else:
            to_left = to_right = texts
            n_bidir, odd = divmod(world_size - 1, 2)
            for _ in range(n_bidir):
                from_left, from_right = neighbour_exchange_bidir(to_left, to_right, left, right, self.group)
                yield from_left
                yield from_right
                # Keep passing each stream in its direction: distance grows by one on both sides.
                to_left, to_right = from_right, from_left
            if odd:
                # The rank opposite in an even ring: one more hop to the right covers it.
                yield neighbour_exchange(to_right, send_to=right, recv_from=left, group=self.group)

    def block_loss(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor,
        with_positives: bool,
    ) -> torch.Tensor:
        """The unnormalized loss of one block of pairs (:func:`sigmoid_block_loss`); a subclass may score
        it differently (:class:`~vlzoo.core.losses.ChunkedSigLipLoss` does, in row chunks)."""
        return sigmoid_block_loss(image_features, text_features, logit_scale, logit_bias, with_positives)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Loss of paired ``image_features`` [b, D] and ``text_features`` [b, D]."""
        scale = self.checked_inputs(image_features, text_features, logit_scale)
        bias = self.checked_scalar(logit_bias, "logit_bias")
        rank, world_size = self.resolve_world()
        loss = self.block_loss(image_features, text_features, scale, bias, with_positives=True)
        if world_size > 1:
            for texts in self._other_texts(text_features, rank, world_size):
                loss = loss + self.block_loss(image_features, texts, scale, bias, with_positives=False)
        loss = loss / image_features.shape[0]
        return self.result(loss, output_dict)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, world_size={self.world_size}, dist_impl={self.dist_impl!r}"
