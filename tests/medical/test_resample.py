"""The separable resampler against MONAI's own `Spacing` (the reference it replaces), on anisotropic
volumes with odd sizes: same output grid (shape and affine), same values (bilinear within float32
rounding, nearest identical), and MONAI itself whenever the volume is not axis-aligned."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Spacing

from vlzoo.medical.data import load_volume
from vlzoo.medical.data.resample import is_axis_aligned, resample_to_spacing

# (shape xyz, spacing xyz, target xyz): up- and down-sampling, half-voxel ties (1 mm → 0.5 mm), an axis
# kept (within MONAI's AFFINE_TOL of its target), and a 1-voxel-thick axis.
CASES = [
    ((23, 17, 9), (0.8, 0.7, 2.5), (1.0, 1.0, 1.0)),
    ((15, 21, 11), (1.5, 1.5, 3.0), (0.75, 2.0, 1.25)),
    ((19, 13, 7), (1.0, 1.0, 2.0), (0.5, 0.5, 1.0)),
    ((17, 17, 5), (0.9765625, 0.9765625, 5.0), (0.9766, 1.3, 2.0)),
    ((11, 9, 1), (1.2, 0.6, 3.0), (0.5, 0.9, 1.0)),
]


def meta(
    values: np.ndarray, spacing, origin=(-40.5, 12.25, 7.0), affine: np.ndarray | None = None
) -> MetaTensor:
    if affine is None:
        affine = np.diag([*spacing, 1.0])
        affine[:3, 3] = origin
    return MetaTensor(torch.from_numpy(values.astype(np.float32))[None], affine=torch.as_tensor(affine))


def ct(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 400.0, shape)


def labels(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 6, shape).astype(np.float64)


@pytest.fixture
def spacing_calls(monkeypatch) -> list:
    """Counts the calls of MONAI's Spacing (the fallback)."""
    calls: list = []
    original = Spacing.__call__

    def counting(self, *args, **kwargs):
        calls.append(self.pixdim)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Spacing, "__call__", counting)
    return calls


@pytest.mark.parametrize(("shape", "spacing", "target"), CASES)
def test_bilinear_equals_monai_spacing(shape, spacing, target, spacing_calls) -> None:
    image = meta(ct(shape, seed=sum(shape)), spacing)
    got = resample_to_spacing(image, target, "bilinear")
    assert spacing_calls == []  # the separable path, not MONAI
    want = Spacing(pixdim=target, mode="bilinear", dtype=np.float32)(image)
    assert got.shape == want.shape and got.dtype == torch.float32
    np.testing.assert_allclose(np.asarray(got.affine), np.asarray(want.affine), rtol=0, atol=1e-12)
    scale = float(want.abs().max())
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize(("shape", "spacing", "target"), CASES)
def test_nearest_equals_monai_spacing_exactly(shape, spacing, target, spacing_calls) -> None:
    label_map = meta(labels(shape, seed=len(shape) + shape[0]), spacing)
    got = resample_to_spacing(label_map, target, "nearest")
    assert spacing_calls == []
    want = Spacing(pixdim=target, mode="nearest", dtype=np.float32)(label_map)
    assert got.shape == want.shape
    # Half-way positions (1 mm → 0.5 mm) round as MONAI's grid rounds them.
    assert torch.equal(got.as_tensor(), want.as_tensor())


def test_non_axis_aligned_volume_falls_back_to_monai(spacing_calls) -> None:
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.7, 2.5])
    assert not is_axis_aligned(affine)
    assert is_axis_aligned(np.diag([0.8, 0.7, 2.5, 1.0]))
    image = meta(ct((13, 11, 7), seed=3), None, affine=affine)
    got = resample_to_spacing(image, (1.0, 1.0, 1.0), "bilinear")
    assert len(spacing_calls) == 1
    want = Spacing(pixdim=(1.0, 1.0, 1.0), mode="bilinear", dtype=np.float32)(image)
    assert torch.equal(got.as_tensor(), want.as_tensor())
    np.testing.assert_array_equal(np.asarray(got.affine), np.asarray(want.affine))


def test_non_finite_voxels_and_other_modes_fall_back_to_monai(spacing_calls) -> None:
    values = ct((9, 8, 5), seed=4)
    values[4, 3, 2] = np.nan
    image = meta(values, (1.0, 1.0, 2.0))
    got = resample_to_spacing(image, (0.7, 0.7, 1.5), "bilinear")
    assert len(spacing_calls) == 1
    want = Spacing(pixdim=(0.7, 0.7, 1.5), mode="bilinear", dtype=np.float32)(image)
    # MONAI keeps a NaN local (its neighbours only); a separable product would smear it over whole lines.
    np.testing.assert_array_equal(torch.isnan(got).numpy(), torch.isnan(want).numpy())
    assert 0 < int(torch.isnan(got).sum()) < got.numel() // 4
    calls_before = len(spacing_calls)
    resample_to_spacing(meta(ct((9, 8, 5), seed=5), (1.0, 1.0, 2.0)), (0.7, 0.7, 1.5), 3)  # spline order 3
    assert len(spacing_calls) == calls_before + 1


def test_unchanged_spacing_returns_the_voxels_as_they_are() -> None:
    values = ct((7, 6, 5), seed=6)
    image = meta(values, (1.0, 1.0, 2.0))
    got = resample_to_spacing(image, (1.0, 1.0, 2.0), "bilinear")
    np.testing.assert_array_equal(got[0].numpy(), values.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(got.affine), np.asarray(image.affine))


def test_load_volume_label_map_matches_monai_on_a_flipped_file(tmp_path: Path) -> None:
    # Stored LPS-like (x and y flipped, odd sizes): reorientation first, then the separable resampling.
    stored = labels((21, 15, 9), seed=7).astype(np.int16)
    affine = np.diag([-0.8, -0.7, 2.5, 1.0])
    affine[:3, 3] = [10.0, 20.0, -30.0]
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(stored, affine), path)
    volume = load_volume(path, spacing=(2.0, 0.5, 0.5), mode="nearest")  # (d, h, w) mm

    from monai.transforms import Orientation

    ras = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(
        MetaTensor(torch.from_numpy(stored.astype(np.float32))[None], affine=torch.as_tensor(affine))
    )
    want = Spacing(pixdim=(0.5, 0.5, 2.0), mode="nearest", dtype=np.float32)(ras)
    np.testing.assert_array_equal(volume.array, want[0].numpy().transpose(2, 1, 0))
    assert volume.array.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(volume.spacing, (2.0, 0.5, 0.5), rtol=1e-6)
    assert set(np.unique(volume.array)) <= set(range(6))
