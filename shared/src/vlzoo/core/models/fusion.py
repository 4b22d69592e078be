"""A METER-style cross-modal fusion encoder: two token streams, each attending to itself and to the other.

METER (Dou et al., 2022) and the models built on it (PTUnifier, M3AE, ...) project a text tower's tokens
and an image tower's tokens to one width, add a modality embedding to each, and run N co-attention layers.
In layer `l` the text stream takes self-attention over text, cross-attention from text to the image stream
of layer `l - 1`, and an FFN; the image stream does the same the other way round. Each stream ends in a
pooler (dense + tanh on its first token), and the two pooled vectors side by side are the pair's feature.

The layers are made of transformers' own BERT modules (`BertAttention`, `BertIntermediate`, `BertOutput`:
post-LayerNorm residual blocks, the parameter names of METER's checkpoints). They are composed here rather
than taken as `BertLayer(add_cross_attention=True)`: in transformers 5.x that layer refuses cross-attention
unless `is_decoder=True`, and `is_decoder` makes its self-attention causal (`is_causal=True`, which SDPA and
flash attention apply whenever no explicit mask is passed, e.g. when every token of a batch is real). Both
streams here attend bidirectionally.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vlzoo.core.errors import ConfigError, DataError

__all__ = ["CoAttentionLayer", "FusionConfig", "FusionEncoder", "FusionOutput"]

TEXT, IMAGE = 0, 1  # modality ids of the type embedding (METER uses 2 for a second image in NLVR2)


@dataclass
class FusionConfig:
    """Width and depth of the co-attention stack (METER's defaults: 6 layers of width 768, 12 heads)."""

    hidden_size: int = 768
    num_layers: int = 6
    num_heads: int = 12
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    num_modalities: int = 2  # rows of the modality (token type) embedding
    attn_implementation: str = "sdpa"  # "sdpa" | "eager" (eager returns attention weights)
    init_std: float = 0.02  # BERT's normal init for every linear and embedding of the fusion module

    def bert_config(self):
        """The `transformers.BertConfig` the layers are built from."""
        from transformers import BertConfig

        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"fusion hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        return BertConfig(
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_heads,
            intermediate_size=int(self.hidden_size * self.mlp_ratio),
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            layer_norm_eps=self.layer_norm_eps,
            # Set explicitly: a config without one makes transformers' mask builders return no mask at all.
            attn_implementation=self.attn_implementation,
        )


@dataclass
class FusionOutput:
    """Fused tokens of each stream, their pooled first tokens, and the pair feature `[text_pooled, image_pooled]`."""

    text_tokens: torch.Tensor  # [B, L, H]
    image_tokens: torch.Tensor  # [B, N, H]
    text_pooled: torch.Tensor  # [B, H]
    image_pooled: torch.Tensor  # [B, H]

    @property
    def pooled(self) -> torch.Tensor:
        """`[B, 2H]`: what METER's ITM, VQA and classification heads read."""
        return torch.cat([self.text_pooled, self.image_pooled], dim=-1)


def _attention_mask(
    config, queries: torch.Tensor, mask: torch.Tensor | None, keys: torch.Tensor | None = None
):
    """transformers' own mask for its configured attention kernel (None when every key is real)."""
    if mask is None:
        return None
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(
        config=config, inputs_embeds=queries, attention_mask=mask, encoder_hidden_states=keys
    )


class CoAttentionLayer(nn.Module):
    """One stream's block: bidirectional self-attention, cross-attention to the other stream, FFN."""

    def __init__(self, config):
        super().__init__()
        from transformers.models.bert.modeling_bert import BertAttention, BertIntermediate, BertOutput

        self.config = config
        self.attention = BertAttention(config, is_causal=False)
        self.crossattention = BertAttention(config, is_cross_attention=True)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self,
        hidden: torch.Tensor,
        other: torch.Tensor,
        mask: torch.Tensor | None = None,
        other_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`hidden [B, L, H]` attends to itself (keys where `mask` is 1) and to `other [B, M, H]` (keys where
        `other_mask` is 1); masks are `[B, L]` / `[B, M]` of 0/1, None meaning all real."""
        self_mask = _attention_mask(self.config, hidden, mask)
        cross_mask = _attention_mask(self.config, hidden, other_mask, keys=other)
        attended, _ = self.attention(hidden, attention_mask=self_mask)
        attended, _ = self.crossattention(
            attended, encoder_hidden_states=other, encoder_attention_mask=cross_mask
        )
        return self.output(self.intermediate(attended), attended)


class _Pooler(nn.Module):
    """BERT's pooler: dense + tanh on the first token."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = nn.Tanh()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(tokens[:, 0]))


class FusionEncoder(nn.Module):
    """Projections from each tower's width, modality embeddings, N co-attention layer pairs and two poolers.

    `forward(text, image, text_mask, image_mask)` takes the towers' token features (`[B, L, text_width]`,
    `[B, N, image_width]`) and returns a `FusionOutput`. Padded text tokens (mask 0) are never attended to,
    by either stream.
    """

    def __init__(self, cfg: FusionConfig, text_width: int, image_width: int):
        super().__init__()
        self.cfg = cfg
        config = cfg.bert_config()
        self.text_proj = nn.Linear(text_width, cfg.hidden_size)
        self.image_proj = nn.Linear(image_width, cfg.hidden_size)
        self.modality_embeddings = nn.Embedding(cfg.num_modalities, cfg.hidden_size)
        self.text_layers = nn.ModuleList([CoAttentionLayer(config) for _ in range(cfg.num_layers)])
        self.image_layers = nn.ModuleList([CoAttentionLayer(config) for _ in range(cfg.num_layers)])
        self.text_pooler = _Pooler(cfg.hidden_size)
        self.image_pooler = _Pooler(cfg.hidden_size)
        self.grad_checkpointing = False
        self.apply(self.init_weights)

    def init_weights(self, module: nn.Module) -> None:
        """Initialize `module` as the fusion layers are; public so heads built on top (PTUnifier's) match."""
        # BERT's init, which METER applies to its fusion module: N(0, 0.02) weights, zero biases, unit norms.
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _modality(self, tokens: torch.Tensor, modality: int) -> torch.Tensor:
        ids = torch.full(tokens.shape[:2], modality, dtype=torch.long, device=tokens.device)
        return tokens + self.modality_embeddings(ids)

    def forward(
        self,
        text: torch.Tensor,
        image: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        image_modality: int = IMAGE,
    ) -> FusionOutput:
        if text.ndim != 3 or image.ndim != 3 or text.shape[0] != image.shape[0]:
            raise DataError(
                f"fusion expects text [B, L, D] and image [B, N, D] tokens of one batch, got "
                f"{tuple(text.shape)} and {tuple(image.shape)}"
            )
        x = self._modality(self.text_proj(text), TEXT)
        y = self._modality(self.image_proj(image), image_modality)
        for text_layer, image_layer in zip(self.text_layers, self.image_layers):
            if self.grad_checkpointing and self.training:
                x_next = torch.utils.checkpoint.checkpoint(
                    text_layer, x, y, text_mask, image_mask, use_reentrant=False
                )
                y = torch.utils.checkpoint.checkpoint(
                    image_layer, y, x, image_mask, text_mask, use_reentrant=False
                )
            else:
                x_next = text_layer(x, y, text_mask, image_mask)
                y = image_layer(y, x, image_mask, text_mask)  # the text stream of the previous layer
            x = x_next
        return FusionOutput(x, y, self.text_pooler(x), self.image_pooler(y))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
