"""vlzoo.core: registry, towers, dual encoders, losses and weights shared by every vlzoo domain package.

>>> import vlzoo.core as vz
>>> model = vz.create_model("clip-vit-tiny")
>>> tokenizer = vz.get_tokenizer("clip-vit-tiny")
>>> preprocess = vz.get_transforms("clip-vit-tiny", train=False)
"""

from vlzoo.core.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    DownloadError,
    UnknownModelError,
    VlzooError,
    WeightsError,
)
from vlzoo.core.models.dual_encoder import CLIPConfig, DualEncoder
from vlzoo.core.registry import (
    create_model,
    get_model_config,
    get_tokenizer,
    get_transforms,
    list_models,
    model_info,
    register_model,
)
from vlzoo.core.towers.text import TextTower, TextTowerConfig
from vlzoo.core.towers.tokenizers import ClipTokenizer, HFTokenizer, TokenizedText
from vlzoo.core.towers.vision import VisionTower, VisionTowerConfig
from vlzoo.core.weights.hub import WeightSpec

__version__ = "0.1.0"

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
    "create_model",
    "get_model_config",
    "get_tokenizer",
    "get_transforms",
    "list_models",
    "model_info",
    "register_model",
]
