"""Contrastive and distillation losses of vlzoo.

All contrastive losses take the features of one rank and gather / exchange what they need across
ranks themselves; see :mod:`vlzoo.core.losses.contrastive` for the exact distributed semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from torch import nn

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses.chunked import (
    ChunkedClipLoss,
    ChunkedSigLipLoss,
    chunked_clip_loss,
    chunked_cross_entropy,
    chunked_sigmoid_loss,
)
from vlzoo.core.losses.contrastive import (
    ClipLoss,
    DistributedLossBase,
    MultiPositiveClipLoss,
    PairRows,
    check_feature_pair,
    check_finite,
    check_scalar_tensor,
)
from vlzoo.core.losses.distill import DistillationLoss
from vlzoo.core.losses.identity import CMPCLoss, CMPMLoss
from vlzoo.core.losses.negatives import NegClipLoss
from vlzoo.core.losses.siglip import SigLipLoss
from vlzoo.core.losses.tokenwise import FilipLoss, late_interaction_similarity

__all__ = [
    "LOSSES",
    "CMPCLoss",
    "CMPMLoss",
    "ChunkedClipLoss",
    "ChunkedSigLipLoss",
    "ClipLoss",
    "DistillationLoss",
    "DistributedLossBase",
    "FilipLoss",
    "MultiPositiveClipLoss",
    "NegClipLoss",
    "PairRows",
    "SigLipLoss",
    "build_loss",
    "check_feature_pair",
    "check_finite",
    "check_scalar_tensor",
    "chunked_clip_loss",
    "chunked_cross_entropy",
    "chunked_sigmoid_loss",
    "late_interaction_similarity",
    "register_loss",
]

LossClass = TypeVar("LossClass", bound=type[nn.Module])

_LOSSES: dict[str, type[nn.Module]] = {}
# Names a config can refer to (e.g. CLIPConfig.loss, the trainer's `loss: {name: ...}`); read-only, a domain
# adds its own with `register_loss`.
LOSSES: Mapping[str, type[nn.Module]] = MappingProxyType(_LOSSES)


def register_loss(name: str, cls: LossClass | None = None) -> LossClass | Callable[[LossClass], LossClass]:
    """Make loss class `cls` buildable as `name` (`build_loss(name, ...)`, a recipe's `loss: {name: ...}`).

    Use as `register_loss("name", Cls)` or `@register_loss("name")`. A name is owned by the module that
    defines its class: another module registering it again is refused, naming both; the same module
    registering it again (a reload) replaces it.
    """

    def add(loss_cls: LossClass) -> LossClass:
        if not (isinstance(loss_cls, type) and issubclass(loss_cls, nn.Module)):
            raise ConfigError(f"register_loss({name!r}): {loss_cls!r} is not an nn.Module class")
        previous = _LOSSES.get(name)
        if previous is not None and previous.__module__ != loss_cls.__module__:
            raise ConfigError(
                f"loss {name!r} is registered twice: by {previous.__module__} ({previous.__name__}) and by "
                f"{loss_cls.__module__} ({loss_cls.__name__})"
            )
        _LOSSES[name] = loss_cls
        return loss_cls

    return add if cls is None else add(cls)


for _name, _cls in (
    ("clip", ClipLoss),
    ("chunked_clip", ChunkedClipLoss),
    ("siglip", SigLipLoss),
    ("chunked_siglip", ChunkedSigLipLoss),
    ("multi_positive_clip", MultiPositiveClipLoss),
    ("negclip", NegClipLoss),
    ("filip", FilipLoss),
    ("distill", DistillationLoss),
    ("cmpm", CMPMLoss),
    ("cmpc", CMPCLoss),
):
    register_loss(_name, _cls)


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the loss registered as ``name`` in :data:`LOSSES` with ``kwargs``."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:  # an unexpected keyword: say which loss and what it accepts
        raise ConfigError(f"bad arguments for loss {name!r} ({LOSSES[name].__name__}): {exc}") from exc
