"""Image preprocessing built from a vision tower's config, so preprocessing always matches the weights."""

from __future__ import annotations

import torch
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import InterpolationMode

from vlzoo.core.towers.vision import VisionTowerConfig

_INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


def image_transform(
    cfg: VisionTowerConfig, train: bool, scale: tuple[float, float] = (0.9, 1.0)
) -> T.Compose:
    """PIL image or uint8 tensor → normalized float tensor `[C, image_size, image_size]`.

    Train: random resized crop (CLIP's mild (0.9, 1) scale range) and no flip, since captions name left and
    right. Eval: resize the short side, center crop, as CLIP's evaluation does.
    """
    if cfg.interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {cfg.interpolation!r}; choose one of {sorted(_INTERPOLATIONS)}"
        )
    mode = _INTERPOLATIONS[cfg.interpolation]
    size = cfg.image_size
    geometry = (
        [T.RandomResizedCrop(size, scale=scale, interpolation=mode, antialias=True)]
        if train
        else [T.Resize(size, interpolation=mode, antialias=True), T.CenterCrop(size)]
    )
    return T.Compose(
        [
            T.ToImage(),
            *geometry,
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(cfg.mean), std=list(cfg.std)),
        ]
    )
