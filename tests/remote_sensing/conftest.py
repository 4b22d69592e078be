"""Fixtures of the remote-sensing data tests: GeoTIFFs written with rasterio, a small rs-toyworld written
once per session, and a tiny 4-band CLIP registered for evaluation tests (a core dual encoder whose config
preprocesses with `geo_transform`, as the domain's own models do)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from vlzoo.core import CLIPConfig, register_model
from vlzoo.core.towers.text import TextTowerConfig
from vlzoo.core.towers.vision import VisionTowerConfig
from vlzoo.remote_sensing.data import geo_transform, rs_toyworld_band_stats, write_rs_toyworld

RS_TEST_MODEL = "rs-test-clip-4band"


@dataclass
class FourBandCLIPConfig(CLIPConfig):
    """A core CLIP config whose preprocessing is the remote-sensing one (the `transform` hook)."""

    def transform(self, train: bool, albumentations=None):
        return geo_transform(self.vision, train)


@register_model(RS_TEST_MODEL)
def rs_test_clip_4band() -> FourBandCLIPConfig:
    stats = rs_toyworld_band_stats(4)
    return FourBandCLIPConfig(
        embed_dim=64,
        vision=VisionTowerConfig(
            timm_model="vit_base_patch32_clip_224",
            timm_kwargs={"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4},
            image_size=64,
            in_chans=4,
            mean=stats.mean,
            std=stats.std,
        ),
        text=TextTowerConfig(kind="clip", context_length=32, width=64, heads=4, layers=2),
    )


def _write_tif(
    path: Path,
    array: np.ndarray,
    crs: str | None = "EPSG:32633",
    transform=None,
    nodata: float | None = None,
    descriptions: tuple[str, ...] | None = None,
    **profile,
) -> Path:
    """Write `array [C, H, W]` as a GeoTIFF with rasterio; the default transform puts pixel (0, 0) at
    (500000, 5000000) with 10 m pixels."""
    bands, height, width = array.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": array.dtype.name,
        "transform": transform if transform is not None else from_origin(500_000, 5_000_000, 10, 10),
        "nodata": nodata,
        **profile,
    }
    if crs is not None:
        options["crs"] = crs
    with rasterio.open(path, "w", **options) as dst:
        dst.write(array)
        if descriptions:
            dst.descriptions = descriptions
    return path


@pytest.fixture(scope="session")
def rs_model() -> str:
    """The registered name of the tiny 4-band CLIP (64 px, rs-toyworld's band statistics)."""
    return RS_TEST_MODEL


@pytest.fixture(scope="session")
def write_tif():
    """`write_tif(path, array [C, H, W], crs=..., transform=..., nodata=..., descriptions=..., **profile)`."""
    return _write_tif


@pytest.fixture(scope="session")
def rs_toyworld(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small rs-toyworld (48 train, 12 val, 30 test scenes) written once: its JSON path."""
    return write_rs_toyworld(tmp_path_factory.mktemp("rs_toyworld"), n_train=48, n_val=12, n_test=30, seed=3)
