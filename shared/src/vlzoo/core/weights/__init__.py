"""Pretrained weights: what a file is (`spec`), download and cache (`hub`), safe file I/O (`io`), format
converters (`convert`), loading into models and saving from them (`checkpoint`).

Below the registry: nothing here looks a model up by name. A converter gets the built model it converts
for; `resolve_pretrained` gets the model's registered tags from its caller.
"""

from vlzoo.core.weights.checkpoint import (
    PretrainedSource,
    config_path,
    load_checked,
    load_weights,
    resolve_pretrained,
    save,
)
from vlzoo.core.weights.convert import (
    CONVERTERS,
    detect_format,
    from_hf_clip,
    from_open_clip,
    model_label,
    register_converter,
)
from vlzoo.core.weights.hub import cache_dir, cache_path, download, is_offline
from vlzoo.core.weights.io import load_state_dict, read_metadata, save_state_dict
from vlzoo.core.weights.local import local_bert_dir
from vlzoo.core.weights.spec import WeightSpec

__all__ = [
    "CONVERTERS",
    "PretrainedSource",
    "WeightSpec",
    "cache_dir",
    "cache_path",
    "config_path",
    "detect_format",
    "download",
    "from_hf_clip",
    "from_open_clip",
    "is_offline",
    "load_checked",
    "load_state_dict",
    "load_weights",
    "local_bert_dir",
    "model_label",
    "read_metadata",
    "register_converter",
    "resolve_pretrained",
    "save",
    "save_state_dict",
]
