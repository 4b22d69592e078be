"""GS-Former, GeoX's Generator-and-Sampler Transformer: the core's Q-Former with queries a vote generator
makes from the diagram and Gumbel-softmax samplers that drop uninformative patches from the cross-attention.

Mapped from the official `models/gsformer.py` and `models/builder.py` (Alpha-Innovator/GeoX):
- `VoteGenerator`: a 2-layer `nn.TransformerEncoder` over the patch features, a softmax vote over patches
  (`Linear(dim, 1)`), the vote-weighted sum projected (`Linear`) and repeated for every query. The queries
  are `learnable_query + VoteGenerator(image)`.
- `GumbelSampler`: `Linear(dim, 2)` (Kaiming-normal weight, zero bias), `gumbel_softmax(tau=0.1, hard=True)`,
  channel 1 = keep. Binary in the forward pass, the straight-through softmax in the backward pass.
- Samplers at layers `sampler_layers` (official [3, 6, 9] of 12), each on the image features; the
  cross-attention mask is multiplied by each in turn (cumulative) from that layer on.
- Pre-training loss `itc + itm + lm` (equal weights) `+ sparsity_weight * mean_l(mean |mask_l|)`; the
  official `loss_weight` defaults to 1e-2 in `gsformer_pretrain.py`.
Two departures:
- In eval mode a sampler keeps the patches whose keep-logit wins (the Gumbel noise's mode), so evaluation
  is deterministic; the official sampler draws noise in eval too.
- The samplers never drop the first `keep_first` encoder tokens (the diagram's [CLS]). The official code
  hands the sampler's 0/1 mask to the cross-attention as an additive bias (its `invert_attention_mask` is
  commented out), so a dropped patch still takes part and dropping everything only removes a +1 bias.
  Here a dropped patch is really masked out (LAVIS's -10000), and softmax's shift invariance makes a
  diagram with every patch dropped attend exactly as one with every patch kept: ITC/ITM/LM can't tell the
  two apart, the sparsity term alone decides, and the samplers collapse to dropping everything (measured
  on geo-toyworld's diagrams: 40% kept → 3% in 100 alignment steps; 0% in eval after the four stages).
  With [CLS] always kept, dropping every patch leaves the queries the [CLS] summary only, which the
  pre-training losses pay for (same run: 41% kept → 46% after 25 steps, where it had fallen to 30%).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core.errors import ConfigError
from vlzoo.core.models import QFormer, QFormerConfig

__all__ = ["GSFormer", "GSFormerConfig", "GumbelSampler", "VoteGenerator"]


@dataclass
class GSFormerConfig:
    qformer: QFormerConfig = field(
        default_factory=lambda: QFormerConfig(
            num_query_tokens=8, itc_label_smoothing=0.1, lm_label_smoothing=0.1, vocab_size=30523
        )
    )
    vote_generator: bool = True  # False (with no samplers): a plain Q-Former, the ablation
    vote_layers: int = 2
    vote_heads: int = 8
    vote_ffn: int = 2048  # nn.TransformerEncoderLayer's default, which the official code keeps
    sampler_layers: tuple[int, ...] = (3, 6, 9)
    sampler_tau: float = 0.1
    sparsity_weight: float = 1e-2
    keep_first: int = 1  # encoder tokens no sampler drops: the diagram's [CLS] (see the module docstring)


class VoteGenerator(nn.Module):
    """Image features `[B, N, W]` → one query vector per image, repeated `n_query` times `[B, Q, H]`."""

    def __init__(self, width: int, hidden: int, n_query: int, layers: int, heads: int, ffn: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=width, nhead=heads, dim_feedforward=ffn, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.vote = nn.Linear(width, 1)
        self.proj = nn.Linear(width, hidden)
        self.n_query = n_query

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(image_embeds)
        weights = self.vote(tokens).softmax(dim=1)  # [B, N, 1]: each patch's vote
        pooled = (tokens * weights).sum(dim=1, keepdim=True)
        return self.proj(pooled).expand(-1, self.n_query, -1)


class GumbelSampler(nn.Module):
    """Per-patch keep (1) / drop (0) decision `[B, N]` from the patch features, hard Gumbel-softmax."""

    def __init__(self, width: int, tau: float):
        super().__init__()
        self.logits = nn.Linear(width, 2)
        nn.init.kaiming_normal_(self.logits.weight)
        nn.init.zeros_(self.logits.bias)
        self.tau = tau

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        logits = self.logits(image_embeds)
        if self.training:
            return F.gumbel_softmax(logits, tau=self.tau, hard=True, dim=-1)[..., 1]
        return (logits[..., 1] > logits[..., 0]).to(logits.dtype)


class GSFormer(QFormer):
    def __init__(self, cfg: GSFormerConfig):
        q = cfg.qformer
        super().__init__(q)
        bad = [i for i in cfg.sampler_layers if not 0 <= i < q.num_layers]
        if bad:
            raise ConfigError(
                f"gsformer.sampler_layers {bad} are not layers of a {q.num_layers}-layer Q-Former"
            )
        last_cross = max(i for i in range(q.num_layers) if i % q.cross_attention_freq == 0)
        idle = [i for i in cfg.sampler_layers if i > last_cross]
        if idle:
            raise ConfigError(
                f"gsformer.sampler_layers {idle} come after the last cross-attention layer ({last_cross}): "
                "their masks would mask nothing"
            )
        self.gs_cfg = cfg
        self.vote_generator = (
            VoteGenerator(
                q.encoder_width,
                q.hidden_size,
                q.num_query_tokens,
                cfg.vote_layers,
                cfg.vote_heads,
                cfg.vote_ffn,
            )
            if cfg.vote_generator
            else None
        )
        self.samplers = nn.ModuleDict(
            {str(i): GumbelSampler(q.encoder_width, cfg.sampler_tau) for i in cfg.sampler_layers}
        )

    def queries(self, image_embeds: torch.Tensor) -> torch.Tensor:
        learnable = super().queries(image_embeds)
        if self.vote_generator is None:
            return learnable
        return learnable + self.vote_generator(image_embeds)

    def patch_mask(self, layer: int, image_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if str(layer) not in self.samplers:
            return mask
        keep = self.samplers[str(layer)](image_embeds)
        first = self.gs_cfg.keep_first
        if first:
            keep = torch.cat([torch.ones_like(keep[:, :first]), keep[:, first:]], dim=1)
        return keep * mask

    def query_path_parameters(self) -> list[nn.Parameter]:
        """The parameters that shape the query states (what instruction tuning can train): everything but the
        text side (embeddings, text feed-forwards) and the pre-training heads (ITC projections, ITM, LM)."""
        text_side = re.compile(
            r"^(embeddings|text_proj|vision_proj|itm_head|lm_head|temp)\b|\.layer\.\d+\.(intermediate|output)\."
        )
        return [p for name, p in self.named_parameters() if not text_side.search(name)]

    def pretraining_losses(
        self,
        image_embeds: torch.Tensor,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor,
        *,
        bos_token_id: int,
    ) -> dict[str, torch.Tensor]:
        """`{"loss", "itc", "itm", "lm", "sparsity", "kept"}`: the official total, each term, and the fraction of
        patches the last sampler kept."""
        out = self.stage1_losses(image_embeds, text_ids, text_mask, bos_token_id=bos_token_id)
        masks = list(out["patch_masks"].values())
        loss = out["itc"] + out["itm"] + out["lm"]
        terms = {"itc": out["itc"], "itm": out["itm"], "lm": out["lm"]}
        if masks:
            sparsity = torch.stack([m.abs().mean() for m in masks]).mean()
            loss = loss + self.gs_cfg.sparsity_weight * sparsity
            terms.update(sparsity=sparsity.detach(), kept=masks[-1].detach().mean())
        return {"loss": loss, **terms}
