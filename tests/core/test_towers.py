"""Image towers (timm), text towers (transformers), freezing and gradient checkpointing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vlzoo.core as vz
from vlzoo.core.errors import DataError
from vlzoo.core.towers.text import TextTower, TextTowerConfig
from vlzoo.core.towers.tokenizers import HFTokenizer
from vlzoo.core.towers.vision import VisionTower, VisionTowerConfig

TINY_VIT = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}


def _vit(**kw) -> VisionTower:
    cfg = VisionTowerConfig(timm_model="vit_base_patch32_clip_224", timm_kwargs=TINY_VIT, image_size=32, **kw)
    return VisionTower(cfg, embed_dim=16).eval()


def test_vision_tokens_are_projected_patches():
    tower = _vit()
    images = torch.randn(3, 3, 32, 32)
    pooled, tokens = tower(images, output_tokens=True)
    assert pooled.shape == (3, 16)
    assert tokens.shape == (3, 16, 16)  # (32/8)² patches, no class token
    # the pooled vector is the projected class token: the same trunk features, the same head
    feats = tower.trunk.forward_features(images)
    assert torch.allclose(pooled, tower.head(feats[:, 0]), atol=1e-6)
    assert torch.allclose(tokens, tower.head(feats[:, 1:]), atol=1e-6)
    assert torch.allclose(tower(images), pooled)


def test_vision_pooling_choice_reaches_timm():
    avg = _vit(pool="avg")
    images = torch.randn(2, 3, 32, 32)
    feats = avg.trunk.forward_features(images)
    # timm's average pool: mean of the patch tokens, then its fc_norm
    expected = avg.head(avg.trunk.fc_norm(feats[:, 1:].mean(1)))
    assert torch.allclose(avg(images), expected, atol=1e-5)
    assert not torch.allclose(avg(images), avg.head(avg.trunk.fc_norm(feats[:, 0])), atol=1e-3)


def test_cnn_tower_gives_one_token_per_position():
    cfg = VisionTowerConfig(timm_model="resnet18", image_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)
    tower = VisionTower(cfg, embed_dim=8).eval()
    pooled, tokens = tower(torch.randn(2, 3, 64, 64), output_tokens=True)
    assert pooled.shape == (2, 8)
    assert tokens.shape == (2, 4, 8)  # 64/32 = 2 → 2×2 positions


def test_multispectral_input_channels():
    tower = VisionTower(
        VisionTowerConfig(timm_model="resnet18", in_chans=5, image_size=32), embed_dim=8
    ).eval()
    assert tower.trunk.conv1.in_channels == 5
    assert tower(torch.randn(1, 5, 32, 32)).shape == (1, 8)
    with pytest.raises(DataError, match=r"\(batch, 5, height, width\).*\(1, 3, 32, 32\)"):
        tower(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.randn(3, 32, 32), r"got \(3, 32, 32\)"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating"),
    ],
)
def test_bad_image_tensors_are_named(bad, match):
    with pytest.raises(DataError, match=match):
        _vit()(bad)


def _hf_tower(tiny_bert_dir, pool) -> TextTower:
    cfg = TextTowerConfig(kind="hf", hf_model=str(tiny_bert_dir), pool=pool, context_length=12)
    torch.manual_seed(0)
    return TextTower(cfg, embed_dim=8).eval()


@pytest.mark.parametrize("pool", ["cls", "mean", "eos"])
def test_hf_text_pooling(tiny_bert_dir, pool):
    tower = _hf_tower(tiny_bert_dir, pool)
    tok = HFTokenizer(str(tiny_bert_dir), context_length=12)
    text = tok(["a red circle", "the small blue square above a green triangle"])
    tokens, pooled, mask = tower.forward_tokens(text)
    n = int(text.attention_mask[0].sum())  # [CLS] a red circle [SEP]
    expected = {"cls": tokens[0, 0], "mean": tokens[0, :n].mean(0), "eos": tokens[0, n - 1]}[pool]
    assert torch.allclose(pooled[0], expected, atol=1e-6)
    assert torch.equal(mask, text.attention_mask)
    assert tower(text).shape == (2, 8)


def test_hf_text_ignores_padding_content(tiny_bert_dir):
    tower = _hf_tower(tiny_bert_dir, "mean")
    text = HFTokenizer(str(tiny_bert_dir), context_length=12)(["a red circle"])
    garbage = text.input_ids.clone()
    garbage[text.attention_mask == 0] = 7
    text2 = vz.TokenizedText(garbage, text.attention_mask)
    assert torch.allclose(tower(text), tower(text2), atol=1e-6)


def test_hf_text_tower_loads_the_saved_weights(tiny_bert_dir):
    from transformers import AutoModel

    tower = _hf_tower(tiny_bert_dir, "cls")
    reference = AutoModel.from_pretrained(str(tiny_bert_dir))
    for name, value in reference.state_dict().items():
        if name in tower.transformer.state_dict():
            assert torch.equal(tower.transformer.state_dict()[name], value), name


def test_clip_text_pools_at_eot_and_ignores_what_follows():
    model = vz.create_model("clip-vit-tiny").eval()
    text = vz.get_tokenizer("clip-vit-tiny")(["a red circle above a blue square"])
    junk = text.input_ids.clone()
    junk[text.attention_mask == 0] = 1234  # causal attention: tokens after EOT cannot matter
    assert torch.allclose(model.encode_text(text), model.encode_text(junk), atol=1e-6)
    tokens, pooled, _ = model.text.forward_tokens(text)
    eot = int(text.attention_mask.sum()) - 1
    assert torch.allclose(pooled[0], tokens[0, eot])


def test_bad_token_tensors_are_named():
    model = vz.create_model("clip-vit-tiny")
    with pytest.raises(DataError, match="at most 32"):
        model.encode_text(torch.zeros(1, 40, dtype=torch.long))
    with pytest.raises(DataError, match=r"\(batch, length\)"):
        model.encode_text(torch.zeros(40, dtype=torch.long))


def test_lock_image_tower_freezes_all_but_the_last_groups():
    model = vz.create_model("clip-vit-tiny")
    model.lock_image_tower(unlocked_groups=1)
    trunk = model.visual.trunk
    trainable = {n for n, p in trunk.named_parameters() if p.requires_grad}
    # timm's coarse groups: stem, then one per block; the final norm belongs to the last block's group
    assert {"norm.weight", "norm.bias", "blocks.3.mlp.fc1.weight"} <= trainable
    assert not any(n.startswith(("blocks.2.", "patch_embed")) for n in trainable)
    assert all(p.requires_grad for p in model.visual.head.parameters())
    model.lock_image_tower(unlocked_groups=2)
    trainable = {n for n, p in trunk.named_parameters() if p.requires_grad}
    assert any(n.startswith("blocks.2.") for n in trainable) and not any(
        n.startswith("blocks.1.") for n in trainable
    )
    loss = model.encode_image(torch.randn(2, 3, 64, 64)).sum()
    loss.backward()
    assert trunk.patch_embed.proj.weight.grad is None
    assert trunk.blocks[3].mlp.fc1.weight.grad is not None


def test_lock_text_tower_keeps_last_layers_trainable():
    model = vz.create_model("clip-vit-tiny")
    model.lock_text_tower(unlocked_layers=1)
    params = dict(model.text.transformer.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert trainable and all(".layers.3." in n for n in trainable)
    assert all(p.requires_grad for p in model.text.head.parameters())


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = vz.create_model("clip-vit-tiny")
    images = torch.randn(2, 3, 64, 64)
    text = vz.get_tokenizer("clip-vit-tiny")(["a red circle", "a blue square"])

    def grads():
        model.zero_grad()
        out = model(images, text)
        (out["image_features"] @ out["text_features"].T).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_grad_checkpointing(True)
    assert model.visual.trunk.grad_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], atol=1e-5), name


def test_normalize_flag():
    model = vz.create_model("clip-vit-tiny").eval()
    images = torch.randn(2, 3, 64, 64)
    raw = model.encode_image(images, normalize=False)
    assert torch.allclose(model.encode_image(images), F.normalize(raw, dim=-1))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2))


def test_forward_on_a_batch_returns_the_configured_loss():
    from vlzoo.core.losses import ClipLoss, SigLipLoss

    images = torch.randn(4, 3, 64, 64)
    for name, reference in (("clip-vit-tiny", ClipLoss()), ("siglip-vit-tiny", SigLipLoss())):
        model = vz.create_model(name).eval()
        text = vz.get_tokenizer(name)(["a red circle", "a blue square", "a green triangle", "a dog"])
        out = model({"image": images, "text": text})
        extra = (out["logit_bias"],) if "logit_bias" in out else ()
        expected = reference(out["image_features"], out["text_features"], out["logit_scale"], *extra)
        assert torch.allclose(out["loss"], expected)
    with pytest.raises(vz.ConfigError, match="unknown loss 'nope'"):
        vz.create_model("clip-vit-tiny", loss="nope")


# --------------------------------------------------------------------------- (height, width) image sizes


def test_a_vit_tower_built_for_height_by_width_encodes_such_images():
    cfg = VisionTowerConfig(timm_model="vit_base_patch16_224", timm_kwargs=TINY_VIT, image_size=(256, 128))
    tower = VisionTower(cfg, embed_dim=16).eval()
    pooled, tokens = tower(torch.randn(2, 3, 256, 128), output_tokens=True)
    assert pooled.shape == (2, 16)
    assert tokens.shape == (2, (256 // 8) * (128 // 8), 16)  # a 32 × 16 patch grid, not a square's
    assert tower.trunk.pos_embed.shape[1] == 1 + 32 * 16
    # a square batch, or the size transposed, is named as the wrong size before timm sees it
    for bad in ((2, 3, 256, 256), (2, 3, 128, 256)):
        with pytest.raises(DataError, match=rf"built for 256×128 .*got {bad[2]}×{bad[3]}"):
            tower(torch.randn(*bad))


def test_a_cnn_tower_takes_a_height_by_width_size_and_any_other():
    cfg = VisionTowerConfig(timm_model="resnet18", image_size=(64, 32))
    tower = VisionTower(cfg, embed_dim=8).eval()
    assert tower.fixed_hw is None
    assert tower(torch.randn(1, 3, 64, 32)).shape == tower(torch.randn(1, 3, 96, 96)).shape == (1, 8)


@pytest.mark.parametrize("bad", [(0, 128), (256,), (256, 128, 3), "256x128", 12.5, (256.0, 128)])
def test_a_bad_image_size_is_a_config_error(bad):
    from vlzoo.core.errors import ConfigError

    with pytest.raises(ConfigError, match="image_size must be a positive int or"):
        VisionTower(VisionTowerConfig(timm_model="resnet18", image_size=bad), embed_dim=8)


def test_the_transforms_of_a_height_by_width_tower_keep_the_aspect():
    import numpy as np
    from PIL import Image

    from vlzoo.core.data import build_transform

    cfg = VisionTowerConfig(image_size=(256, 128), mean=(0.0,) * 3, std=(1.0,) * 3)
    pixels = np.zeros((100, 100, 3), np.uint8)
    pixels[40:60, 45:55] = 255  # a 20 × 10 (height × width) block in the middle of a square image
    out = build_transform(cfg, train=False)(Image.fromarray(pixels))
    assert out.shape == (3, 256, 128)
    rows, cols = np.nonzero(out[0].numpy() > 0.5)
    # covered (×2.56, 256 × 256) then center cropped: the block is 51 × 26, still twice as tall as wide
    assert abs(np.ptp(rows) + 1 - 51) <= 2 and abs(np.ptp(cols) + 1 - 26) <= 2
    assert abs(rows.mean() - 127.5) < 1.5 and abs(cols.mean() - 63.5) < 1.5
    train = build_transform(cfg, train=True)(Image.fromarray(pixels))
    assert train.shape == (3, 256, 128)
    album = build_transform(cfg, train=False, albumentations=[{"type": "HorizontalFlip", "p": 1.0}])
    flipped = album(Image.fromarray(pixels))
    assert flipped.shape == (3, 256, 128)
    rows, cols = np.nonzero(flipped[0].numpy() > 0.5)
    assert abs(np.ptp(rows) + 1 - 51) <= 2 and abs(np.ptp(cols) + 1 - 26) <= 2


def test_a_registered_square_model_is_overridden_to_height_by_width_and_back():
    from vlzoo.core.errors import ConfigError

    # JSON and YAML give a list; the field is declared `int | tuple[int, int]`, so both forms are taken
    net = vz.create_model("clip-vit-tiny", vision={"image_size": [64, 32]}, text={"layers": 1}).eval()
    assert net.config.vision.image_size == (64, 32)
    with torch.no_grad():
        assert net.encode_image(torch.randn(2, 3, 64, 32)).shape == (2, 64)
    back = vz.get_model_config("clip-vit-tiny", vision={"image_size": (64, 32)})
    assert vz.apply_overrides(back, {"vision": {"image_size": 48}}).vision.image_size == 48
    with pytest.raises(ConfigError, match=r"'clip-vit-tiny\.vision\.image_size' expects int, got str"):
        vz.get_model_config("clip-vit-tiny", vision={"image_size": "64x32"})
