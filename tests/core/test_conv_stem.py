"""`vision.stem="conv"`: a ViT whose linear patch embedding is replaced by stride-2 conv stages down to the same
patch grid (Xiao et al. 2021), so a token sees past its own patch's border; everything after the stem keeps its
shapes (an option, off by default)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vlzoo.core as vz
from vlzoo.core.errors import ConfigError
from vlzoo.core.towers.vision import VisionTower, VisionTowerConfig
from vlzoo.core.weights import save

TINY_VIT = {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def tower(timm_kwargs=TINY_VIT, **kw) -> VisionTower:
    torch.manual_seed(0)
    cfg = VisionTowerConfig(
        timm_model="vit_base_patch32_clip_224", timm_kwargs=timm_kwargs, image_size=48, **kw
    )
    return VisionTower(cfg, embed_dim=16).eval()


def first_tokens(t: VisionTower, images: torch.Tensor) -> torch.Tensor:
    """The stem's tokens, before position, attention or anything that mixes patches."""
    return t.trunk.patch_embed(images)


def test_conv_stem_halves_the_image_per_stage_down_to_the_patch_grid():
    t = tower(stem="conv", stem_width=8)
    convs = [m for m in t.trunk.patch_embed.modules() if isinstance(m, nn.Conv2d)]
    # 8×8 patches: three stride-2 3×3 stages (8, 16, 32 channels), then the 1×1 projection to the ViT's width
    assert [(c.kernel_size, c.stride, c.out_channels) for c in convs] == [
        ((3, 3), (2, 2), 8),
        ((3, 3), (2, 2), 16),
        ((3, 3), (2, 2), 32),
        ((1, 1), (1, 1), 32),
    ]
    images = torch.randn(2, 3, 48, 48)
    assert first_tokens(t, images).shape == first_tokens(tower(), images).shape == (2, 36, 32)
    assert t(images).shape == (2, 16)
    assert t.trunk.pos_embed.shape == tower().trunk.pos_embed.shape


def test_a_conv_stem_token_sees_across_its_patch_border_a_linear_one_does_not():
    images = torch.randn(1, 3, 48, 48)
    nudged = images.clone()
    nudged[0, :, 3, 7] += 5.0  # the last pixel column of patch (0, 0), beside patch (0, 1)
    for stem, sees_neighbour in (("patch", False), ("conv", True)):
        t = tower(stem=stem)
        with torch.no_grad():
            before, after = first_tokens(t, images), first_tokens(t, nudged)
        changed = (before - after).abs().amax(-1)[0] > 1e-6
        assert changed[0], stem  # its own patch's token moves
        assert bool(changed[1]) is sees_neighbour, stem
        assert not changed[2:6].any(), stem  # patches two and more columns away: no receptive field there


def test_non_square_patches_get_stride_one_where_their_side_is_done():
    t = tower(timm_kwargs={**TINY_VIT, "patch_size": (4, 8)}, stem="conv", stem_width=4)
    strides = [m.stride for m in t.trunk.patch_embed.modules() if isinstance(m, nn.Conv2d)]
    assert strides == [(2, 2), (2, 2), (1, 2), (1, 1)]
    assert first_tokens(t, torch.randn(1, 3, 48, 48)).shape == (1, 12 * 6, 32)


def test_the_architectures_own_patch_size_is_used_when_not_given():
    # vit_base_patch32: 32×32 patches -> five stride-2 stages on a 64×64 image, a 2×2 grid
    cfg = VisionTowerConfig(
        timm_model="vit_base_patch32_clip_224",
        timm_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2},
        image_size=64,
        stem="conv",
        stem_width=4,
    )
    t = VisionTower(cfg, embed_dim=16)
    assert sum(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in t.modules()) == 5
    assert first_tokens(t, torch.randn(1, 3, 64, 64)).shape == (1, 4, 32)


def test_the_demo_model_with_a_conv_stem_saves_and_loads_back(tmp_path):
    model = vz.create_model(
        "clip-vit-tiny", vision={"pool": "max", "pos_embed_init": "sincos", "stem": "conv"}
    )
    stem_conv = next(m for m in model.visual.trunk.patch_embed.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        stem_conv.weight.add_(0.25)  # as if trained
    loaded = vz.create_model("clip-vit-tiny", pretrained=save(model, tmp_path / "m.safetensors"))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.eval().encode_image(images), model.eval().encode_image(images))


@pytest.mark.parametrize(
    ("model", "kwargs", "stem", "message"),
    [
        ("vit_base_patch32_clip_224", TINY_VIT, "stacked", "must be 'patch' or 'conv'"),
        ("vit_base_patch32_clip_224", {**TINY_VIT, "patch_size": 6}, "conv", "must be powers of 2"),
        ("resnet18", {}, "conv", "needs a ViT"),
    ],
)
def test_unknown_stems_odd_patches_and_non_vits_are_refused(model, kwargs, stem, message):
    cfg = VisionTowerConfig(timm_model=model, timm_kwargs=kwargs, image_size=48, stem=stem)
    with pytest.raises(ConfigError, match=message):
        VisionTower(cfg, embed_dim=16)
