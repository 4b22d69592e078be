"""GeoTIFF reading through rasterio: windows, bands, nodata, normalization, tiles, errors, the decoder."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.env import get_gdal_config
from rasterio.windows import Window

from vlzoo.core.data import decode_image
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.towers.vision import VisionTowerConfig
from vlzoo.remote_sensing import GeoImage, iter_tiles, read_geotiff
from vlzoo.remote_sensing.data import BandStats, geo_transform, rgb_composite, tile_windows

S2_BANDS = ("B02", "B03", "B04", "B08")
ORIGIN_X, ORIGIN_Y, PIXEL = 500_000.0, 5_000_000.0, 10.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory, write_tif) -> tuple[Path, np.ndarray]:
    """A 4-band uint16 GeoTIFF (EPSG:32633, nodata 0, 64-px tiles) with a nodata block at rows 5-9,
    cols 20-29 (all bands) and a zero in band 2 only at (40, 3)."""
    rng = np.random.default_rng(0)
    array = rng.integers(1, 10_000, (4, 150, 170), dtype=np.uint16)
    array[:, 5:10, 20:30] = 0
    array[1, 40, 3] = 0
    path = write_tif(
        tmp_path_factory.mktemp("geotiff") / "scene.tif",
        array,
        nodata=0,
        descriptions=S2_BANDS,
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress="deflate",
    )
    return path, array


def test_windowed_read_equals_the_written_array(scene):
    path, array = scene
    image = read_geotiff(path, window=(30, 50, 40, 60))  # row_off, col_off, height, width
    assert isinstance(image, GeoImage)
    assert image.image.dtype == np.float32 and image.image.shape == (4, 40, 60)
    np.testing.assert_array_equal(image.image, array[:, 30:70, 50:110].astype(np.float32))
    same = read_geotiff(path, window=Window(50, 30, 60, 40))  # rasterio's (col_off, row_off, width, height)
    np.testing.assert_array_equal(same.image, image.image)
    assert image.crs.to_epsg() == 32633 and image.path == str(path)
    assert image.band_names == S2_BANDS


def test_window_transform_places_pixels_on_the_map(scene):
    path, _ = scene
    image = read_geotiff(path, window=(30, 50, 40, 60))
    # pixel (col 0, row 0) of the window is pixel (50, 30) of the scene: 10 m pixels, y pointing south
    assert image.transform @ (0, 0) == pytest.approx((ORIGIN_X + 50 * PIXEL, ORIGIN_Y - 30 * PIXEL))
    assert image.geo == {"crs": "EPSG:32633", "transform": tuple(image.transform)[:6]}
    assert image.bounds == pytest.approx((ORIGIN_X + 500, ORIGIN_Y - 700, ORIGIN_X + 1100, ORIGIN_Y - 300))


def test_bands_by_index_and_by_name(scene):
    path, array = scene
    by_index = read_geotiff(path, bands=[3, 1])
    np.testing.assert_array_equal(by_index.image, array[[2, 0]].astype(np.float32))
    assert by_index.band_names == ("B04", "B02")
    by_name = read_geotiff(path, bands=("B04", "B03", "B02"))
    np.testing.assert_array_equal(by_name.image, array[[2, 1, 0]].astype(np.float32))
    # Sentinel-2 spellings and STAC common names reach the same bands
    np.testing.assert_array_equal(
        read_geotiff(path, bands=("b4", "nir")).image, array[[2, 3]].astype(np.float32)
    )
    np.testing.assert_array_equal(read_geotiff(path, bands="red").image, array[[2]].astype(np.float32))


def test_nodata_and_nan_become_invalid(scene, tmp_path, write_tif):
    path, array = scene
    image = read_geotiff(path)
    expected = (array != 0).all(axis=0)  # a pixel is invalid when any band holds nodata
    np.testing.assert_array_equal(image.valid, expected)
    assert not image.valid[7, 25] and not image.valid[40, 3] and image.valid[40, 4]
    # only band 2 is zero at (40, 3): reading bands 1 and 3 leaves it valid
    assert read_geotiff(path, bands=[1, 3]).valid[40, 3]

    floats = np.ones((2, 8, 8), np.float32)
    floats[1, 2, 5] = np.nan
    floats[0, 6, 6] = -9999.0
    valid = read_geotiff(write_tif(tmp_path / "f.tif", floats, nodata=-9999.0)).valid
    assert valid.sum() == 62 and not valid[2, 5] and not valid[6, 6]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_dtypes_read_as_float32_raw_values(tmp_path, dtype, write_tif):
    array = (np.arange(3 * 5 * 7) % 200).reshape(3, 5, 7).astype(dtype)
    image = read_geotiff(write_tif(tmp_path / f"{dtype}.tif", array))
    assert image.image.dtype == np.float32
    np.testing.assert_array_equal(image.image, array.astype(np.float32))


def test_normalization_from_statistics_and_from_a_config(scene):
    path, array = scene
    image = read_geotiff(path, bands=[1, 2], window=(0, 0, 50, 60), normalize="stats")
    raw = array[:2, :50, :60].astype(np.float64)
    valid = (array[:2, :50, :60] != 0).all(axis=0)
    for band in range(2):
        values = raw[band][valid]
        expected = (raw[band] - values.mean()) / values.std()
        np.testing.assert_allclose(image.image[band][valid], expected[valid], rtol=1e-4, atol=1e-4)
    assert (image.image[:, ~valid] == 0).all()  # nodata pixels sit at the mean

    config = {"mean": [1000.0, 2000.0], "std": [10.0, 20.0]}
    given = read_geotiff(path, bands=["B02", "B03"], window=(60, 60, 4, 4), normalize=config)
    expected = (array[:2, 60:64, 60:64] - np.array([1000, 2000])[:, None, None]) / np.array([10, 20])[
        :, None, None
    ]
    np.testing.assert_allclose(given.image, expected, rtol=1e-5)
    by_name = read_geotiff(path, bands=["B03"], window=(60, 60, 4, 4), normalize={"b3": [2000.0, 20.0]})
    np.testing.assert_allclose(by_name.image, expected[1:], rtol=1e-5)
    with pytest.raises(ConfigError, match=r"B02"):
        read_geotiff(path, bands=["B02"], normalize={"B03": [0, 1]})


def test_tile_windows_cover_the_raster_and_end_at_its_edge():
    windows = tile_windows(150, 170, tile_size=64, overlap=16)
    rows = sorted({int(w.row_off) for w in windows})
    cols = sorted({int(w.col_off) for w in windows})
    assert rows == [0, 48, 86] and cols == [0, 48, 96, 106]  # stride 48; the last starts at 150-64, 170-64
    covered = np.zeros((150, 170), int)
    for w in windows:
        assert (w.height, w.width) == (64, 64)
        covered[int(w.row_off) : int(w.row_off) + 64, int(w.col_off) : int(w.col_off) + 64] += 1
    assert covered.min() >= 1
    assert [(w.height, w.width) for w in tile_windows(30, 40, 64)] == [(30, 40)]
    with pytest.raises(ConfigError):
        tile_windows(100, 100, 64, overlap=64)


def test_iter_tiles_covers_the_scene_and_places_each_tile(scene):
    path, array = scene
    tiles = list(iter_tiles(path, tile_size=64, overlap=16, bands=("B04", "B03", "B02")))
    assert len(tiles) == 12
    mosaic = np.zeros((3, 150, 170), np.float32)
    seen = np.zeros((150, 170), bool)
    for tile in tiles:
        row, col, height, width = tile.window
        assert tile.image.shape == (3, 64, 64)
        # the tile's pixel (0, 0) is at the world coordinate of scene pixel (col, row)
        assert tile.transform @ (0, 0) == pytest.approx((ORIGIN_X + col * PIXEL, ORIGIN_Y - row * PIXEL))
        mosaic[:, row : row + height, col : col + width] = tile.image
        seen[row : row + height, col : col + width] = True
    assert seen.all()
    np.testing.assert_array_equal(mosaic, array[[2, 1, 0]].astype(np.float32))


def test_iter_tiles_stats_normalize_every_tile_alike(scene):
    path, array = scene
    tiles = list(iter_tiles(path, tile_size=64, bands=[1], normalize="stats"))  # < 1024 px: exact stats
    values = array[0][array[0] != 0].astype(np.float64)
    for tile in tiles[:3]:
        row, col, h, w = tile.window
        raw = array[0, row : row + h, col : col + w].astype(np.float64)
        expected = (raw - values.mean()) / values.std()
        keep = tile.valid
        np.testing.assert_allclose(tile.image[0][keep], expected[keep], rtol=1e-4, atol=1e-4)
    assert not path.with_name(path.name + ".aux.xml").exists()  # reading leaves no sidecar file behind


def test_iter_tiles_bounds_gdal_block_cache_while_reading_and_restores_it(scene):
    path, _ = scene
    before = get_gdal_config("GDAL_CACHEMAX")
    tiles = iter_tiles(path, tile_size=64)
    next(tiles)
    # two 64-row block rows of 170 × 4 uint16 pixels are far below the 16 MiB floor
    assert get_gdal_config("GDAL_CACHEMAX") == 16 * 2**20 < before
    assert sum(1 for _ in tiles) == 8  # 3 × 3 tiles, one read above
    assert get_gdal_config("GDAL_CACHEMAX") == before


# -------------------------------------------------------------------------------------------- errors


def test_corrupt_and_truncated_files_raise_data_error_naming_the_file(tmp_path, write_tif):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + b"not a tiff at all" * 20)
    with pytest.raises(DataError, match=r"garbage\.tif"):
        read_geotiff(garbage)

    # uncompressed strips with the header first: the file opens, its lower half is gone
    array = np.random.default_rng(1).integers(1, 1000, (4, 200, 200), dtype=np.uint16)
    whole = write_tif(tmp_path / "whole.tif", array)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated\.tif.*corrupt or truncated"):
        read_geotiff(truncated)

    with pytest.raises(DataError, match=r"missing\.tif: file not found"):
        read_geotiff(tmp_path / "missing.tif")


def test_missing_and_unknown_bands_raise_data_error(scene):
    path, _ = scene
    with pytest.raises(DataError, match=r"scene\.tif: has 4 bands; band 5 does not exist"):
        read_geotiff(path, bands=[1, 5])
    with pytest.raises(DataError, match=r"scene\.tif: no band named 'B11'.*'B02', 'B03', 'B04', 'B08'"):
        read_geotiff(path, bands=["B04", "B11"])


def test_wrong_or_broken_crs_raises_data_error(scene, tmp_path, write_tif):
    path, array = scene
    with pytest.raises(DataError, match=r"scene\.tif: its CRS is EPSG:32633, expected EPSG:4326"):
        read_geotiff(path, crs="EPSG:4326")
    assert read_geotiff(path, crs="EPSG:32633").crs.to_epsg() == 32633

    plain = write_tif(
        tmp_path / "plain.tif", array[:, :8, :8], crs=None, transform=rasterio.Affine.identity()
    )
    assert read_geotiff(plain).crs is None  # a plain TIFF is readable...
    with pytest.raises(DataError, match=r"plain\.tif: has no CRS"):
        read_geotiff(plain, require_crs=True)  # ...unless a CRS is required

    # a GeoKey naming an EPSG code that does not exist: GDAL can't resolve the tag
    good = write_tif(tmp_path / "good.tif", array[:, :8, :8])
    key = struct.pack("<4H", 3072, 0, 1, 32633)  # ProjectedCSTypeGeoKey = EPSG:32633
    data = good.read_bytes()
    assert key in data
    broken = tmp_path / "broken_crs.tif"
    broken.write_bytes(data.replace(key, struct.pack("<4H", 3072, 0, 1, 9999)))
    with pytest.raises(DataError, match=r"broken_crs\.tif: its CRS tag does not resolve"):
        read_geotiff(broken)


def test_window_outside_the_raster_raises(scene):
    path, _ = scene
    with pytest.raises(DataError, match=r"scene\.tif: window .* outside the 150×170 raster"):
        read_geotiff(path, window=(140, 0, 20, 20))


# ------------------------------------------------------------------------------- decoder and transform


def test_decoder_returns_hwc_with_nan_for_nodata_and_uint8_as_is(scene, tmp_path, write_tif):
    path, array = scene
    decoded = decode_image(path, path)  # dispatched by suffix to this package's decoder
    assert decoded.shape == (150, 170, 4) and decoded.dtype == np.float32
    assert np.isnan(decoded[7, 25]).all() and np.isnan(decoded[40, 3]).all()
    np.testing.assert_array_equal(decoded[0, 0], array[:, 0, 0].astype(np.float32))
    assert decoded.geo["crs"] == "EPSG:32633"

    rgb = np.random.default_rng(2).integers(0, 256, (3, 9, 11), dtype=np.uint8)
    plain = write_tif(tmp_path / "ucm_like.tif", rgb, crs=None, transform=rasterio.Affine.identity())
    decoded = decode_image(plain, plain)
    assert decoded.dtype == np.uint8  # like PIL: the standard RGB preprocessing scales it by 1/255
    np.testing.assert_array_equal(decoded, rgb.transpose(1, 2, 0))
    bytes_decoded = decode_image(plain.read_bytes(), "from_bytes.tif")
    np.testing.assert_array_equal(bytes_decoded, rgb.transpose(1, 2, 0))


def test_geo_transform_normalizes_per_band_and_fills_nodata():
    cfg = VisionTowerConfig(image_size=4, in_chans=2, mean=(100.0, 1000.0), std=(10.0, 100.0))
    pixels = np.full((4, 4, 2), [110.0, 800.0], np.float32)
    pixels[1, 2] = np.nan
    out = geo_transform(cfg, train=False)(pixels)
    assert out.shape == (2, 4, 4) and out.dtype == torch.float32
    expected = torch.tensor([1.0, -2.0]).view(2, 1, 1).expand(2, 4, 4).clone()
    expected[:, 1, 2] = 0.0  # nodata → the band mean
    torch.testing.assert_close(out, expected)

    stats = BandStats((110.0, 800.0), (1.0, 1.0))
    assert geo_transform(cfg, train=False, band_stats=stats)(pixels)[:, 0, 0].tolist() == [0.0, 0.0]
    eight_bit = np.full((4, 4, 2), 255, np.uint8)  # 8-bit input is scaled to [0, 1] first
    rgb_cfg = VisionTowerConfig(image_size=4, in_chans=2, mean=(0.5, 0.5), std=(0.25, 0.25))
    # train mode resamples a random crop: equal up to interpolation rounding
    torch.testing.assert_close(geo_transform(rgb_cfg, train=True)(eight_bit), torch.full((2, 4, 4), 2.0))
    with pytest.raises(DataError, match=r"expects 2 bands, the image has 3"):
        geo_transform(cfg, train=False)(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ConfigError, match=r"in_chans=2"):
        geo_transform(VisionTowerConfig(in_chans=2), train=False)  # three CLIP means for two bands


def test_rgb_composite_uses_red_green_blue_bands(scene):
    path, _ = scene
    image = read_geotiff(path, window=(0, 0, 20, 40))
    rgb = rgb_composite(image)
    assert rgb.shape == (20, 40, 3) and rgb.min() >= 0 and rgb.max() <= 1
    red = image.image[2]  # B04
    # the composite's red channel is B04 stretched: it orders pixels as B04 does
    keep = image.valid & (rgb[..., 0] > 0) & (rgb[..., 0] < 1)
    a, b = np.argmax(np.where(keep, red, -1)), np.argmin(np.where(keep, red, np.inf))
    assert rgb[..., 0].flat[a] > rgb[..., 0].flat[b]
    assert (rgb[~image.valid] == 0).all()
