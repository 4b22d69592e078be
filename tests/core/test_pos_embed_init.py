"""`vision.pos_embed_init="sincos"`: a ViT's learned position embedding starts from MAE's 2-D sine-cosine table
instead of timm's small random one, so position tells patches apart from the first step (an option, off by
default)."""

from __future__ import annotations

import math

import pytest
import torch

import vlzoo.core as vz
from vlzoo.core.errors import ConfigError
from vlzoo.core.towers.vision import VisionTower, VisionTowerConfig
from vlzoo.core.weights import save

TINY_VIT = {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def tower(**kw) -> VisionTower:
    cfg = VisionTowerConfig(timm_model="vit_base_patch32_clip_224", timm_kwargs=TINY_VIT, image_size=48, **kw)
    return VisionTower(cfg, embed_dim=16)


def test_sincos_puts_each_patch_row_and_column_on_sines_and_cosines():
    pos = tower(pos_embed_init="sincos").trunk.pos_embed
    assert pos.requires_grad  # a starting point, still learned
    grid, dim = 6, 32  # 48 / 8 patches a side; a quarter of the channels per (sin|cos, row|column)
    quarter = dim // 4
    assert torch.count_nonzero(pos[0, 0]) == 0  # the class token has no position
    for row, col in ((0, 0), (2, 5), (5, 1)):
        token = pos[0, 1 + row * grid + col]
        for band in (0, 3, quarter - 1):
            freq = 1.0 / 10000 ** (band / quarter)
            expected = [
                math.sin(row * freq),
                math.sin(col * freq),
                math.cos(row * freq),
                math.cos(col * freq),
            ]
            got = [token[k * quarter + band].item() for k in range(4)]
            assert got == pytest.approx(expected, abs=1e-6), (row, col, band)


def test_default_init_is_timms_small_random_table():
    pos = tower().trunk.pos_embed
    assert 0.005 < pos.std().item() < 0.05  # N(0, 0.02): what sincos replaces


def test_the_demo_model_keeps_sincos_through_create_model_and_its_weights_load_back(tmp_path):
    model = vz.create_model("clip-vit-tiny", vision={"pool": "max", "pos_embed_init": "sincos"})
    pos = model.visual.trunk.pos_embed
    assert pos[0, 1 + 8 + 0, 0].item() == pytest.approx(math.sin(1.0))  # row 1, column 0, band 0
    with torch.no_grad():
        pos.add_(0.25)  # as if trained: loading must not re-initialize it
    path = save(model, tmp_path / "m.safetensors")
    loaded = vz.create_model("clip-vit-tiny", pretrained=path)
    assert torch.equal(loaded.visual.trunk.pos_embed, pos)


@pytest.mark.parametrize(
    ("model", "init", "message"),
    [
        ("vit_base_patch32_clip_224", "fourier", "must be 'sincos' or None"),
        ("resnet18", "sincos", "no ViT position embedding"),
    ],
)
def test_unknown_init_or_a_trunk_without_position_embedding_is_refused(model, init, message):
    kwargs = {"timm_kwargs": TINY_VIT} if model.startswith("vit") else {}
    cfg = VisionTowerConfig(timm_model=model, image_size=48, pos_embed_init=init, **kwargs)
    with pytest.raises(ConfigError, match=message):
        VisionTower(cfg, embed_dim=16)
