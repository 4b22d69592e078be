"""Contrastive and distillation losses of vlzoo.

All contrastive losses take the features of one rank and gather / exchange what they need across
ranks themselves; see :mod:`vlzoo.core.losses.contrastive` for the exact distributed semantics.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses.chunked import ChunkedClipLoss, chunked_cross_entropy
from vlzoo.core.losses.contrastive import (
    ClipLoss,
    DistributedLossBase,
    MultiPositiveClipLoss,
    check_feature_pair,
    check_finite,
    check_scalar_tensor,
)
from vlzoo.core.losses.distill import DistillationLoss
from vlzoo.core.losses.siglip import SigLipLoss
from vlzoo.core.losses.tokenwise import FilipLoss, late_interaction_similarity

__all__ = [
    "LOSSES",
    "ChunkedClipLoss",
    "ClipLoss",
    "DistillationLoss",
    "DistributedLossBase",
    "FilipLoss",
    "MultiPositiveClipLoss",
    "SigLipLoss",
    "build_loss",
    "check_feature_pair",
    "check_finite",
    "check_scalar_tensor",
    "chunked_cross_entropy",
    "late_interaction_similarity",
]

# Names a config can refer to (e.g. CLIPConfig.loss, the trainer's `loss: {name: ...}`).
LOSSES: dict[str, type[nn.Module]] = {
    "clip": ClipLoss,
    "chunked_clip": ChunkedClipLoss,
    "siglip": SigLipLoss,
    "multi_positive_clip": MultiPositiveClipLoss,
    "filip": FilipLoss,
    "distill": DistillationLoss,
}


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the loss registered as ``name`` in :data:`LOSSES` with ``kwargs``."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:  # an unexpected keyword: say which loss and what it accepts
        raise ConfigError(f"bad arguments for loss {name!r} ({LOSSES[name].__name__}): {exc}") from exc
