"""CLIP's symmetric InfoNCE loss, its multi-positive generalisation, and the input checks shared by
every loss of :mod:`vlzoo.core.losses`.

Distributed semantics (all losses of this package follow them)
---------------------------------------------------------------
Each rank holds ``b`` pairs of a global batch of ``B = W * b`` pairs. With ``gather_with_grad=True``
every per-rank loss ``L_r`` is a mean over ``b`` rows, so that ``sum_r L_r = W * L`` where ``L`` is
the same loss computed by one process on the global batch (with ``local_loss=False`` every rank
computes ``L`` itself and the identity reads ``sum_r L_r = W * L`` too). The gathers send every
gradient back to the rank that owns the features, hence, for every rank ``r``:

* gradient of ``L_r`` w.r.t. rank ``r``'s features == ``W`` x gradient of ``L`` w.r.t. that slice;
* mean over ranks of the gradients w.r.t. a replicated parameter (``logit_scale``) == its gradient
  of ``L``.

Together: the gradient that DistributedDataParallel applies (the mean over ranks) is exactly the
single-process gradient of the global batch. With ``gather_with_grad=False`` the terms that the
other ranks compute for this rank's features are dropped, which is cheaper but not exact.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core.distributed import all_gather_features, get_rank, get_world_size, is_distributed
from vlzoo.core.errors import ConfigError

__all__ = [
    "ClipLoss",
    "DistributedLossBase",
    "MultiPositiveClipLoss",
    "PairRows",
    "check_feature_pair",
    "check_finite",
    "check_scalar_tensor",
]


# --------------------------------------------------------------------------------------------- checks


def check_scalar_tensor(value: object, name: str, finite: bool = True) -> torch.Tensor:
    """Return ``value`` as a 0-dim tensor, or raise ConfigError.

    A Python float is refused on purpose: ``logit_scale`` / ``logit_bias`` are learnable, and a float
    (e.g. ``model.logit_scale.exp().item()``) would silently cut them out of the graph. ``finite``
    also rejects NaN / inf (a device sync).
    """
    if not isinstance(value, torch.Tensor):
        raise ConfigError(
            f"{name} must be a torch.Tensor with one element (the model's learnable parameter, "
            f"e.g. logit_scale.exp()), got {type(value).__name__} {value!r}"
        )
    if value.numel() != 1:
        raise ConfigError(f"{name} must have exactly one element, got shape {tuple(value.shape)}")
    if finite and not bool(torch.isfinite(value.detach()).all()):
        raise ConfigError(f"{name} is not finite: {value.detach().item()}")
    return value.reshape(())


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise ConfigError when ``tensor`` holds a NaN or an infinity (which would poison the loss)."""
    if not bool(torch.isfinite(tensor.detach()).all()):
        bad = int((~torch.isfinite(tensor.detach())).sum())
        raise ConfigError(f"{name} of shape {tuple(tensor.shape)} has {bad} non-finite value(s) (NaN or inf)")


def check_feature_pair(
    image: torch.Tensor,
    text: torch.Tensor,
    *,
    ndim: int = 2,
    same_batch: bool = True,
    names: tuple[str, str] = ("image_features", "text_features"),
    finite: bool = True,
) -> None:
    """Check the two modalities' features: ``ndim`` dims, same feature dim, same batch if asked."""
    for tensor, name in zip((image, text), names):
        if not isinstance(tensor, torch.Tensor):
            raise ConfigError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() != ndim:
            raise ConfigError(f"{name} must have {ndim} dims, got shape {tuple(tensor.shape)}")
    shapes = f"{names[0]} {tuple(image.shape)} vs {names[1]} {tuple(text.shape)}"
    if image.shape[-1] != text.shape[-1]:
        raise ConfigError(f"feature dims differ: {shapes}")
    if same_batch and image.shape[0] != text.shape[0]:
        raise ConfigError(f"batch sizes differ: {shapes}; a paired loss needs one text per image")
    if image.shape[0] == 0 or text.shape[0] == 0:
        raise ConfigError(f"empty batch: {shapes}")
    if finite:
        check_finite(image, names[0])
        check_finite(text, names[1])


# --------------------------------------------------------------------------------------- distributed


class PairRows(NamedTuple):
    """What one rank contrasts: its ``images`` / ``texts`` rows (its own with ``local_loss``, else the
    gathered ones), the columns ``all_images`` / ``all_texts``, and where its positives start (``offset``)."""

    images: torch.Tensor
    texts: torch.Tensor
    all_images: torch.Tensor
    all_texts: torch.Tensor
    offset: int
    local: bool  # rows are this rank's own, columns the global batch


class DistributedLossBase(nn.Module):
    """Holds the distributed options shared by the CLIP-style losses, and the prologue and tail every one of
    them runs: input checks, world, gather, this rank's rows, the ``output_dict`` result.

    ``rank`` / ``world_size`` left as None are read from ``torch.distributed`` at every call, so a
    loss built before ``init_process_group`` still does the right thing.
    """

    output_key: ClassVar[str] = "contrastive_loss"  # the key of ``forward(..., output_dict=True)``

    def __init__(
        self,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        group: object | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.rank = rank
        self.world_size = world_size
        self.group = group
        # The finiteness checks cost a device sync per call; they can be turned off once a training
        # setup is known to be sane.
        self.check_inputs = check_inputs

    def resolve_world(self) -> tuple[int, int]:
        """(rank, world_size) for this call; validated against the process group when distributed."""
        world_size = self.world_size if self.world_size is not None else get_world_size(self.group)
        rank = self.rank if self.rank is not None else get_rank(self.group)
        if world_size > 1:
            if not is_distributed():
                raise ConfigError(
                    f"{type(self).__name__} was given world_size={world_size} but torch.distributed "
                    "has no initialized process group"
                )
            if world_size != get_world_size(self.group) or not 0 <= rank < world_size:
                raise ConfigError(
                    f"{type(self).__name__}: rank={rank}, world_size={world_size} do not match the "
                    f"process group (rank {get_rank(self.group)} of {get_world_size(self.group)})"
                )
        return rank, world_size

    def gather(self, tensor: torch.Tensor, with_grad: bool | None = None) -> torch.Tensor:
        """All-gather ``tensor`` over the loss's process group (differentiable if configured)."""
        with_grad = self.gather_with_grad if with_grad is None else with_grad
        return all_gather_features(tensor, with_grad=with_grad, group=self.group)

    # ------------------------------------------------------------------- the shared prologue and tail
    def checked_scalar(self, value: object, name: str) -> torch.Tensor:
        """``value`` as a 0-dim tensor (see :func:`check_scalar_tensor`), finite when inputs are checked."""
        return check_scalar_tensor(value, name, self.check_inputs)

    def checked_inputs(
        self, image: torch.Tensor, text: torch.Tensor, logit_scale: object, **pair_checks: object
    ) -> torch.Tensor:
        """Check the features (:func:`check_feature_pair` with ``pair_checks``); returns the checked scale."""
        check_feature_pair(image, text, finite=self.check_inputs, **pair_checks)
        return self.checked_scalar(logit_scale, "logit_scale")

    def pair_rows(self, images: torch.Tensor, texts: torch.Tensor, rank: int, world_size: int) -> PairRows:
        """Gather both modalities (when distributed) and pick this rank's rows: its own with
        ``local_loss`` (positives from ``rank * b``), else the whole gathered batch."""
        if world_size == 1:
            return PairRows(images, texts, images, texts, 0, False)
        all_images, all_texts = self.gather(images), self.gather(texts)
        if self.local_loss:
            return PairRows(images, texts, all_images, all_texts, rank * images.shape[0], True)
        return PairRows(all_images, all_texts, all_images, all_texts, 0, False)

    def result(self, loss: torch.Tensor, output_dict: bool) -> torch.Tensor | dict[str, torch.Tensor]:
        """The loss, or ``{output_key: loss}`` when ``output_dict``."""
        return {self.output_key: loss} if output_dict else loss

    def extra_repr(self) -> str:
        return (
            f"local_loss={self.local_loss}, gather_with_grad={self.gather_with_grad}, "
            f"rank={self.rank}, world_size={self.world_size}"
        )


# ------------------------------------------------------------------------------------------ CLIP


def _smoothed_nll(log_probs: torch.Tensor, positives: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    # The mean over rows of cross-entropy with smoothed one-hot targets: (1 - eps) on the positive,
    # eps spread evenly over all columns (what F.cross_entropy(label_smoothing=eps) computes).
    loss = -(1.0 - label_smoothing) * positives.mean()
    if label_smoothing:
        loss = loss - label_smoothing * log_probs.mean()
    return loss


def symmetric_clip_loss(logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean of image→text and text→image cross-entropy for square ``logits`` whose diagonal is positive.

    Normalizing the one matrix over rows and over columns gives both directions without computing
    ``text @ image.T`` again (the transpose would be a second B×B matmul in forward and backward).
    """
    per_image = F.log_softmax(logits, dim=1)
    per_text = F.log_softmax(logits, dim=0)
    return 0.5 * (
        _smoothed_nll(per_image, per_image.diagonal(), label_smoothing)
        + _smoothed_nll(per_text, per_text.diagonal(), label_smoothing)
    )


def rows_clip_loss(logits: torch.Tensor, offset: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of each row ``i`` of ``logits`` [n, N] against column ``i + offset``."""
    log_probs = F.log_softmax(logits, dim=1)
    return _smoothed_nll(log_probs, log_probs.diagonal(offset), label_smoothing)


class ClipLoss(DistributedLossBase):
    """Symmetric InfoNCE of CLIP (Radford et al. 2021): pair ``i`` is the positive of row ``i``.

    ``loss = (CE(s * I @ T.T, diag) + CE(s * T @ I.T, diag)) / 2`` with ``s = logit_scale``.

    Args:
        local_loss: with several ranks, compute only this rank's rows against all gathered columns
            (logits ``b × B`` per direction instead of ``B × B``): memory grows with the local batch.
        gather_with_grad: let gradients flow through the gather, which makes the distributed
            gradient exact (see the module docstring).
        label_smoothing: as ``F.cross_entropy(label_smoothing=...)``.
        rank, world_size: None reads them from ``torch.distributed`` at call time.
        group: process group to gather over; the default group when None.
        check_inputs: raise ConfigError on non-finite features (one device sync per call).

    Duplicate captions in a batch are not merged: each row still has exactly its own pair as the
    positive (use :class:`MultiPositiveClipLoss` to treat equal captions as positives).
    """

    def __init__(
        self,
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
        # Scaling the [b, D] operand before the matmul is cheaper than scaling the [b, B] logits.
        if rows.local:
            loss = 0.5 * (
                rows_clip_loss((scale * rows.images) @ rows.all_texts.T, rows.offset, eps)
                + rows_clip_loss((scale * rows.texts) @ rows.all_images.T, rows.offset, eps)
            )
        else:
            loss = symmetric_clip_loss((scale * rows.images) @ rows.texts.T, eps)
        return self.result(loss, output_dict)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, label_smoothing={self.label_smoothing}"


# -------------------------------------------------------------------------------- multi-positive


def _soft_target_nll(log_probs: torch.Tensor, positives: torch.Tensor, dim: int) -> torch.Tensor:
    # Targets are the positives normalized to sum to 1 along `dim` (one distribution per row of
    # the direction); the loss is the mean over those rows of the cross-entropy.
    targets = positives / positives.sum(dim=dim, keepdim=True)
    return -(targets * log_probs).sum() / positives.shape[1 - dim]


def _check_has_positive(positives: torch.Tensor, dim: int, what: str) -> None:
    counts = positives.sum(dim=dim)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten()[:8].tolist()
        raise ConfigError(
            f"MultiPositiveClipLoss: {what} {missing} have no positive in the batch "
            f"(positives matrix of shape {tuple(positives.shape)}); every row needs at least one"
        )


class MultiPositiveClipLoss(DistributedLossBase):
    """CLIP loss where an item may have several positives (5 captions per image in COCO/RSICD,
    several images of one identity in person re-id).

    Positives are given either by ids (``image_ids[i] == text_ids[j]``) or by a 0/1 matrix. Each
    direction is a cross-entropy against soft targets: the row's positives, normalized to sum to 1.
    With one positive per row (unique ids) it is exactly :class:`ClipLoss`.

    The two batches may differ in size (``B_img`` images, ``B_txt`` texts). In distributed mode the
    ids are gathered with the features (each rank must hold the same ``B_img`` and ``B_txt``) and
    a positives matrix is not accepted, since it would have to describe the global batch.
    """

    def __init__(
        self,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        group: object | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__(local_loss, gather_with_grad, rank, world_size, group, check_inputs)

    def _positives(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        image_ids: torch.Tensor | None,
        text_ids: torch.Tensor | None,
        positives: torch.Tensor | None,
    ) -> torch.Tensor | None:
        n_img, n_txt = image_features.shape[0], text_features.shape[0]
        if positives is not None:
            if image_ids is not None or text_ids is not None:
                raise ConfigError("MultiPositiveClipLoss: pass either image_ids/text_ids or positives")
            if tuple(positives.shape) != (n_img, n_txt):
                raise ConfigError(
                    f"positives must have shape (B_img, B_txt) = {(n_img, n_txt)}, "
                    f"got {tuple(positives.shape)}"
                )
            return positives
        if image_ids is None or text_ids is None:
            raise ConfigError("MultiPositiveClipLoss needs image_ids and text_ids, or positives")
        for ids, n, name in ((image_ids, n_img, "image_ids"), (text_ids, n_txt, "text_ids")):
            if not isinstance(ids, torch.Tensor) or tuple(ids.shape) != (n,):
                shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
                raise ConfigError(f"{name} must be a tensor of shape ({n},), got {shape}")
        return None

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        image_ids: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
        *,
        positives: torch.Tensor | None = None,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Loss of ``image_features`` [B_img, D] vs ``text_features`` [B_txt, D].

        Args:
            image_ids, text_ids: [B_img] / [B_txt] ids; image i and text j are positives iff equal.
            positives: [B_img, B_txt] 0/1 (or bool) matrix instead of ids (single process only).
        """
        scale = self.checked_inputs(image_features, text_features, logit_scale, same_batch=False)
        matrix = self._positives(image_features, text_features, image_ids, text_ids, positives)
        rank, world_size = self.resolve_world()
        dtype = image_features.dtype

        if world_size > 1:
            if matrix is not None:
                raise ConfigError(
                    "MultiPositiveClipLoss: a positives matrix is single-process only; pass ids when "
                    f"distributed (world_size={world_size})"
                )
            all_images, all_texts = self.gather(image_features), self.gather(text_features)
            all_image_ids = self.gather(image_ids, with_grad=False)
            all_text_ids = self.gather(text_ids, with_grad=False)
            if self.local_loss:
                pos_i2t = (image_ids[:, None] == all_text_ids[None, :]).to(dtype)
                pos_t2i = (text_ids[:, None] == all_image_ids[None, :]).to(dtype)
                _check_has_positive(pos_i2t, 1, f"images of rank {rank}")
                _check_has_positive(pos_t2i, 1, f"texts of rank {rank}")
                log_i2t = F.log_softmax((scale * image_features) @ all_texts.T, dim=1)
                log_t2i = F.log_softmax((scale * text_features) @ all_images.T, dim=1)
                loss = 0.5 * (_soft_target_nll(log_i2t, pos_i2t, 1) + _soft_target_nll(log_t2i, pos_t2i, 1))
                return self.result(loss, output_dict)
            image_features, text_features = all_images, all_texts
            image_ids, text_ids = all_image_ids, all_text_ids

        if matrix is None:
            matrix = image_ids[:, None] == text_ids[None, :]
        matrix = matrix.to(dtype)
        _check_has_positive(matrix, 1, "images (rows)")
        _check_has_positive(matrix, 0, "texts (columns)")
        logits = (scale * image_features) @ text_features.T
        # As in ClipLoss, the text→image direction normalizes the same matrix over its columns.
        loss = 0.5 * (
            _soft_target_nll(F.log_softmax(logits, dim=1), matrix, 1)
            + _soft_target_nll(F.log_softmax(logits, dim=0), matrix, 0)
        )
        return self.result(loss, output_dict)
