"""Pretrained weights: download and cache (`hub`), safe file I/O (`io`), format converters (`convert`),
loading into models and saving from them (`checkpoint`)."""

from vlzoo.core.weights.checkpoint import load_checked, load_weights, resolve_pretrained, save
from vlzoo.core.weights.convert import (
    CONVERTERS,
    detect_format,
    from_hf_clip,
    from_open_clip,
    register_converter,
)
from vlzoo.core.weights.hub import WeightSpec, cache_dir, download, is_offline
from vlzoo.core.weights.io import load_state_dict, read_metadata, save_state_dict

__all__ = [
    "CONVERTERS",
    "WeightSpec",
    "cache_dir",
    "detect_format",
    "download",
    "from_hf_clip",
    "from_open_clip",
    "is_offline",
    "load_checked",
    "load_state_dict",
    "load_weights",
    "read_metadata",
    "register_converter",
    "resolve_pretrained",
    "save",
    "save_state_dict",
]
