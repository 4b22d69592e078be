"""H2R's pre-training: a frame–caption CLIP on (H2R-augmented) egocentric video frames.

The paper pre-trains visual encoders on H2R-augmented frames; vlzoo's recipe is a CLIP-style contrastive
model on the core (`DualEncoder`, InfoNCE), trained on frame–caption pairs read from videos (data kind
`video-captions`: robot-toyworld or `augment`'s output). Its config names robot-toyworld as its toy data.

- `h2r-clip-vit-b-16`: CLIP ViT-B/16 (224 px); start it from CLIP with `pretrained=` or the recipe.
- `h2r-clip-tiny`: the same at CPU scale (64 px, a few million parameters).
- `h2r-mae-tiny`: `h2r-clip-tiny` with MAE's encoder conventions, for the masked-autoencoder objective
  (`vlzoo.robotics.mae`): the position table starts from the 2-D sine-cosine table and the image embedding
  is the mean of the patch tokens (MAE's `global_pool`), since MAE never trains the class token.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import ClassVar

from vlzoo.core import get_model_config, register_model
from vlzoo.core.models import CLIPConfig

__all__ = ["H2RClipConfig"]


@dataclass
class H2RClipConfig(CLIPConfig):
    """A CLIP pre-trained on video frames and their action captions."""

    toy_data: ClassVar[str] = "robot-toyworld"  # the generated dataset its tiny models train on


def _from_core(name: str) -> H2RClipConfig:
    base = get_model_config(name)
    return H2RClipConfig(**{f.name: getattr(base, f.name) for f in fields(CLIPConfig)})


@register_model("h2r-clip-vit-b-16")
def h2r_clip_vit_b_16() -> H2RClipConfig:
    """CLIP ViT-B/16's architecture, for pre-training on H2R frames."""
    return _from_core("clip-vit-b-16")


@register_model("h2r-clip-tiny")
def h2r_clip_tiny() -> H2RClipConfig:
    """`clip-vit-tiny`'s architecture (64 px), for tests and CPU runs on robot-toyworld."""
    return _from_core("clip-vit-tiny")


@register_model("h2r-mae-tiny")
def h2r_mae_tiny() -> H2RClipConfig:
    """`h2r-clip-tiny` with MAE's sine-cosine position table and mean-pooled patch tokens (module docstring)."""
    cfg = _from_core("clip-vit-tiny")
    cfg.vision = replace(cfg.vision, pool="avg", pos_embed_init="sincos")
    return cfg
