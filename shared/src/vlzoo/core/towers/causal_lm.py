"""A causal language model as a tower: any `transformers.AutoModelForCausalLM`, fed token ids and/or a prefix
of embeddings (a visual prefix from a bridge such as a Q-Former, LLaVA-style).

>>> lm = CausalLM(CausalLMConfig(hf_model="vlzoo/llama-tiny", pretrained=False, config_overrides={"vocab_size": 90}))
>>> out = lm(input_ids, attention_mask, prefix_embeds=visual_tokens, labels=input_ids)  # out.loss: NTP on the ids

The hub id names the architecture (`hf_model`; LLEMMA-7B at a paper's scale); built at random (`pretrained=False`,
or inside `structure_only()`) its architecture comes from the config registered for that id
(`towers.register_hf_config`), else from its `config.json`. `vlzoo/llama-tiny`, registered below, is a
Llama-style decoder small enough to train on a CPU in seconds; `config_overrides` resize it (e.g. its
vocabulary to a tiny tokenizer's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.towers.hf_configs import known_hf_config, register_hf_config
from vlzoo.core.towers.structure import loads_pretrained

__all__ = ["TINY_LLAMA", "CausalLM", "CausalLMConfig", "causal_lm_config", "next_token_loss"]

TINY_LLAMA = "vlzoo/llama-tiny"
# A Llama decoder of ~0.1M parameters: the CPU stand-in for a 7B model in tests and demos (same code paths:
# RMSNorm, rotary positions, SwiGLU MLP, grouped KV heads, KV cache).
register_hf_config(
    TINY_LLAMA,
    {
        "model_type": "llama",
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    },
)


@dataclass
class CausalLMConfig:
    """Which causal LM: a hub id or local directory (`hf_model`), its weights or only its architecture."""

    hf_model: str = TINY_LLAMA
    pretrained: bool = False  # load the hub weights (outside `structure_only()`), else random init
    config_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"vocab_size": 90} for a tiny vocab
    attn_implementation: str = "eager"  # "sdpa" on a GPU; eager keeps CPU results exactly repeatable


def causal_lm_config(cfg: CausalLMConfig) -> Any:
    """The transformers config of `cfg.hf_model` (registered inline, else its `config.json`), overridden."""
    from transformers import AutoConfig

    if not cfg.hf_model:
        raise ConfigError("a causal LM needs hf_model (a hub id or a local directory)")
    inline = known_hf_config(cfg.hf_model)
    if inline is not None:
        config = AutoConfig.for_model(inline.pop("model_type"), **inline)
    else:
        try:
            config = AutoConfig.from_pretrained(cfg.hf_model)
        except OSError as err:
            raise ConfigError(
                f"cannot read the config.json of causal LM {cfg.hf_model!r} (offline, or no such model); "
                f"register it with towers.register_hf_config: {str(err).splitlines()[0]}"
            ) from None
    for key, value in cfg.config_overrides.items():
        if not hasattr(config, key):
            raise ConfigError(f"causal LM {cfg.hf_model!r}: its config has no field {key!r} to override")
        setattr(config, key, value)
    config._attn_implementation = cfg.attn_implementation
    return config


class CausalLM(nn.Module):
    """A decoder-only LM with an optional prefix of embeddings placed before its tokens.

    Padding is on the left of the prefix+tokens sequence as a whole only through `attention_mask`; the
    position of each token counts the real tokens before it, so a left-padded batch, a KV-cached step and a
    full recomputation all see the same positions.
    """

    def __init__(self, cfg: CausalLMConfig):
        super().__init__()
        from transformers import AutoModelForCausalLM

        self.cfg = cfg
        config = causal_lm_config(cfg)
        if loads_pretrained(cfg.pretrained):
            kwargs = {"attn_implementation": cfg.attn_implementation, **cfg.config_overrides}
            try:
                self.model = AutoModelForCausalLM.from_pretrained(cfg.hf_model, **kwargs)
            except OSError as err:
                raise ConfigError(
                    f"cannot load the weights of causal LM {cfg.hf_model!r}: {str(err).splitlines()[0]}"
                ) from None
        else:
            self.model = AutoModelForCausalLM.from_config(config)
        self.hidden_size = int(self.model.config.hidden_size)
        self.vocab_size = int(self.model.config.vocab_size)

    # ------------------------------------------------------------------------------- embeddings
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """`[B, L]` token ids → `[B, L, hidden]` input embeddings (the LM's own table)."""
        if input_ids.numel() and (int(input_ids.max()) >= self.vocab_size or int(input_ids.min()) < 0):
            raise DataError(
                f"token id {int(input_ids.max())} is outside the vocabulary of {self.cfg.hf_model!r} "
                f"({self.vocab_size} tokens): the tokenizer and the LM disagree"
            )
        return self.model.get_input_embeddings()(input_ids)

    def resize_vocabulary(self, vocab_size: int) -> None:
        """Grow (or shrink) the embedding table and LM head to a tokenizer's size (new special tokens)."""
        self.model.resize_token_embeddings(vocab_size)
        self.vocab_size = vocab_size

    # ---------------------------------------------------------------------------------- forward
    @staticmethod
    def positions(attention_mask: torch.Tensor) -> torch.Tensor:
        """Position of each slot: the number of real tokens before it (0 on padding)."""
        return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        prefix_embeds: torch.Tensor | None = None,
        prefix_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache: Any = None,
        cache_mask: torch.Tensor | None = None,
        use_cache: bool = False,
    ) -> Any:
        """Run `[prefix_embeds; embed(input_ids)]`. `labels` (`[B, L]` aligned with `input_ids`, -100 = ignored)
        give the next-token loss on the tokens only: the prefix is never a target. A decoding step passes the
        KV `cache` of the slots before it and their `cache_mask` (`[B, past]`, 1 = real slot).

        Returns transformers' `CausalLMOutputWithPast` (`logits` over prefix + tokens, `loss`, `cache`: the
        KV cache to pass back as `cache` with `use_cache=True`).
        """
        parts, masks = [], []
        if prefix_embeds is not None:
            parts.append(prefix_embeds)
            masks.append(
                prefix_mask
                if prefix_mask is not None
                else torch.ones(prefix_embeds.shape[:2], dtype=torch.long, device=prefix_embeds.device)
            )
        if input_ids is not None:
            parts.append(self.embed(input_ids))
            masks.append(attention_mask if attention_mask is not None else torch.ones_like(input_ids))
        if not parts:
            raise DataError("the causal LM needs input_ids, prefix_embeds or both")
        embeds = torch.cat(parts, dim=1)
        mask = torch.cat([m.long() for m in masks], dim=1)
        if cache_mask is not None:
            mask = torch.cat([cache_mask.long(), mask], dim=1)
        position_ids = self.positions(mask)[:, -embeds.shape[1] :]
        out = self.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
        )
        if labels is not None:
            if input_ids is None or labels.shape != input_ids.shape:
                raise DataError("labels must have the shape of input_ids (one target per token)")
            out.loss = next_token_loss(out.logits[:, -labels.shape[1] :], labels)
        return out

    def lock(self) -> None:
        """Freeze every weight (a frozen decoder behind a trainable bridge)."""
        for p in self.parameters():
            p.requires_grad_(False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.model.gradient_checkpointing_enable()
        else:
            self.model.gradient_checkpointing_disable()


def next_token_loss(token_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each labelled token (label != -100) predicted from the slot before it."""
    targets = labels[:, 1:]
    if not bool((targets != -100).any()):
        raise DataError("no token of the batch is a target (every label is -100)")
    logits = token_logits[:, :-1]
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
