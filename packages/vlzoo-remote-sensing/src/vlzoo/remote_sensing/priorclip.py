"""PriorCLIP (Pan et al., "PriorCLIP: Visual Prior Guided Vision-Language Model for Remote Sensing
Image-Text Retrieval", 2024; its closed-domain part first appeared as PIR, ACM MM 2023).

A frozen scene-classification CNN (the *prior encoder*) looks at the image; its pooled feature, mapped to
the joint width, steers the image tokens:

- closed domain (Swin-T + BERT, trained on RSICD/RSITMD): **Spatial-PAE** scores the first tokens of the
  image tower against the prior (the *belief*, a softmax over tokens), keeps the top ones, refines them
  with rounds of self-attention then prior-guided cross-attention, and adds the refined top token (through
  a head) to the global feature. **Temporal-PAE** refines the caption's tokens over several cycles of
  self-attention then cross-attention whose queries are a per-cycle mapping of the previous cycle's state.
- open domain (CLIP ViT-B/32 pretrained on large remote-sensing pairs, then fine-tuned): the prior token is
  prepended to the ViT's tokens after `ln_pre`, which are first re-weighted by their belief and rank.

Both settings add the cluster-based symmetric **Attribution loss** (:class:`AttributionLoss`, called
"affiliation loss" in the official code) 1:1 to CLIP's contrastive loss; it needs the scene class of each
image, `batch["class_id"]`.

Where the paper leaves a detail open, the official code (jaychempan/PIR, jaychempan/PriorCLIP) decides;
the places where vlzoo departs from it are said in the docstring of the piece concerned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import timm
import torch
import torch.nn.functional as F
from timm.models import checkpoint_seq
from torch import nn

from vlzoo.core import register_model
from vlzoo.core.data import build_transform
from vlzoo.core.errors import ConfigError, WeightsError
from vlzoo.core.losses import ClipLoss, DistributedLossBase
from vlzoo.core.models import DualEncoderFaces
from vlzoo.core.towers import (
    TextTower,
    TextTowerConfig,
    TokenizedText,
    VisionTower,
    VisionTowerConfig,
    is_structure_only,
    loads_pretrained,
)
from vlzoo.core.weights import load_state_dict
from vlzoo.remote_sensing.data.toyworld import rs_toyworld_band_stats
from vlzoo.remote_sensing.data.transforms import geo_transform

__all__ = [
    "AttributionLoss",
    "PriorCLIP",
    "PriorCLIPConfig",
    "PriorEncoder",
    "PriorEncoderConfig",
    "PriorViT",
    "SpatialPAE",
    "SpatialPAEConfig",
    "TemporalPAE",
    "TemporalPAEConfig",
    "belief_matrix",
    "class_centres",
]

SETTINGS = ("closed", "open")
RANK_WEIGHTS = ("rank", "sort_index")


# ------------------------------------------------------------------------------------------- configs


@dataclass
class PriorEncoderConfig:
    """The frozen scene-classification CNN whose pooled feature becomes the prior ("instruction") token.

    `head_dim=None` takes timm's pooled pre-logits features (ResNet-50: 2048, as PIR's `resnet50` without
    its `fc`); an int keeps timm's own head with that many outputs (e.g. `resnet50_clip`'s attention pool
    projecting to 512, the CLIP ModifiedResNet of the open-domain code). `checkpoint` is a local file of
    scene-classification weights (safetensors, or a torch file loaded with `weights_only=True`; PIR uses a
    ResNet-50 trained on AID); the classifier's own keys (`fc.*`) are ignored.
    """

    timm_model: str = "resnet50"
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    timm_pretrained: bool = False  # timm's own weights (ImageNet) when no scene-classification checkpoint
    checkpoint: str | None = None
    head_dim: int | None = None
    frozen: bool = True  # the paper's prior is fixed; False trains it jointly, as the open-domain code does


@dataclass
class SpatialPAEConfig:
    """Spatial-PAE. Closed domain: `num_scored` first tokens (global token first) are scored against the
    prior, the `keep` most believed are refined by `rounds` of self-attention then cross-attention.
    Open domain: only `rank_weights` applies (see :func:`belief_reweight`)."""

    num_scored: int | None = 50  # PIR scores Swin-T's global token + its 7x7 tokens; None = every token
    keep: int = 40
    rounds: int = 2
    heads: int = 8
    dropout: float = 0.2
    rank_weights: str = "rank"  # "rank" | "sort_index" (the official open-domain code, see belief_reweight)


@dataclass
class TemporalPAEConfig:
    """Temporal-PAE: `cycles` of self-attention over the caption's tokens then cross-attention from a
    per-cycle linear map of the previous cycle's state. `cycles=0` turns it off (the open domain)."""

    cycles: int = 3
    heads: int = 8
    dropout: float = 0.2


@dataclass
class PriorCLIPConfig:
    """PriorCLIP in one of its two settings, `"closed"` (Spatial-PAE top-k refinement, Temporal-PAE) or
    `"open"` (a CLIP ViT with the prior token and belief weighting).

    `separate_attribution_scale`: the closed-domain code learns its own temperature for the attribution
    loss (`temp2`, 0.07 like `temp1`); the open-domain code shares CLIP's.
    `per_sample_centres`: the attribution loss sums its denominator over the batch's samples, as both
    official codes do (one centre column per sample), so a class with n members in the batch counts n times;
    False contrasts with each distinct class centre once.
    """

    setting: str = "closed"
    embed_dim: int = 512
    vision: VisionTowerConfig = field(default_factory=VisionTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    prior: PriorEncoderConfig = field(default_factory=PriorEncoderConfig)
    spatial: SpatialPAEConfig = field(default_factory=SpatialPAEConfig)
    temporal: TemporalPAEConfig = field(default_factory=TemporalPAEConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = 100.0
    attribution_weight: float = 1.0  # the paper adds the attribution loss 1:1; 0 trains CLIP's loss only
    separate_attribution_scale: bool = False
    per_sample_centres: bool = True
    # A sigmoid contrastive loss (a recipe's `loss: {name: siglip}`) needs a learnable bias, e.g. -10.
    init_logit_bias: float | None = None

    toy_data: ClassVar[str] = "rs-toyworld"

    def build(self) -> PriorCLIP:
        return PriorCLIP(self)

    def transform(self, train: bool, albumentations: Any = None) -> Callable[[Any], torch.Tensor]:
        """The remote-sensing preprocessing (`geo_transform`): per-band normalization with the tower's
        mean/std, nodata set to the band mean, for RGB images and multispectral GeoTIFFs alike. Given
        `albumentations` augmentations, the core's pipeline runs them instead."""
        if albumentations is not None:
            return build_transform(self.vision, train, albumentations)
        return geo_transform(self.vision, train)


# ------------------------------------------------------------------------------------ prior encoder


class PriorEncoder(nn.Module):
    """timm CNN (frozen, kept in eval mode even when the model trains) + a trainable linear map to `out_dim`."""

    def __init__(self, cfg: PriorEncoderConfig, in_chans: int, out_dim: int):
        super().__init__()
        self.cfg = cfg
        self.backbone = timm.create_model(
            cfg.timm_model,
            pretrained=loads_pretrained(cfg.timm_pretrained),
            num_classes=cfg.head_dim or 0,
            in_chans=in_chans,
            **cfg.timm_kwargs,
        )
        if cfg.checkpoint and not is_structure_only():
            self._load_checkpoint(cfg.checkpoint)
        width = cfg.head_dim or self.backbone.num_features
        self.proj = nn.Linear(width, out_dim)
        if cfg.frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def _load_checkpoint(self, path: str) -> None:
        state = {k: v for k, v in load_state_dict(path).items() if not k.startswith("fc.")}
        if self.cfg.head_dim is None:
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
        where = f"prior checkpoint {path} does not fit timm {self.cfg.timm_model!r}"
        try:
            missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shapes that differ
            raise WeightsError(f"{where}: {str(err).splitlines()[-1].strip()}") from None
        missing = [k for k in missing if not k.startswith(("fc.", "head."))]
        if missing or unexpected:
            raise WeightsError(f"{where}: missing {missing[:5]}, unexpected {unexpected[:5]}")

    def train(self, mode: bool = True) -> PriorEncoder:
        super().train(mode)
        if self.cfg.frozen:  # BatchNorm statistics of the scene classifier must not drift
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, out_dim]` prior token of each image."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.frozen):
            features = self.backbone(images)
        return self.proj(features)


# -------------------------------------------------------------------------------------- PAE blocks


class PAEBlock(nn.Module):
    """Post-norm attention + feed-forward block of both PAEs (the official MHSA / CroSA).

    Without `query` it is self-attention. With `query` (`[B, Lq, D]`, Lq = L or 1) the tokens are keys and
    values and the attended result is added to them: `norm(tokens + attn(query, tokens, tokens))`. The
    official cross-attention feeds the prior expanded to every position as the query; all those queries
    being equal, one query `[B, 1, D]` broadcast over the tokens computes the same thing. The feed-forward
    is the official one: Linear(D, 2D), LayerNorm, GELU, Linear(2D, D).
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
        )
        self.drop2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self,
        tokens: torch.Tensor,
        query: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        query = tokens if query is None else query
        attended, _ = self.attn(query, tokens, tokens, key_padding_mask=key_padding_mask, need_weights=False)
        tokens = self.norm1(tokens + self.drop1(attended))
        return self.norm2(tokens + self.drop2(self.ffn(tokens)))


def belief_matrix(tokens: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """`[B, N]` softmax over the tokens `[B, N, D]` of their dot product with the prior `[B, D]`."""
    return torch.softmax(torch.einsum("bnd,bd->bn", tokens, prior), dim=-1)


def select_top_tokens(
    tokens: torch.Tensor, belief: torch.Tensor, keep: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `keep` tokens of highest belief, most believed first: `(tokens [B, keep, D], index [B, keep])`."""
    if not 0 < keep <= tokens.shape[1]:
        raise ConfigError(f"Spatial-PAE keeps {keep} tokens but the image tower gives {tokens.shape[1]}")
    index = belief.topk(keep, dim=1, sorted=True).indices
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])), index


class SpatialPAE(nn.Module):
    """Closed-domain Spatial-PAE (PIR's "vision instruction representation").

    `forward(global [B, D], tokens [B, N, D], prior [B, D])` → `global + head(refined top token)`.
    The refined state keeps the belief order, so its first token is the most believed one, the one the
    official code reads out.
    """

    def __init__(self, dim: int, cfg: SpatialPAEConfig):
        super().__init__()
        self.cfg = cfg
        self.self_attn = nn.ModuleList(PAEBlock(dim, cfg.heads, cfg.dropout) for _ in range(cfg.rounds))
        self.cross_attn = nn.ModuleList(PAEBlock(dim, cfg.heads, cfg.dropout) for _ in range(cfg.rounds))
        self.prior_maps = nn.ModuleList(nn.Linear(dim, dim) for _ in range(cfg.rounds))
        self.head = nn.Linear(dim, dim)

    def select(self, global_feat: torch.Tensor, tokens: torch.Tensor, prior: torch.Tensor):
        """Belief over the scored tokens and the kept ones: `(kept [B, k, D], belief [B, n], index [B, k])`."""
        candidates = torch.cat([global_feat.unsqueeze(1), tokens], dim=1)[:, : self.cfg.num_scored]
        belief = belief_matrix(candidates, prior)
        kept, index = select_top_tokens(candidates, belief, self.cfg.keep)
        return kept, belief, index

    def refine(self, kept: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        state = kept
        for self_attn, cross_attn, prior_map in zip(self.self_attn, self.cross_attn, self.prior_maps):
            state = cross_attn(self_attn(state), query=prior_map(prior).unsqueeze(1))
        return state

    def forward(self, global_feat: torch.Tensor, tokens: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        kept, _, _ = self.select(global_feat, tokens, prior)
        return global_feat + self.head(self.refine(kept, prior)[:, 0])


class TemporalPAE(nn.Module):
    """Temporal-PAE (PIR's "language cycle attention") over projected caption tokens `[B, L, D]`.

    Cycle t: `a = SA_t(s)`, then `s = CA_t(keys/values a, queries map_t(s))`, residual on `a`. Padding
    tokens are masked out of the keys (the official code attends to them; masking makes the result
    independent of how far a caption is padded).
    """

    def __init__(self, dim: int, cfg: TemporalPAEConfig):
        super().__init__()
        self.cfg = cfg
        self.self_attn = nn.ModuleList(PAEBlock(dim, cfg.heads, cfg.dropout) for _ in range(cfg.cycles))
        self.cross_attn = nn.ModuleList(PAEBlock(dim, cfg.heads, cfg.dropout) for _ in range(cfg.cycles))
        self.state_maps = nn.ModuleList(nn.Linear(dim, dim) for _ in range(cfg.cycles))
        self.head = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """Refined tokens `[B, L, D]`; `padding` `[B, L]` is True at padding positions."""
        state = tokens
        for self_attn, cross_attn, state_map in zip(self.self_attn, self.cross_attn, self.state_maps):
            attended = self_attn(state, key_padding_mask=padding)
            state = cross_attn(attended, query=state_map(state), key_padding_mask=padding)
        return state


# ---------------------------------------------------------------------------------- open-domain ViT


def belief_reweight(tokens: torch.Tensor, prior: torch.Tensor, rank_weights: str = "rank") -> torch.Tensor:
    """Open-domain Spatial-PAE on ViT tokens `[B, N, W]` after `ln_pre`: `normalize(x*b + x*w)`.

    `b` is the belief of each token. `w = 1/sqrt(r + 1)` with `"rank"`: `r` is the token's rank in the
    belief order (0 = most believed), what the paper describes. The official code takes `r` from the sort
    *indices* instead, so the weight at position i is that of whichever token ranks i-th (`"sort_index"`
    reproduces it, for checkpoints trained with it). The L2 normalization runs over the token axis
    (dim 1), as `F.normalize`'s default does in the official code.
    """
    if rank_weights not in RANK_WEIGHTS:
        raise ConfigError(f"spatial.rank_weights must be one of {RANK_WEIGHTS}, got {rank_weights!r}")
    belief = belief_matrix(tokens, prior)
    order = belief.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1) if rank_weights == "rank" else order
    weights = (rank + 1).to(tokens.dtype).rsqrt()
    return F.normalize(tokens * (belief + weights).unsqueeze(-1), dim=1)


class PriorViT(nn.Module):
    """A timm CLIP ViT (through core's `VisionTower`) whose tokens are belief-weighted after `ln_pre` and
    led by the prior token. The pooled output is read at the first position, the prior token's, as in the
    official code (its `'tok'` pooling after the prior was prepended)."""

    def __init__(self, cfg: VisionTowerConfig, embed_dim: int, rank_weights: str):
        super().__init__()
        self.tower = VisionTower(cfg, embed_dim)
        trunk = self.tower.trunk
        if not all(hasattr(trunk, a) for a in ("patch_embed", "_pos_embed", "norm_pre", "blocks")):
            raise ConfigError(
                f"open-domain PriorCLIP needs a timm VisionTransformer, got {cfg.timm_model!r} "
                f"({type(trunk).__name__})"
            )
        if cfg.head == "timm":
            raise ConfigError("open-domain PriorCLIP projects with a vlzoo head; vision.head='timm' won't do")
        self.width = trunk.embed_dim
        self.rank_weights = rank_weights

    def forward(self, images: torch.Tensor, prior_token: torch.Tensor) -> torch.Tensor:
        """`[B, embed_dim]` image features; `prior_token` is `[B, width]`."""
        self.tower.check_images(images)
        trunk = self.tower.trunk
        x = trunk.norm_pre(trunk.patch_drop(trunk._pos_embed(trunk.patch_embed(images))))
        x = belief_reweight(x, prior_token, self.rank_weights)
        x = torch.cat([prior_token.unsqueeze(1).to(x.dtype), x], dim=1)
        if trunk.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(trunk.blocks, x)
        else:
            x = trunk.blocks(x)
        return self.tower.head(trunk.forward_head(trunk.norm(x), pre_logits=True))


# --------------------------------------------------------------------------------- attribution loss


def class_centres(
    features: torch.Tensor, class_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean feature of each class present: `(centres [K, D], counts [K], inverse [B])`, class of row i =
    `inverse[i]`. The features are averaged as they come (normalized by the model), not re-normalized,
    as in the official code."""
    classes, inverse, counts = torch.unique(class_ids, return_inverse=True, return_counts=True)
    sums = features.new_zeros(len(classes), features.shape[1]).index_add(0, inverse, features)
    return sums / counts.unsqueeze(1).to(features.dtype), counts, inverse


class AttributionLoss(DistributedLossBase):
    """Cluster-based symmetric contrast of each sample with the class centres of the other modality.

    With `c^I_k`, `c^T_k` the mean image / text feature of class k in the batch and `y_i` the class of
    pair i, the loss (the paper's L_aff, as the official codes compute it) is

        L = 1/2 [ mean_i -log( e^{s f^I_i.c^T_{y_i}} / sum_j e^{s f^I_i.c^T_{y_j}} )
                + mean_i -log( e^{s f^T_i.c^I_{y_i}} / sum_j e^{s f^T_i.c^I_{y_j}} ) ]

    with j over the batch's samples (`per_sample_centres=True`: a class with n samples counts n times in
    the denominator, computed here once per class with a `log n` offset); `per_sample_centres=False`
    sums over the distinct classes instead. With one sample per class either is CLIP's InfoNCE. The
    text term contrasts each caption with the image centres, as the open-domain code does; PIR's
    closed-domain code transposes those logits (each image centre against the captions), which would not
    reduce to InfoNCE, so vlzoo uses the open-domain direction in both settings.

    Distributed: the features and class ids of every rank are gathered, so the centres are those of the
    global batch (the official code averages within each rank), and each rank takes its own rows
    (`local_loss`) or all of them, with the semantics of :mod:`vlzoo.core.losses.contrastive`.
    """

    output_key: ClassVar[str] = "attribution_loss"

    def __init__(
        self,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        per_sample_centres: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        group: object | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__(local_loss, gather_with_grad, rank, world_size, group, check_inputs)
        self.per_sample_centres = per_sample_centres

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        class_ids: torch.Tensor,
        logit_scale: torch.Tensor,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        scale = self.checked_inputs(image_features, text_features, logit_scale)
        batch = image_features.shape[0]
        if not torch.is_tensor(class_ids) or class_ids.shape != (batch,) or class_ids.is_floating_point():
            shape = tuple(class_ids.shape) if torch.is_tensor(class_ids) else type(class_ids).__name__
            raise ConfigError(f"class_ids must be an integer tensor of shape ({batch},), got {shape}")
        rank, world_size = self.resolve_world()
        all_images, all_texts, all_ids = image_features, text_features, class_ids
        if world_size > 1:
            all_images, all_texts = self.gather(image_features), self.gather(text_features)
            all_ids = self.gather(class_ids, with_grad=False)
        image_centres, counts, inverse = class_centres(all_images, all_ids)
        text_centres, _, _ = class_centres(all_texts, all_ids)
        rows_i, rows_t, targets = all_images, all_texts, inverse
        if world_size > 1 and self.local_loss:
            rows_i, rows_t = image_features, text_features
            targets = inverse[rank * batch : (rank + 1) * batch]
        log_counts = counts.to(image_features.dtype).log() if self.per_sample_centres else None
        loss = 0.5 * (
            _centre_cross_entropy((scale * rows_i) @ text_centres.T, targets, log_counts)
            + _centre_cross_entropy((scale * rows_t) @ image_centres.T, targets, log_counts)
        )
        return self.result(loss, output_dict)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, per_sample_centres={self.per_sample_centres}"


def _centre_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, log_counts: torch.Tensor | None
) -> torch.Tensor:
    # Summing e^{logit} over samples = summing e^{logit + log n_k} over classes.
    normalizer = torch.logsumexp(logits if log_counts is None else logits + log_counts, dim=1)
    return (normalizer - logits.gather(1, targets.unsqueeze(1)).squeeze(1)).mean()


# ------------------------------------------------------------------------------------------ model


class PriorCLIP(DualEncoderFaces, nn.Module):
    """Prior encoder, image and text encoders of either setting, CLIP + attribution losses.

    Faces: `encode_image`, `encode_text` (L2-normalized by default), `forward(images, text)` → features and
    temperature, `forward(batch)` → also `"loss"`, `"contrastive_loss"`, `"attribution_loss"`. The faces it
    shares with the core's `DualEncoder` (forward, `set_loss` replacing the contrastive part, locking,
    checkpointing) come from `DualEncoderFaces`.

    The contrastive loss is CLIP's (core `ClipLoss`, one positive per row, exact under DDP); PIR's code
    also counts other captions of the same image in the batch as positives, which only differs when a
    batch holds an image twice (`captions: each`).
    """

    loss_attribute: ClassVar[str] = "contrastive_loss"

    def __init__(self, cfg: PriorCLIPConfig):
        super().__init__()
        if cfg.setting not in SETTINGS:
            raise ConfigError(f"PriorCLIP setting must be one of {SETTINGS}, got {cfg.setting!r}")
        self.config = cfg
        closed = cfg.setting == "closed"
        if closed:
            self.visual = VisionTower(cfg.vision, cfg.embed_dim)
            self.spatial = SpatialPAE(cfg.embed_dim, cfg.spatial)
            prior_dim = cfg.embed_dim
        else:
            self.visual = PriorViT(cfg.vision, cfg.embed_dim, cfg.spatial.rank_weights)
            prior_dim = self.visual.width
        self.prior = PriorEncoder(cfg.prior, cfg.vision.in_chans, prior_dim)
        self.text = TextTower(cfg.text, cfg.embed_dim)
        self.temporal = TemporalPAE(cfg.embed_dim, cfg.temporal) if cfg.temporal.cycles > 0 else None
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        self.attribution_logit_scale = (
            nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
            if cfg.separate_attribution_scale
            else None
        )
        self.logit_bias = (
            nn.Parameter(torch.tensor(float(cfg.init_logit_bias)))
            if cfg.init_logit_bias is not None
            else None
        )
        # Exact under DDP: each rank takes its rows against the gathered batch, gradients flow back.
        self.contrastive_loss = ClipLoss(local_loss=True, gather_with_grad=True)
        self.attribution_loss = AttributionLoss(
            local_loss=True, gather_with_grad=True, per_sample_centres=cfg.per_sample_centres
        )

    # ---------------------------------------------------------------------------------- encoders
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        prior = self.prior(images)
        if self.config.setting == "closed":
            global_feat, tokens = self.visual(images, output_tokens=True)
            features = self.spatial(global_feat, tokens, prior)
        else:
            features = self.visual(images, prior)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: TokenizedText | torch.Tensor, normalize: bool = True) -> torch.Tensor:
        tokens, pooled, mask = self.text.forward_tokens(text)
        features = self.text.head(pooled)
        if self.temporal is not None:
            refined = self.temporal(self.text.head(tokens), padding=mask == 0)
            # read the refined state where the tower pools ([CLS] for BERT, end-of-text for CLIP)
            ids = text.input_ids if isinstance(text, TokenizedText) else text
            features = features + self.temporal.head(self.text.pool_tokens(refined, ids, mask))
        return F.normalize(features, dim=-1) if normalize else features

    def image_tower(self) -> VisionTower:
        return self.visual if isinstance(self.visual, VisionTower) else self.visual.tower

    def attribution_scale(self) -> torch.Tensor:
        if self.attribution_logit_scale is None:
            return self.scale()
        return self.attribution_logit_scale.exp().clamp(max=self.config.max_logit_scale)

    # ----------------------------------------------------------------------------------- forward
    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        weight = self.config.attribution_weight
        class_ids = self._class_ids(batch) if weight else None
        out = self(batch["image"], batch["text"])
        image_features, text_features = out["image_features"], out["text_features"]
        contrastive = self.contrastive_loss_of(out)
        out["contrastive_loss"] = contrastive
        out["loss"] = contrastive
        if class_ids is not None:
            attribution = self.attribution_loss(
                image_features, text_features, class_ids.to(image_features.device), self.attribution_scale()
            )
            out["attribution_loss"] = attribution
            out["loss"] = contrastive + weight * attribution
        return out

    @staticmethod
    def _class_ids(batch: Mapping[str, Any]) -> torch.Tensor:
        class_ids = batch.get("class_id")
        if class_ids is None:
            raise ConfigError(
                "PriorCLIP's attribution loss needs batch['class_id'], the scene class of each image, but the "
                f"batch has only {sorted(batch)}: train on data that carries classes (data: rs-toyworld, or an "
                "RSICD/RSITMD Karpathy JSON read by vlzoo-remote-sensing, whose file names give the class "
                "before the first '_'), or set model_overrides: {attribution_weight: 0}"
            )
        if not torch.is_tensor(class_ids):
            class_ids = torch.as_tensor(class_ids)
        return class_ids

    # ------------------------------------------------------------------------------ training aids
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"logit_scale", "attribution_logit_scale", "logit_bias"}


# -------------------------------------------------------------------------------------- registry


def _tiny_prior() -> PriorEncoderConfig:
    # A narrow ResNet-18 (deep 3x3 stem of 4-8 channels), random and frozen: a fixed random visual prior.
    return PriorEncoderConfig(
        timm_model="resnet18",
        timm_kwargs={"channels": [8, 16, 32, 64], "stem_type": "deep", "stem_width": 4},
    )


def _rs_toyworld_vision(timm_model: str, **timm_kwargs: Any) -> VisionTowerConfig:
    # rs-toyworld's four bands (B02, B03, B04, B08) at 64 px, normalized with its per-band statistics.
    stats = rs_toyworld_band_stats(4)
    return VisionTowerConfig(
        timm_model=timm_model,
        timm_kwargs=timm_kwargs,
        image_size=64,
        in_chans=4,
        mean=stats.mean,
        std=stats.std,
    )


def _tiny_text() -> TextTowerConfig:
    # CLIP's text transformer builds offline from its config alone (BPE vocabulary shipped with vlzoo);
    # a BERT would need a tokenizer and config saved somewhere first.
    return TextTowerConfig(kind="clip", context_length=24, width=64, heads=4, layers=2)


@register_model("priorclip-closed-swin-t")
def priorclip_closed_swin_t() -> PriorCLIPConfig:
    """Closed domain, as PIR's RSICD/RSITMD recipe: Swin-T (ImageNet-22k) + BERT-base (47 tokens), joint
    width 512, ResNet-50 prior (timm's ImageNet weights unless `prior.checkpoint` names the AID-trained
    one), top 40 of 50 tokens, 2 rounds, 3 cycles, 8 heads, dropout 0.2, temperatures 0.07."""
    return PriorCLIPConfig(
        setting="closed",
        embed_dim=512,
        vision=VisionTowerConfig(
            timm_model="swin_tiny_patch4_window7_224.ms_in22k", image_size=224, timm_pretrained=True
        ),
        text=TextTowerConfig(kind="hf", hf_model="bert-base-uncased", context_length=47, pool="cls"),
        prior=PriorEncoderConfig(timm_model="resnet50", timm_pretrained=True),
        spatial=SpatialPAEConfig(num_scored=50, keep=40, rounds=2, heads=8, dropout=0.2),
        temporal=TemporalPAEConfig(cycles=3, heads=8, dropout=0.2),
        separate_attribution_scale=True,
    )


@register_model("priorclip-open-vit-b-32")
def priorclip_open_vit_b_32() -> PriorCLIPConfig:
    """Open domain, as the PriorCLIP code's `PIR` model: CLIP ViT-B/32 (width 768, 12 layers) and CLIP
    text transformer (12 x 512, 77 tokens), joint width 512, the prior token prepended after `ln_pre`.

    The official code's prior is a CLIP ModifiedResNet-50 projecting to 512, trained with the rest; here
    it is the paper's frozen scene-classification ResNet-50 (`prior.timm_model: resnet50_clip`,
    `prior.head_dim: 512`, `prior.frozen: false` give the code's).
    """
    return PriorCLIPConfig(
        setting="open",
        embed_dim=512,
        vision=VisionTowerConfig(timm_model="vit_base_patch32_clip_224", image_size=224),
        text=TextTowerConfig(kind="clip", width=512, heads=8, layers=12, context_length=77),
        prior=PriorEncoderConfig(timm_model="resnet50", timm_pretrained=True),
        temporal=TemporalPAEConfig(cycles=0),
    )


@register_model("priorclip-closed-tiny")
def priorclip_closed_tiny() -> PriorCLIPConfig:
    """The closed-domain architecture for tests and CPUs, on rs-toyworld's 4 bands at 64 px: a 2-stage Swin
    (16 tokens + the global one, top 8 kept) and a 2-layer CLIP text transformer, random init, 4 heads and
    no dropout (which only slows a run of a few hundred steps). The prior and the image tower take the
    same 4 bands (timm's `in_chans`)."""
    return PriorCLIPConfig(
        setting="closed",
        embed_dim=64,
        vision=_rs_toyworld_vision(
            "swin_tiny_patch4_window7_224",
            patch_size=8,
            embed_dim=32,
            depths=[1, 1],  # lists, as they come back from a saved model's JSON config
            num_heads=[2, 4],
            window_size=4,
        ),
        text=_tiny_text(),
        prior=_tiny_prior(),
        spatial=SpatialPAEConfig(num_scored=None, keep=8, rounds=2, heads=4, dropout=0.0),
        temporal=TemporalPAEConfig(cycles=3, heads=4, dropout=0.0),
        separate_attribution_scale=True,
    )


@register_model("priorclip-open-tiny")
def priorclip_open_tiny() -> PriorCLIPConfig:
    """The open-domain architecture on rs-toyworld's 4 bands at 64 px: a 2-layer CLIP ViT (patch 8, width
    64) with the prior token, a 2-layer CLIP text transformer, random init."""
    return PriorCLIPConfig(
        setting="open",
        embed_dim=64,
        vision=_rs_toyworld_vision(
            "vit_base_patch32_clip_224", patch_size=8, embed_dim=64, depth=2, num_heads=4
        ),
        text=_tiny_text(),
        prior=_tiny_prior(),
        temporal=TemporalPAEConfig(cycles=0),
    )
