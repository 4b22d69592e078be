"""Image towers: any timm model as the trunk, a head that projects its pooled features to the joint space."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from torch import nn

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.towers.heads import build_head
from vlzoo.core.towers.structure import loads_pretrained

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VisionTowerConfig:
    """Which timm model encodes images, how its output is pooled and projected.

    `head="timm"` keeps timm's own head with `num_classes=embed_dim` as the projection (CLIP's ResNets,
    whose attention pool ends in the joint space); the other heads sit on timm's pooled features.
    `image_size` is a square's side or `(height, width)` (pedestrians: 384×128); ViTs and attention pools
    are built for it, CNNs take any size.
    """

    timm_model: str = "vit_base_patch32_clip_224"
    timm_kwargs: dict[str, Any] = field(default_factory=dict)  # architecture changes passed to timm
    image_size: int | tuple[int, int] = 224
    in_chans: int = 3
    act_layer: str | None = None  # timm activation override, e.g. "quick_gelu" for OpenAI's ViT weights
    pool: str | None = (
        None  # timm global_pool: "token", "avg", "map" (attention pool), ...; None = model's own
    )
    head: str = "linear"  # "linear" | "mlp" | "timm" | "none"
    drop_path_rate: float = 0.0
    # "sincos": start a ViT's learned position embedding from the 2-D sine-cosine table (MAE, MoCo v3) instead
    # of timm's N(0, 0.02), which is drowned by the patch embeddings at init; None keeps timm's init
    pos_embed_init: str | None = None
    # "conv": a ViT's linear patch embedding replaced by stride-2 3×3 conv-BN-ReLU stages down to the same
    # patch grid ("Early Convolutions Help Transformers See Better", Xiao et al. 2021): a tiny ViT trained from
    # scratch on small images sees shapes that straddle its patches sooner; "patch" keeps timm's
    stem: str = "patch"
    stem_width: int = 16  # the conv stem's first stage's channels, doubling per stage
    timm_pretrained: bool = False  # start from timm's own pretrained weights (hub download)
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    interpolation: str = "bicubic"


def image_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """`(height, width)` of an `image_size`: an int is a square's side, a pair is height × width."""
    hw = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, Sequence) else ()
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw):
        raise ConfigError(f"image_size must be a positive int or (height, width), got {size!r}")
    return hw  # type: ignore[return-value]


class VisionTower(nn.Module):
    """timm trunk + projection head. `forward(images, output_tokens=True)` also returns projected patch tokens."""

    def __init__(self, cfg: VisionTowerConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        kwargs: dict[str, Any] = {}
        if cfg.act_layer is not None:
            kwargs["act_layer"] = cfg.act_layer
        if cfg.pool is not None:
            kwargs["global_pool"] = cfg.pool
        if cfg.drop_path_rate:
            kwargs["drop_path_rate"] = cfg.drop_path_rate
        kwargs.update(cfg.timm_kwargs)
        self.image_hw = image_hw(cfg.image_size)
        kwargs.update(_stem_kwargs(cfg, self.image_hw, kwargs))
        num_classes = embed_dim if cfg.head == "timm" else 0
        self.trunk = _create_trunk(
            cfg.timm_model,
            self.image_hw,
            pretrained=loads_pretrained(cfg.timm_pretrained),
            num_classes=num_classes,
            in_chans=cfg.in_chans,
            **kwargs,
        )
        if cfg.pos_embed_init is not None:
            init_position_embedding(self.trunk, cfg.pos_embed_init)
        width = embed_dim if cfg.head == "timm" else self.trunk.num_features
        self.head = build_head("none" if cfg.head == "timm" else cfg.head, width, embed_dim)
        self.output_dim = embed_dim if cfg.head != "none" else width
        self.fixed_hw = _fixed_input_size(self.trunk)

    def check_images(self, images: torch.Tensor) -> None:
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != self.cfg.in_chans:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise DataError(
                f"image tower {self.cfg.timm_model!r} expects images of shape "
                f"(batch, {self.cfg.in_chans}, height, width), got {shape}"
            )
        if not images.is_floating_point():
            raise DataError(f"images must be a floating point tensor (normalized pixels), got {images.dtype}")
        if self.fixed_hw is not None and tuple(images.shape[-2:]) != self.fixed_hw:
            raise DataError(
                f"image tower {self.cfg.timm_model!r} is built for {self.fixed_hw[0]}×{self.fixed_hw[1]} "
                f"(height × width) images, got {images.shape[-2]}×{images.shape[-1]}: resize them with the "
                "model's transform, or set vision.image_size"
            )

    def forward_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk features before pooling and the pooled vector: `(tokens [B, N, W], pooled [B, W])`."""
        feats = self.trunk.forward_features(images)
        pooled = self.trunk.forward_head(feats, pre_logits=self.cfg.head != "timm")
        if feats.ndim == 4 and getattr(self.trunk, "output_fmt", "NCHW") == "NHWC":  # Swin: [B, H, W, C]
            tokens = feats.flatten(1, 2)
        elif feats.ndim == 4:  # CNN feature map [B, C, H, W] -> one token per position
            tokens = feats.flatten(2).transpose(1, 2)
        else:
            tokens = feats[:, getattr(self.trunk, "num_prefix_tokens", 0) :]
        return tokens, pooled

    def forward(self, images: torch.Tensor, output_tokens: bool = False):
        self.check_images(images)
        if not output_tokens:
            return self.head(self.trunk(images))
        tokens, pooled = self.forward_tokens(images)
        if self.cfg.head == "timm":
            raise ConfigError(
                f"output_tokens needs a vlzoo projection head; {self.cfg.timm_model!r} uses timm's own head"
            )
        return self.head(pooled), self.head(tokens)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.trunk.set_grad_checkpointing(enable)

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """LiT-style freezing: freeze the trunk except its last `unlocked_groups` layer groups.

        Groups are timm's own (`group_matcher`): stem, each block, final norm. The projection head stays
        trainable, as in LiT and open_clip's `lock_image_tower`.
        """
        groups = timm.models.group_parameters(self.trunk, self.trunk.group_matcher(coarse=True))
        ordered = [groups[k] for k in sorted(groups)]
        frozen = ordered[: max(len(ordered) - unlocked_groups, 0)]
        frozen_names = {n for names in frozen for n in names}
        for name, param in self.trunk.named_parameters():
            param.requires_grad_(name not in frozen_names)
        if freeze_bn_stats:
            timm.utils.freeze_batch_norm_2d(self.trunk)


def _fixed_input_size(trunk: nn.Module) -> tuple[int, int] | None:
    """The `(height, width)` a timm trunk insists on (a ViT's strict patch embedding), None if it takes any."""
    patch_embed = getattr(trunk, "patch_embed", None)
    if getattr(trunk, "dynamic_img_size", False) or not getattr(patch_embed, "strict_img_size", False):
        return None
    size = getattr(patch_embed, "img_size", None)
    return tuple(size) if size is not None else None


def conv_stem(patch_size: int | Sequence[int], image_hw: tuple[int, int], width: int = 16) -> dict[str, Any]:
    """timm ViT arguments for a convolutional stem ("Early Convolutions Help Transformers See Better", Xiao et
    al. 2021): stride-2 3×3 conv-BN-ReLU stages (`width` channels, doubling) down to the grid of
    `patch_size` patches, then timm's `HybridEmbed` (a 1×1 projection to the ViT's width). Tokens, position
    table and everything after them keep their shapes; a side already done gets stride 1."""
    from timm.layers import ConvNormAct, HybridEmbed

    patch = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    stages = [side.bit_length() - 1 for side in patch]
    if any(1 << n != side for n, side in zip(stages, patch)):
        raise ConfigError(f"a conv stem halves the image per stage: patch size {patch} must be powers of 2")
    layers, channels = [], 3
    for i in range(max(stages)):
        stride = tuple(2 if i < n else 1 for n in stages)
        layers.append(ConvNormAct(channels, width * 2**i, 3, stride=stride))
        channels = width * 2**i
    stem = nn.Sequential(*layers)
    stem.num_features = channels  # HybridEmbed's feature_dim: with the grid given, it runs no probe forward
    grid = tuple(side // p for side, p in zip(image_hw, patch))
    embed = functools.partial(HybridEmbed, backbone=stem, feature_size=grid, feature_ratio=patch)
    return {"patch_size": 1, "embed_layer": embed}


def _stem_kwargs(
    cfg: VisionTowerConfig, image_hw: tuple[int, int], timm_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """timm arguments for `cfg.stem`: none for ViT's own patch embedding, `conv_stem`'s for "conv" on the
    patch size given in `timm_kwargs`, else the architecture's own (read off a weightless build)."""
    if cfg.stem == "patch":
        return {}
    if cfg.stem != "conv":
        raise ConfigError(f"vision.stem must be 'patch' or 'conv', got {cfg.stem!r}")
    patch = timm_kwargs.get("patch_size")
    if patch is None:
        with torch.device("meta"):
            probe = _create_trunk(cfg.timm_model, image_hw, **timm_kwargs)
        patch = getattr(getattr(probe, "patch_embed", None), "patch_size", None)
        if patch is None:
            raise ConfigError(f"vision.stem='conv' needs a ViT; {cfg.timm_model!r} has no patch embedding")
    return conv_stem(patch, image_hw, cfg.stem_width)


def init_position_embedding(trunk: nn.Module, kind: str) -> None:
    """Fill a timm ViT's learned position embedding: `"sincos"` puts timm's 2-D sine-cosine table (MAE's) on
    the patch grid and zeros on the prefix tokens (MAE's class token). The table stays trainable."""
    from timm.layers import build_sincos2d_pos_embed

    if kind != "sincos":
        raise ConfigError(f"vision.pos_embed_init must be 'sincos' or None, got {kind!r}")
    pos_embed = getattr(trunk, "pos_embed", None)
    grid = getattr(getattr(trunk, "patch_embed", None), "grid_size", None)
    if not isinstance(pos_embed, nn.Parameter) or grid is None:
        raise ConfigError(f"vision.pos_embed_init: {type(trunk).__name__} has no ViT position embedding")
    if pos_embed.is_meta:  # built for its structure only: nothing to fill
        return
    table = build_sincos2d_pos_embed(list(grid), dim=pos_embed.shape[-1])
    prefix = pos_embed.shape[1] - table.shape[0]
    with torch.no_grad():
        pos_embed[0, :prefix].zero_()
        pos_embed[0, prefix:].copy_(table)


def _create_trunk(name: str, image_hw: tuple[int, int], **kwargs: Any) -> nn.Module:
    """timm model built for `image_hw` where the architecture has a fixed input size (ViTs, attention pools).

    A square is given to timm as an int (as its configs name it), anything else as `(height, width)`.
    CNNs with global pooling take any size and reject `img_size`; they are built without it.
    """
    size = image_hw[0] if image_hw[0] == image_hw[1] else image_hw
    try:
        return timm.create_model(name, img_size=size, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
    return timm.create_model(name, **kwargs)
