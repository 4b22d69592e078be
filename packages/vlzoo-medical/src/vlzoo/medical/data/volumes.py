"""3D volumes: NIfTI files and DICOM series read into one `Volume`, through nibabel, pydicom and MONAI.

Axis convention. nibabel and MONAI hold a volume as `(X, Y, Z)` voxel axes plus a 4×4 affine from voxel
indices to world millimetres. After `Orientation("RAS")` (MONAI) the axes run towards the patient's
Right, Anterior and Superior. The public `Volume` keeps that orientation but reverses the axis order:

    Volume.array[d, h, w] == ras[x=w, y=h, z=d]        (ras: the RAS-oriented (X, Y, Z) array)

so `D` is the slice axis (axial slices, inferior → superior), `H` runs posterior → anterior and `W`
runs from the patient's left to their right. `Volume.spacing` is `(z, y, x)` millimetres in that same
`(D, H, W)` order, and `Volume.affine` maps the Volume's own indices: `affine @ [d, h, w, 1]` is the
voxel's RAS world position in mm (it is the RAS affine with its first three columns reversed).

A slice `array[d]` is *not* what a radiologist looks at: the radiological display puts anterior at the
top and the patient's right on the viewer's left, i.e. both in-plane axes flipped (`radiological_view`).
The 2D slices of `med-toyworld` and the slices `volume_transform` feeds a 2D encoder use that view.

Intensities stay in the file's units (Hounsfield units for CT) unless a `window` (CT: HU → [0, 1]) or a
`normalize` (MR: z-score over the body or a percentile range) is asked for.

MONAI is imported inside the functions that use it: `import monai` loads every MONAI submodule (several
seconds), which `vlzoo-medical list` and the data readers that need only nibabel/pydicom should not pay.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.medical.data.resample import resample_to_spacing

# Window (center, width) in HU, the common radiology reading presets (Radiopaedia's "Windowing (CT)").
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (50.0, 400.0),
    "liver": (30.0, 150.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
# CLIP's (OpenAI) image normalization, the default of the slice tensors fed to a 2D CLIP encoder
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DICOM_SUFFIXES = ("", ".dcm", ".dicom", ".ima")  # files of a series folder that are read as DICOM
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # MONAI's axis labels, named to keep its default fixed

Window = str | tuple[float, float] | Sequence[float]
Normalize = Literal["zscore", "percentile"]


@dataclass
class Volume:
    """A 3D image: `array` float32 `[D, H, W]` (RAS orientation, slices along `D`, see the module
    docstring), `spacing` mm per axis in the same order, `affine` 4×4 from `(d, h, w)` to RAS mm, and
    the `path` it was read from (a file or a DICOM series folder)."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    path: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:g}" for s in self.spacing)
        return f"Volume(shape={self.shape}, spacing=({spacing}) mm, path={self.path!r})"


def radiological_view(array: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Slices `[..., H, W]` of a `Volume` as displayed: anterior at the top, patient's right on the left."""
    if isinstance(array, torch.Tensor):
        return array.flip((-2, -1))
    return np.ascontiguousarray(array[..., ::-1, ::-1])


# ------------------------------------------------------------------------------------ intensities


def window_preset(window: Window) -> tuple[float, float]:
    """`(center, width)` in HU of a preset name or of a `(center, width)` pair."""
    if isinstance(window, str):
        if window not in WINDOW_PRESETS:
            raise ConfigError(f"unknown CT window {window!r}; the presets are {sorted(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[window]
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"a CT window is a preset name or (center, width) in HU, got {window!r}") from err
    if not width > 0:
        raise ConfigError(f"a CT window's width must be positive, got {window!r}")
    return center, width


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """HU → [0, 1]: `clip((x - (c - w/2)) / w, 0, 1)` (DICOM's LINEAR_EXACT window), float32."""
    center, width = window_preset(window)
    out = (np.asarray(values, np.float32) - np.float32(center - width / 2)) / np.float32(width)
    return np.clip(out, 0.0, 1.0, out=out)


def _intensity_transforms(window: Window | None, normalize: Normalize | None, keys: Sequence[str] | None):
    """MONAI intensity transforms (array ones, or dict ones on `keys`) for a CT window or MR normalization."""
    from monai import transforms as mt

    if window is not None and normalize is not None:
        raise ConfigError("give a CT window or an MR normalization, not both")
    if window is not None:
        center, width = window_preset(window)
        params = {"a_min": center - width / 2, "a_max": center + width / 2, "b_min": 0.0, "b_max": 1.0}
        return [
            mt.ScaleIntensityRanged(keys, **params, clip=True)
            if keys
            else mt.ScaleIntensityRange(**params, clip=True)
        ]
    if normalize == "zscore":  # over the nonzero voxels: the body, not the air around it (nnU-Net's MR rule)
        return [mt.NormalizeIntensityd(keys, nonzero=True) if keys else mt.NormalizeIntensity(nonzero=True)]
    if normalize == "percentile":
        params = {"lower": 0.5, "upper": 99.5, "b_min": 0.0, "b_max": 1.0, "clip": True}
        return [
            mt.ScaleIntensityRangePercentilesd(keys, **params)
            if keys
            else mt.ScaleIntensityRangePercentiles(**params)
        ]
    if normalize is not None:
        raise ConfigError(f"normalize must be 'zscore', 'percentile' or None, got {normalize!r}")
    return []


# --------------------------------------------------------------------------------- NIfTI and DICOM


def _meta(array_xyz: np.ndarray, affine: np.ndarray, path: str, copy: bool = True):
    """MONAI's channel-first `MetaTensor [1, X, Y, Z]` with its affine, the input of MONAI's transforms.

    `copy=False` is for an array just decoded and owned by nobody else: its memory layout is kept (NIfTI
    and DICOM stacks arrive x fastest, which is the layout the resampler and `Volume` want).
    """
    from monai.data import MetaTensor

    if copy:
        array = np.ascontiguousarray(array_xyz, np.float32)
    else:
        array = np.asarray(array_xyz, dtype=np.float32)
        if not array.flags.writeable:  # a view of the file's bytes: copy it, keeping its layout
            array = np.array(array, order="K")
    return MetaTensor(
        torch.from_numpy(array)[None],
        affine=torch.as_tensor(affine, dtype=torch.float64),
        meta={"filename_or_obj": path},
    )


def read_nifti(
    source: str | os.PathLike | bytes, name: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`(array [X, Y, Z] float32, affine 4×4)` of a `.nii` / `.nii.gz` file (or its bytes) as stored.

    The header's scale slope/intercept are applied (nibabel's `dataobj`); a 4D file with one frame is
    squeezed. Anything unreadable raises `DataError` naming the file.
    """
    import nibabel as nib

    where = str(name if name is not None else source)
    try:
        if isinstance(source, bytes | bytearray):
            raw = gzip.decompress(source) if where.lower().endswith(".gz") else bytes(source)
            image = nib.Nifti1Image.from_bytes(raw)
        else:
            image = nib.load(os.fspath(source))
        array = np.asarray(image.dataobj, dtype=np.float32)
        affine = np.asarray(image.affine, dtype=np.float64)
    except FileNotFoundError as err:
        raise DataError(f"{where}: file not found") from err
    except Exception as err:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors, ValueError...
        raise DataError(f"{where}: not a readable NIfTI file ({type(err).__name__}: {err})") from err
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"{where}: a volume needs 3 dimensions, the NIfTI file has shape {array.shape}")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{where}: the NIfTI affine is not invertible: {affine.tolist()}")
    return array, affine


@dataclass
class _Slice:
    file: Path
    dataset: Any


def read_dicom_series(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """`(array [X, Y, Z] float32 in the modality's units (HU for CT), affine 4×4 to RAS mm)` of a folder
    holding one DICOM series.

    Slices are ordered by `ImagePositionPatient` projected on the slice normal (the cross product of the
    two `ImageOrientationPatient` directions), never by file name; the slice spacing is the step between
    those positions (`SliceThickness` may differ from it). Raises `DataError` naming the folder for: no
    DICOM file, an unreadable one, several series, slices whose size, pixel spacing or orientation differ,
    two slices at one position, and uneven steps (a missing slice).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a DICOM series folder")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in DICOM_SUFFIXES
    )
    if not files:
        raise DataError(f"{folder}: no DICOM files (*.dcm or no suffix) in the series folder")
    slices = []
    for file in files:
        try:
            slices.append(_Slice(file, pydicom.dcmread(file)))
        except (InvalidDicomError, OSError, EOFError, ValueError) as err:
            raise DataError(f"{folder}: {file.name} is not a readable DICOM file ({err})") from err
    _check_series(folder, slices)

    first = slices[0].dataset
    orientation = np.asarray(first.ImageOrientationPatient, np.float64)
    row_dir, col_dir = (
        orientation[:3],
        orientation[3:],
    )  # along a row (column index), along a column (row index)
    normal = np.cross(row_dir, col_dir)
    positions = np.array([np.asarray(s.dataset.ImagePositionPatient, np.float64) for s in slices])
    order = np.argsort(positions @ normal, kind="stable")
    slices = [slices[i] for i in order]
    positions = positions[order]
    step = _slice_step(folder, slices, positions @ normal)

    try:
        stack = np.stack([apply_modality_lut(s.dataset.pixel_array, s.dataset) for s in slices]).astype(
            np.float32
        )
    except Exception as err:  # pydicom: missing pixel data, an unsupported transfer syntax, a bad length
        raise DataError(
            f"{folder}: cannot decode the pixel data of the series ({type(err).__name__}: {err})"
        ) from err
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    # DICOM's patient space is LPS: voxel (i=column, j=row, k=slice) sits at
    # IPP_0 + i·Δcol·row_dir + j·Δrow·col_dir + k·step·normal; RAS negates the first two world axes.
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = normal * step
    lps[:3, 3] = positions[0]
    return stack.transpose(2, 1, 0), np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _check_series(folder: Path, slices: list[_Slice]) -> None:
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
        missing = [s.file.name for s in slices if tag not in s.dataset]
        if missing:
            raise DataError(f"{folder}: {len(missing)} slice(s) have no {tag}, e.g. {missing[0]}")
    series = {str(s.dataset.get("SeriesInstanceUID", "")) for s in slices}
    if len(series) > 1:
        raise DataError(f"{folder}: holds {len(series)} DICOM series; give one series per folder")
    ref = slices[0]
    for s in slices[1:]:
        if (s.dataset.Rows, s.dataset.Columns) != (ref.dataset.Rows, ref.dataset.Columns):
            raise DataError(
                f"{folder}: inconsistent slice shapes: {s.file.name} is {s.dataset.Rows}×{s.dataset.Columns}, "
                f"{ref.file.name} is {ref.dataset.Rows}×{ref.dataset.Columns}"
            )
        for tag, atol in (("ImageOrientationPatient", 1e-4), ("PixelSpacing", 1e-4)):
            if not np.allclose(
                np.asarray(s.dataset[tag].value, float), np.asarray(ref.dataset[tag].value, float), atol=atol
            ):
                raise DataError(
                    f"{folder}: inconsistent {tag}: {list(s.dataset[tag].value)} in {s.file.name}, "
                    f"{list(ref.dataset[tag].value)} in {ref.file.name}"
                )


def _slice_step(folder: Path, slices: list[_Slice], along_normal: np.ndarray) -> float:
    """The even step (mm) between sorted slice positions; a gap, a duplicate or an uneven step is an error."""
    if len(slices) == 1:
        ds = slices[0].dataset
        return float(ds.get("SpacingBetweenSlices", ds.get("SliceThickness", 1.0)) or 1.0)
    steps = np.diff(along_normal)
    if np.any(steps < 1e-3):
        i = int(np.argmin(steps))
        raise DataError(
            f"{folder}: two slices at the same position {along_normal[i]:.3f} mm: "
            f"{slices[i].file.name} and {slices[i + 1].file.name}"
        )
    step = float(np.median(steps))
    uneven = np.abs(steps - step) > max(0.01, 0.05 * step)
    if np.any(uneven):
        i = int(np.flatnonzero(uneven)[0])
        raise DataError(
            f"{folder}: uneven slice positions: {steps[i]:.3f} mm between {slices[i].file.name} and "
            f"{slices[i + 1].file.name} where the series steps by {step:.3f} mm (a missing slice?)"
        )
    return step


def _read_raw(source: str | os.PathLike | bytes, name: str | os.PathLike | None = None):
    """A NIfTI file (or its bytes) or a DICOM series folder as MONAI's `MetaTensor [1, X, Y, Z]`."""
    where = str(name if name is not None else source)
    if not isinstance(source, bytes | bytearray) and Path(source).is_dir():
        array, affine = read_dicom_series(source)
    elif where.lower().endswith((".nii", ".nii.gz")) or isinstance(source, bytes | bytearray):
        array, affine = read_nifti(source, name)
    elif not Path(source).exists():
        raise DataError(f"{where}: file not found")
    else:
        raise DataError(f"{where}: not a volume: expected a .nii / .nii.gz file or a DICOM series folder")
    return _meta(array, affine, where, copy=False)


# ------------------------------------------------------------------------------- MONAI ↔ Volume


def _to_ras(meta):
    from monai.transforms import Orientation

    return Orientation(axcodes="RAS", labels=RAS_LABELS)(meta)


def _xyz_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """The `(x, y, z)` pixdim MONAI wants from a `(d, h, w)` = `(z, y, x)` spacing; checked."""
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(s > 0 for s in values):
        raise ConfigError(f"spacing is 3 positive millimetre values (d, h, w), got {spacing!r}")
    return values[2], values[1], values[0]


def _volume_from_meta(meta, path: str) -> Volume:
    affine_xyz = np.asarray(meta.affine, dtype=np.float64)
    array = np.ascontiguousarray(meta[0].detach().cpu().numpy().transpose(2, 1, 0), dtype=np.float32)
    spacing_xyz = np.linalg.norm(affine_xyz[:3, :3], axis=0)
    return Volume(
        array=array,
        spacing=tuple(float(s) for s in spacing_xyz[::-1]),  # type: ignore[arg-type]
        affine=affine_xyz[:, [2, 1, 0, 3]],
        path=path,
    )


def volume_to_meta(volume: Volume):
    """The `Volume` as MONAI's `MetaTensor [1, X, Y, Z]` with its RAS affine (the inverse mapping)."""
    return _meta(volume.array.transpose(2, 1, 0), np.asarray(volume.affine)[:, [2, 1, 0, 3]], volume.path)


def read_volume(source: str | os.PathLike | bytes, name: str | os.PathLike | None = None) -> Volume:
    """A NIfTI file (or its bytes, `name` giving the suffix) or a DICOM series folder, oriented to RAS, at
    its own spacing and in its own units: what a dataset yields before the model's `volume_transform`."""
    meta = _read_raw(source, name)
    return _volume_from_meta(_to_ras(meta), str(name if name is not None else source))


def load_volume(
    path: str | os.PathLike,
    spacing: Sequence[float] | None = None,
    window: Window | None = None,
    *,
    normalize: Normalize | None = None,
    slices: int | None = None,
    mode: str = "bilinear",
) -> Volume:
    """Read a NIfTI file or a DICOM series folder as a RAS-oriented `Volume` (see the module docstring).

    Args:
        spacing: resample to this `(d, h, w)` spacing in mm (MONAI `Spacing`'s output; the grid keeps the
            first voxel centre, an axis of `n` voxels becomes `round((n - 1)·old / new) + 1`). An
            axis-aligned volume (nearly every one after reorientation) is resampled separably, one axis
            at a time (`vlzoo.medical.data.resample`), others by MONAI's `Spacing` itself.
        window: CT window, a preset of `WINDOW_PRESETS` or `(center, width)` in HU: values become
            `clip((HU - (c - w/2)) / w, 0, 1)` (MONAI `ScaleIntensityRange`).
        normalize: MR intensities instead: `"zscore"` over the nonzero voxels (MONAI `NormalizeIntensity`)
            or `"percentile"`: the 0.5-99.5 percentile range to [0, 1] (`ScaleIntensityRangePercentiles`).
        slices: crop or pad (with zeros, both ends evenly) the slice axis `D` to this count (MONAI
            `ResizeWithPadOrCrop`); the in-plane size is kept.
        mode: interpolation of the resampling (`"bilinear"`, `"nearest"` for label maps).

    Raises `DataError` naming the file or folder when it can't be read.
    """
    from monai import transforms as mt

    meta = _to_ras(_read_raw(path))
    if spacing is not None:
        meta = resample_to_spacing(meta, _xyz_spacing(spacing), mode)
    for transform in _intensity_transforms(window, normalize, keys=None):
        meta = transform(meta)
    if slices is not None:
        if slices < 1:
            raise ConfigError(f"slices must be positive, got {slices}")
        meta = mt.ResizeWithPadOrCrop(spatial_size=(-1, -1, int(slices)))(meta)
    return _volume_from_meta(meta, str(path))


# -------------------------------------------------------------------------- model preprocessing


class SpacingImage:
    """MONAI's `Spacingd("image", pixdim)` as a dictionary step, through `resample_to_spacing`: separable
    for an axis-aligned volume, MONAI's `Spacing` otherwise."""

    def __init__(self, pixdim: Sequence[float], mode: str = "bilinear") -> None:
        self.pixdim, self.mode = tuple(pixdim), mode

    def __call__(self, data: dict) -> dict:
        return {**data, "image": resample_to_spacing(data["image"], self.pixdim, self.mode)}


class VolumeTransform:
    """A volume (a `Volume`, or a path read with `read_volume`) → `{"image": float32 [S, C, size, size],
    "slice_mask": bool [S]}` for a 2D slice encoder; built by `volume_transform`.

    A MONAI dictionary pipeline on the `MetaTensor`: `SpacingImage` (MONAI's `Spacingd`, separable when
    the volume is axis-aligned; if `spacing`), the CT window
    (`ScaleIntensityRanged`) or MR normalization, in-plane `Resized` to `size × size` (area interpolation
    when shrinking, bilinear when enlarging); in training a mild in-plane `RandAffined` (rotation ±0.1 rad,
    scale ±10 %, no flip: reports name left and right). Then the slice axis is fitted to `slices`: a
    longer volume is cropped (centre crop; a random window in training), a shorter one padded at the end,
    `slice_mask` marking the real slices. Slices come in the radiological view (`radiological_view`),
    repeated to `channels` and normalized with `mean` / `std` per channel (CLIP's by default).
    """

    def __init__(
        self,
        spacing: Sequence[float] | None = None,
        window: Window | None = "soft_tissue",
        slices: int = 32,
        size: int = 224,
        train: bool = False,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        channels: int = 3,
        normalize: Normalize | None = None,
        radiological: bool = True,
    ):
        from monai import transforms as mt

        if slices < 1 or size < 1:
            raise ConfigError(f"slices and size must be positive, got slices={slices}, size={size}")
        if channels not in (1, 3) or len(mean) != channels or len(std) != channels:
            raise ConfigError(
                f"channels is 1 or 3 with as many mean/std values, got {channels}, {mean}, {std}"
            )
        self.slices, self.size, self.train, self.channels = int(slices), int(size), bool(train), channels
        self.radiological = radiological
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1)
        steps: list[Any] = []
        if spacing is not None:
            steps.append(SpacingImage(_xyz_spacing(spacing)))
        steps += _intensity_transforms(window, normalize, keys=["image"])
        self.pipeline = mt.Compose(steps)
        self.shrink = mt.Resized("image", spatial_size=(self.size, self.size, -1), mode="area")
        self.enlarge = mt.Resized("image", spatial_size=(self.size, self.size, -1), mode="bilinear")
        self.augment = (
            mt.RandAffined(
                "image",
                prob=0.8,
                rotate_range=(0.0, 0.0, 0.1),
                scale_range=(0.1, 0.1, 0.0),
                padding_mode="zeros",
            )
            if train
            else None
        )

    def __call__(self, volume: Volume | str | os.PathLike) -> dict[str, torch.Tensor]:
        if not isinstance(volume, Volume):
            volume = read_volume(volume)
        data = self.pipeline({"image": volume_to_meta(volume)})
        in_plane = data["image"].shape[1:3]
        data = (self.shrink if min(in_plane) >= self.size else self.enlarge)(data)
        if self.augment is not None:
            # MONAI's transforms draw from their own numpy state, which forked DataLoader workers would
            # share: seed it from torch's generator, which DataLoader seeds per worker (and manual_seed fixes)
            self.augment.set_random_state(seed=int(torch.randint(2**31 - 1, ())))
            data = self.augment(data)
        slices = data["image"].as_tensor()[0].permute(2, 1, 0)  # [X, Y, Z] → [D, H, W]
        if self.radiological:
            slices = radiological_view(slices)
        slices, mask = self._fit_slices(slices)
        image = slices[:, None].expand(-1, self.channels, -1, -1)
        image = (image - self.mean) / self.std
        return {"image": image.float().contiguous(), "slice_mask": mask}

    def _fit_slices(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, wanted = slices.shape[0], self.slices
        if n >= wanted:
            start = int(torch.randint(n - wanted + 1, ())) if self.train else (n - wanted) // 2
            return slices[start : start + wanted], torch.ones(wanted, dtype=torch.bool)
        padded = slices.new_zeros((wanted, *slices.shape[1:]))
        padded[:n] = slices
        mask = torch.zeros(wanted, dtype=torch.bool)
        mask[:n] = True
        return padded, mask

    def __repr__(self) -> str:
        steps = [type(t).__name__ for t in self.pipeline.transforms]
        return f"VolumeTransform(slices={self.slices}, size={self.size}, train={self.train}, steps={steps})"


def volume_transform(
    spacing: Sequence[float] | None = None,
    window: Window | None = "soft_tissue",
    slices: int = 32,
    size: int = 224,
    train: bool = False,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    channels: int = 3,
    normalize: Normalize | None = None,
) -> VolumeTransform:
    """The preprocessing of a volume for a 2D slice encoder (RadCLIP): see `VolumeTransform`.

    The output is a dict, `{"image": [slices, channels, size, size], "slice_mask": [slices] bool}`, which
    vlzoo's collator stacks into `batch["image"] [B, S, C, H, W]` and `batch["slice_mask"] [B, S]`.
    """
    return VolumeTransform(spacing, window, slices, size, train, mean, std, channels, normalize)


def decode_volume(data: bytes | str | os.PathLike, name: str) -> Volume:
    """vlzoo image decoder for `.nii` / `.nii.gz` (a path or the file's bytes): `read_volume`."""
    return read_volume(data if isinstance(data, bytes | bytearray) else Path(data), name)


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "WINDOW_PRESETS",
    "Volume",
    "VolumeTransform",
    "apply_window",
    "decode_volume",
    "load_volume",
    "radiological_view",
    "read_dicom_series",
    "read_nifti",
    "read_volume",
    "volume_to_meta",
    "volume_transform",
    "window_preset",
]
