"""vlzoo.remote_sensing: RS-M-CLIP and PriorCLIP, GeoTIFF and remote-sensing caption data.

>>> from vlzoo.remote_sensing import read_geotiff, iter_tiles, RSKarpathySplits, RS_TEMPLATES
>>> scene = read_geotiff("S2.tif", bands=("B04", "B03", "B02", "B08"))   # GeoImage: image, valid, crs, ...
>>> tiles = iter_tiles("S2.tif", tile_size=224, overlap=32)                # windowed, placed on the scene
"""

from vlzoo.remote_sensing import models  # noqa: F401  (registers the models and data kinds)
from vlzoo.remote_sensing.data import (
    BAND_NAMES,
    RS_TEMPLATES,
    RS_TOYWORLD,
    BandStats,
    GeoImage,
    GeoTransform,
    RSKarpathySplits,
    SceneFolder,
    class_from_filename,
    geo_transform,
    iter_tiles,
    read_geotiff,
    rgb_composite,
    rs_toyworld_band_stats,
    scene_class_name,
    tile_windows,
    write_rs_toyworld,
    write_rs_toyworld_classes,
)

__version__ = "0.1.0"

_EVALUATION = ("evaluate_rs_retrieval", "evaluate_rs_zeroshot", "print_rs_table")


def __getattr__(name: str):
    # The evaluation module pulls in matplotlib and rich (seconds): imported when asked for, not whenever
    # the registry discovers this package (every `list_models()`).
    if name in _EVALUATION:
        from vlzoo.remote_sensing import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module 'vlzoo.remote_sensing' has no attribute {name!r}")


__all__ = [
    "BAND_NAMES",
    "RS_TEMPLATES",
    "RS_TOYWORLD",
    "BandStats",
    "GeoImage",
    "GeoTransform",
    "RSKarpathySplits",
    "SceneFolder",
    "class_from_filename",
    "evaluate_rs_retrieval",
    "evaluate_rs_zeroshot",
    "geo_transform",
    "iter_tiles",
    "print_rs_table",
    "read_geotiff",
    "rgb_composite",
    "rs_toyworld_band_stats",
    "scene_class_name",
    "tile_windows",
    "write_rs_toyworld",
    "write_rs_toyworld_classes",
]
