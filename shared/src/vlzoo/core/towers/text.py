"""Text towers from transformers: CLIP's causal text transformer, or any `AutoModel` encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlzoo.core.errors import ConfigError, DataError, DownloadError
from vlzoo.core.towers.heads import build_head
from vlzoo.core.towers.hf_configs import known_hf_config
from vlzoo.core.towers.structure import loads_pretrained
from vlzoo.core.towers.tokenizers import ClipTokenizer, HFTokenizer, TokenizedText


@dataclass
class TextTowerConfig:
    """Which text encoder, how its tokens are pooled and projected.

    `kind="clip"` builds transformers' `CLIPTextModel` from the width/heads/layers below (causal mask,
    final LayerNorm, pooling at the end-of-text token). `kind="hf"` loads any encoder that
    `transformers.AutoModel` knows, by hub id or local directory (`hf_model`); built at random
    (`hf_pretrained=False`, or inside `structure_only()`), its architecture comes from the config registered
    for that hub id (`towers.hf_configs`), else from its `config.json` (local, cached or downloaded).
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
    return build_hf_encoder(cfg.hf_model, pretrained=cfg.hf_pretrained, add_pooling_layer=False)


def hf_encoder_config(hf_model: str | None) -> Any:
    """The transformers config of encoder `hf_model`: the one registered inline for that hub id
    (`register_hf_config`), else its `config.json` (a local directory, the hub's cache, or the network).

    Raises:
        DownloadError: neither registered nor readable (one line naming the encoder and the file).
    """
    from transformers import AutoConfig

    if not hf_model:
        raise ConfigError("text tower kind='hf' needs hf_model (a hub id or a local directory)")
    inline = known_hf_config(hf_model)
    if inline is not None:
        return AutoConfig.for_model(inline.pop("model_type"), **inline)
    try:
        return AutoConfig.from_pretrained(hf_model)
    except OSError as err:
        raise _unavailable(hf_model, "config.json", err) from None


def build_hf_encoder(hf_model: str | None, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A `transformers.AutoModel` encoder: `hf_model`'s weights when `pretrained` (outside `structure_only()`),
    else random weights on the architecture of `hf_encoder_config(hf_model)`. `kwargs` go to the model
    class (e.g. `add_pooling_layer=False`)."""
    from transformers import AutoModel

    if not loads_pretrained(pretrained):
        return AutoModel.from_config(hf_encoder_config(hf_model), **kwargs)
    if not hf_model:
        raise ConfigError("text tower kind='hf' needs hf_model (a hub id or a local directory)")
    try:
        return AutoModel.from_pretrained(hf_model, **kwargs)
    except OSError as err:
        raise _unavailable(hf_model, "weights", err) from None


def _unavailable(hf_model: str, what: str, err: OSError) -> DownloadError:
    """transformers' screenful about a missing file, as one line saying which model and file it was."""
    from huggingface_hub import is_offline_mode

    if is_offline_mode():
        return DownloadError(
            f"the {what} of text encoder {hf_model!r} is not in the Hugging Face cache and the hub is offline "
            "(VLZOO_OFFLINE / HF_HUB_OFFLINE); fetch it once online, or register it (towers.register_hf_config)"
        )
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    return DownloadError(f"cannot load the {what} of text encoder {hf_model!r}: {first}")


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer's stack of layers: the longest ModuleList in the model (BERT, RoBERTa, CLIP ...)."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ConfigError(f"cannot find the layer stack of {type(model).__name__}")
    return max(lists, key=len)


__all__ = [
    "TEXT_POOLS",
    "TextTower",
    "TextTowerConfig",
    "build_hf_encoder",
    "build_tokenizer",
    "encoder_layers",
    "hf_encoder_config",
]


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
