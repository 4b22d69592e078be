"""MONAI's ``Spacing`` for axis-aligned volumes, as three 1-D interpolations.

After ``Orientation("RAS")`` a volume's affine is nearly always diagonal (a scaling plus a translation):
the map from output to input voxel indices then moves each axis on its own, and trilinear
interpolation, the product of three 1-D linear interpolations, factors into one small
``[out, in]`` interpolation matrix per axis. MONAI's ``Spacing`` instead builds a full 3-D sampling
grid and runs a general ``grid_sample`` over it, which is most of the time of a CT pipeline.

Exactly MONAI's result, not an approximation of it: the output grid (shape, affine, first voxel on the
input's first voxel centre, a spacing within ``AFFINE_TOL`` of the target kept as is) is computed with
MONAI's own helpers, and each axis's weights come from ``torch.nn.functional.grid_sample`` itself on a
one-hot probe, so that the sample positions, the ``border`` padding (coordinates clamped to the first and
last voxel) and, for ``nearest``, the rounding of half-way positions are the very ones MONAI's grid
gives. An affine with any rotation or shear, non-finite voxels, or a mode other than ``bilinear`` /
``nearest`` go to MONAI's ``Spacing`` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SEPARABLE_MODES", "is_axis_aligned", "resample_to_spacing"]

SEPARABLE_MODES = ("bilinear", "nearest")
# An off-diagonal term of the index map this small moves a sample by < 1e-9 voxel over 10^4 voxels.
_AXIS_ALIGNED_TOL = 1e-13


@dataclass(frozen=True)
class _Grid:
    """The output grid of ``Spacing``: its affine, shape and the map from output to input indices."""

    affine: np.ndarray  # 4×4 output voxel → world
    shape: tuple[int, int, int]
    index_map: np.ndarray  # 4×4 output voxel index → input voxel index (MONAI's ``xform``)


def _spacing_grid(affine: np.ndarray, shape: Sequence[int], pixdim: Sequence[float]) -> _Grid:
    """The grid ``monai.transforms.Spacing(pixdim)`` (default options) resamples ``affine``/``shape`` to."""
    from monai.data.utils import AFFINE_TOL, affine_to_spacing, compute_shape_offset, zoom_affine

    target = np.asarray(pixdim, dtype=np.float64)
    current = affine_to_spacing(affine, 3, target.dtype)
    # As Spacing: an axis already within AFFINE_TOL of the target keeps its own spacing.
    kept = np.abs(current - target) <= AFFINE_TOL
    out_spacing = np.where(kept, current, target)
    new_affine = zoom_affine(affine, out_spacing, diagonal=False)
    out_shape, offset = compute_shape_offset(shape, affine, new_affine, False)
    new_affine[:3, -1] = offset[:3]
    index_map = np.linalg.solve(affine, new_affine)
    return _Grid(new_affine, tuple(int(s) for s in out_shape), index_map)  # type: ignore[arg-type]


def is_axis_aligned(affine: np.ndarray | torch.Tensor) -> bool:
    """True when the 4×4 ``affine`` scales each voxel axis along its own world axis (no rotation, no shear,
    no permutation): the case where resampling is separable."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    diagonal = np.abs(np.diag(linear))
    off = np.abs(linear - np.diag(np.diag(linear)))
    return bool(np.all(diagonal > 0) and np.all(off <= _AXIS_ALIGNED_TOL * diagonal.max()))


def _axis_weights(
    index_map: np.ndarray, axis: int, in_shape: Sequence[int], out_shape: Sequence[int], mode: str
) -> torch.Tensor:
    """``[out, in]`` weights of one axis: what ``grid_sample`` gives each input voxel of the line.

    MONAI turns the index map into grid_sample's normalized coordinates (``align_corners=False``) in
    float32 and samples with ``border`` padding. Sampling a one-hot ``[in]`` stack (one channel per input
    voxel) through the same normalized map, restricted to this axis, returns exactly the weights the full
    3-D grid applies along it: the other axes contribute exact zeros to the coordinates here.
    """
    from monai.networks.utils import to_norm_affine

    n, m = int(in_shape[axis]), int(out_shape[axis])
    line = np.eye(4)
    line[0, 0], line[0, 3] = index_map[axis, axis], index_map[axis, 3]
    theta = to_norm_affine(
        torch.as_tensor(line, dtype=torch.float32)[None],
        src_size=(n, 1, 1),
        dst_size=(m, 1, 1),
        align_corners=False,
        zero_centered=False,
    )
    # The axis is the first of theta, i.e. grid_sample's x, which indexes W (the last dim): MONAI's
    # index reversal is not needed for a line.
    grid = F.affine_grid(theta[:, :3], [1, n, 1, 1, m], align_corners=False)
    one_hot = torch.eye(n, dtype=torch.float32).reshape(1, n, 1, 1, n)
    weights = F.grid_sample(one_hot, grid, mode=mode, padding_mode="border", align_corners=False)
    return weights.reshape(n, m).T.contiguous()


def _apply_dim(volume: torch.Tensor, weights: torch.Tensor, dim: int, mode: str) -> torch.Tensor:
    """Interpolate the contiguous 3-D ``volume`` along ``dim`` with the ``[out, in]`` ``weights``.

    Every row of ``weights`` has at most two non-zero, adjacent entries (linear interpolation; one at
    the border or on an input voxel centre; exactly one for ``nearest``), so the product is two gathers
    and a weighted sum rather than a dense ``[out, in]`` matmul.
    """
    n = weights.shape[1]
    first = (weights != 0).to(torch.uint8).argmax(dim=1)  # the first non-zero entry of each row

    def gather(index: torch.Tensor) -> torch.Tensor:
        if dim == volume.dim() - 1:  # a 2-D gather of columns is several times faster than the 3-D one
            return volume.reshape(-1, n).index_select(1, index).reshape(*volume.shape[:-1], -1)
        return volume.index_select(dim, index)

    if mode == "nearest":
        return gather(first)
    second = (first + 1).clamp_max(n - 1)
    w_first = weights.gather(1, first[:, None])[:, 0]
    w_second = torch.where(second != first, weights.gather(1, second[:, None])[:, 0], 0.0)
    shape = [1] * volume.dim()
    shape[dim] = -1
    return gather(first).mul_(w_first.view(shape)).addcmul_(gather(second), w_second.view(shape))


def resample_to_spacing(meta, pixdim: Sequence[float], mode: str = "bilinear"):
    """``monai.transforms.Spacing(pixdim, mode=mode, dtype=np.float32)(meta)``, separably when it can be.

    Args:
        meta: MONAI ``MetaTensor [1, X, Y, Z]`` with its affine (channel-first, one channel).
        pixdim: the ``(x, y, z)`` spacing in mm, as MONAI takes it.
        mode: ``"bilinear"`` (trilinear) or ``"nearest"`` (label maps); any other goes to MONAI.

    Returns a float32 ``MetaTensor [1, X', Y', Z']`` with the output affine, equal to MONAI's up to
    float32 rounding (``nearest``: identical). Its memory runs x fastest (as NIfTI's), so that its
    transpose, vlzoo's ``Volume [D, H, W]``, is contiguous without a copy.
    """
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    affine = np.asarray(meta.affine, dtype=np.float64)
    spatial = tuple(int(s) for s in meta.shape[1:])
    if mode not in SEPARABLE_MODES or meta.shape[0] != 1 or len(spatial) != 3 or not is_axis_aligned(affine):
        return Spacing(pixdim=pixdim, mode=mode, dtype=np.float32)(meta)
    grid = _spacing_grid(affine, spatial, pixdim)
    volume = meta.as_tensor()[0].to(torch.float32)
    if not is_axis_aligned(grid.index_map) or not bool(torch.isfinite(volume).all()):
        # A NaN would spread along the whole line through the products below; MONAI keeps it local.
        return Spacing(pixdim=pixdim, mode=mode, dtype=np.float32)(meta)
    from monai.data.utils import AFFINE_TOL

    if grid.shape == spatial and np.allclose(grid.index_map, np.eye(4), atol=AFFINE_TOL):
        out, out_affine = volume.clone(), affine  # MONAI returns the input unchanged in this case
    else:
        # Work on (z, y, x) memory: NIfTI stores x fastest, so this is free for a volume read from a
        # file, and the result is then laid out as vlzoo's Volume [D, H, W] wants it, without a copy.
        zyx = volume.permute(2, 1, 0).contiguous()
        # Shrinking axes first keeps the intermediate volumes small.
        for axis in sorted(range(3), key=lambda axis: grid.shape[axis] / spatial[axis]):
            weights = _axis_weights(grid.index_map, axis, spatial, grid.shape, mode)
            zyx = _apply_dim(zyx, weights, 2 - axis, mode)
        out, out_affine = zyx.permute(2, 1, 0), grid.affine
    return MetaTensor(
        out[None],
        affine=torch.as_tensor(out_affine, dtype=torch.float64),
        meta={"filename_or_obj": meta.meta.get("filename_or_obj", "")},
    )
