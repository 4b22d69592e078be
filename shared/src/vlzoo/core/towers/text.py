"""Text towers from transformers: CLIP's causal text transformer, or any `AutoModel` encoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.towers.heads import build_head
from vlzoo.core.towers.tokenizers import ClipTokenizer, HFTokenizer, TokenizedText


@dataclass
class TextTowerConfig:
    """Which text encoder, how its tokens are pooled and projected.

    `kind="clip"` builds transformers' `CLIPTextModel` from the width/heads/layers below (causal mask,
    final LayerNorm, pooling at the end-of-text token). `kind="hf"` loads any encoder that
    `transformers.AutoModel` knows, by hub id or local directory (`hf_model`).
    """

    kind: str = "clip"  # "clip" | "hf"
    context_length: int = 77
    # CLIP text transformer (kind="clip")
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    act: str = "gelu"  # "quick_gelu" for OpenAI's weights
    # any AutoModel encoder (kind="hf")
    hf_model: str | None = None
    hf_pretrained: bool = True  # load the encoder's weights, else only its config (random init)
    pool: str | None = None  # "eos" | "cls" | "mean"; None = "eos" for clip, "cls" for hf
    head: str = "linear"  # "linear" | "mlp" | "none"
    tokenizer: str | None = None  # "clip" or an AutoTokenizer id/dir; None = the tower's own


TEXT_POOLS = ("eos", "cls", "mean")


def _build_clip_text(cfg: TextTowerConfig) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.width,
        intermediate_size=int(cfg.width * cfg.mlp_ratio),
        num_attention_heads=cfg.heads,
        num_hidden_layers=cfg.layers,
        max_position_embeddings=cfg.context_length,
        hidden_act=cfg.act,
        layer_norm_eps=1e-5,
        # CLIP's EOT token has the largest id; pooling at its first occurrence is what the releases do.
        eos_token_id=cfg.vocab_size - 1,
        bos_token_id=cfg.vocab_size - 2,
        pad_token_id=0,
    )
    return CLIPTextModel(config)


def _build_hf_text(cfg: TextTowerConfig) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    if not cfg.hf_model:
        raise ConfigError("text tower kind='hf' needs hf_model (a hub id or a local directory)")
    if cfg.hf_pretrained:
        return AutoModel.from_pretrained(cfg.hf_model, add_pooling_layer=False)
    return AutoModel.from_config(AutoConfig.from_pretrained(cfg.hf_model), add_pooling_layer=False)


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer's stack of layers: the longest ModuleList in the model (BERT, RoBERTa, CLIP ...)."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ConfigError(f"cannot find the layer stack of {type(model).__name__}")
    return max(lists, key=len)


__all__ = ["TEXT_POOLS", "TextTower", "TextTowerConfig", "build_tokenizer", "encoder_layers"]


class TextTower(nn.Module):
    """Encoder + pooling + projection. Takes `TokenizedText` or a `LongTensor[B, L]` of token ids."""

    def __init__(self, cfg: TextTowerConfig, embed_dim: int):
        super().__init__()
        builders = {"clip": _build_clip_text, "hf": _build_hf_text}
        if cfg.kind not in builders:
            raise ConfigError(f"unknown text tower kind {cfg.kind!r}; choose one of {sorted(builders)}")
        self.cfg = cfg
        self.pool = cfg.pool or ("eos" if cfg.kind == "clip" else "cls")
        if self.pool not in TEXT_POOLS:
            raise ConfigError(f"unknown text pooling {self.pool!r}; choose one of {TEXT_POOLS}")
        self.transformer = builders[cfg.kind](cfg)
        width = self.transformer.config.hidden_size
        self.pad_token_id = self.transformer.config.pad_token_id or 0
        self.head = build_head(cfg.head, width, embed_dim)
        self.output_dim = embed_dim if cfg.head != "none" else width

    def _inputs(self, text: TokenizedText | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(text, TokenizedText):
            ids, mask = text.input_ids, text.attention_mask
        elif torch.is_tensor(text):
            ids, mask = text, None
        else:
            raise DataError(
                f"text must be TokenizedText or a LongTensor of token ids, got {type(text).__name__}"
            )
        if ids.ndim != 2 or ids.dtype not in (torch.long, torch.int):
            raise DataError(
                f"token ids must be an integer tensor of shape (batch, length), got {tuple(ids.shape)} {ids.dtype}"
            )
        limit = self.transformer.config.max_position_embeddings
        if ids.shape[1] > limit:
            raise DataError(f"token ids have length {ids.shape[1]} but the text tower takes at most {limit}")
        if mask is None and self.cfg.kind == "clip":  # id 0 is also a real BPE token; CLIP's text ends at EOT
            mask = (torch.arange(ids.shape[-1], device=ids.device) <= self._eot_index(ids)[:, None]).long()
        elif mask is None:
            mask = (ids != self.pad_token_id).long()
        return ids, mask

    def _eot_index(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids == self.transformer.config.eos_token_id).int().argmax(dim=-1)

    def forward_tokens(
        self, text: TokenizedText | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(tokens [B, L, W], pooled [B, W], attention_mask [B, L])` before the projection."""
        ids, mask = self._inputs(text)
        if self.cfg.kind == "clip":
            # The causal mask alone decides what each token sees, as in the CLIP releases: no padding mask.
            tokens = self.transformer(input_ids=ids).last_hidden_state
        else:
            tokens = self.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        return tokens, self.pool_tokens(tokens, ids, mask), mask

    def pool_tokens(self, tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One vector per text from its token states `[B, L, W]`, by the tower's pooling (`self.pool`); public
        so a model that refines the tokens itself (PriorCLIP) pools them as the tower would."""
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        if self.pool == "cls":
            return tokens[:, 0]
        if self.pool == "mean":
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        if self.cfg.kind == "clip":
            return tokens[rows, self._eot_index(ids)]
        return tokens[rows, mask.sum(-1).clamp_min(1) - 1]  # last real token

    def forward(self, text: TokenizedText | torch.Tensor, output_tokens: bool = False):
        tokens, pooled, _ = self.forward_tokens(text)
        if output_tokens:
            return self.head(pooled), self.head(tokens)
        return self.head(pooled)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.transformer.gradient_checkpointing_enable()
        else:
            self.transformer.gradient_checkpointing_disable()

    def lock(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        """Freeze the encoder except its last `unlocked_layers` layers (and, unless asked, its LayerNorms).

        The projection head stays trainable.
        """
        layers = encoder_layers(self.transformer)
        trainable = {
            id(p) for layer in list(layers)[len(layers) - unlocked_layers :] for p in layer.parameters()
        }
        if not freeze_layer_norm:
            trainable |= {
                id(p)
                for m in self.transformer.modules()
                if isinstance(m, nn.LayerNorm)
                for p in m.parameters()
            }
        for p in self.transformer.parameters():
            p.requires_grad_(id(p) in trainable)


def build_tokenizer(cfg: TextTowerConfig) -> ClipTokenizer | HFTokenizer:
    """The tower's tokenizer: `"clip"` → CLIP's offline BPE; else `transformers.AutoTokenizer` (id or dir)."""
    name = cfg.tokenizer or ("clip" if cfg.kind == "clip" else cfg.hf_model)
    if name == "clip":
        return ClipTokenizer(cfg.context_length)
    return HFTokenizer(name, cfg.context_length)
