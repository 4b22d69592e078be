"""Fixtures of the medical tests: a small med-toyworld written once per session, and writers of real DICOM
files (pydicom) whose content the tests choose."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def med_toyworld(tmp_path_factory: pytest.TempPathFactory):
    """`MedToyWorldFiles` of a small med-toyworld (24 train, 8 val, 24 test cases of 16×64×64 voxels)."""
    from vlzoo.medical.data import write_med_toyworld

    return write_med_toyworld(tmp_path_factory.mktemp("med_toyworld"), n_train=24, n_val=8, n_test=24, seed=3)


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    position: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    thickness: float | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    series_uid: str | None = None,
    instance: int = 1,
) -> Path:
    """One CT image file written by pydicom: `stored` (the raw pixel values, int16 or uint16) with the given
    geometry, rescale and display attributes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid or "1.2.826.0.1.3680043.8.498.2"
    ds.Modality = "CT"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    if thickness is not None:
        ds.SliceThickness = float(thickness)
    if slope is not None:
        ds.RescaleSlope = float(slope)
        ds.RescaleIntercept = float(intercept or 0.0)
        ds.RescaleType = "HU"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = float(window[0]), float(window[1])
    ds.set_pixel_data(np.ascontiguousarray(stored), photometric, bits_stored=16)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    *,
    pixel_spacing: tuple[float, float] = (0.7, 0.8),
    step: float = 2.5,
    origin: Sequence[float] = (-10.0, 20.0, -30.0),
    slope: float = 2.0,
    intercept: float = -1024.0,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """An axial CT series of `hu [slices, rows, cols]` (even HU values: stored = (HU - intercept) / slope),
    slice k at `origin + k·step` along z; file k is named `names[k]` (default: a shuffled order)."""
    folder.mkdir(parents=True, exist_ok=True)
    stored = np.round((hu - intercept) / slope).astype(np.int16)
    if names is None:
        order = np.random.default_rng(0).permutation(len(hu))
        names = [f"IM{order[k]:04d}.dcm" for k in range(len(hu))]  # name order ≠ position order
    return [
        write_dicom(
            folder / names[k],
            stored[k],
            position=(origin[0], origin[1], origin[2] + k * step),
            pixel_spacing=pixel_spacing,
            thickness=step,
            slope=slope,
            intercept=intercept,
            instance=k + 1,
        )
        for k in range(len(hu))
    ]


@pytest.fixture
def dicom_writer() -> Callable[..., Path]:
    return write_dicom


@pytest.fixture
def ct_series_writer() -> Callable[..., list[Path]]:
    return write_ct_series
