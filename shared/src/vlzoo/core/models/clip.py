"""The CLIP architectures (Radford et al., 2021) on timm image towers and transformers' CLIP text model.

Each `@register_model` function returns the config of one architecture; pretrained tags name weights
released for it. OpenAI's weights use QuickGELU in their transformers, the others plain GELU.
"""

from __future__ import annotations

from vlzoo.core.models.dual_encoder import CLIPConfig
from vlzoo.core.registry import register_model
from vlzoo.core.towers.text import TextTowerConfig
from vlzoo.core.towers.vision import VisionTowerConfig
from vlzoo.core.weights.checkpoint import OPEN_CLIP_HF_FILE
from vlzoo.core.weights.hub import WeightSpec

OPENAI_OVERRIDES = {"vision": {"act_layer": "quick_gelu"}, "text": {"act": "quick_gelu"}}


def _open_clip_weights(hf_hub_id: str, **overrides) -> WeightSpec:
    # Digests are filled in once a release has been downloaded and checked; until then the hub's own
    # content addressing (the LFS sha256 in its ETag) is what guards these files.
    return WeightSpec(
        hf_hub_id=hf_hub_id, filename=OPEN_CLIP_HF_FILE, converter="open_clip", config_overrides=overrides
    )


def _clip(vision_model: str, embed_dim: int, text_width: int, text_heads: int, **vision) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=embed_dim,
        vision=VisionTowerConfig(timm_model=vision_model, **vision),
        text=TextTowerConfig(kind="clip", width=text_width, heads=text_heads, layers=12),
    )


@register_model(
    "clip-vit-b-32",
    pretrained={
        "openai": _open_clip_weights("timm/vit_base_patch32_clip_224.openai", **OPENAI_OVERRIDES),
        "laion2b_s34b_b79k": _open_clip_weights("laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
        "datacomp_xl_s13b_b90k": _open_clip_weights("laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K"),
    },
)
def clip_vit_b_32() -> CLIPConfig:
    return _clip("vit_base_patch32_clip_224", 512, 512, 8)


@register_model(
    "clip-vit-b-16",
    pretrained={
        "openai": _open_clip_weights("timm/vit_base_patch16_clip_224.openai", **OPENAI_OVERRIDES),
        "datacomp_xl_s13b_b90k": _open_clip_weights("laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K"),
    },
)
def clip_vit_b_16() -> CLIPConfig:
    return _clip("vit_base_patch16_clip_224", 512, 512, 8)


@register_model(
    "clip-vit-l-14",
    pretrained={
        "openai": _open_clip_weights("timm/vit_large_patch14_clip_224.openai", **OPENAI_OVERRIDES),
        "datacomp_xl_s13b_b90k": _open_clip_weights("laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K"),
    },
)
def clip_vit_l_14() -> CLIPConfig:
    return _clip("vit_large_patch14_clip_224", 768, 768, 12)


@register_model(
    "clip-rn50",
    pretrained={"openai": _open_clip_weights("timm/resnet50_clip.openai", text={"act": "quick_gelu"})},
)
def clip_rn50() -> CLIPConfig:
    """CLIP's modified ResNet-50 (timm `resnet50_clip`): its attention pool projects to the 1024-d joint space."""
    return _clip("resnet50_clip", 1024, 512, 8, head="timm")


@register_model("clip-vit-tiny")
def clip_vit_tiny() -> CLIPConfig:
    """A CLIP ViT of a few million parameters at 64×64 pixels, for tests and CPU demos."""
    return CLIPConfig(
        embed_dim=64,
        vision=VisionTowerConfig(
            timm_model="vit_base_patch32_clip_224",
            timm_kwargs={"patch_size": 8, "embed_dim": 64, "depth": 4, "num_heads": 4},
            image_size=64,
        ),
        text=TextTowerConfig(kind="clip", context_length=32, width=64, heads=4, layers=4),
    )


@register_model("siglip-vit-tiny")
def siglip_vit_tiny() -> CLIPConfig:
    """`clip-vit-tiny` with the logit bias a sigmoid (SigLIP) loss learns, initialized as in the SigLIP paper."""
    cfg = clip_vit_tiny()
    cfg.init_logit_scale = 2.302585  # log(10)
    cfg.init_logit_bias = -10.0
    cfg.loss = "siglip"
    return cfg
