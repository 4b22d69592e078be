"""Small real image files for the data tests: PNGs with known pixels, JPEGs cut short."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pixels(seed: int, size: int = 16) -> np.ndarray:
    """A random RGB image, different for each seed."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def write_png(path: Path, seed: int, size: int = 16) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = pixels(seed, size)
    Image.fromarray(array).save(path)
    return array


def write_jpeg(path: Path, seed: int, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels(seed, size)).save(path, format="JPEG", quality=90)
    return path


def write_truncated_jpeg(path: Path, seed: int = 0, size: int = 32) -> Path:
    """A real JPEG cut to 60% of its bytes: the header parses, decoding the pixels fails."""
    write_jpeg(path, seed, size)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path
