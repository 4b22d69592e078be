"""A plain CLIP fed pedestrians: the scorer of UniPT's divide-conquer-combine pseudo-text generator.

UniPT captions unlabelled pedestrians with a CLIP (`vlzoo.person.pseudo_text`); any registered CLIP can be
that scorer. `person-clip-tiny` is the one trained on person-toyworld by the pseudo-text test and
`benchmarks/person_pseudo_text.py`: the core's CLIP (InfoNCE, learnt temperature) with a narrow timm
ResNet-18 image tower (one block a stage, 32-256 channels) at H×W 128×64, person-toyworld's own size
(shoes and hair are a few pixels tall at 64×32), a 2-layer CLIP text transformer, and the pedestrian
transform (aspect kept, flip and pad-and-crop when training) instead of CLIP's square crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vlzoo.core import CLIPConfig, TextTowerConfig, VisionTowerConfig, register_model
from vlzoo.core.errors import ConfigError
from vlzoo.person.data import PERSON_TOYWORLD, pedestrian_transform

__all__ = ["PedestrianCLIPConfig"]


@dataclass
class PedestrianCLIPConfig(CLIPConfig):
    """The core's CLIP with the pedestrian transform (H×W from `vision.image_size`, aspect kept)."""

    toy_data: ClassVar[str] = PERSON_TOYWORLD

    def transform(self, train: bool, albumentations: Any | None = None):
        if albumentations:
            raise ConfigError(
                "a pedestrian CLIP uses the pedestrian transforms (flip, pad-and-crop); drop data.albumentations"
            )
        return pedestrian_transform(self.vision.image_size, self.vision.mean, self.vision.std, train)


@register_model("person-clip-tiny")
def person_clip_tiny() -> PedestrianCLIPConfig:
    """A narrow timm ResNet-18 at 128×64 (average pool) and a 2-layer 64-d CLIP text tower, 64-d embeddings."""
    return PedestrianCLIPConfig(
        embed_dim=64,
        vision=VisionTowerConfig(
            timm_model="resnet18",
            timm_kwargs={"layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256], "stem_width": 16},
            image_size=(128, 64),
            pool="avg",
        ),
        text=TextTowerConfig(kind="clip", context_length=64, width=64, heads=4, layers=2),
    )
