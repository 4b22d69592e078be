"""3D volumes: NIfTI and DICOM series written here with nibabel and pydicom, read through the MONAI
pipeline; expected geometry and intensities come from the DICOM/NIfTI definitions, not from the code."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from vlzoo.core.data import ImageTextCollator, decode_image
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.medical import WINDOW_PRESETS, Volume, load_volume, volume_transform
from vlzoo.medical.data import VolumeReports, apply_window, radiological_view, read_volume


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def _hu(shape, seed=0) -> np.ndarray:
    """Even HU values (exact through a slope-2 rescale), in [-1000, 998]."""
    return (np.random.default_rng(seed).integers(-500, 500, shape) * 2).astype(np.float32)


# ------------------------------------------------------------------------------------------ NIfTI


def test_nifti_is_reoriented_to_ras_with_the_documented_axis_order(tmp_path: Path):
    # Stored LPS-like (x and y flipped), as scanners' converters often write: index i runs to the left.
    array = np.zeros((20, 24, 10), np.int16)
    array[2, 3, 4] = 100
    affine = np.diag([-0.8, -0.7, 2.5, 1.0])
    affine[:3, 3] = [10.0, 20.0, -30.0]
    volume = load_volume(_save_nifti(tmp_path / "ct.nii.gz", array, affine))

    assert volume.shape == (10, 24, 20)  # (D, H, W) = (z, y, x)
    np.testing.assert_allclose(volume.spacing, (2.5, 0.7, 0.8), rtol=1e-6)
    # RAS index of stored (2, 3, 4): x and y flipped → (20-1-2, 24-1-3, 4); Volume index = (z, y, x)
    assert np.argwhere(volume.array == 100).tolist() == [[4, 20, 17]]
    # the Volume's affine maps its own (d, h, w) to the same world point as the file's affine did
    np.testing.assert_allclose(volume.affine @ [4, 20, 17, 1], affine @ [2, 3, 4, 1], atol=1e-4)
    assert volume.array.dtype == np.float32


def test_nifti_stored_sagittally_gives_the_same_volume(tmp_path: Path):
    ras = _hu((20, 24, 10))  # [x, y, z] already RAS
    axial = np.diag([0.8, 0.7, 2.5, 1.0])
    permuted = np.zeros((4, 4))  # stored [z, x, y]: file axis 0 → world z, 1 → x, 2 → y
    permuted[2, 0], permuted[0, 1], permuted[1, 2], permuted[3, 3] = 2.5, 0.8, 0.7, 1.0
    a = load_volume(_save_nifti(tmp_path / "axial.nii", ras, axial))
    b = load_volume(_save_nifti(tmp_path / "sagittal.nii", ras.transpose(2, 0, 1).copy(), permuted))
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    np.testing.assert_array_equal(a.array, ras.transpose(2, 1, 0))  # Volume[d, h, w] = ras[x=w, y=h, z=d]


def test_nifti_is_resampled_to_the_target_spacing(tmp_path: Path):
    shape_xyz, spacing_xyz = (20, 24, 10), (0.8, 0.7, 2.5)
    affine = np.diag([-spacing_xyz[0], spacing_xyz[1], spacing_xyz[2], 1.0])
    path = _save_nifti(tmp_path / "ct.nii.gz", _hu(shape_xyz), affine)
    target = (1.5, 1.2, 1.0)  # (d, h, w) = (z, y, x) mm
    volume = load_volume(path, spacing=target)
    # The resampled grid spans the first to the last voxel centre: (n - 1)·old / new + 1 samples per axis.
    old = (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0])
    n = (shape_xyz[2], shape_xyz[1], shape_xyz[0])
    expected = tuple(int(np.floor((k - 1) * o / t + 0.5)) + 1 for k, o, t in zip(n, old, target))
    assert expected == (16, 14, 16)  # the formula, worked by hand: 9·2.5/1.5=15, 23·.7/1.2=13.4, 19·.8=15.2
    assert volume.shape == expected
    np.testing.assert_allclose(volume.spacing, target, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(volume.affine[:3, :3], axis=0), target, rtol=1e-5)


def test_a_constant_volume_stays_constant_through_resampling_and_windowing(tmp_path: Path):
    path = _save_nifti(tmp_path / "flat.nii.gz", np.full((12, 12, 8), 40, np.int16), np.diag([1.0, 1, 3, 1]))
    volume = load_volume(path, spacing=(2.0, 0.75, 0.75), window=(40.0, 400.0))
    np.testing.assert_allclose(volume.array, 0.5, atol=1e-6)  # (40 - (40 - 200)) / 400


def test_hu_window_follows_the_formula(tmp_path: Path):
    hu = _hu((8, 9, 6))
    path = _save_nifti(tmp_path / "ct.nii.gz", hu, np.eye(4))
    raw = load_volume(path)
    for window in ("lung", "bone", (35.0, 120.0)):
        c, w = WINDOW_PRESETS[window] if isinstance(window, str) else window
        expected = np.clip((raw.array - (c - w / 2)) / w, 0.0, 1.0)
        np.testing.assert_allclose(load_volume(path, window=window).array, expected, atol=1e-6)
        np.testing.assert_allclose(apply_window(raw.array, window), expected, atol=1e-6)
    assert WINDOW_PRESETS["lung"] == (-600.0, 1500.0) and WINDOW_PRESETS["brain"] == (40.0, 80.0)
    with pytest.raises(ConfigError, match="presets"):
        load_volume(path, window="liverish")


def test_mr_zscore_normalizes_the_nonzero_voxels(tmp_path: Path):
    rng = np.random.default_rng(1)
    mr = np.zeros((10, 10, 6), np.float32)
    mr[2:8, 2:8] = rng.uniform(100, 900, (6, 6, 6))
    volume = load_volume(_save_nifti(tmp_path / "t1.nii.gz", mr, np.eye(4)), normalize="zscore")
    body = mr[mr != 0]
    expected = np.where(mr != 0, (mr - body.mean()) / body.std(), 0.0).transpose(2, 1, 0)
    np.testing.assert_allclose(volume.array, expected, atol=1e-4)
    percentile = load_volume(tmp_path / "t1.nii.gz", normalize="percentile").array
    assert percentile.min() == 0.0 and percentile.max() == 1.0


@pytest.mark.parametrize("slices", [14, 6])
def test_slice_count_is_padded_or_cropped_evenly(tmp_path: Path, slices: int):
    hu = _hu((6, 7, 10))
    volume = load_volume(_save_nifti(tmp_path / "ct.nii.gz", hu, np.eye(4)), slices=slices)
    original = hu.transpose(2, 1, 0)  # [D=10, H, W]
    assert volume.shape == (slices, 7, 6)
    if slices > 10:
        before = (slices - 10) // 2
        np.testing.assert_array_equal(volume.array[before : before + 10], original)
        assert not volume.array[:before].any() and not volume.array[before + 10 :].any()
    else:
        start = (10 - slices) // 2
        np.testing.assert_array_equal(volume.array, original[start : start + slices])


def test_corrupt_nifti_raises_naming_the_file(tmp_path: Path):
    good = _save_nifti(tmp_path / "good.nii.gz", _hu((6, 6, 4)), np.eye(4)).read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.nii"
    garbage.write_bytes(b"not a nifti header" * 30)
    for path in (truncated, garbage):
        with pytest.raises(DataError, match=str(path.name)):
            load_volume(path)
    with pytest.raises(DataError, match=r"missing\.nii\.gz: file not found"):
        load_volume(tmp_path / "missing.nii.gz")


def test_nifti_bytes_decode_like_the_file(tmp_path: Path):
    path = _save_nifti(tmp_path / "ct.nii.gz", _hu((6, 5, 4)), np.diag([-1.0, 1, 2, 1]))
    from_file = decode_image(path, path)
    from_bytes = decode_image(path.read_bytes(), "shard/ct.nii.gz")  # the core picks the decoder by .nii.gz
    assert isinstance(from_file, Volume) and isinstance(from_bytes, Volume)
    np.testing.assert_array_equal(from_file.array, from_bytes.array)
    raw = gzip.decompress(path.read_bytes())
    np.testing.assert_array_equal(decode_image(raw, "ct.nii").array, from_file.array)


# ------------------------------------------------------------------------------------------ DICOM


def test_dicom_series_loads_in_position_order_with_hu(tmp_path: Path, ct_series_writer):
    hu = _hu((6, 5, 4))
    files = ct_series_writer(
        tmp_path / "series", hu, pixel_spacing=(0.7, 0.8), step=2.5, origin=(-10, 20, -30)
    )
    by_name = sorted(files, key=lambda p: p.name)
    assert [files.index(p) for p in by_name] != list(range(6))  # file names are not in slice order

    volume = load_volume(tmp_path / "series")
    assert volume.shape == (6, 5, 4)
    np.testing.assert_allclose(volume.spacing, (2.5, 0.7, 0.8))
    # An axial DICOM slice is stored as displayed (row 0 anterior, column 0 the patient's right), so the
    # radiological view of each Volume slice is the stored slice, in HU (stored·2 - 1024)
    np.testing.assert_array_equal(radiological_view(volume.array), hu)
    # voxel (column i, row j, slice k) is at LPS IPP0 + (i·0.8, j·0.7, k·2.5); RAS negates x and y
    for i, j, k in [(0, 0, 0), (1, 2, 3), (3, 4, 5)]:
        lps = np.array([-10 + i * 0.8, 20 + j * 0.7, -30 + k * 2.5])
        d, h, w = k, 5 - 1 - j, 4 - 1 - i
        np.testing.assert_allclose(volume.affine @ [d, h, w, 1], [*(lps * [-1, -1, 1]), 1], atol=1e-6)
        assert volume.array[d, h, w] == hu[k, j, i]


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path: Path, ct_series_writer):
    files = ct_series_writer(tmp_path / "gap", _hu((6, 5, 4)), names=[f"{k}.dcm" for k in range(6)])
    files[3].unlink()
    with pytest.raises(DataError, match=r"gap: uneven slice positions: 5\.000 mm .* missing slice"):
        load_volume(tmp_path / "gap")


def test_dicom_series_with_inconsistent_slices_is_refused(tmp_path: Path, ct_series_writer, dicom_writer):
    ct_series_writer(tmp_path / "shape", _hu((4, 5, 4)), names=[f"{k}.dcm" for k in range(4)])
    dicom_writer(tmp_path / "shape" / "odd.dcm", np.zeros((6, 4), np.int16), position=(-10, 20, -20))
    with pytest.raises(DataError, match=r"shape: inconsistent slice shapes"):
        load_volume(tmp_path / "shape")

    ct_series_writer(tmp_path / "tilted", _hu((4, 5, 4)), names=[f"{k}.dcm" for k in range(4)])
    dicom_writer(
        tmp_path / "tilted" / "odd.dcm",
        np.zeros((5, 4), np.int16),
        position=(-10, 20, -20),
        orientation=(1, 0, 0, 0, 0.8, -0.6),
        pixel_spacing=(0.7, 0.8),
    )
    with pytest.raises(DataError, match=r"tilted: inconsistent ImageOrientationPatient"):
        load_volume(tmp_path / "tilted")

    ct_series_writer(tmp_path / "twice", _hu((3, 5, 4)), names=["a.dcm", "b.dcm", "c.dcm"])
    (tmp_path / "twice" / "d.dcm").write_bytes((tmp_path / "twice" / "b.dcm").read_bytes())
    with pytest.raises(DataError, match=r"twice: two slices at the same position"):
        load_volume(tmp_path / "twice")

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no DICOM files"):
        load_volume(tmp_path / "empty")


# ------------------------------------------------------------------------------ model preprocessing


def test_volume_transform_pads_masks_and_normalizes(tmp_path: Path):
    hu = np.full((8, 8, 10), 40.0, np.float32)  # [x, y, z]: 10 slices of 8×8 at 40 HU
    hu[6, 1, 3] = 1000.0  # a bright voxel at RAS index (x=6, y=1, z=3)
    volume = read_volume(_save_nifti(tmp_path / "ct.nii.gz", hu, np.eye(4)))
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    out = volume_transform(window=(40.0, 400.0), slices=16, size=8, mean=mean, std=std)(volume)

    assert out["image"].shape == (16, 3, 8, 8) and out["image"].dtype == torch.float32
    assert out["slice_mask"].tolist() == [True] * 10 + [False] * 6
    for c in range(3):  # 40 HU in the (40, 400) window is 0.5, then (0.5 - mean) / std per channel
        flat = out["image"][:10, c].clone()
        flat[3, 8 - 1 - 1, 8 - 1 - 6] = (0.5 - mean[c]) / std[c]
        torch.testing.assert_close(flat, torch.full_like(flat, (0.5 - mean[c]) / std[c]))
    # the bright voxel, in the radiological view (both in-plane axes flipped): row H-1-y, column W-1-x
    assert out["image"][3, 0, 8 - 1 - 1, 8 - 1 - 6] == pytest.approx((1.0 - mean[0]) / std[0])
    cropped = volume_transform(window="soft_tissue", slices=4, size=4)(volume)
    assert cropped["image"].shape == (4, 3, 4, 4) and bool(cropped["slice_mask"].all())


def test_volume_dataset_skips_a_corrupt_file_and_counts_it(tmp_path: Path, ct_series_writer):
    _save_nifti(tmp_path / "a.nii.gz", _hu((8, 8, 6)), np.eye(4))
    (tmp_path / "b.nii.gz").write_bytes(b"\x1f\x8b broken gzip")
    ct_series_writer(tmp_path / "c", _hu((6, 8, 8)))
    ct_series_writer(tmp_path / "d", _hu((6, 8, 8)), names=[f"{k}.dcm" for k in range(6)])
    (tmp_path / "d" / "2.dcm").unlink()  # a series with a missing slice
    lines = [
        '{"volume": "a.nii.gz", "report": "a nodule."}',
        '{"volume": "b.nii.gz", "report": "a cyst."}',
        '{"volume": "c", "report": ["no lesion.", "normal."]}',
        '{"volume": "d", "report": "a mass."}',
        '{"volume": "a.nii.gz", "report": "   "}',
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines))
    source = VolumeReports(tmp_path / "pairs.jsonl", captions="all")
    collate = ImageTextCollator(volume_transform(slices=8, size=8), tokenizer=None, captions="all")
    batch = collate([source[i] for i in range(len(source))])

    assert batch["image"].shape == (2, 8, 3, 8, 8) and batch["slice_mask"].shape == (2, 8)
    assert batch["captions"] == ["a nodule.", "no lesion.", "normal."]
    reasons = dict(batch["skipped"])
    assert len(reasons) == 3
    assert "b.nii.gz: not a readable NIfTI file" in reasons[str(tmp_path / "b.nii.gz")]
    assert "missing slice" in reasons[str(tmp_path / "d")]
    assert reasons[str(tmp_path / "a.nii.gz")] == "report has no text"


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, volume: Volume, transform):
        self.volume, self.transform = volume, transform

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.volume)["image"]


def test_training_augmentation_follows_torch_seeds_and_differs_between_workers(tmp_path: Path):
    volume = read_volume(_save_nifti(tmp_path / "ct.nii.gz", _hu((16, 16, 6)), np.eye(4)))
    train = volume_transform(slices=6, size=16, train=True)
    torch.manual_seed(1)
    a = train(volume)["image"]
    torch.manual_seed(1)
    torch.testing.assert_close(train(volume)["image"], a)  # reproducible under torch.manual_seed
    evaluation = volume_transform(slices=6, size=16)
    torch.testing.assert_close(evaluation(volume)["image"], evaluation(volume)["image"])

    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(_Repeat(volume, train), batch_size=2, num_workers=2)
    first, second = list(loader)  # batch 0 from worker 0, batch 1 from worker 1
    assert not torch.allclose(first, second)  # forked workers don't repeat each other's augmentations
