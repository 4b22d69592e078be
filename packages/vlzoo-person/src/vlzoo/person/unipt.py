"""UniPT (Shao et al., ICCV 2023, "Unified Pre-training with Pseudo Texts for Text-To-Image Person
Re-identification"): a ViT + BERT dual encoder pretrained on pseudo-captioned pedestrians.

The pseudo captions come from the divide-conquer-combine generator (`vlzoo.person.pseudo_text`). The
pretraining, as the official code (ZhiyinShao-H/UniPT, a ViLT fork) computes it:
- **contrast** (`compute_cl`): the text feature is the max over tokens of a linear map (768 → 768) of BERT's
  tokens, the image feature the max over tokens of a linear map of the ViT's; both L2-normalized (eps 1e-12),
  similarity `v @ t.T` with **no temperature** (no logit scale at all), cross-entropy both ways, averaged;
- **masked language modelling** on the caption (BERT's 15 %, 80/10/10 rule), from the text tower's tokens;
- **masked-image token regression** (CAE-style, added to the contrast loss in the code): half the patches
  are dropped (MAE's random masking), the ViT encodes the visible ones with `[CLS]`, a regressor of
  cross-attention blocks predicts the masked tokens from learned mask tokens (fixed 2-D sin-cos
  positions), and both outputs are mapped by Linear(768 → 512) + LayerNorm to a **frozen CLIP**'s token
  space; the target is that CLIP's tokens of the whole image (no gradient), MSE on the masked and on the
  visible patches.
Images are H×W 384×128 (24 × 8 patches of 16), captions up to 100 tokens (the code's `max_text_len`).

Choices where the paper and code leave room (each a deliberate line here):
- the token max ignores padded text positions (the code maxes over the whole padded sequence, so a
  caption's feature would depend on the batch's padding);
- the CLIP target is taken as the code's modified CLIP computes it (every token through the blocks, then the
  projection, no `ln_post`), but aligned patch to patch: the code gathers patch index `i` from CLIP's
  sequence whose index 0 is `[CLS]`, i.e. one token off; here patch `i` is compared with CLIP's token `i + 1`;
- the MLM head is BERT's prediction head with its own decoder weights (not tied to the word embeddings),
  so the weights save as safetensors without shared storage;
- the image tower starts from an ImageNet ViT-B/16 (the code's checkpoint path is not released), the
  regressor has 8 blocks of 16 heads (`decoder_depth`, as the code).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core import register_model
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.losses import ClipLoss
from vlzoo.core.towers import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    HFTokenizer,
    TokenizedText,
    VisionTower,
    VisionTowerConfig,
    build_hf_encoder,
)
from vlzoo.person.data import pedestrian_transform
from vlzoo.person.tiny_text import tiny_bert_dir

__all__ = [
    "IGNORE_INDEX",
    "MLMHead",
    "RegressorBlock",
    "UniPT",
    "UniPTConfig",
    "mask_tokens",
    "masked_max",
    "random_masking",
    "sincos_pos_embed_2d",
    "unipt_contrastive_loss",
]

IGNORE_INDEX = -100


@dataclass
class UniPTConfig:
    """Towers, heads and pretraining objectives of UniPT (the official code's values)."""

    toy_data: ClassVar[str] = "person-toyworld"

    vision_model: str = "vit_base_patch16_224"  # timm name; built at `image_size`
    vision_pretrained: bool = False
    vision_kwargs: dict[str, Any] = field(default_factory=dict)
    image_size: tuple[int, int] = (384, 128)  # H, W
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    text_model: str = "bert-base-uncased"
    text_pretrained: bool = False
    context_length: int = 100
    embed_dim: int = 768  # img_proj / txt_proj width
    mlm_probability: float = 0.15
    mask_ratio: float = 0.5
    regressor_depth: int = 8
    regressor_heads: int = 16
    clip_model: str = "vit_base_patch16_clip_224.openai"  # the frozen teacher, timm name
    clip_pretrained: bool = False
    clip_kwargs: dict[str, Any] = field(default_factory=dict)
    clip_dim: int = 512
    cl_weight: float = 1.0
    mlm_weight: float = 1.0
    mim_weight: float = 1.0

    def build(self) -> UniPT:
        return UniPT(self)

    def tokenizer(self) -> HFTokenizer:
        return HFTokenizer(self.text_model, self.context_length)

    def transform(self, train: bool, albumentations: Any | None = None):
        if albumentations is not None:
            raise ConfigError("UniPT's pedestrian transform takes no albumentations pipeline")
        return pedestrian_transform(self.image_size, self.mean, self.std, train)


# ------------------------------------------------------------------------------- the paper's pieces


def masked_max(tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`[B, L, D]` → `[B, D]`: the max over the tokens whose `mask` is 1 (all when None)."""
    if mask is None:
        return tokens.max(dim=1).values
    fill = torch.finfo(tokens.dtype).min
    return tokens.masked_fill(~mask.bool()[..., None], fill).max(dim=1).values


def unipt_contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, loss: ClipLoss | None = None
) -> torch.Tensor:
    """UniPT's `compute_cl`: cosine similarities with no temperature, cross-entropy both ways, averaged.

    Features are normalized here (eps 1e-12, as the code); the core's `ClipLoss` with a logit scale of
    exactly 1 does the symmetric cross-entropy, gathered across ranks."""
    v = image_features / (image_features.norm(dim=1, keepdim=True) + 1e-12)
    t = text_features / (text_features.norm(dim=1, keepdim=True) + 1e-12)
    one = torch.ones((), dtype=v.dtype, device=v.device)
    return (loss or ClipLoss(gather_with_grad=True))(v, t, one)


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's MLM masking: `(masked input_ids, labels)`, labels `-100` where nothing is predicted.

    Each real, non-special token is chosen with `probability` (at least one per caption that has one);
    a chosen token becomes `[MASK]` 80 % of the time, a random token 10 %, stays 10 %."""
    device = input_ids.device
    eligible = attention_mask.bool() & ~torch.isin(input_ids, special_ids.to(device))
    draw = torch.rand(input_ids.shape, generator=generator, device=device)
    chosen = eligible & (draw < probability)
    # A caption left with nothing to predict gets its eligible token of lowest draw.
    empty = eligible.any(1) & ~chosen.any(1)
    first = draw.masked_fill(~eligible, 2.0).argmin(1)
    chosen[empty, first[empty]] = True
    labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)
    how = torch.rand(input_ids.shape, generator=generator, device=device)
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device)
    masked = torch.where(chosen & (how < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    masked = torch.where(chosen & (how >= 0.8) & (how < 0.9), random_tokens, masked)
    return masked, labels


def random_masking(
    batch: int, length: int, ratio: float, device: torch.device, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking: `(ids_keep [B, K], ids_mask [B, L - K])` with K = int(L (1 - ratio)),
    from the argsort of uniform noise."""
    keep = int(length * (1 - ratio))
    if not 0 < keep < length:
        raise ConfigError(
            f"mask_ratio {ratio} keeps {keep} of {length} patches: both parts must be non-empty"
        )
    noise = torch.rand(batch, length, generator=generator, device=device)
    order = noise.argsort(dim=1)
    return order[:, :keep], order[:, keep:]


def sincos_pos_embed_2d(width: int, grid: tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings `[(1 +) H*W, width]` (MAE's; a zero row for `[CLS]`)."""
    if width % 4:
        raise ConfigError(f"2-D sin-cos position embeddings need a width divisible by 4, got {width}")
    h, w = grid
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    omega = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float64) / (width / 4))

    def embed(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([embed(xs), embed(ys)], dim=1).float()  # MAE: width half from x (its grid[0]), half y
    return torch.cat([torch.zeros(1, width), table]) if cls_token else table


class RegressorBlock(nn.Module):
    """CAE's latent regressor block: masked queries cross-attend to `[visible, masked]` latents (positions
    added to queries and keys), then an MLP; pre-norm residuals."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        from timm.layers import Mlp

        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, query_pos: torch.Tensor, context_pos: torch.Tensor
    ):
        q = self.norm_q(query + query_pos)
        k = self.norm_k(context + context_pos)
        v = self.norm_v(context)
        query = query + self.attn(q, k, v, need_weights=False)[0]
        return query + self.mlp(self.norm2(query))


class MLMHead(nn.Module):
    """BERT's prediction head: transform (dense, activation, LayerNorm), then vocabulary logits (own weights)."""

    def __init__(self, config: Any):
        super().__init__()
        from transformers.models.bert.modeling_bert import BertPredictionHeadTransform

        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(tokens))


# ------------------------------------------------------------------------------------------------ model


def vit_tower(cfg: UniPTConfig, name: str, pretrained: bool, kwargs: Mapping[str, Any], dim: int = 0):
    """The core's image tower for one of UniPT's ViTs at `cfg.image_size` (H × W): the student (`dim` 0, no
    head) or the CLIP teacher (timm's own head projecting to `dim`). UniPT reads the trunk's patch embedding,
    positions, class token and blocks itself, so the trunk must be a timm ViT that has them."""
    vision = VisionTowerConfig(
        timm_model=name, timm_kwargs=dict(kwargs), image_size=tuple(cfg.image_size), timm_pretrained=pretrained,
        head="timm" if dim else "none", mean=cfg.mean, std=cfg.std,
    )  # fmt: skip
    tower = VisionTower(vision, embed_dim=dim)
    trunk = tower.trunk
    needed = ("patch_embed", "pos_embed", "cls_token", "blocks", "norm_pre", "norm")
    if any(getattr(trunk, a, None) is None for a in needed) or getattr(trunk, "no_embed_class", False):
        raise ConfigError(f"UniPT needs a timm ViT with a class token and learned positions, got {name!r}")
    return tower


class UniPT(nn.Module):
    """UniPT: ViT (384×128) and BERT towers, max-pooled projections, MLM head, masked-token regressor and
    the frozen CLIP teacher. Faces: `forward(batch)` → CL + MLM + MIM losses; `encode_image`,
    `encode_text` (the contrast's features, normalized)."""

    def __init__(self, cfg: UniPTConfig):
        super().__init__()
        self.config = cfg
        self.visual = vit_tower(cfg, cfg.vision_model, cfg.vision_pretrained, cfg.vision_kwargs)
        self.text = build_hf_encoder(cfg.text_model, pretrained=cfg.text_pretrained, add_pooling_layer=False)
        width, hidden = self.visual.trunk.num_features, self.text.config.hidden_size
        self.img_proj = nn.Linear(width, cfg.embed_dim)
        self.txt_proj = nn.Linear(hidden, cfg.embed_dim)
        self.mlm_head = MLMHead(self.text.config)
        self.cl_loss = ClipLoss(gather_with_grad=True)

        grid = self.visual.trunk.patch_embed.grid_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer(
            "decoder_pos_embed", sincos_pos_embed_2d(width, tuple(grid))[None], persistent=False
        )
        self.regressor = nn.ModuleList(
            [RegressorBlock(width, cfg.regressor_heads) for _ in range(cfg.regressor_depth)]
        )
        self.fc_mask = nn.Sequential(nn.Linear(width, cfg.clip_dim), nn.LayerNorm(cfg.clip_dim))
        self.fc_visual = nn.Sequential(nn.Linear(width, cfg.clip_dim), nn.LayerNorm(cfg.clip_dim))

        self.clip = vit_tower(cfg, cfg.clip_model, cfg.clip_pretrained, cfg.clip_kwargs, cfg.clip_dim)
        if tuple(self.clip.trunk.patch_embed.grid_size) != tuple(grid):
            raise ConfigError(
                f"the CLIP teacher's patch grid {self.clip.trunk.patch_embed.grid_size} is not the ViT's {grid}"
            )
        self.clip.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> UniPT:
        super().train(mode)
        self.clip.eval()  # the teacher never trains: no dropout, whatever the module's mode
        return self

    # ------------------------------------------------------------------------------------ towers
    def _text_inputs(self, text: TokenizedText | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(text, TokenizedText):
            return text.input_ids, text.attention_mask
        if torch.is_tensor(text) and text.ndim == 2 and not text.is_floating_point():
            return text, (text != self.text.config.pad_token_id).long()
        raise DataError(f"UniPT expects TokenizedText or token ids [B, L], got {type(text).__name__}")

    def _check_images(self, images: torch.Tensor) -> None:
        self.visual.check_images(images)  # (batch, 3, H, W) floats at the size the ViT is built for

    def text_tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids=ids, attention_mask=mask).last_hidden_state

    def encode_text(self, text: TokenizedText | torch.Tensor, normalize: bool = True) -> torch.Tensor:
        ids, mask = self._text_inputs(text)
        features = masked_max(self.txt_proj(self.text_tokens(ids, mask)), mask)
        return F.normalize(features, dim=-1, eps=1e-12) if normalize else features

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self._check_images(images)
        features = masked_max(self.img_proj(self.visual.trunk.forward_features(images)))
        return F.normalize(features, dim=-1, eps=1e-12) if normalize else features

    def encode_visible(self, images: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """The ViT over `[CLS]` and the patches `ids_keep [B, K]` only: `[B, 1 + K, W]`."""
        v = self.visual.trunk
        patches = v.patch_embed(images) + v.pos_embed[:, 1:]
        patches = patches.gather(1, ids_keep[..., None].expand(-1, -1, patches.shape[-1]))
        cls = (v.cls_token + v.pos_embed[:, :1]).expand(len(patches), -1, -1)
        x = v.norm_pre(v.pos_drop(torch.cat([cls, patches], dim=1)))
        return v.norm(v.blocks(x))

    @torch.no_grad()
    def clip_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen CLIP's target `[B, 1 + L, clip_dim]`: every token through its blocks, then its
        projection, without the final LayerNorm (the official code's modified `encode_image`)."""
        c = self.clip.trunk
        x = c.norm_pre(c._pos_embed(c.patch_embed(images)))
        return c.head(c.blocks(x))

    def regress(self, visible: torch.Tensor, ids_keep: torch.Tensor, ids_mask: torch.Tensor) -> torch.Tensor:
        """Predict the masked patches' latents `[B, M, W]` from the visible latents `[B, 1 + K, W]`."""
        pos = self.decoder_pos_embed.expand(len(visible), -1, -1)
        width = pos.shape[-1]

        def at(ids: torch.Tensor) -> torch.Tensor:
            return pos[:, 1:].gather(1, ids[..., None].expand(-1, -1, width))

        visible_pos = torch.cat([pos[:, :1], at(ids_keep)], dim=1)
        query_pos = at(ids_mask)
        query = self.mask_token.expand(len(visible), ids_mask.shape[1], -1)
        for block in self.regressor:
            context = torch.cat([visible, query], dim=1)
            query = block(query, context, query_pos, torch.cat([visible_pos, query_pos], dim=1))
        return query

    def mim_loss(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Masked-image token regression to the frozen CLIP's tokens (module docstring)."""
        n_patches = self.visual.trunk.patch_embed.num_patches
        ids_keep, ids_mask = random_masking(len(images), n_patches, self.config.mask_ratio, images.device)
        visible = self.encode_visible(images, ids_keep)
        latent_mask = self.fc_mask(self.regress(visible, ids_keep, ids_mask))
        latent_visual = self.fc_visual(visible)
        target = self.clip_tokens(images)[:, 1:]  # patch i is CLIP's token i + 1
        dim = target.shape[-1]
        target_visual = target.gather(1, ids_keep[..., None].expand(-1, -1, dim))
        target_mask = target.gather(1, ids_mask[..., None].expand(-1, -1, dim))
        loss = F.mse_loss(latent_mask, target_mask) + F.mse_loss(latent_visual[:, 1:], target_visual)
        return loss, {
            "ids_keep": ids_keep,
            "ids_mask": ids_mask,
            "mim_target": target,
            "mim_prediction": latent_mask,
        }

    def _special_ids(self, device: torch.device) -> torch.Tensor:
        c = self.text.config
        ids = [getattr(c, n, None) for n in ("pad_token_id", "bos_token_id", "eos_token_id")]
        ids += [self._cls_id, self._sep_id]
        return torch.tensor(sorted({i for i in ids if i is not None}), device=device)

    @property
    def _cls_id(self) -> int:
        return self._vocabulary()[0]

    @property
    def _sep_id(self) -> int:
        return self._vocabulary()[1]

    def _vocabulary(self) -> tuple[int, int, int]:
        """`([CLS], [SEP], [MASK])` ids of the tokenizer, read once (no tokenizer on a structure-only build)."""
        if not hasattr(self, "_vocab_ids"):
            backend = self.config.tokenizer().backend
            self._vocab_ids = (backend.cls_token_id, backend.sep_token_id, backend.mask_token_id)
        return self._vocab_ids

    # ------------------------------------------------------------------------------------ pretraining
    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """CL + MLM + MIM losses of `{"image": [B, 3, 384, 128], "text": TokenizedText}`."""
        cfg = self.config
        images = batch["image"]
        self._check_images(images)
        ids, mask = self._text_inputs(batch["text"])

        image_features = masked_max(self.img_proj(self.visual.trunk.forward_features(images)))
        text_features = masked_max(self.txt_proj(self.text_tokens(ids, mask)), mask)
        cl_loss = unipt_contrastive_loss(image_features, text_features, self.cl_loss)

        mask_id = self._vocabulary()[2]
        masked_ids, labels = mask_tokens(
            ids,
            mask,
            self._special_ids(ids.device),
            mask_id,
            self.text.config.vocab_size,
            cfg.mlm_probability,
        )
        predicted = labels != IGNORE_INDEX
        mlm_logits = self.mlm_head(self.text_tokens(masked_ids, mask)[predicted])
        mlm_loss = (
            F.cross_entropy(mlm_logits, labels[predicted]) if predicted.any() else mlm_logits.sum() * 0.0
        )

        mim_loss, mim = self.mim_loss(images)
        loss = cfg.cl_weight * cl_loss + cfg.mlm_weight * mlm_loss + cfg.mim_weight * mim_loss
        with torch.no_grad():
            mlm_accuracy = (mlm_logits.argmax(-1) == labels[predicted]).float().mean().nan_to_num(0.0)
        return {
            "loss": loss,
            "cl_loss": cl_loss.detach(),
            "mlm_loss": mlm_loss.detach(),
            "mim_loss": mim_loss.detach(),
            "mlm_accuracy": mlm_accuracy,
            "image_features": F.normalize(image_features, dim=-1, eps=1e-12),
            "text_features": F.normalize(text_features, dim=-1, eps=1e-12),
            "mlm_input_ids": masked_ids,
            "mlm_labels": labels,
            **mim,
        }

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        if enable:
            self.text.gradient_checkpointing_enable()
        else:
            self.text.gradient_checkpointing_disable()


# ---------------------------------------------------------------------------------------- registry


@register_model("unipt-vit-b-16")
def unipt_vit_b_16() -> UniPTConfig:
    """The paper's UniPT: ViT-B/16 at 384×128, BERT-base (uncased), 8-block regressor, CLIP ViT-B/16 teacher
    (OpenAI weights through timm). Registered with random towers; a pretraining recipe turns on
    `vision_pretrained`, `text_pretrained` and `clip_pretrained` (the teacher must be CLIP's)."""
    return UniPTConfig()


@register_model("unipt-tiny")
def unipt_tiny() -> UniPTConfig:
    """UniPT at 64×32 pixels (8 × 4 patches of 8) with 2-block ViTs, a 2-layer BERT made locally and a
    1-block regressor, for tests and CPUs."""
    tiny_vit = {"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4}
    return UniPTConfig(
        vision_model="vit_base_patch16_224",
        vision_kwargs=tiny_vit,
        image_size=(64, 32),
        text_model=tiny_bert_dir(),
        context_length=40,
        embed_dim=64,
        regressor_depth=1,
        regressor_heads=4,
        clip_model="vit_base_patch16_clip_224",
        clip_kwargs=tiny_vit,
        clip_dim=32,
    )
