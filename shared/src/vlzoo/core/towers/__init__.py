"""Towers: timm image encoders, transformers text encoders, their tokenizers and projection heads.

>>> from vlzoo.core.towers import TextTowerConfig, VisionTowerConfig, build_tokenizer, structure_only

`structure_only()` builds any model from its configs alone (no pretrained weights fetched or loaded), as
`vlzoo info` does; `register_hf_config` keeps a hub encoder's `config.json` inline for such builds.
"""

from vlzoo.core.towers.causal_lm import (
    TINY_LLAMA,
    CausalLM,
    CausalLMConfig,
    causal_lm_config,
    next_token_loss,
)
from vlzoo.core.towers.heads import build_head
from vlzoo.core.towers.hf_configs import BERT_BASE_CONFIG, known_hf_config, register_hf_config
from vlzoo.core.towers.structure import is_structure_only, loads_pretrained, structure_only
from vlzoo.core.towers.text import (
    TEXT_POOLS,
    TextTower,
    TextTowerConfig,
    build_hf_encoder,
    build_tokenizer,
    encoder_layers,
    hf_encoder_config,
)
from vlzoo.core.towers.tokenizers import ClipTokenizer, HFTokenizer, TokenizedText
from vlzoo.core.towers.vision import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    VisionTower,
    VisionTowerConfig,
    conv_stem,
)

__all__ = [
    "BERT_BASE_CONFIG",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "TEXT_POOLS",
    "TINY_LLAMA",
    "CausalLM",
    "CausalLMConfig",
    "ClipTokenizer",
    "HFTokenizer",
    "TextTower",
    "TextTowerConfig",
    "TokenizedText",
    "VisionTower",
    "VisionTowerConfig",
    "build_head",
    "build_hf_encoder",
    "build_tokenizer",
    "causal_lm_config",
    "conv_stem",
    "encoder_layers",
    "hf_encoder_config",
    "is_structure_only",
    "known_hf_config",
    "loads_pretrained",
    "next_token_loss",
    "register_hf_config",
    "structure_only",
]
