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
from vlzoo.core.towers.vision import VisionTowerConfig, image_hw

_INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


def image_transform(
    cfg: VisionTowerConfig, train: bool, scale: tuple[float, float] = (0.9, 1.0)
) -> T.Compose:
    """PIL image or uint8 tensor → normalized float tensor `[C, height, width]` (`cfg.image_size`).

    Train: random resized crop (CLIP's mild (0.9, 1) scale range, crops of about the output's aspect) and no
    flip, since captions name left and right. Eval: resize until the image covers the output (the short side,
    for a square), center crop, as CLIP's evaluation does. Never squashed: the aspect is kept.
    """
    if cfg.interpolation not in _INTERPOLATIONS:
        raise ConfigError(
            f"unknown interpolation {cfg.interpolation!r}; choose one of {sorted(_INTERPOLATIONS)}"
        )
    mode = _INTERPOLATIONS[cfg.interpolation]
    height, width = image_hw(cfg.image_size)
    aspect = width / height  # RandomResizedCrop's ratio is width / height; its default range is a square's
    ratio = (0.75 * aspect, aspect / 0.75)
    geometry = (
        [T.RandomResizedCrop((height, width), scale=scale, ratio=ratio, interpolation=mode, antialias=True)]
        if train
        else _resize_and_crop((height, width), mode)
    )
    return T.Compose(
        [
            T.ToImage(),
            *geometry,
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(cfg.mean), std=list(cfg.std)),
        ]
    )


def _resize_and_crop(size: tuple[int, int], mode: InterpolationMode) -> list[Callable[[Any], Any]]:
    """Resize (aspect kept) to cover `size` = (height, width), then center crop to it."""
    if size[0] == size[1]:  # a square: the short side, as CLIP's evaluation (and torchvision) does it
        return [T.Resize(size[0], interpolation=mode, antialias=True), T.CenterCrop(size)]
    return [ResizeCover(size, mode), T.CenterCrop(size)]


class ResizeCover(torch.nn.Module):
    """Resize, aspect kept, to the smallest size that covers `(height, width)` (for a non-square output,
    where resizing the short side alone would leave the long side short)."""

    def __init__(self, size: tuple[int, int], mode: InterpolationMode = InterpolationMode.BICUBIC):
        super().__init__()
        self.size, self.mode = size, mode

    def forward(self, image: Any) -> Any:
        h, w = T.functional.get_size(image)
        scale = max(self.size[0] / h, self.size[1] / w)
        target = [max(self.size[0], round(h * scale)), max(self.size[1], round(w * scale))]
        return T.functional.resize(image, target, interpolation=self.mode, antialias=True)


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
    """PIL image or `[H, W, C]` array → albumentations → normalized float tensor `[C, height, width]`."""

    def __init__(self, compose: Any, cfg: VisionTowerConfig):
        A = _import_albumentations()
        from albumentations.pytorch import ToTensorV2

        self.compose = compose
        names = [type(t) for t in _walk(compose)]
        self.normalizes = A.Normalize in names
        self.to_tensor = ToTensorV2 in names
        mode = _INTERPOLATIONS.get(cfg.interpolation, InterpolationMode.BICUBIC)
        self.size = image_hw(cfg.image_size)
        self.fit = T.Compose(_resize_and_crop(self.size, mode))
        self.normalize = T.Normalize(mean=list(cfg.mean), std=list(cfg.std))

    def __call__(self, image: Any) -> torch.Tensor:
        array = np.array(image)  # a writable copy: PIL's buffer is read-only, torch warns on those
        if array.ndim == 2:
            array = array[:, :, None]
        out = self.compose(image=array)["image"]
        if not torch.is_tensor(out):
            out = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)
        if tuple(out.shape[-2:]) != self.size:
            out = self.fit(out)
        if self.normalizes:  # the pipeline's Normalize already scaled and centered the pixels
            return out.float()
        out = out.float() / 255.0 if out.dtype == torch.uint8 else out.float()
        return self.normalize(out)

    def __repr__(self) -> str:
        return f"AlbumentationsTransform({self.compose!r})"
