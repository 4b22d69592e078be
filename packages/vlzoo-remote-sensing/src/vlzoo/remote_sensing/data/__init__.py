"""Remote-sensing data: GeoTIFF through rasterio, caption files, scene folders, rs-toyworld.

>>> from vlzoo.remote_sensing.data import read_geotiff, iter_tiles, RSKarpathySplits, write_rs_toyworld
>>> scene = read_geotiff("S2_T33UUP.tif", bands=("B04", "B03", "B02"), window=(0, 0, 512, 512))
>>> for tile in iter_tiles("S2_T33UUP.tif", tile_size=224, overlap=32):
...     tile.image, tile.valid, tile.transform          # [C, 224, 224], [224, 224], placed on the scene
>>> test = RSKarpathySplits(write_rs_toyworld("data/rs-toyworld"), "test")   # class_id, class_name, geo

Importing this module registers, with the core:
- the `.tif` / `.tiff` image decoder (`decode_geotiff`: every band, `[H, W, C]`),
- the data kinds `rs-karpathy` and `rs-multilingual` (see `captions`),
- the generated dataset `rs-toyworld` (`data: rs-toyworld` in a recipe).
"""

from vlzoo.core.data import register_data_kind, register_generated_dataset, register_image_decoder
from vlzoo.remote_sensing.data.captions import (
    DEFAULT_LANGUAGE,
    RSKarpathySplits,
    build_rs_karpathy,
    build_rs_multilingual,
    caption_languages,
    class_from_filename,
    parse_languages,
)
from vlzoo.remote_sensing.data.geotiff import (
    BandStats,
    GeoArray,
    GeoImage,
    band_names,
    decode_geotiff,
    geo_metadata,
    iter_tiles,
    read_geotiff,
    rgb_composite,
    tile_windows,
)
from vlzoo.remote_sensing.data.scenes import RS_TEMPLATES, SceneFolder, scene_class_name
from vlzoo.remote_sensing.data.toyworld import (
    BAND_NAMES,
    CLASSES,
    RS_TOYWORLD_CRS,
    RSScene,
    generate_scene,
    rs_toyworld_band_stats,
    write_rs_toyworld,
    write_rs_toyworld_classes,
)
from vlzoo.remote_sensing.data.transforms import GeoTransform, geo_transform

RS_TOYWORLD = "rs-toyworld"
RS_TOYWORLD_FILE = "rs-toyworld.json"

for _ext in (".tif", ".tiff"):
    register_image_decoder(_ext, decode_geotiff)
RS_DATA_OPTIONS = ("image_root", "bands", "languages")
register_data_kind("rs-karpathy", build_rs_karpathy, has_splits=True, options=RS_DATA_OPTIONS)
register_data_kind("rs-multilingual", build_rs_multilingual, has_splits=True, options=RS_DATA_OPTIONS)
register_generated_dataset(RS_TOYWORLD, write_rs_toyworld, RS_TOYWORLD_FILE, kind="rs-karpathy")

__all__ = [
    "BAND_NAMES",
    "CLASSES",
    "DEFAULT_LANGUAGE",
    "RS_TEMPLATES",
    "RS_TOYWORLD",
    "RS_TOYWORLD_CRS",
    "RS_TOYWORLD_FILE",
    "BandStats",
    "GeoArray",
    "GeoImage",
    "GeoTransform",
    "RSKarpathySplits",
    "RSScene",
    "SceneFolder",
    "band_names",
    "build_rs_karpathy",
    "build_rs_multilingual",
    "caption_languages",
    "class_from_filename",
    "decode_geotiff",
    "generate_scene",
    "geo_metadata",
    "geo_transform",
    "iter_tiles",
    "parse_languages",
    "read_geotiff",
    "rgb_composite",
    "rs_toyworld_band_stats",
    "scene_class_name",
    "tile_windows",
    "write_rs_toyworld",
    "write_rs_toyworld_classes",
]
