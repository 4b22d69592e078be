"""CLIP-style dual encoder: an image tower and a text tower meeting in one embedding space."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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


class DualEncoder(nn.Module):
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
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        return out

    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        out = self(batch["image"], batch["text"])
        extra = (out["logit_bias"],) if "logit_bias" in out else ()
        out["loss"] = self.loss(out["image_features"], out["text_features"], out["logit_scale"], *extra)
        return out

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        self.visual.lock(unlocked_groups=unlocked_groups, freeze_bn_stats=freeze_bn_stats)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        self.text.lock(unlocked_layers=unlocked_layers, freeze_layer_norm=freeze_layer_norm)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"logit_scale", "logit_bias"}


def _maybe_normalize(out, normalize: bool):
    if not normalize:
        return out
    if isinstance(out, tuple):
        return tuple(F.normalize(t, dim=-1) for t in out)
    return F.normalize(out, dim=-1)
