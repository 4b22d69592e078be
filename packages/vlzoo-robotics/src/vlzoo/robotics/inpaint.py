"""Removing the hand: a mask from the keypoints and an inpainter that fills it.

The mask is the convex hull of the 21 keypoints, widened by the fingers' thickness: dilated by a disc
of `dilation` × the hand's size in pixels (the longer of wrist → middle knuckle and the
knuckles' width), at least `min_pixels`. (The official
code prompts SAM at a hand keypoint and dilates its mask 5×5; a detector's segmentation can be passed in
place of the hull here too.) Inpainters are registered by name: `telea` and `ns` are OpenCV's; LaMa,
as the official code uses, plugs in with `register_inpainter("lama", fn)` where its weights exist.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from vlzoo.core.errors import ConfigError

__all__ = [
    "HAND_HALF_THICKNESS",
    "INPAINTERS",
    "Inpainter",
    "get_inpainter",
    "hand_mask",
    "register_inpainter",
    "thickness_px",
]

# (image [H, W, 3] uint8, mask [H, W] bool) → image with the mask filled
Inpainter = Callable[[np.ndarray, np.ndarray], np.ndarray]
INPAINTERS: dict[str, Inpainter] = {}


def hand_mask(
    points_2d: np.ndarray,
    shape: tuple[int, int],
    dilation: float = 0.3,
    min_pixels: int = 3,
    segmentation: np.ndarray | None = None,
    radius_px: float | None = None,
) -> np.ndarray:
    """`[H, W]` bool: the keypoints' hull (or the detector's `segmentation`) dilated by a disc of radius
    max(`dilation` × hand size, `radius_px`, `min_pixels`) pixels. `radius_px`: the hand's half thickness
    in pixels where its depth is known (`thickness_px`), which the 2D size underrates when the hand is seen
    end-on."""
    mask = np.zeros(shape, np.uint8)
    if segmentation is not None:
        mask[np.asarray(segmentation, bool)] = 1
    else:
        hull = cv2.convexHull(np.round(points_2d).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
    # the larger of the hand's length and its knuckles' width: one of them is seen unforeshortened
    size = max(
        float(np.linalg.norm(points_2d[9] - points_2d[0])),
        float(np.linalg.norm(points_2d[17] - points_2d[5])),
    )
    radius = max(int(np.ceil(max(dilation * size, radius_px or 0.0))), min_pixels)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel).astype(bool)


HAND_HALF_THICKNESS = 0.015  # metres: a palm's or finger's half thickness, with a margin


def thickness_px(points_3d: np.ndarray, focal: float) -> float:
    """The hand's half thickness in pixels at its nearest keypoint (camera-frame `[21, 3]` metres)."""
    return float(focal * HAND_HALF_THICKNESS / max(float(points_3d[:, 2].min()), 1e-3))


def register_inpainter(name: str, inpainter: Inpainter) -> None:
    if name in INPAINTERS:
        raise ConfigError(f"inpainter {name!r} is registered already")
    INPAINTERS[name] = inpainter


def get_inpainter(name: str | Inpainter) -> Inpainter:
    if callable(name):
        return name
    if name not in INPAINTERS:
        raise ConfigError(f"unknown inpainter {name!r}; the inpainters are {sorted(INPAINTERS)}")
    return INPAINTERS[name]


def _opencv(flag: int, radius: int = 5) -> Inpainter:
    def inpaint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return image.copy()
        return cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8), radius, flag)

    return inpaint


register_inpainter("telea", _opencv(cv2.INPAINT_TELEA))
register_inpainter("ns", _opencv(cv2.INPAINT_NS))
