"""2D medical images: PNG/JPEG through PIL, single DICOM files through pydicom, as a displayed image.

A DICOM file stores raw detector or CT values, not the grey levels a reader sees. `read_dicom_pixels` takes
them through DICOM's display chain: the modality LUT (`RescaleSlope` / `RescaleIntercept`, or a Modality
LUT Sequence: CT values become HU), then the VOI LUT (a VOI LUT Sequence, else the first `WindowCenter` /
`WindowWidth` pair with its `VOILUTFunction`, else the image's own min-max range) to [0, 1], and last
the photometric interpretation (MONOCHROME1 means "0 is white": inverted, so that bright is dense).

`load_image` returns a PIL RGB image for every format: the input vlzoo's image transforms take. Eight
bits per channel are what a display shows after windowing; `read_dicom_pixels` keeps the float values.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from vlzoo.core.errors import DataError

DICOM_IMAGE_SUFFIXES = (".dcm", ".dicom")


def _dicom_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 (LINEAR, the default), C.11.2.1.3.2 (LINEAR_EXACT), C.11.2.1.3.1 (SIGMOID),
    with the output range [0, 1]."""
    x = values.astype(np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    # LINEAR: the window is [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2] over w - 1 steps
    return np.clip((x - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5, 0.0, 1.0)


def _first(value) -> float:
    """The first of a multi-valued DICOM element (several windows may be listed), as a float."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, MultiValue | list | tuple) else float(value)


def read_dicom_pixels(source: str | os.PathLike | bytes, name: str | os.PathLike | None = None) -> np.ndarray:
    """A single-frame DICOM image → float32 `[H, W]` in [0, 1] as displayed (module docstring), or
    `[H, W, 3]` in [0, 1] for colour images. `DataError` naming the file if it can't be read."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    where = str(name if name is not None else source)
    try:
        ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DataError(f"{where}: a multi-frame DICOM ({ds.NumberOfFrames} frames), not a 2D image")
        pixels = ds.pixel_array
    except DataError:
        raise
    except FileNotFoundError as err:
        raise DataError(f"{where}: file not found") from err
    except Exception as err:  # InvalidDicomError, no pixel data, an unsupported transfer syntax, ...
        raise DataError(f"{where}: not a readable DICOM image ({type(err).__name__}: {err})") from err

    if int(ds.get("SamplesPerPixel", 1)) == 3:  # RGB (pydicom has already converted YBR to RGB)
        bits = int(ds.get("BitsStored", 8))
        return (pixels.astype(np.float32) / float(2**bits - 1)).clip(0.0, 1.0)
    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        shown = apply_voi_lut(values, ds, index=0, prefer_lut=True) / float(2**bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        shown = _dicom_window(values, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
    else:
        low, high = float(values.min()), float(values.max())
        shown = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        shown = 1.0 - shown
    return np.clip(shown, 0.0, 1.0).astype(np.float32)


def load_image(path: str | os.PathLike | bytes, name: str | os.PathLike | None = None) -> Image.Image:
    """A 2D image file as a PIL RGB image: PNG/JPEG/... through PIL, `.dcm` through `read_dicom_pixels`
    (display chain, then 8 bits). `path` may be the file's bytes, with `name` giving its suffix."""
    where = str(name if name is not None else path)
    if where.lower().endswith(DICOM_IMAGE_SUFFIXES):
        pixels = read_dicom_pixels(path, where)
        image = Image.fromarray(np.round(pixels * 255.0).astype(np.uint8))
        return image.convert("RGB")
    try:
        with Image.open(io.BytesIO(path) if isinstance(path, bytes | bytearray) else Path(path)) as img:
            img.load()  # decode now, so a truncated file fails here
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit PNGs: stretch, don't clip at 255
                array = np.asarray(img, np.float32)
                low, high = float(array.min()), float(array.max())
                scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
                return Image.fromarray(np.round(scaled * 255).astype(np.uint8)).convert("RGB")
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise DataError(f"{where}: file not found") from err
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise DataError(f"{where}: not a readable image ({type(err).__name__}: {err})") from err


def decode_dicom(data: bytes | str | os.PathLike, name: str) -> Image.Image:
    """vlzoo image decoder for `.dcm` files: `load_image`."""
    return load_image(data, name)


__all__ = ["DICOM_IMAGE_SUFFIXES", "decode_dicom", "load_image", "read_dicom_pixels"]
