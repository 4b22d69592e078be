"""A Q-Former bridge (BLIP-2): learnable queries read image features through cross-attention, inside a BERT
whose self-attention they share with text; trained with BLIP-2's stage-1 objectives (ITC, ITM, image-grounded LM).

The BERT is transformers' `Blip2QFormerModel` (BLIP-2's BertLayer: cross-attention every
`cross_attention_freq` layers, applied to the query slots only, separate feed-forwards for queries and text),
with `Blip2TextEmbeddings` for the text. This module runs its layers itself so that a subclass can change,
per layer, which image patches the queries may attend to, and which queries there are:

- `queries(image_embeds)`: the query embeddings `[B, Q, H]` (default: the learnable ones);
- `patch_mask(layer, image_embeds, mask)`: the cross-attention mask `[B, N]` (1 = attend) used from `layer`
  on; return `mask` unchanged to keep it (the default). A mask that is a differentiable function of a
  sampler (GeoX's Gumbel samplers) passes gradients through the additive attention mask, as in LAVIS.

>>> qformer = QFormer(QFormerConfig(hidden_size=64, num_layers=2, num_heads=4, encoder_width=32))
>>> losses = qformer.stage1_losses(image_embeds, text_ids, text_mask)   # {"itc", "itm", "lm", ...}

Losses follow LAVIS `Blip2Qformer.forward` (and GeoX's `gsformer_pretrain.py`, which copies it): ITC between
the best-matching query and the text [CLS] (`max` over queries, learnable temperature), ITM on hard
negatives drawn from the ITC similarities, image-grounded LM with a `[DEC]` first token where text sees all
queries and earlier text and queries see only queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core.distributed import all_gather_features, get_rank
from vlzoo.core.errors import DataError

__all__ = ["QFormer", "QFormerConfig", "QFormerOutput"]

# LAVIS's extended attention masks use -10000, not -inf: a masked slot keeps a finite, differentiable score,
# which is what lets a sampler's mask receive gradients, and a fully masked row never turns into NaN.
MASKED = -10000.0


@dataclass
class QFormerConfig:
    """BERT-base sizes by default (BLIP-2); `encoder_width` is the image features' width."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_freq: int = 2
    encoder_width: int = 768
    num_query_tokens: int = 32
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    embed_dim: int = 256  # ITC projection
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    temperature_init: float = 0.07
    itc_label_smoothing: float = 0.0  # GeoX: 0.1
    lm_label_smoothing: float = 0.0  # LAVIS and GeoX: 0.1
    ln_vision: bool = True  # BLIP-2 normalises the frozen encoder's features before the Q-Former
    extra: dict = field(default_factory=dict)  # other Blip2QFormerConfig fields


@dataclass
class QFormerOutput:
    last_hidden_state: torch.Tensor  # [B, Q + L, H]: queries first, then text
    query_length: int
    patch_masks: dict[int, torch.Tensor]  # layer -> the cross-attention mask a subclass set there
    image_mask: torch.Tensor | None  # the mask in force at the last layer

    @property
    def query_states(self) -> torch.Tensor:
        return self.last_hidden_state[:, : self.query_length]


class LMHead(nn.Module):
    """BERT's prediction head (transform + LayerNorm + decoder to the vocabulary)."""

    def __init__(self, hidden: int, vocab: int, eps: float):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=eps))
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class QFormer(nn.Module):
    def __init__(self, cfg: QFormerConfig):
        super().__init__()
        from transformers import Blip2QFormerConfig
        from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerModel, Blip2TextEmbeddings

        self.cfg = cfg
        config = Blip2QFormerConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            hidden_dropout_prob=cfg.hidden_dropout,
            attention_probs_dropout_prob=cfg.attention_dropout,
            max_position_embeddings=cfg.max_position_embeddings,
            initializer_range=cfg.initializer_range,
            layer_norm_eps=cfg.layer_norm_eps,
            pad_token_id=cfg.pad_token_id,
            cross_attention_frequency=cfg.cross_attention_freq,
            encoder_hidden_size=cfg.encoder_width,
            use_qformer_text_input=True,
            **cfg.extra,
        )
        config._attn_implementation = "eager"  # additive float masks, as the per-layer patch masks need
        self.bert = Blip2QFormerModel(config)
        self.embeddings = Blip2TextEmbeddings(config)
        self.query_tokens = nn.Parameter(
            torch.randn(1, cfg.num_query_tokens, cfg.hidden_size) * cfg.initializer_range
        )
        self.ln_vision = nn.LayerNorm(cfg.encoder_width) if cfg.ln_vision else nn.Identity()
        self.vision_proj = nn.Linear(cfg.hidden_size, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.hidden_size, cfg.embed_dim)
        self.itm_head = nn.Linear(cfg.hidden_size, 2)
        self.lm_head = LMHead(cfg.hidden_size, cfg.vocab_size, cfg.layer_norm_eps)
        self.temp = nn.Parameter(torch.tensor(cfg.temperature_init))

    @property
    def layers(self) -> nn.ModuleList:
        return self.bert.encoder.layer

    # --------------------------------------------------------------------------- subclass hooks
    def queries(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """The query embeddings `[B, Q, H]` for these image features: the learnable queries."""
        return self.query_tokens.expand(image_embeds.shape[0], -1, -1)

    def patch_mask(self, layer: int, image_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The cross-attention mask `[B, N]` from `layer` on (1 = the queries attend to that patch)."""
        return mask

    # ---------------------------------------------------------------------------------- encoding
    def encode(
        self,
        image_embeds: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        *,
        mode: str = "bidirectional",
        image_mask: torch.Tensor | None = None,
        patch_masks: dict[int, torch.Tensor] | None = None,
    ) -> QFormerOutput:
        """Run the Q-Former on queries (from `image_embeds`, already `ln_vision`-normalised by `image_features`)
        and/or text.

        `mode`: `"bidirectional"` (every slot sees every slot: query-only, text-only and ITM passes) or
        `"causal"` (image-grounded LM: queries see queries, text sees the queries and earlier text).
        `patch_masks`: reuse the per-layer masks of an earlier pass (BLIP-2's LM pass reuses the query pass).
        """
        if mode not in ("bidirectional", "causal"):
            raise DataError(f"Q-Former mode must be 'bidirectional' or 'causal', got {mode!r}")
        parts, n_query = [], 0
        if image_embeds is not None:
            query = self.queries(image_embeds)
            n_query = query.shape[1]
            parts.append(query)
        text_len = 0
        if text_ids is not None:
            parts.append(self.embeddings(input_ids=text_ids))
            text_len = text_ids.shape[1]
        if not parts:
            raise DataError("the Q-Former needs image features, text or both")
        hidden = self.bert.dropout(self.bert.layernorm(torch.cat(parts, dim=1)))
        batch, device = hidden.shape[0], hidden.device
        if text_ids is not None and text_mask is None:
            text_mask = (text_ids != self.cfg.pad_token_id).long()
        self_mask = self._self_attention_mask(batch, n_query, text_mask, text_len, mode, device, hidden.dtype)
        if image_embeds is not None and image_mask is None:
            image_mask = torch.ones(image_embeds.shape[:2], device=device, dtype=hidden.dtype)
        set_here: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            cross = None
            if image_embeds is not None:
                if patch_masks is None:
                    new = self.patch_mask(i, image_embeds, image_mask)
                else:
                    new = patch_masks.get(i, image_mask)
                if new is not image_mask:
                    set_here[i] = image_mask = new
                cross = ((1.0 - image_mask) * MASKED)[:, None, None, :].to(hidden.dtype)
            hidden = layer(
                hidden,
                self_mask,
                image_embeds,
                encoder_attention_mask=cross,
                query_length=n_query,
            )
        return QFormerOutput(hidden, n_query, set_here, image_mask)

    @staticmethod
    def _self_attention_mask(batch, n_query, text_mask, text_len, mode, device, dtype) -> torch.Tensor:
        size = n_query + text_len
        keys = torch.ones(batch, size, device=device, dtype=torch.bool)
        if text_len:
            keys[:, n_query:] = text_mask.bool()
        allowed = keys[:, None, :].expand(batch, size, size).clone()
        if mode == "causal" and text_len:
            causal = torch.ones(size, size, device=device, dtype=torch.bool)
            causal[:, n_query:] = torch.tril(
                torch.ones(size, text_len, device=device, dtype=torch.bool), -n_query
            )
            causal[:n_query, n_query:] = False  # queries never see the text they help generate
            allowed &= causal
        return ((~allowed).to(dtype) * MASKED)[:, None]

    # --------------------------------------------------------------------------------- features
    def image_features(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's patch features as the Q-Former reads them (`ln_vision`)."""
        return self.ln_vision(image_embeds)

    def query_output(self, image_embeds: torch.Tensor) -> QFormerOutput:
        """The queries after reading the image: `.query_states` `[B, Q, H]` (what a projector feeds an LLM)."""
        return self.encode(self.image_features(image_embeds))

    def text_embedding(self, text_ids: torch.Tensor, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, E]` normalised ITC embedding of the text's first ([CLS]) token."""
        out = self.encode(text_ids=text_ids, text_mask=text_mask)
        return F.normalize(self.text_proj(out.last_hidden_state[:, 0]), dim=-1)

    # ----------------------------------------------------------------------------------- losses
    def stage1_losses(
        self,
        image_embeds: torch.Tensor,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        *,
        bos_token_id: int,
    ) -> dict[str, torch.Tensor]:
        """BLIP-2 stage 1 on a batch of (image features `[B, N, W]`, text ids `[B, L]` starting with [CLS]):
        `{"itc", "itm", "lm"}` plus `"sim_i2t"` (`[B, B·world]`) and the query pass's `"patch_masks"` (dict)."""
        if image_embeds.shape[0] < 2:
            raise DataError(
                "ITC and ITM need at least 2 image-text pairs per batch (negatives come from the batch)"
            )
        if text_mask is None:
            text_mask = (text_ids != self.cfg.pad_token_id).long()
        images = self.image_features(image_embeds)
        query = self.encode(images)
        image_feats = F.normalize(self.vision_proj(query.query_states), dim=-1)  # [B, Q, E]
        text = self.encode(text_ids=text_ids, text_mask=text_mask)
        text_feat = F.normalize(self.text_proj(text.last_hidden_state[:, 0]), dim=-1)  # [B, E]

        # ITC: the best-matching query against the text, in both directions, over every rank's batch.
        image_feats_all = all_gather_features(image_feats, with_grad=False)
        text_feat_all = all_gather_features(text_feat, with_grad=False)
        sim_i2t = torch.einsum("bqe,te->btq", image_feats, text_feat_all).amax(-1) / self.temp
        sim_t2i = torch.einsum("te,bqe->tbq", text_feat, image_feats_all).amax(-1) / self.temp
        batch = image_embeds.shape[0]
        targets = get_rank() * batch + torch.arange(batch, device=images.device)
        smoothing = self.cfg.itc_label_smoothing
        itc = (
            F.cross_entropy(sim_i2t, targets, label_smoothing=smoothing)
            + F.cross_entropy(sim_t2i, targets, label_smoothing=smoothing)
        ) / 2

        itm = self._itm_loss(images, text_ids, text_mask, sim_i2t, sim_t2i, targets)
        lm = self._lm_loss(images, text_ids, text_mask, query.patch_masks, bos_token_id)
        return {"itc": itc, "itm": itm, "lm": lm, "sim_i2t": sim_i2t, "patch_masks": query.patch_masks}

    def itm_logits(
        self, images: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        """`[B, 2]` (no match, match) for pairs of normalised image features and texts: the ITM head on the
        mean of its outputs over the query slots."""
        out = self.encode(images, text_ids, text_mask)
        return self.itm_head(out.query_states).mean(dim=1)

    def _itm_loss(self, images, text_ids, text_mask, sim_i2t, sim_t2i, targets) -> torch.Tensor:
        """One hard negative text per image and one hard negative image per text, drawn in proportion to the
        softmaxed ITC similarity (own pair excluded), as LAVIS does (local batch)."""
        batch = images.shape[0]
        local = targets - targets[0]
        with torch.no_grad():
            own = torch.zeros(batch, batch, dtype=torch.bool, device=images.device)
            own[local, local] = True
            w_t2i = F.softmax(sim_t2i[:, targets[0] : targets[0] + batch].float(), dim=1).masked_fill(own, 0)
            w_i2t = F.softmax(sim_i2t[:, targets[0] : targets[0] + batch].float(), dim=1).masked_fill(own, 0)
            neg_image = torch.multinomial(w_t2i + 1e-12 * ~own, 1).squeeze(1)
            neg_text = torch.multinomial(w_i2t + 1e-12 * ~own, 1).squeeze(1)
        all_text = torch.cat([text_ids, text_ids, text_ids[neg_text]])
        all_mask = torch.cat([text_mask, text_mask, text_mask[neg_text]])
        all_images = torch.cat([images, images[neg_image], images])
        logits = self.itm_logits(all_images, all_text, all_mask)
        labels = torch.cat([torch.ones(batch), torch.zeros(2 * batch)]).long().to(images.device)
        return F.cross_entropy(logits, labels)

    def _lm_loss(self, images, text_ids, text_mask, patch_masks, bos_token_id) -> torch.Tensor:
        decoder_ids = text_ids.clone()
        decoder_ids[:, 0] = bos_token_id
        labels = decoder_ids.masked_fill(text_mask == 0, -100)
        out = self.encode(images, decoder_ids, text_mask, mode="causal", patch_masks=patch_masks)
        scores = self.lm_head(out.last_hidden_state[:, out.query_length :])
        shifted, targets = scores[:, :-1], labels[:, 1:]
        return F.cross_entropy(
            shifted.reshape(-1, shifted.shape[-1]),
            targets.reshape(-1),
            ignore_index=-100,
            label_smoothing=self.cfg.lm_label_smoothing,
        )
