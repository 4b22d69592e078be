"""Towers: timm image encoders, transformers text encoders, their tokenizers and projection heads.

>>> from vlzoo.core.towers import TextTowerConfig, VisionTowerConfig, build_tokenizer
"""

from vlzoo.core.towers.heads import build_head
from vlzoo.core.towers.text import TEXT_POOLS, TextTower, TextTowerConfig, build_tokenizer, encoder_layers
from vlzoo.core.towers.tokenizers import ClipTokenizer, HFTokenizer, TokenizedText
from vlzoo.core.towers.vision import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, VisionTower, VisionTowerConfig

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "TEXT_POOLS",
    "ClipTokenizer",
    "HFTokenizer",
    "TextTower",
    "TextTowerConfig",
    "TokenizedText",
    "VisionTower",
    "VisionTowerConfig",
    "build_head",
    "build_tokenizer",
    "encoder_layers",
]
