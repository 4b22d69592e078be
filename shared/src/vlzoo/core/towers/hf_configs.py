"""Hub encoders' transformers configs, kept inline so that their architecture never needs the network.

A text tower names its encoder by hub id (`TextTowerConfig.hf_model`); to build it at random, or only to
count its parameters (`vlzoo info`), transformers reads that repository's `config.json`. For the encoders
the registered models name, the fields of that file are registered here (the core's general-purpose ones
below, a domain's own next to its models), so those builds read no file and touch no network.

Keyed by hub id, not stored in the model's config: a recipe that points `hf_model` at another encoder (a
local directory, a fine-tune) gets that encoder's own `config.json`, never a stale inline copy.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vlzoo.core.plugins import register_unique

__all__ = ["BERT_BASE_CONFIG", "known_hf_config", "register_hf_config"]


@dataclass(frozen=True)
class _Registered:
    fields: Mapping[str, Any] = field(default_factory=dict)
    owner: str = ""  # the registering module, compared by `plugins.register_unique`


_HF_CONFIGS: dict[str, _Registered] = {}


def register_hf_config(hf_model: str, config: Mapping[str, Any]) -> None:
    """Register the `config.json` fields of hub encoder `hf_model` (`model_type` included).

    Give the architecture and every field the hub file sets that changes the numbers (activations,
    LayerNorm eps, special token ids): a build from these fields must equal one from the hub file.
    """
    if not config.get("model_type"):
        raise ValueError(f"the config of {hf_model!r} needs its model_type (e.g. 'bert')")
    # The caller's module owns the name, as for models: another module registering it is refused.
    caller = inspect.currentframe().f_back  # type: ignore[union-attr]
    owner = caller.f_globals.get("__name__", "") if caller is not None else ""
    register_unique(_HF_CONFIGS, hf_model, _Registered(dict(config), owner), what="Hugging Face config")


def known_hf_config(hf_model: str | None) -> dict[str, Any] | None:
    """A copy of the registered `config.json` fields of `hf_model`, or None when it has none."""
    entry = _HF_CONFIGS.get(hf_model or "")
    return dict(entry.fields) if entry is not None else None


# General-purpose encoders, their hub `config.json` fields (names as the hub gives them; both also
# answer to their `google-bert/` and `FacebookAI/` ids). Source: the repositories' config.json.
BERT_BASE_CONFIG = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
}
_XLM_ROBERTA_BASE = {
    "model_type": "xlm-roberta",
    "vocab_size": 250002,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "position_embedding_type": "absolute",
}
for _name in ("bert-base-uncased", "google-bert/bert-base-uncased"):
    register_hf_config(_name, BERT_BASE_CONFIG)
for _name in ("xlm-roberta-base", "FacebookAI/xlm-roberta-base"):
    register_hf_config(_name, _XLM_ROBERTA_BASE)
