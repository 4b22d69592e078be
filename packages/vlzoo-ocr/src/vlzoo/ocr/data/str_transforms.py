"""Scene-text recognition preprocessing: resize to 32×128 (optionally keeping the aspect ratio, padded), and
the STR augmentations (blur, noise, perspective, curve) through albumentations.

>>> transform = str_transform((32, 128), train=True)    # PIL image or HWC uint8 → FloatTensor [3, 32, 128]

PARSeq resizes without keeping the aspect ratio (`Resize(img_size, BICUBIC)`) and normalizes with mean and
std 0.5; that is the default. `keep_aspect=True` scales the word to the height, pads the right with the
border's replicate (a word shorter than 128 px is not stretched) and squeezes one that is wider.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from vlzoo.core import ConfigError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI version check while training offline
import albumentations as A

__all__ = ["Curve", "STRTransform", "str_augmentations", "str_transform"]


class Curve(A.ImageOnlyTransform):
    """Bends the word along a parabola (straug's "curve" distortion): each column is shifted vertically by
    `bend * height * (2x/w - 1)^2`, `bend` drawn from `bend_limit` with a random sign."""

    def __init__(self, bend_limit: float = 0.2, p: float = 0.5):
        super().__init__(p=p)
        self.bend_limit = bend_limit

    def get_params_dependent_on_data(self, params: Mapping[str, Any], data: Mapping[str, Any]) -> dict:
        return {"bend": float(self.py_random.uniform(-self.bend_limit, self.bend_limit))}

    def apply(self, img: np.ndarray, bend: float = 0.0, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)
        map_x = np.tile(np.arange(w, dtype=np.float32), (h, 1))
        map_y = np.arange(h, dtype=np.float32)[:, None] + (bend * h * xs**2)[None, :]
        return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("bend_limit",)


def str_augmentations(p: float = 0.5) -> list[Any]:
    """The STR augmentations, each applied with probability `p`: blur (Gaussian or motion), Gaussian
    noise, a perspective warp and a curve."""
    return [
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=p),
        A.GaussNoise(std_range=(0.02, 0.1), p=p),
        A.Perspective(scale=(0.02, 0.08), keep_size=True, border_mode=cv2.BORDER_REPLICATE, p=p),
        Curve(bend_limit=0.15, p=p),
    ]


class STRTransform:
    """PIL image / HWC uint8 array → normalized FloatTensor `[3, H, W]` (picklable for DataLoader workers)."""

    def __init__(
        self,
        size: Sequence[int] = (32, 128),
        train: bool = False,
        keep_aspect: bool = False,
        augment: bool | Sequence[Any] = True,
        mean: float = 0.5,
        std: float = 0.5,
    ):
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"an STR image size is (height, width), got {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.keep_aspect = keep_aspect
        self.mean, self.std = mean, std
        if train and augment is True:
            augment = str_augmentations()
        self.augment = A.Compose(list(augment)) if train and augment else None

    def _resize(self, image: np.ndarray) -> np.ndarray:
        h, w = self.size
        if not self.keep_aspect:
            return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
        scaled = min(w, max(1, round(image.shape[1] * h / image.shape[0])))
        image = cv2.resize(image, (scaled, h), interpolation=cv2.INTER_CUBIC)
        return cv2.copyMakeBorder(image, 0, 0, 0, w - scaled, cv2.BORDER_REPLICATE)

    def __call__(self, image: Any) -> torch.Tensor:
        array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if self.augment is not None:
            array = self.augment(image=array)["image"]
        array = self._resize(array)
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(255.0)
        return tensor.sub_(self.mean).div_(self.std)


def str_transform(
    size: Sequence[int] = (32, 128),
    train: bool = False,
    keep_aspect: bool = False,
    albumentations: Sequence[Any] | None = None,
    augment: bool = True,
) -> STRTransform:
    """The recognition transform: STR augmentations when training (or the `albumentations` given, as dicts
    `{"type": ..., **params}` or transforms), then the resize and normalization."""
    if albumentations is not None:
        augment = [
            getattr(A, a["type"])(**{k: v for k, v in a.items() if k != "type"})
            if isinstance(a, Mapping)
            else a
            for a in albumentations
        ]
    return STRTransform(size, train=train, keep_aspect=keep_aspect, augment=augment)
