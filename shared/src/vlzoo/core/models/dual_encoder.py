"""CLIP-style dual encoder: an image tower and a text tower meeting in one embedding space."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core.errors import ConfigError
from vlzoo.core.losses import build_loss
from vlzoo.core.towers.text import TextTower, TextTowerConfig
from vlzoo.core.towers.tokenizers import TokenizedText
from vlzoo.core.towers.vision import VisionTower, VisionTowerConfig


@dataclass
class CLIPConfig:
    """A dual encoder: towers, joint width and the temperature (and SigLIP bias) of its logits.

    The towers' activations (`vision.act_layer`, `text.act`) are part of the config: OpenAI's weights need
    QuickGELU, most later releases (LAION, DataComp) don't; the config travels with saved weights so that
    weights and architecture never disagree.
    """

    embed_dim: int = 512
    vision: VisionTowerConfig = field(default_factory=VisionTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    init_logit_bias: float | None = None  # set (e.g. -10) for a sigmoid (SigLIP) objective
    max_logit_scale: float = 100.0
    loss: str = "clip"  # a name of vlzoo.core.losses.LOSSES: "clip", "siglip", "chunked_clip", ...
    loss_kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> DualEncoder:
        return DualEncoder(self)


class DualEncoderFaces:
    """The faces a CLIP-style model shares with :class:`DualEncoder`, for a model that builds its own modules.

    The host (an `nn.Module`) has `config.max_logit_scale`, `visual`, `text`, `logit_scale`, optionally
    `logit_bias`, its own `encode_image` / `encode_text` / `forward_batch`, and its contrastive loss under
    `loss_attribute`. A host whose image tower is wrapped overrides `image_tower()`. (PriorCLIP builds its
    modules in its own order; inheriting `DualEncoder.__init__` would draw its random init in another order.)
    """

    loss_attribute: ClassVar[str] = "loss"

    def image_tower(self) -> VisionTower:
        """The tower that `lock_image_tower` and `set_grad_checkpointing` act on."""
        return self.visual

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped: CLIP caps the temperature at 100 to keep training stable."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def forward(
        self,
        images: torch.Tensor | Mapping[str, Any] | None = None,
        text: TokenizedText | torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Features and temperature for `(images, text)`; given a training batch dict, also its `"loss"`.

        A batch is `{"image": [B, C, H, W], "text": TokenizedText, ...}` as the vlzoo collators make it.
        """
        if isinstance(images, Mapping):
            return self.forward_batch(images)
        out: dict[str, torch.Tensor] = {"logit_scale": self.scale()}
        if images is not None:
            out["image_features"] = self.encode_image(images)
        if text is not None:
            out["text_features"] = self.encode_text(text)
        if getattr(self, "logit_bias", None) is not None:
            out["logit_bias"] = self.logit_bias
        return out

    def set_loss(self, loss: nn.Module) -> None:
        """Replace the contrastive loss (a recipe's `loss:`); refused when the loss needs a `logit_bias` (a
        sigmoid loss) and the model has none."""
        if _takes_logit_bias(type(loss)) and getattr(self, "logit_bias", None) is None:
            raise ConfigError(
                f"model.loss: {type(loss).__name__} needs a logit_bias and {type(self).__name__} has none: "
                "set model_overrides.init_logit_bias (e.g. -10)"
            )
        setattr(self, self.loss_attribute, loss)

    def contrastive_loss_of(self, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The contrastive loss of `forward(images, text)`'s output; the bias goes to a loss that takes one."""
        loss = getattr(self, self.loss_attribute)
        extra = (out["logit_bias"],) if "logit_bias" in out and _takes_logit_bias(type(loss)) else ()
        # hard-negative captions (NegCLIP's loss), when the batch brought them
        negatives = {k: out[k] for k in ("negative_text_features",) if k in out}
        return loss(out["image_features"], out["text_features"], out["logit_scale"], *extra, **negatives)

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        self.image_tower().lock(unlocked_groups=unlocked_groups, freeze_bn_stats=freeze_bn_stats)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        self.text.lock(unlocked_layers=unlocked_layers, freeze_layer_norm=freeze_layer_norm)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.image_tower().set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)


class DualEncoder(DualEncoderFaces, nn.Module):
    """Two towers and a learnable temperature; `forward` returns what a contrastive loss takes."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.config = cfg
        self.visual = VisionTower(cfg.vision, cfg.embed_dim)
        self.text = TextTower(cfg.text, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        self.logit_bias = (
            nn.Parameter(torch.tensor(float(cfg.init_logit_bias)))
            if cfg.init_logit_bias is not None
            else None
        )
        self.loss = build_loss(cfg.loss, **cfg.loss_kwargs)

    def encode_image(self, images: torch.Tensor, normalize: bool = True, output_tokens: bool = False):
        """`[B, D]` image embeddings; with `output_tokens`, also `[B, N, D]` projected patch tokens."""
        out = self.visual(images, output_tokens=output_tokens)
        return _maybe_normalize(out, normalize)

    def encode_text(
        self, text: TokenizedText | torch.Tensor, normalize: bool = True, output_tokens: bool = False
    ):
        """`[B, D]` caption embeddings; with `output_tokens`, also `[B, L, D]` projected token embeddings."""
        out = self.text(text, output_tokens=output_tokens)
        return _maybe_normalize(out, normalize)

    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        out = self(batch["image"], batch["text"])
        if "negative_text" in batch and _takes_negative_texts(type(self.loss)):
            out["negative_text_features"] = self.encode_text(batch["negative_text"])
        out["loss"] = self.contrastive_loss_of(out)
        return out

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"logit_scale", "logit_bias"}


@functools.cache
def _takes_logit_bias(loss_class: type[nn.Module]) -> bool:
    return "logit_bias" in inspect.signature(loss_class.forward).parameters


@functools.cache
def _takes_negative_texts(loss_class: type[nn.Module]) -> bool:
    return "negative_text_features" in inspect.signature(loss_class.forward).parameters


def _maybe_normalize(out, normalize: bool):
    if not normalize:
        return out
    if isinstance(out, tuple):
        return tuple(F.normalize(t, dim=-1) for t in out)
    return F.normalize(out, dim=-1)
