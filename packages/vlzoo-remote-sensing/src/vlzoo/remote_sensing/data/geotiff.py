"""GeoTIFF and multispectral rasters through rasterio: band selection, nodata masks, windows and tiles.

`read_geotiff(path)` returns a `GeoImage`: the pixels as float32 `[C, H, W]` (raw values unless
normalization is asked for), a `[H, W]` validity mask (False where a band holds the nodata value or NaN, or
where the file's own mask says so), the CRS and the affine transform of the pixels read. `iter_tiles`
walks a large scene in windows, reading only the blocks each tile needs, and gives every tile the transform
that places it on the scene. Bad input raises `vlzoo.core.DataError` naming the file: a file GDAL can't
open or whose pixels can't be decoded (corrupt, truncated), a band that doesn't exist, a CRS tag that
doesn't resolve, a CRS other than the one asked for.

Bands are chosen by 1-based index or by name. Names match the band descriptions written in the file
("B04", "nir", ...), Sentinel-2 style and case-insensitively ("B4" = "B04" = "b04"); the common names of
the STAC electro-optical extension ("blue", "green", "red", "nir", "swir16", ...) match their Sentinel-2
bands and back, so `bands=("red", "green", "blue")` reads B04, B03, B02 of a Sentinel-2 file. A file
without descriptions answers to its colour interpretation ("red", "green", "blue" of an RGB TIFF).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.env import get_gdal_config, set_gdal_config
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError
from rasterio.transform import array_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from vlzoo.core.errors import ConfigError, DataError

__all__ = [
    "BandStats",
    "GeoArray",
    "GeoImage",
    "decode_geotiff",
    "geo_metadata",
    "iter_tiles",
    "read_geotiff",
    "rgb_composite",
    "select_bands",
    "tile_windows",
]

Bands = Sequence[int | str] | int | str | None
WindowLike = Window | tuple[int, int, int, int] | None

# Sentinel-2 band of each STAC electro-optical common name.
COMMON_NAMES: dict[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B08A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
    "swir1": "B11",
    "swir2": "B12",
}
_SENTINEL2 = re.compile(r"^B0*(\d{1,2})(A?)$")
_READABLE_KINDS = "uif"  # unsigned, signed integers and floats; complex rasters are not images


@dataclass(frozen=True)
class BandStats:
    """Per-band mean and standard deviation, in the raw units of the bands they describe."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ConfigError(f"band stats need one mean and one std per band, got {self.mean}, {self.std}")
        if any(not s > 0 for s in self.std):
            raise ConfigError(f"band stats need positive standard deviations, got {self.std}")

    @staticmethod
    def from_config(config: Mapping[str, Any] | BandStats, band_names: Sequence[str] = ()) -> BandStats:
        """`{"mean": [...], "std": [...]}` (one value per band read), or `{band name: [mean, std]}`."""
        if isinstance(config, BandStats):
            return config
        if set(config) == {"mean", "std"}:
            return BandStats(tuple(map(float, config["mean"])), tuple(map(float, config["std"])))
        by_name = {_canonical(k): v for k, v in config.items()}
        missing = [n for n in band_names if _canonical(n) not in by_name]
        if missing or not band_names:
            raise ConfigError(
                f"normalization config {dict(config)} has no statistics for bands {missing or band_names}"
            )
        pairs = [by_name[_canonical(n)] for n in band_names]
        return BandStats(tuple(float(p[0]) for p in pairs), tuple(float(p[1]) for p in pairs))

    @staticmethod
    def compute(image: np.ndarray, valid: np.ndarray) -> BandStats:
        """Mean and std of each band of `image [C, H, W]` over the `valid [H, W]` pixels."""
        pixels = image[:, valid].astype(np.float64)  # [C, n valid]
        if pixels.shape[1] == 0:
            raise DataError("cannot compute band statistics: no valid pixel")
        std = pixels.std(axis=1)
        return BandStats(tuple(pixels.mean(axis=1).tolist()), tuple(np.where(std > 0, std, 1.0).tolist()))


Normalize = str | Mapping[str, Any] | BandStats | None


@dataclass
class GeoImage:
    """Pixels of a raster with where they are on the earth.

    `image` float32 `[C, H, W]`; `valid` bool `[H, W]`; `crs` a rasterio `CRS` (None for a TIFF without
    georeferencing); `transform` the `Affine` from pixel (col, row) to CRS coordinates of *these* pixels
    (a window's own); `window` the (row_off, col_off, height, width) read from the file.
    """

    image: np.ndarray
    valid: np.ndarray
    crs: CRS | None
    transform: Affine
    path: str
    band_names: tuple[str, ...]
    window: tuple[int, int, int, int] | None = None

    @property
    def geo(self) -> dict[str, Any]:
        """`{"crs": "EPSG:32633" | None, "transform": (a, b, c, d, e, f)}`: plain values for a sample dict."""
        return {"crs": _crs_string(self.crs), "transform": tuple(self.transform)[:6]}

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        height, width = self.image.shape[1:]
        return array_bounds(height, width, self.transform)

    def hwc(self) -> np.ndarray:
        """The pixels as `[H, W, C]` float32 with NaN where not valid (what the dataset decoder returns)."""
        out = np.moveaxis(self.image, 0, -1).copy()
        out[~self.valid] = np.nan
        return out


# ------------------------------------------------------------------------------------------- opening


def _crs_string(crs: CRS | None) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()


@contextmanager
def _open(path: str | os.PathLike | bytes) -> Iterator[Any]:
    """The open rasterio dataset, or DataError naming the file (missing, not a raster, corrupt header)."""
    with ExitStack() as stack:
        try:
            if isinstance(path, bytes | bytearray):
                memory = stack.enter_context(rasterio.MemoryFile(bytes(path)))
                src = stack.enter_context(memory.open())
            elif not Path(path).is_file():
                raise DataError(f"{path}: file not found")
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a plain TIFF: crs None
                    src = stack.enter_context(rasterio.open(path))
        except RasterioError as err:
            raise DataError(f"{_where(path)}: not a readable GeoTIFF ({err})") from err
        yield src


def _where(path: Any) -> str:
    return "<bytes>" if isinstance(path, bytes | bytearray) else str(path)


def _check_crs(src: Any, where: str, crs: str | CRS | None, require_crs: bool) -> CRS | None:
    try:
        found = src.crs
    except CRSError as err:
        raise DataError(f"{where}: its CRS tag cannot be read: {err}") from err
    if found is not None and not (found.is_projected or found.is_geographic):
        # GDAL turns GeoKeys that name no known CRS into a bare LOCAL_CS: the tag is broken, and placing
        # these pixels anywhere would be a guess.
        raise DataError(
            f"{where}: its CRS tag does not resolve to a geographic or projected CRS "
            f"(GDAL read {found.to_wkt()[:80]}...); the GeoKeys are wrong or name an unknown EPSG code"
        )
    if (require_crs or crs is not None) and found is None:
        raise DataError(f"{where}: has no CRS, but one is required" + (f" ({crs})" if crs else ""))
    if crs is not None:
        try:
            wanted = CRS.from_user_input(crs)
        except CRSError as err:
            raise ConfigError(f"unknown CRS {crs!r}: {err}") from err
        if found != wanted:
            raise DataError(f"{where}: its CRS is {_crs_string(found)}, expected {_crs_string(wanted)}")
    return found


def _check_dtype(src: Any, where: str) -> None:
    bad = sorted({d for d in src.dtypes if np.dtype(d).kind not in _READABLE_KINDS})
    if bad:
        raise DataError(f"{where}: bands of type {', '.join(bad)} are not image data")


# --------------------------------------------------------------------------------------------- bands


def _canonical(name: str) -> str:
    """ "b4", "B04", "red" → "B04"; "B8A", "nir08" → "B08A"; any other name lower-cased."""
    text = str(name).strip()
    key = text.lower().replace("_", "").replace(" ", "")
    if key in COMMON_NAMES:
        return COMMON_NAMES[key]
    match = _SENTINEL2.match(text.upper())
    if match:
        return f"B{int(match.group(1)):02d}{match.group(2)}"
    return key


def band_names(src: Any) -> tuple[str, ...]:
    """Each band's name: its description, else its colour interpretation ("red"), else "band<i>"."""
    names = []
    for i, (description, interp) in enumerate(zip(src.descriptions, src.colorinterp), 1):
        if description:
            names.append(description)
        elif interp.name in ("red", "green", "blue", "alpha", "gray"):
            names.append(interp.name)
        else:
            names.append(f"band{i}")
    return tuple(names)


def resolve_bands(src: Any, bands: Bands, where: str) -> list[int]:
    """1-based band indexes of `bands` (indexes or names; None = every band) in an open raster."""
    return band_indexes(band_names(src), bands, where)


def band_indexes(names: Sequence[str], bands: Bands, where: str) -> list[int]:
    """1-based indexes of `bands` among a raster's band `names` (see the module docstring for matching)."""
    if bands is None:
        return list(range(1, len(names) + 1))
    if isinstance(bands, int | str):
        bands = [bands]
    lookup: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        lookup.setdefault(_canonical(name), i)
    out = []
    for band in bands:
        if isinstance(band, bool) or not isinstance(band, int | str | np.integer):
            raise ConfigError(f"bands must be 1-based indexes or names, got {band!r}")
        if isinstance(band, int | np.integer):
            if not 1 <= band <= len(names):
                raise DataError(
                    f"{where}: has {len(names)} bands; band {band} does not exist (indexes are 1-based)"
                )
            out.append(int(band))
        elif _canonical(band) in lookup:
            out.append(lookup[_canonical(band)])
        else:
            raise DataError(f"{where}: no band named {band!r}; its bands are {list(names)}")
    return out


def select_bands(image: np.ndarray, bands: Bands, where: str) -> np.ndarray:
    """The `bands` of a decoded `[H, W, C]` image (a `GeoArray` knows its band names; a plain array
    answers to indexes only), as a plain array."""
    names = getattr(image, "band_names", None) or tuple(f"band{i}" for i in range(1, image.shape[-1] + 1))
    rows = [i - 1 for i in band_indexes(names, bands, where)]
    return np.ascontiguousarray(np.asarray(image)[..., rows])


# -------------------------------------------------------------------------------------------- windows


def _as_window(window: WindowLike, src: Any, where: str) -> Window | None:
    if window is None:
        return None
    if not isinstance(window, Window):
        if len(window) != 4:
            raise ConfigError(
                f"window must be a rasterio Window or (row_off, col_off, height, width): {window}"
            )
        row, col, height, width = (int(v) for v in window)
        window = Window(col, row, width, height)
    col, row = int(window.col_off), int(window.row_off)
    width, height = int(window.width), int(window.height)
    if width < 1 or height < 1 or row < 0 or col < 0 or row + height > src.height or col + width > src.width:
        raise DataError(
            f"{where}: window (row {row}, col {col}, {height}×{width}) lies outside the "
            f"{src.height}×{src.width} raster"
        )
    return Window(col, row, width, height)


def tile_windows(height: int, width: int, tile_size: int, overlap: int = 0) -> list[Window]:
    """Windows of `tile_size` covering a `height × width` raster, row by row.

    Tiles start every `tile_size - overlap` pixels; the last tile of a row (column) is moved back so that
    it ends at the raster's edge, overlapping its neighbour more rather than running off the raster, so
    every tile has the full size. A raster smaller than a tile gives one tile of the raster's size.
    """
    if tile_size < 1 or not 0 <= overlap < tile_size:
        raise ConfigError(f"need tile_size ≥ 1 and 0 ≤ overlap < tile_size, got {tile_size}, {overlap}")
    rows = _starts(height, tile_size, tile_size - overlap)
    cols = _starts(width, tile_size, tile_size - overlap)
    th, tw = min(tile_size, height), min(tile_size, width)
    return [Window(c, r, tw, th) for r in rows for c in cols]


def _starts(n: int, tile: int, stride: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, stride))
    return [*starts, n - tile]


# ------------------------------------------------------------------------------------------- reading


def _pixels(
    src: Any, where: str, indexes: list[int], window: Window | None = None, out_shape: tuple | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """float32 `[C, H, W]` pixels and their `[H, W]` validity (nodata, NaN, the file's own mask)."""
    try:
        image = src.read(indexes, window=window, out_shape=out_shape, out_dtype="float32")
        if all(np.dtype(src.dtypes[i - 1]).kind == "f" for i in indexes):
            valid = np.isfinite(image).all(axis=0)
        else:  # integer bands hold no NaN: only nodata marks a pixel
            valid = np.ones(image.shape[1:], dtype=bool)
        for row, index in enumerate(indexes):
            nodata = src.nodatavals[index - 1]
            if nodata is not None and not math.isnan(nodata):
                valid &= image[row] != np.float32(nodata)
        if MaskFlags.per_dataset in src.mask_flag_enums[indexes[0] - 1]:  # an internal mask band
            mask_shape = out_shape[1:] if out_shape is not None else None
            valid &= src.read_masks(indexes[0], window=window, out_shape=mask_shape) > 0
    except RasterioError as err:
        raise DataError(
            f"{where}: cannot decode its pixels, the file is corrupt or truncated ({err})"
        ) from err
    return image, valid


def _read(
    src: Any,
    where: str,
    indexes: list[int],
    window: Window | None,
    normalize: Normalize,
    scene_stats: BandStats | None = None,
) -> GeoImage:
    image, valid = _pixels(src, where, indexes, window=window)
    names = band_names(src)
    selected = tuple(names[i - 1] for i in indexes)
    if normalize is not None:
        stats = scene_stats or _stats(normalize, image, valid, selected, where)
        if len(stats.mean) != len(indexes):
            raise ConfigError(f"{where}: {len(stats.mean)} band statistics for {len(indexes)} bands read")
        image -= np.asarray(stats.mean, np.float32)[:, None, None]
        image /= np.asarray(stats.std, np.float32)[:, None, None]
        image[:, ~valid] = 0.0  # invalid pixels sit at the band means: they pull no feature anywhere
    transform = window_transform(window, src.transform) if window is not None else src.transform
    box = (
        (int(window.row_off), int(window.col_off), int(window.height), int(window.width)) if window else None
    )
    return GeoImage(image, valid, src.crs, transform, where, selected, box)


def _stats(
    normalize: Normalize, image: np.ndarray, valid: np.ndarray, names: Sequence[str], where: str
) -> BandStats:
    if normalize == "stats":
        try:
            return BandStats.compute(image, valid)
        except DataError as err:
            raise DataError(f"{where}: {err}") from err
    if isinstance(normalize, Mapping | BandStats):
        return BandStats.from_config(normalize, names)
    raise ConfigError(f"normalize must be None, 'stats', a BandStats or a mapping, got {normalize!r}")


def read_geotiff(
    path: str | os.PathLike | bytes,
    bands: Bands = None,
    window: WindowLike = None,
    normalize: Normalize = None,
    crs: str | CRS | None = None,
    require_crs: bool = False,
) -> GeoImage:
    """Read bands of a GeoTIFF (any raster GDAL reads) into a `GeoImage`.

    Args:
        bands: 1-based indexes or names (see the module docstring); None reads every band.
        window: a rasterio `Window` or `(row_off, col_off, height, width)`; only the blocks it touches are
            read, and the result's transform is the window's.
        normalize: None keeps raw values; `"stats"` standardizes each band with its mean/std over the valid
            pixels read; a `BandStats`, `{"mean": [...], "std": [...]}` (one per band read) or
            `{band name: [mean, std]}` uses given statistics. Invalid pixels are then set to 0 (the mean).
        crs: the CRS the file must have (`"EPSG:32633"`); require_crs: refuse a file without CRS.
    """
    where = _where(path)
    with _open(path) as src:
        _check_dtype(src, where)
        _check_crs(src, where, crs, require_crs)
        return _read(src, where, resolve_bands(src, bands, where), _as_window(window, src, where), normalize)


def iter_tiles(
    path: str | os.PathLike,
    tile_size: int,
    overlap: int = 0,
    bands: Bands = None,
    normalize: Normalize = None,
    crs: str | CRS | None = None,
) -> Iterator[GeoImage]:
    """Tiles of a large scene, row by row (see `tile_windows`), each read on its own: memory holds one tile,
    never the scene. Each tile's `transform` is `rasterio.windows.transform(window, scene transform)` and
    its `window` the pixels it covers. `normalize="stats"` uses scene-wide statistics (approximate: from a
    decimated read, or the overviews), so that every tile is scaled alike."""
    where = _where(path)
    with _open(path) as src:
        _check_dtype(src, where)
        _check_crs(src, where, crs, False)
        indexes = resolve_bands(src, bands, where)
        stats = _scene_stats(src, indexes, where) if normalize == "stats" else None
        # GDAL keeps decoded blocks in a cache that by default may grow to 5% of the RAM, i.e. the whole
        # scene: bound it to the block rows one row of tiles touches, so that each block is decoded once
        # and memory stays that of a strip, not of the scene.
        with _gdal_cache_max(_strip_cache_bytes(src, tile_size)):
            for window in tile_windows(src.height, src.width, tile_size, overlap):
                yield _read(src, where, indexes, window, normalize, stats)


@contextmanager
def _gdal_cache_max(size: int) -> Iterator[None]:
    """GDAL's block cache bounded to `size` bytes, and the previous bound restored after (rasterio's `Env`
    sets GDAL_CACHEMAX for good, never putting the old value back)."""
    previous = get_gdal_config("GDAL_CACHEMAX")
    set_gdal_config("GDAL_CACHEMAX", size)
    try:
        yield
    finally:
        set_gdal_config("GDAL_CACHEMAX", previous)


def _strip_cache_bytes(src: Any, tile_size: int) -> int:
    block_height = src.block_shapes[0][0]
    block_rows = -(-min(tile_size, src.height) // block_height) + 1  # a tile row may straddle a block row
    itemsize = max(np.dtype(d).itemsize for d in src.dtypes)
    strip = block_rows * block_height * src.width * src.count * itemsize
    return max(int(1.5 * strip), 16 * 2**20)


def _scene_stats(src: Any, indexes: list[int], where: str, side: int = 1024) -> BandStats:
    """Band statistics of a whole scene from a decimated read of at most `side`² pixels (GDAL uses the
    overviews when the file has them). Not GDAL's own `stats()`: that writes a `.aux.xml` file next to the
    scene, a side effect a reader must not have (and fails in read-only folders)."""
    step = max(1, math.ceil(max(src.height, src.width) / side))
    shape = (len(indexes), math.ceil(src.height / step), math.ceil(src.width / step))
    image, valid = _pixels(src, where, indexes, out_shape=shape)
    try:
        return BandStats.compute(image, valid)
    except DataError as err:
        raise DataError(f"{where}: {err}") from err


def geo_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """`{"crs", "transform"}` of a raster from its header alone (no pixel is read)."""
    where = _where(path)
    with _open(path) as src:
        crs = _check_crs(src, where, None, False)
        return {"crs": _crs_string(crs), "transform": tuple(src.transform)[:6]}


# ----------------------------------------------------------------------------------- dataset decoder


def decode_geotiff(data: bytes | str | os.PathLike, name: str) -> np.ndarray:
    """The image decoder of `.tif`/`.tiff` files in datasets: every band as `[H, W, C]`.

    8-bit rasters without nodata (the RGB TIFFs of UCM, RSITMD) stay uint8, exactly what PIL would give,
    so that a model's standard preprocessing scales them to [0, 1]. Anything else (uint16 reflectances,
    floats) is float32 in raw units with NaN where a pixel is not valid; `geo_transform` normalizes it and
    fills those pixels. Errors are `DataError`s, which the sources turn into counted skip markers.
    """
    where = name if isinstance(data, bytes | bytearray) else str(data)
    try:
        # Dataset folders hold thousands of scenes: without EMPTY_DIR, GDAL lists the folder on every open
        # to look for sidecar files (a quarter of the time of a small read). Only here: a scene read on
        # its own keeps its external masks and overviews.
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), _open(data) as src:
            _check_dtype(src, where)
            _check_crs(src, where, None, False)
            image = _read(src, where, list(range(1, src.count + 1)), None, None)
            plain_uint8 = all(d == "uint8" for d in src.dtypes)
    except DataError as err:  # bytes have no path of their own: name the file they came from
        raise DataError(str(err).replace("<bytes>", str(name))) from err
    if plain_uint8 and image.valid.all():
        pixels = np.ascontiguousarray(np.moveaxis(image.image, 0, -1).astype(np.uint8))
    else:
        pixels = image.hwc()
    return GeoArray.wrap(pixels, image.geo, image.band_names)


class GeoArray(np.ndarray):
    """An `[H, W, C]` ndarray that also carries `.geo` (`{"crs", "transform"}`) and `.band_names`, so that
    a dataset gets the georeferencing and band names from the same read that decoded the pixels
    (`RSKarpathySplits` and `SceneFolder` move `geo` into the sample, select bands by name, and hand on a
    plain array). Views and pickles drop both: read them right away."""

    geo: dict[str, Any] | None = None
    band_names: tuple[str, ...] | None = None

    @staticmethod
    def wrap(pixels: np.ndarray, geo: dict[str, Any], band_names: tuple[str, ...]) -> GeoArray:
        out = pixels.view(GeoArray)
        out.geo = geo
        out.band_names = band_names
        return out


# -------------------------------------------------------------------------------------------- display


def rgb_composite(
    image: GeoImage, bands: Bands = None, percentiles: tuple[float, float] = (2, 98)
) -> np.ndarray:
    """`[H, W, 3]` float in [0, 1] for display: red, green, blue bands (by name when the image has them,
    else `bands` or the first three), each stretched between its `percentiles` over the valid pixels;
    invalid pixels are black."""
    names = [_canonical(n) for n in image.band_names]
    if bands is None and all(b in names for b in ("B04", "B03", "B02")):
        rows = [names.index(b) for b in ("B04", "B03", "B02")]
    elif bands is not None:
        wanted = [bands] if isinstance(bands, int | str) else list(bands)
        rows = [b - 1 if isinstance(b, int) else names.index(_canonical(b)) for b in wanted]
    else:
        rows = [min(i, image.image.shape[0] - 1) for i in range(3)]
    pixels = image.image[rows]  # [3, H, W]
    valid = image.valid if image.valid.any() else np.ones_like(image.valid)
    low, high = np.percentile(pixels[:, valid], percentiles, axis=1)  # [3] each
    out = (pixels - low[:, None, None]) / np.maximum(high - low, 1e-6)[:, None, None]
    out = np.clip(np.moveaxis(out, 0, -1), 0.0, 1.0)
    out[~image.valid] = 0.0
    return out
