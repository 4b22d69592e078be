"""Pedestrian image transforms: H×W 256×128 or 384×128 (tall, as person crops are), aspect ratio kept.

A pedestrian crop is resized to fit inside H×W keeping its aspect ratio and padded with the mean colour
(zero after normalization) to exactly H×W: never squashed, and never cropped to a square as CLIP's
transforms would. Training adds what IRRA's and PLIP's fine-tuning recipes add: a horizontal flip (a person
seen from the other side is the same person) and a small random translation by padding and cropping back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as F

from vlzoo.core.errors import ConfigError

__all__ = ["FitPad", "pedestrian_transform"]

_INTERPOLATIONS = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}


class FitPad(torch.nn.Module):
    """Resize a `[C, h, w]` image to fit inside `height × width` keeping its aspect ratio, then pad the
    two sides of the short dimension equally (with `fill`) to exactly `height × width`."""

    def __init__(self, height: int, width: int, interpolation: InterpolationMode, fill: float = 0.0):
        super().__init__()
        self.height, self.width, self.interpolation, self.fill = height, width, interpolation, fill

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        scale = min(self.height / h, self.width / w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        image = F.resize(image, [new_h, new_w], interpolation=self.interpolation, antialias=True)
        top, left = (self.height - new_h) // 2, (self.width - new_w) // 2
        padding = [left, top, self.width - new_w - left, self.height - new_h - top]
        return F.pad(image, padding, fill=self.fill) if any(padding) else image


def pedestrian_transform(
    size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    interpolation: str = "bicubic",
) -> T.Compose:
    """PIL image or uint8 tensor → normalized float tensor `[3, H, W]` with `size = (H, W)`."""
    if len(size) != 2 or min(size) < 8:
        raise ConfigError(f"a pedestrian image size is (height, width), got {tuple(size)}")
    if interpolation not in _INTERPOLATIONS:
        raise ConfigError(f"unknown interpolation {interpolation!r}; choose one of {sorted(_INTERPOLATIONS)}")
    height, width = int(size[0]), int(size[1])
    augment: list[torch.nn.Module] = []
    if train:
        pad = max(1, round(height / 25))  # IRRA pads 10 px at 384×128
        augment = [T.RandomHorizontalFlip(0.5), T.Pad(pad), T.RandomCrop((height, width))]
    return T.Compose(
        [
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(mean), std=list(std)),
            FitPad(height, width, _INTERPOLATIONS[interpolation], fill=0.0),  # 0 = the mean colour now
            *augment,
        ]
    )
