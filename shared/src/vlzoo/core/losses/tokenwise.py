"""FILIP's token-wise late-interaction contrastive loss (Yao et al. 2021, https://arxiv.org/abs/2111.07783).

Instead of one embedding per item, each image and text keeps its tokens. The similarity of image
``i`` to text ``j`` is, for each of ``i``'s tokens, its best match among ``j``'s tokens, averaged
over ``i``'s tokens; the text-to-image similarity swaps the roles, so it is not the transpose.
Padding tokens take part neither in the max nor in the mean.
"""

from __future__ import annotations

import torch

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses.contrastive import DistributedLossBase, rows_clip_loss

__all__ = ["FilipLoss", "late_interaction_similarity"]

# Upper bound on the number of token-pair similarities alive at once when chunk_size is None.
_AUTO_CHUNK_ELEMENTS = 1 << 25


def _normalize_mask(mask: torch.Tensor | None, tokens: torch.Tensor, name: str) -> torch.Tensor:
    expected = tuple(tokens.shape[:2])
    if mask is None:
        return torch.ones(expected, dtype=torch.bool, device=tokens.device)
    if tuple(mask.shape) != expected:
        raise ConfigError(f"{name} must have shape {expected} (batch, tokens), got {tuple(mask.shape)}")
    mask = mask.to(device=tokens.device, dtype=torch.bool)
    empty = (~mask.any(dim=1)).nonzero().flatten()
    if empty.numel():
        raise ConfigError(f"{name}: items {empty[:8].tolist()} have no real token (all padding)")
    return mask


def late_interaction_similarity(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    keys: torch.Tensor,
    key_mask: torch.Tensor,
    chunk_size: int | None = None,
    both: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-wise similarities of every query item with every key item.

    ``sim[i, j] = mean over real tokens k of query i of max over real tokens r of key j of
    <q_ik, k_jr>``; shape [n_q, n_k]. With ``both`` it also returns the reverse similarity
    (mean over key j's tokens of the max over query i's tokens), laid out as [n_k, n_q], computed
    from the same token-pair scores.

    Query items are processed ``chunk_size`` at a time, which bounds the transient
    ``chunk × n_k × N_q × N_k`` block of token-pair scores; autograd keeps only the argmax indices.
    """
    n_q, len_q, dim = queries.shape
    n_k, len_k, _ = keys.shape
    if chunk_size is None:
        chunk_size = max(1, _AUTO_CHUNK_ELEMENTS // max(1, n_k * len_q * len_k))
    # Padding gets -inf so that it never wins a max; adding it in place keeps a single buffer of
    # token-pair scores and, unlike masked_fill, saves no broadcast mask for backward.
    key_pad = torch.zeros(key_mask.shape, dtype=keys.dtype, device=keys.device)
    key_pad.masked_fill_(~key_mask, float("-inf"))
    query_pad = torch.zeros(query_mask.shape, dtype=queries.dtype, device=queries.device)
    query_pad.masked_fill_(~query_mask, float("-inf"))
    query_weight = query_mask.to(queries.dtype) / query_mask.sum(dim=1, keepdim=True)
    key_weight = key_mask.to(keys.dtype) / key_mask.sum(dim=1, keepdim=True)
    flat_keys = keys.reshape(n_k * len_k, dim)

    forward_rows, reverse_rows = [], []
    for start in range(0, n_q, chunk_size):
        stop = min(start + chunk_size, n_q)
        block = queries[start:stop].reshape(-1, dim) @ flat_keys.T
        block = block.view(stop - start, len_q, n_k, len_k)
        block.add_(key_pad[None, None, :, :])
        best_key = block.max(dim=3).values  # [c, len_q, n_k]
        # Padding query tokens have finite (meaningless) maxima here; their weight is 0.
        forward_rows.append(torch.einsum("cqk,cq->ck", best_key, query_weight[start:stop]))
        if both:
            # In place is safe: max() saved its indices, not its input.
            block.add_(query_pad[start:stop, :, None, None])
            best_query = block.max(dim=1).values  # [c, n_k, len_k]
            # Padding key tokens are -inf in every row; zero them before weighting (0 * -inf = nan).
            best_query = best_query.masked_fill(~key_mask[None], 0.0)
            reverse_rows.append(torch.einsum("ckr,kr->kc", best_query, key_weight))
        del block
    forward = torch.cat(forward_rows, dim=0)
    reverse = torch.cat(reverse_rows, dim=1) if both else None
    return forward, reverse


class FilipLoss(DistributedLossBase):
    """Symmetric InfoNCE over FILIP's token-wise similarities.

    ``loss = (CE(s * S, diag) + CE(s * S', diag)) / 2`` where ``S[i, j]`` is image ``i``'s
    late-interaction similarity to text ``j`` and ``S'[j, i]`` text ``j``'s to image ``i`` (see
    :func:`late_interaction_similarity`). The towers must return token outputs; normalizing them
    per token is the caller's choice, as in FILIP.

    Distributed options and gradient semantics are those of :class:`ClipLoss`: tokens and masks are
    gathered; with ``local_loss`` each rank scores its own images against all texts and its own
    texts against all images.

    Args:
        chunk_size: query items per block of token-pair scores; None picks one that keeps the
            block at about 32M scores.
    """

    def __init__(
        self,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        chunk_size: int | None = None,
        *,
        group: object | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__(local_loss, gather_with_grad, rank, world_size, group, check_inputs)
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ConfigError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        self.chunk_size = chunk_size

    def forward(
        self,
        image_tokens: torch.Tensor,
        text_tokens: torch.Tensor,
        logit_scale: torch.Tensor,
        image_mask: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Loss of ``image_tokens`` [b, N_img, D] vs ``text_tokens`` [b, N_txt, D].

        Masks are [b, N] bool or 0/1 with 1 = real token; None means every token is real.
        """
        scale = self.checked_inputs(
            image_tokens, text_tokens, logit_scale, ndim=3, names=("image_tokens", "text_tokens")
        )
        image_mask = _normalize_mask(image_mask, image_tokens, "image_mask")
        text_mask = _normalize_mask(text_mask, text_tokens, "text_mask")
        rank, world_size = self.resolve_world()
        chunk = self.chunk_size

        if world_size > 1:
            all_images, all_texts = self.gather(image_tokens), self.gather(text_tokens)
            # Through uint8: not every backend can all-gather bool tensors.
            all_image_mask = self.gather(image_mask.to(torch.uint8), with_grad=False).bool()
            all_text_mask = self.gather(text_mask.to(torch.uint8), with_grad=False).bool()
            if self.local_loss:
                # Two passes: our images vs all texts, and our texts vs all images.
                offset = rank * image_tokens.shape[0]
                i2t, _ = late_interaction_similarity(
                    image_tokens, image_mask, all_texts, all_text_mask, chunk
                )
                t2i, _ = late_interaction_similarity(
                    text_tokens, text_mask, all_images, all_image_mask, chunk
                )
                loss = 0.5 * (rows_clip_loss(scale * i2t, offset) + rows_clip_loss(scale * t2i, offset))
                return self.result(loss, output_dict)
            image_tokens, text_tokens = all_images, all_texts
            image_mask, text_mask = all_image_mask, all_text_mask

        # One pass yields both directions from the same token-pair scores.
        i2t, t2i = late_interaction_similarity(
            image_tokens, image_mask, text_tokens, text_mask, chunk, both=True
        )
        loss = 0.5 * (rows_clip_loss(scale * i2t, 0) + rows_clip_loss(scale * t2i, 0))
        return self.result(loss, output_dict)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, chunk_size={self.chunk_size}"
