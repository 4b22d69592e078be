"""Preprocessing of multispectral images for a model: per-band normalization, nodata fill, resize and crop.

The core's transform (`vlzoo.core.data.image_transform`) already takes `[H, W, C]` arrays of any band
count, but it knows nothing of nodata (the GeoTIFF decoder marks those pixels NaN, which a resize would
smear over their neighbours) and it normalizes with the tower's mean/std only. `geo_transform` is the
remote-sensing version a model config returns from its `transform(train, albumentations)` method:

    def transform(self, train: bool, albumentations=None):
        return geo_transform(self.vision, train)

Units: 8-bit input is scaled to [0, 1] first, as the core does for RGB; other input (uint16
reflectances, floats) is used in its raw units, so a multispectral tower's `mean`/`std` are given in the
units of its data (as torchgeo publishes Sentinel-2 statistics), or `band_stats` replaces them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import InterpolationMode

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.towers import VisionTowerConfig
from vlzoo.remote_sensing.data.geotiff import BandStats, GeoImage

__all__ = ["GeoTransform", "geo_transform"]

_INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


class GeoTransform:
    """`[H, W, C]` array (uint8 or float with NaN for nodata), PIL image, `[C, H, W]` tensor or `GeoImage`
    → normalized float32 tensor `[C, size, size]`.

    Steps: to a `[C, H, W]` float tensor (8-bit scaled by `scale`, default 1/255), per-band
    `(x - mean) / std`, NaN (nodata) → 0 (the band mean, so it pulls no feature anywhere), then geometry:
    train = random resized crop of `crop_scale` (no flips or rotations: remote-sensing captions name
    positions, "a lake in the upper left"), eval = resize the short side and center crop.
    """

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        scale: float | None = None,
        interpolation: str = "bilinear",
        crop_scale: tuple[float, float] = (0.9, 1.0),
    ):
        if len(mean) != len(std) or not mean or any(s <= 0 for s in std):
            raise ConfigError(f"geo_transform needs one mean and one positive std per band: {mean}, {std}")
        if interpolation not in _INTERPOLATIONS:
            raise ConfigError(
                f"unknown interpolation {interpolation!r}; choose from {sorted(_INTERPOLATIONS)}"
            )
        self.channels = len(mean)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.scale = scale
        self.train = train
        mode = _INTERPOLATIONS[interpolation]
        self.geometry = (
            T.RandomResizedCrop(image_size, scale=crop_scale, interpolation=mode, antialias=True)
            if train
            else T.Compose(
                [T.Resize(image_size, interpolation=mode, antialias=True), T.CenterCrop(image_size)]
            )
        )

    def __call__(self, image: Any) -> torch.Tensor:
        pixels, was_uint8 = _to_chw(image)
        if pixels.shape[0] != self.channels:
            raise DataError(
                f"the model expects {self.channels} bands, the image has {pixels.shape[0]} "
                f"(shape {tuple(pixels.shape)}); select bands when reading or change in_chans/mean/std"
            )
        scale = self.scale if self.scale is not None else (1 / 255 if was_uint8 else 1.0)
        if scale != 1.0:
            pixels = pixels * scale
        pixels = torch.nan_to_num_((pixels - self.mean) / self.std, nan=0.0)
        return self.geometry(pixels)

    def __repr__(self) -> str:
        return (
            f"GeoTransform(bands={self.channels}, train={self.train}, scale={self.scale}, "
            f"geometry={self.geometry})"
        )


def _to_chw(image: Any) -> tuple[torch.Tensor, bool]:
    """A float32 `[C, H, W]` tensor and whether the input was 8-bit."""
    if isinstance(image, GeoImage):
        pixels = torch.from_numpy(image.image.copy())
        pixels[:, torch.from_numpy(~image.valid)] = float("nan")
        return pixels, False
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB") if image.mode not in ("RGB", "L") else image)
    if isinstance(image, np.ndarray):
        array = image[:, :, None] if image.ndim == 2 else image
        if array.ndim != 3:
            raise DataError(f"expected an [H, W, C] image array, got shape {image.shape}")
        return torch.from_numpy(
            np.ascontiguousarray(array.transpose(2, 0, 1))
        ).float(), array.dtype == np.uint8
    if torch.is_tensor(image):
        if image.ndim != 3:
            raise DataError(f"expected a [C, H, W] image tensor, got shape {tuple(image.shape)}")
        return image.float(), image.dtype == torch.uint8
    raise DataError(f"cannot transform an image of type {type(image).__name__}")


def geo_transform(
    vision_cfg: VisionTowerConfig,
    train: bool,
    band_stats: BandStats | Mapping[str, Sequence[float]] | None = None,
    scale: float | None = None,
    crop_scale: tuple[float, float] = (0.9, 1.0),
) -> GeoTransform:
    """The multispectral transform of a vision tower: `vision_cfg.image_size`, its `mean`/`std` (one per
    input band, `in_chans` of them) unless `band_stats` (`BandStats` or `{"mean", "std"}`) gives others."""
    stats = BandStats.from_config(band_stats) if band_stats is not None else None
    mean = stats.mean if stats else tuple(vision_cfg.mean)
    std = stats.std if stats else tuple(vision_cfg.std)
    if len(mean) != vision_cfg.in_chans:
        raise ConfigError(
            f"{len(mean)} band means for a tower of in_chans={vision_cfg.in_chans} "
            f"({vision_cfg.timm_model}): give one mean/std per band"
        )
    return GeoTransform(
        vision_cfg.image_size,
        mean,
        std,
        train,
        scale=scale,
        interpolation=vision_cfg.interpolation,
        crop_scale=crop_scale,
    )
