"""vlzoo.core: registry, towers, dual encoders, losses and weights shared by every vlzoo domain package.

>>> import vlzoo.core as vz
>>> model = vz.create_model("clip-vit-tiny")
>>> tokenizer = vz.get_tokenizer("clip-vit-tiny")
>>> preprocess = vz.get_transforms("clip-vit-tiny", train=False)
>>> vz.data.write_toyworld("toyworld"); vz.eval.retrieval_metrics; vz.train.ZooModule

The public surface is this module's `__all__` plus the `__all__` of its subpackages (`vz.models`,
`vz.towers`, `vz.losses`, `vz.data`, `vz.weights`, `vz.train`, `vz.eval`, `vz.distributed`); other module
paths are internal. Everything but the errors is imported on first use (PEP 562), so `import vlzoo.core`
costs no torch, and `vz.train` (Lightning) only when it is asked for.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import TYPE_CHECKING, Any

from vlzoo.core.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    DownloadError,
    UnknownModelError,
    VlzooError,
    WeightsError,
)

__version__ = "0.1.0"


def _propagate_offline() -> None:
    """`VLZOO_OFFLINE=1` puts huggingface_hub, transformers and timm (which downloads through
    huggingface_hub) offline too. They read their flags when imported, and nothing heavy is imported before
    this module, so setting them here means no hub host is ever resolved: without it, a
    `local_files_only` lookup still asks DNS for the hub."""
    if os.environ.get("VLZOO_OFFLINE", "").strip().lower() not in {"1", "true", "yes", "on"}:
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported before vlzoo: its flag was read already, so set it directly
        constants.HF_HUB_OFFLINE = True


_propagate_offline()

# Public name → the module that defines it.
_LAZY_NAMES = {
    "CLIPConfig": "vlzoo.core.models.dual_encoder",
    "DualEncoder": "vlzoo.core.models.dual_encoder",
    "ClipTokenizer": "vlzoo.core.towers.tokenizers",
    "HFTokenizer": "vlzoo.core.towers.tokenizers",
    "TokenizedText": "vlzoo.core.towers.tokenizers",
    "TextTower": "vlzoo.core.towers.text",
    "TextTowerConfig": "vlzoo.core.towers.text",
    "VisionTower": "vlzoo.core.towers.vision",
    "VisionTowerConfig": "vlzoo.core.towers.vision",
    "WeightSpec": "vlzoo.core.weights.spec",
    "apply_overrides": "vlzoo.core.registry",
    "create_model": "vlzoo.core.registry",
    "get_model_config": "vlzoo.core.registry",
    "get_pretrained_spec": "vlzoo.core.registry",
    "get_tokenizer": "vlzoo.core.registry",
    "get_transforms": "vlzoo.core.registry",
    "list_models": "vlzoo.core.registry",
    "model_info": "vlzoo.core.registry",
    "preprocessing_config": "vlzoo.core.registry",
    "register_model": "vlzoo.core.registry",
    "resolve_config": "vlzoo.core.registry",
}
_SUBPACKAGES = ("data", "distributed", "eval", "losses", "models", "towers", "train", "weights")

__all__ = [
    "CLIPConfig",
    "ChecksumError",
    "ClipTokenizer",
    "ConfigError",
    "DataError",
    "DownloadError",
    "DualEncoder",
    "HFTokenizer",
    "TextTower",
    "TextTowerConfig",
    "TokenizedText",
    "UnknownModelError",
    "VisionTower",
    "VisionTowerConfig",
    "VlzooError",
    "WeightSpec",
    "WeightsError",
    "__version__",
    "apply_overrides",
    "create_model",
    "data",
    "distributed",
    "eval",
    "get_model_config",
    "get_pretrained_spec",
    "get_tokenizer",
    "get_transforms",
    "list_models",
    "losses",
    "model_info",
    "models",
    "preprocessing_config",
    "register_model",
    "resolve_config",
    "towers",
    "train",
    "weights",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(import_module(_LAZY_NAMES[name]), name)
    elif name in _SUBPACKAGES or name in ("registry", "plugins", "errors"):
        value = import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from vlzoo.core import data, distributed, eval, losses, models, towers, train, weights
    from vlzoo.core.models.dual_encoder import CLIPConfig, DualEncoder
    from vlzoo.core.registry import (
        apply_overrides,
        create_model,
        get_model_config,
        get_pretrained_spec,
        get_tokenizer,
        get_transforms,
        list_models,
        model_info,
        preprocessing_config,
        register_model,
        resolve_config,
    )
    from vlzoo.core.towers.text import TextTower, TextTowerConfig
    from vlzoo.core.towers.tokenizers import ClipTokenizer, HFTokenizer, TokenizedText
    from vlzoo.core.towers.vision import VisionTower, VisionTowerConfig
    from vlzoo.core.weights.spec import WeightSpec
