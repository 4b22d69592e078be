"""RadCLIP (Lu et al., "RadCLIP: Enhancing Radiologic Image Analysis through Contrastive Language-Image
Pre-training", arXiv:2403.09948): a CLIP fine-tuned on 2D radiology image-text pairs, then a slice-pooling
adapter that turns the 2D embeddings of a volume's slices into one 3D embedding.

Two stages, two model families here:

- `radclip-*` (`RadCLIP`, 2D): a CLIP dual encoder. As in the official fine-tuning notebook, the text tower
  and its projection are frozen (`lock_text_tower`) and the symmetric InfoNCE uses a fixed temperature
  tau = 0.07 (`temperature`); only the image tower learns. `radclip-vit-l-14:official` loads the released
  weights (`zluvolyote/RadCLIP`, a Hugging Face `CLIPModel` state dict of `openai/clip-vit-large-patch14`).
- `radclip-3d-*` (`RadCLIP3D`, 3D): the 2D model, frozen, plus `SlicePoolingAdapter`, trained on
  volume-report pairs with the same loss. The 2D weights come from `image_encoder_weights` (a tag of the 2D
  model or a file it was saved to). Volumes are `[B, S, 3, H, W]` with a `slice_mask [B, S]`
  (True = a real slice), as `vlzoo.medical.data.volume_transform` makes them.

The official release has no adapter code; our reading of the paper (V = MHSA(I + PE(P)), "a lightweight
multi-head self-attention slice-pooling adapter") is `SlicePoolingAdapter`: the slice embeddings I plus a
learned embedding PE of each slice's position P, a learnable [CLS] token prepended, `depth` pre-norm
multi-head self-attention blocks over [CLS] + slices with padded slices masked out of the keys, and the
[CLS] output as the volume embedding. Because of PE the pooling is permutation-aware (slice order is
anatomy); `position="none"` gives the permutation-invariant variant. The [CLS] token starts at zero and the
value/output maps at the identity, so the untrained adapter is the mean of the (layer-normed) slice
embeddings: adapter training starts from the 2D joint space, not from noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core import register_model, resolve_config
from vlzoo.core.errors import ConfigError, DataError, WeightsError
from vlzoo.core.models import CLIPConfig, DualEncoder
from vlzoo.core.towers import TextTowerConfig, TokenizedText, VisionTowerConfig, is_structure_only
from vlzoo.core.weights import WeightSpec, load_weights

__all__ = [
    "RadCLIP",
    "RadCLIP3D",
    "RadCLIP3DConfig",
    "RadCLIPConfig",
    "SliceAdapterConfig",
    "SlicePoolingAdapter",
]

OPENAI_CLIP_ACT = {
    "vision": "quick_gelu",
    "text": "quick_gelu",
}  # openai/clip-vit-large-patch14's activations
# Config fields that don't change what a set of 2D weights computes (regularization, where weights come from).
_NON_ARCH_FIELDS = {"drop_path_rate", "timm_pretrained", "hf_pretrained"}


def _frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


# ----------------------------------------------------------------------------------------------- 2D


@dataclass
class RadCLIPConfig(CLIPConfig):
    """A CLIP fine-tuned the RadCLIP way.

    `lock_text_tower`: freeze the whole text side, projection included (the notebook freezes `text_model`
    and `text_projection`). `temperature`: the InfoNCE temperature, fixed (the notebook divides by 0.07 and
    never trains `logit_scale`); None trains `logit_scale` as CLIP does.
    """

    toy_data: ClassVar[str] = "med-toyworld"  # the generated dataset its tiny models train on

    lock_text_tower: bool = True
    temperature: float | None = 0.07

    def build(self) -> RadCLIP:
        return RadCLIP(self)


class RadCLIP(DualEncoder):
    """CLIP with a frozen text side and a fixed temperature (per config): the 2D stage of RadCLIP."""

    def __init__(self, cfg: RadCLIPConfig):
        super().__init__(cfg)
        if cfg.temperature is not None and cfg.temperature <= 0:
            raise ConfigError(f"RadCLIP temperature must be positive, got {cfg.temperature}")
        if cfg.lock_text_tower:
            self.text.requires_grad_(False)
        if cfg.temperature is not None:
            self.logit_scale.requires_grad_(False)

    def frozen_towers(self) -> list[nn.Module]:
        return [self.text] if self.config.lock_text_tower else []

    def train(self, mode: bool = True) -> RadCLIP:
        # Frozen towers stay in eval mode: no dropout or stochastic depth in what isn't trained.
        super().train(mode)
        for tower in self.frozen_towers():
            tower.eval()
        return self

    def scale(self) -> torch.Tensor:
        if self.config.temperature is None:
            return super().scale()
        return self.logit_scale.new_tensor(1.0 / self.config.temperature)

    def encode_text(
        self, text: TokenizedText | torch.Tensor, normalize: bool = True, output_tokens: bool = False
    ):
        # A frozen tower keeps no activations for a backward pass that would not reach it.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not _frozen(self.text)):
            return super().encode_text(text, normalize=normalize, output_tokens=output_tokens)


# ---------------------------------------------------------------------------------------- adapter


@dataclass
class SliceAdapterConfig:
    """The slice-pooling adapter: `depth` self-attention blocks of `heads` heads over a volume's slices.

    `position`: `"learned"` adds a learned embedding of each slice's index (permutation-aware, the paper's
    PE(P)), `"none"` adds nothing (permutation-invariant). `max_slices`: the most slices a volume may have.
    `mlp_ratio`: 0 = attention only (the paper's "lightweight"), else a feed-forward of that width ratio
    after each attention.
    """

    heads: int = 8
    depth: int = 1
    max_slices: int = 128
    position: str = "learned"  # "learned" | "none"
    mlp_ratio: float = 0.0
    dropout: float = 0.0


class SliceAttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention (and an optional feed-forward) with residual connections."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        hidden = int(dim * mlp_ratio)
        self.mlp = (
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
            if hidden
            else None
        )
        with torch.no_grad():  # identity value/output maps (and a zero feed-forward): see the module doc
            self.attn.in_proj_weight[2 * dim :].copy_(torch.eye(dim))
            self.attn.out_proj.weight.copy_(torch.eye(dim))
            if self.mlp is not None:
                nn.init.zeros_(self.mlp[-1].weight)
                nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`x [B, N, D]`, `padding [B, N]` (True = ignore as a key) → (x, attention `[B, N, N]`)."""
        h = self.norm(x)
        out, weights = self.attn(h, h, h, key_padding_mask=padding, need_weights=True)
        x = x + out
        if self.mlp is not None:
            x = x + self.mlp(x)
        return x, weights


class SlicePoolingAdapter(nn.Module):
    """Slice embeddings `[B, S, D]` → volume embedding `[B, D]` and the [CLS] attention over slices `[B, S]`."""

    def __init__(self, dim: int, cfg: SliceAdapterConfig):
        super().__init__()
        if cfg.position not in ("learned", "none"):
            raise ConfigError(f"adapter.position must be 'learned' or 'none', got {cfg.position!r}")
        if cfg.depth < 1 or dim % cfg.heads:
            raise ConfigError(
                f"adapter needs depth >= 1 and heads dividing the width {dim}; got depth={cfg.depth}, "
                f"heads={cfg.heads}"
            )
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = (
            nn.Parameter(torch.randn(cfg.max_slices, dim) * 0.02) if cfg.position == "learned" else None
        )
        self.blocks = nn.ModuleList(
            SliceAttentionBlock(dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)
        )

    def forward(
        self, slices: torch.Tensor, slice_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, n_slices, _ = slices.shape
        if n_slices > self.cfg.max_slices:
            raise DataError(
                f"a volume of {n_slices} slices is more than the adapter's max_slices={self.cfg.max_slices}; "
                "crop or resample the volume to fewer slices, or build the model with a larger max_slices"
            )
        if self.pos_embed is not None:
            slices = slices + self.pos_embed[:n_slices]
        x = torch.cat([self.cls_token.expand(B, -1, -1), slices], dim=1)
        padding = torch.zeros(B, n_slices + 1, dtype=torch.bool, device=slices.device)
        if slice_mask is not None:
            padding[:, 1:] = ~slice_mask
        for block in self.blocks:
            x, weights = block(x, padding)
        return x[:, 0], weights[:, 0, 1:]

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed"}


# ----------------------------------------------------------------------------------------------- 3D


@dataclass
class RadCLIP3DConfig(RadCLIPConfig):
    """RadCLIP's 3D stage: the 2D model (frozen) + the slice-pooling adapter, and its volume preprocessing.

    `image_encoder_model` / `image_encoder_weights`: the registered 2D model whose weights the towers take
    (a tag of it, or a file saved from it); its architecture and preprocessing must equal this config's.
    `lock_slice_encoder`: keep the 2D image tower frozen (the paper). `slice_chunk_size`: encode at most that
    many slices per forward pass (None = all slices of the batch at once).
    `volume_*`: `volume_transform`'s resampling spacing (mm), CT window (preset name or (center, width) in
    HU), MR normalization (`"zscore"`, `"percentile"`; with `volume_window=None`) and slice count.
    """

    toy_data: ClassVar[str] = "med-toyworld-3d"  # the generated dataset its tiny models train on

    adapter: SliceAdapterConfig = field(default_factory=SliceAdapterConfig)
    image_encoder_model: str = "radclip-vit-l-14"
    image_encoder_weights: str | None = None
    lock_slice_encoder: bool = True
    slice_chunk_size: int | None = None
    volume_slices: int = 32
    volume_spacing: tuple[float, float, float] | None = None
    volume_window: str | tuple[float, float] | None = "soft_tissue"
    volume_normalize: str | None = None

    def transform(self, train: bool, albumentations: Any | None = None):
        """The volume pipeline: `path -> {"image": [S, 3, H, W], "slice_mask": [S]}`."""
        if albumentations is not None:
            raise ConfigError(
                "RadCLIP-3D preprocesses volumes with MONAI (volume_spacing, volume_window, volume_slices); "
                "2D albumentations do not apply to it"
            )
        from vlzoo.medical.data import volume_transform

        return volume_transform(
            spacing=self.volume_spacing,
            window=self.volume_window,
            slices=self.volume_slices,
            size=self.vision.image_size,
            mean=self.vision.mean,
            std=self.vision.std,
            channels=self.vision.in_chans,
            normalize=self.volume_normalize,
            train=train,
        )

    def build(self) -> RadCLIP3D:
        model = RadCLIP3D(self)
        on_meta = any(p.is_meta for p in model.parameters())  # nothing to load weights into
        if self.image_encoder_weights is not None and not (on_meta or is_structure_only()):
            model.load_image_encoder(self.image_encoder_weights)
        return model


class RadCLIP3D(RadCLIP):
    """Frozen 2D RadCLIP + `SlicePoolingAdapter`: `encode_volume` for 3D, `encode_image` for 2D (and 3D)."""

    def __init__(self, cfg: RadCLIP3DConfig):
        super().__init__(cfg)
        if cfg.volume_slices > cfg.adapter.max_slices:
            raise ConfigError(
                f"volume_slices={cfg.volume_slices} is more than adapter.max_slices={cfg.adapter.max_slices}"
            )
        if cfg.slice_chunk_size is not None and cfg.slice_chunk_size < 1:
            raise ConfigError(f"slice_chunk_size must be >= 1, got {cfg.slice_chunk_size}")
        self.adapter = SlicePoolingAdapter(cfg.embed_dim, cfg.adapter)
        if cfg.lock_slice_encoder:
            self.visual.requires_grad_(False)

    def frozen_towers(self) -> list[nn.Module]:
        return super().frozen_towers() + ([self.visual] if self.config.lock_slice_encoder else [])

    # ------------------------------------------------------------------------------------ encoding
    def encode_image(self, images: torch.Tensor, normalize: bool = True, output_tokens: bool = False):
        """2D images `[B, C, H, W]` as the 2D model encodes them; volumes `[B, S, C, H, W]` → `encode_volume`."""
        if torch.is_tensor(images) and images.ndim == 5:
            if output_tokens:
                raise ConfigError(
                    "output_tokens is for 2D images; encode_volume returns one embedding per volume"
                )
            return self.encode_volume(images, normalize=normalize)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not _frozen(self.visual)):
            return super().encode_image(images, normalize=normalize, output_tokens=output_tokens)

    def encode_slices(
        self, volume: torch.Tensor, slice_mask: torch.Tensor | None = None, chunk_size: int | None = None
    ) -> torch.Tensor:
        """2D embeddings `[B, S, D]` of every slice (unnormalized; zeros for padded slices).

        All real slices of the batch go through the image tower together (`B*S` images in one forward, or in
        chunks of `chunk_size`); padded slices are not encoded at all.
        """
        B, S = volume.shape[:2]
        flat = volume.reshape(B * S, *volume.shape[2:])
        keep = None if slice_mask is None else slice_mask.reshape(-1).nonzero().squeeze(1)
        images = flat if keep is None else flat.index_select(0, keep)
        chunk = chunk_size or self.config.slice_chunk_size or max(images.shape[0], 1)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not _frozen(self.visual)):
            parts = [self.visual(part) for part in images.split(chunk)]
        dim = self.visual.output_dim
        features = torch.cat(parts) if parts else flat.new_zeros(0, dim)
        if keep is not None:
            features = features.new_zeros(B * S, dim).index_copy(0, keep, features)
        return features.reshape(B, S, dim)

    def encode_volume(
        self,
        volume: torch.Tensor,
        slice_mask: torch.Tensor | None = None,
        normalize: bool = True,
        return_attention: bool = False,
        chunk_size: int | None = None,
    ):
        """Volume embeddings `[B, D]` of `volume [B, S, C, H, W]`; `slice_mask [B, S]` marks real slices.

        With `return_attention`, also the adapter's [CLS] attention over the slices `[B, S]` (0 on padding).
        """
        slice_mask = self._check_volume(volume, slice_mask)
        slices = self.encode_slices(volume, slice_mask, chunk_size)
        pooled, attention = self.adapter(slices, slice_mask)
        if normalize:
            pooled = F.normalize(pooled, dim=-1)
        return (pooled, attention) if return_attention else pooled

    def _check_volume(self, volume: torch.Tensor, slice_mask: torch.Tensor | None) -> torch.Tensor | None:
        channels = self.config.vision.in_chans
        if not torch.is_tensor(volume) or volume.ndim != 5 or volume.shape[2] != channels:
            shape = tuple(volume.shape) if torch.is_tensor(volume) else type(volume).__name__
            raise DataError(
                f"volumes must be a tensor of shape (batch, slices, {channels}, height, width), got {shape}"
            )
        if slice_mask is None:
            return None
        if tuple(slice_mask.shape) != tuple(volume.shape[:2]):
            raise DataError(
                f"slice_mask must have shape (batch, slices) = {tuple(volume.shape[:2])}, "
                f"got {tuple(slice_mask.shape)}"
            )
        slice_mask = slice_mask.to(device=volume.device, dtype=torch.bool)
        empty = (~slice_mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise DataError(f"volumes {empty} of the batch have no slice (slice_mask all False)")
        return slice_mask

    # ------------------------------------------------------------------------------------ training
    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Contrastive loss of volume embeddings vs report embeddings; `batch["image"]` is `[B, S, C, H, W]`."""
        image_features = self.encode_volume(batch["image"], batch.get("slice_mask"))
        text_features = self.encode_text(batch["text"])
        scale = self.scale()
        loss = self.contrastive_loss_of(
            {"image_features": image_features, "text_features": text_features, "logit_scale": scale}
        )
        return {
            "image_features": image_features,
            "text_features": text_features,
            "logit_scale": scale,
            "loss": loss,
        }

    def retrieval_features(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Volume and report embeddings of an evaluation batch (the core's retrieval hook)."""
        return self.encode_volume(batch["image"], batch.get("slice_mask")), self.encode_text(batch["text"])

    # ------------------------------------------------------------------------------------- weights
    def load_image_encoder(self, weights: str | Path) -> None:
        """Load the 2D model's weights (towers and temperature) from a tag of `image_encoder_model` or a file.

        The 2D checkpoint must have been trained with this model's tower architecture and preprocessing; the
        adapter stays as it is. Once loaded, the weights belong to this model, so the config forgets where
        they came from: a saved 3D model reloads without the 2D file.
        """
        name = self.config.image_encoder_model
        trained, source = resolve_config(name, pretrained=weights)  # the 2D model's config as trained
        self._check_same_towers(trained, source.label)
        keys = load_weights(self, source, strict=False)
        stray = [k for k in keys["missing"] if not k.startswith("adapter.")] + keys["unexpected"]
        if stray:
            raise WeightsError(
                f"{source.label} does not hold exactly the 2D towers of {name!r}: "
                f"{len(stray)} keys missing or unexpected, e.g. {', '.join(stray[:5])}"
            )
        self.config = dataclasses.replace(self.config, image_encoder_weights=None)

    def _check_same_towers(self, trained: Any, label: str) -> None:
        differ = []
        for part in ("vision", "text"):
            theirs = dataclasses.asdict(getattr(trained, part))
            ours = dataclasses.asdict(getattr(self.config, part))
            differ += [
                f"{part}.{key}: weights {theirs.get(key)!r}, this model {value!r}"
                for key, value in ours.items()
                if key not in _NON_ARCH_FIELDS and theirs.get(key) != value
            ]
        if trained.embed_dim != self.config.embed_dim:
            differ.append(f"embed_dim: weights {trained.embed_dim}, this model {self.config.embed_dim}")
        if differ:
            raise ConfigError(
                f"image_encoder_weights {label} were trained with other towers than this 3D model:\n  "
                + "\n  ".join(differ)
            )


# ------------------------------------------------------------------------------------------ registry

_RADCLIP_RELEASE = WeightSpec(
    hf_hub_id="zluvolyote/RadCLIP", filename="RadCLIP.pth", format="pt", converter="hf_clip"
)


def _vit_l_14_towers() -> dict[str, Any]:
    # openai/clip-vit-large-patch14, which the RadCLIP notebook fine-tunes: QuickGELU in both towers.
    return {
        "embed_dim": 768,
        "vision": VisionTowerConfig(
            timm_model="vit_large_patch14_clip_224", image_size=224, act_layer=OPENAI_CLIP_ACT["vision"]
        ),
        "text": TextTowerConfig(kind="clip", width=768, heads=12, layers=12, act=OPENAI_CLIP_ACT["text"]),
    }


def _tiny_towers() -> dict[str, Any]:
    return {
        "embed_dim": 64,
        "vision": VisionTowerConfig(
            timm_model="vit_base_patch32_clip_224",
            timm_kwargs={"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4},
            image_size=64,
        ),
        "text": TextTowerConfig(kind="clip", context_length=32, width=64, heads=4, layers=2),
    }


@register_model("radclip-vit-l-14", pretrained={"official": _RADCLIP_RELEASE})
def radclip_vit_l_14() -> RadCLIPConfig:
    """RadCLIP's 2D model: CLIP ViT-L/14 (224 px), text side frozen, tau = 0.07."""
    return RadCLIPConfig(**_vit_l_14_towers())


@register_model("radclip-tiny")
def radclip_tiny() -> RadCLIPConfig:
    """A RadCLIP 2D model of a few hundred thousand parameters at 64 px, for tests and CPU runs."""
    return RadCLIPConfig(**_tiny_towers())


@register_model("radclip-3d-vit-l-14")
def radclip_3d_vit_l_14() -> RadCLIP3DConfig:
    """RadCLIP's 3D model: `radclip-vit-l-14` frozen + a one-block, 8-head slice-pooling adapter.

    Start it from the released 2D weights with `image_encoder_weights="official"`.
    """
    return RadCLIP3DConfig(
        **_vit_l_14_towers(),
        adapter=SliceAdapterConfig(heads=8, depth=1, max_slices=128),
        image_encoder_model="radclip-vit-l-14",
        volume_slices=32,
    )


@register_model("radclip-3d-tiny")
def radclip_3d_tiny() -> RadCLIP3DConfig:
    """`radclip-tiny` frozen + a one-block, 4-head adapter over at most 32 slices of 64 px."""
    return RadCLIP3DConfig(
        **_tiny_towers(),
        adapter=SliceAdapterConfig(heads=4, depth=1, max_slices=32),
        image_encoder_model="radclip-tiny",
        volume_slices=16,
    )
