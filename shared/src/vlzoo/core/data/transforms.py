"""Image preprocessing built from a vision tower's config, so preprocessing always matches the weights."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import InterpolationMode

from vlzoo.core.errors import ConfigError
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
        raise ConfigError(
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


# ------------------------------------------------------------------------------------- albumentations


def build_transform(
    cfg: VisionTowerConfig,
    train: bool,
    albumentations: Sequence[Mapping[str, Any]] | Any | None = None,
) -> Callable[[Any], torch.Tensor]:
    """The image transform of a recipe: the model's own (`image_transform`), or albumentations.

    `albumentations` is an `A.Compose` or a list of dicts `{"type": "HorizontalFlip", "p": 0.5, ...}`
    (any `albumentations` class by name). A recipe usually gives only augmentations; what makes their output
    fit the model is added here: to tensor, a resize + center crop to `cfg.image_size` when the output has
    another size, and normalization with the config's mean/std unless the pipeline has its own `Normalize`.
    """
    if albumentations is None:
        return image_transform(cfg, train)
    return AlbumentationsTransform(_as_compose(albumentations), cfg)


def model_transform(cfg: Any, train: bool, albumentations: Any | None = None) -> Callable[[Any], Any]:
    """The preprocessing of a model config: its own `cfg.transform(train, albumentations)` when the config
    defines one (a volume pipeline, multi-band GeoTIFFs, multi-crop views), else `build_transform` of its
    vision tower. A transform returns a tensor, or a dict of tensors with `"image"` among them."""
    own = getattr(cfg, "transform", None)
    if callable(own):
        return own(train=train, albumentations=albumentations)
    return build_transform(cfg.vision, train=train, albumentations=albumentations)


def _import_albumentations():
    # albumentations asks PyPI for a newer version at import unless told not to; training must stay offline
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


def _as_compose(spec: Any):
    A = _import_albumentations()
    if isinstance(spec, A.BaseCompose):
        return spec
    transforms = []
    for i, item in enumerate(spec):
        if not isinstance(item, Mapping) or "type" not in item:
            raise ConfigError(f"albumentations[{i}] must be a dict with a 'type' key, got {item!r}")
        params = {k: v for k, v in item.items() if k != "type"}
        cls = getattr(A, item["type"], None)
        if cls is None:
            raise ConfigError(f"albumentations[{i}]: albumentations has no transform {item['type']!r}")
        try:
            transforms.append(cls(**params))
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"albumentations[{i}] ({item['type']}): bad parameters {params}: {err}"
            ) from err
    return A.Compose(transforms)


def _walk(compose) -> list[Any]:
    out = []
    for t in getattr(compose, "transforms", []):
        out.append(t)
        out.extend(_walk(t))
    return out


class AlbumentationsTransform:
    """PIL image or `[H, W, C]` array → albumentations → normalized float tensor `[C, size, size]`."""

    def __init__(self, compose: Any, cfg: VisionTowerConfig):
        A = _import_albumentations()
        from albumentations.pytorch import ToTensorV2

        self.compose = compose
        names = [type(t) for t in _walk(compose)]
        self.normalizes = A.Normalize in names
        self.to_tensor = ToTensorV2 in names
        mode = _INTERPOLATIONS.get(cfg.interpolation, InterpolationMode.BICUBIC)
        self.size = cfg.image_size
        self.fit = T.Compose(
            [T.Resize(cfg.image_size, interpolation=mode, antialias=True), T.CenterCrop(cfg.image_size)]
        )
        self.normalize = T.Normalize(mean=list(cfg.mean), std=list(cfg.std))

    def __call__(self, image: Any) -> torch.Tensor:
        array = np.array(image)  # a writable copy: PIL's buffer is read-only, torch warns on those
        if array.ndim == 2:
            array = array[:, :, None]
        out = self.compose(image=array)["image"]
        if not torch.is_tensor(out):
            out = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)
        if out.shape[-2:] != (self.size, self.size):
            out = self.fit(out)
        if self.normalizes:  # the pipeline's Normalize already scaled and centered the pixels
            return out.float()
        out = out.float() / 255.0 if out.dtype == torch.uint8 else out.float()
        return self.normalize(out)

    def __repr__(self) -> str:
        return f"AlbumentationsTransform({self.compose!r})"
