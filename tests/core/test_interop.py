"""Weights saved by open_clip and by transformers load into vlzoo and give the same embeddings; vlzoo's own
export round-trips; bad checkpoints fail naming the keys at fault."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors.torch import save_file

import vlzoo.core as vz
from vlzoo.core.errors import ConfigError, WeightsError
from vlzoo.core.weights import from_hf_clip, from_open_clip, save

CAPTIONS = ["a photo of a dog", "a small red circle above a blue square", "two cats on a sofa"]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def open_clip_vit_b_32():
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32").eval()
    with torch.no_grad():  # random weights, but not the init's zeros/ones where a bug could hide
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("file_format", ["pt", "safetensors"])
def test_open_clip_checkpoint_gives_the_same_embeddings(tmp_path, open_clip_vit_b_32, images, file_format):
    reference = open_clip_vit_b_32
    path = tmp_path / f"open_clip_vit_b_32.{file_format}"
    if file_format == "pt":
        torch.save(
            {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path
        )
    else:
        save_file(reference.state_dict(), str(path))
    model = vz.create_model("clip-vit-b-32", pretrained=path).eval()
    tokens = open_clip.tokenize(CAPTIONS)
    with torch.no_grad():
        image_diff = _max_diff(model.encode_image(images), reference.encode_image(images, normalize=True))
        text_diff = _max_diff(model.encode_text(tokens), reference.encode_text(tokens, normalize=True))
        ours_tokenized = model.encode_text(vz.get_tokenizer("clip-vit-b-32")(CAPTIONS))
    print(
        f"open_clip ViT-B-32 ({file_format}): image max|Δ| = {image_diff:.2e}, text max|Δ| = {text_diff:.2e}"
    )
    assert image_diff <= TOLERANCE
    assert text_diff <= TOLERANCE
    assert _max_diff(ours_tokenized, reference.encode_text(tokens, normalize=True)) <= TOLERANCE
    assert model.scale().item() == pytest.approx(reference.logit_scale.exp().item(), rel=1e-6)


def test_open_clip_resnet_checkpoint_gives_the_same_embeddings(tmp_path, images):
    torch.manual_seed(0)
    reference = open_clip.create_model("RN50").eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path = tmp_path / "open_clip_rn50.safetensors"
    save_file(reference.state_dict(), str(path))
    model = vz.create_model("clip-rn50", pretrained=path).eval()
    tokens = open_clip.tokenize(CAPTIONS)
    with torch.no_grad():
        image_diff = _max_diff(
            model.encode_image(images[:2]), reference.encode_image(images[:2], normalize=True)
        )
        text_diff = _max_diff(model.encode_text(tokens), reference.encode_text(tokens, normalize=True))
    print(f"open_clip RN50: image max|Δ| = {image_diff:.2e}, text max|Δ| = {text_diff:.2e}")
    assert image_diff <= TOLERANCE
    assert text_diff <= TOLERANCE


def test_hf_clip_directory_gives_the_same_embeddings(tmp_path, images):
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_attention_heads": 8,
            "num_hidden_layers": 12,
        },
        vision_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "image_size": 224,
            "patch_size": 32,
        },
        projection_dim=512,
    )
    torch.manual_seed(0)
    reference = CLIPModel(config).eval()
    reference.save_pretrained(tmp_path / "hf_clip")
    model = vz.create_model("clip-vit-b-32", pretrained=tmp_path / "hf_clip").eval()
    # transformers' CLIP uses QuickGELU by default; vlzoo read that from config.json
    assert model.config.text.act == "quick_gelu" and model.config.vision.act_layer == "quick_gelu"
    text = vz.get_tokenizer("clip-vit-b-32")(CAPTIONS)
    with torch.no_grad():
        ref_image = reference.get_image_features(pixel_values=images)
        ref_text = reference.get_text_features(input_ids=text.input_ids, attention_mask=text.attention_mask)
        ref_image = getattr(ref_image, "pooler_output", ref_image)  # a tensor before transformers 5
        ref_text = getattr(ref_text, "pooler_output", ref_text)
        image_diff = _max_diff(model.encode_image(images), torch.nn.functional.normalize(ref_image, dim=-1))
        text_diff = _max_diff(model.encode_text(text), torch.nn.functional.normalize(ref_text, dim=-1))
    print(f"HF CLIPModel ViT-B/32: image max|Δ| = {image_diff:.2e}, text max|Δ| = {text_diff:.2e}")
    assert image_diff <= TOLERANCE
    assert text_diff <= TOLERANCE


def test_converters_accept_state_dicts(open_clip_vit_b_32):
    from transformers import CLIPConfig, CLIPModel

    model = vz.create_model("clip-vit-b-32")
    converted = from_open_clip(open_clip_vit_b_32.state_dict(), model)  # a converter gets the built model
    assert set(converted) == set(model.state_dict())
    small = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    hf = CLIPModel(small).state_dict()
    out = from_hf_clip(hf)
    layer0 = hf["vision_model.encoder.layers.0.self_attn.k_proj.weight"]
    assert torch.equal(out["visual.trunk.blocks.0.attn.qkv.weight"][32:64], layer0)
    with pytest.raises(WeightsError, match="not a Hugging Face CLIPModel"):
        from_hf_clip({"foo": torch.zeros(1)})


def _trained_tiny(seed: int = 0):
    torch.manual_seed(seed)
    model = vz.create_model("clip-vit-tiny", text={"act": "quick_gelu"})
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    return model


def test_save_roundtrip_rebuilds_the_architecture(tmp_path):
    model = _trained_tiny().eval()
    path = save(model, tmp_path / "run")
    assert path.name == "model.safetensors"
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["model"] == "clip-vit-tiny" and saved["config"]["text"]["act"] == "quick_gelu"
    loaded = vz.create_model("clip-vit-tiny", pretrained=path).eval()
    assert loaded.config.text.act == "quick_gelu"  # came from the JSON, not from the caller
    images = torch.randn(2, 3, 64, 64)
    text = vz.get_tokenizer("clip-vit-tiny")(["a red circle", "a blue square"])
    assert torch.equal(loaded.encode_image(images), model.encode_image(images))
    assert torch.equal(loaded.encode_text(text), model.encode_text(text))
    assert loaded.logit_scale.item() == 3.0
    with pytest.raises(WeightsError, match=r"weights of 'clip-vit-tiny'.*not of 'siglip-vit-tiny'"):
        vz.create_model("siglip-vit-tiny", pretrained=path)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = _trained_tiny().state_dict()
    state.pop("text.head.weight")
    state["visual.extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as err:
        vz.create_model("clip-vit-tiny", pretrained=path)
    message = str(err.value)
    assert "missing keys (1): text.head.weight" in message
    assert "unexpected keys (1): visual.extra.weight" in message
    assert "strict=False" in message
    model = vz.create_model("clip-vit-tiny", pretrained=path, strict=False)
    assert torch.equal(model.visual.trunk.cls_token, state["visual.trunk.cls_token"])


def test_other_architecture_is_named_per_key(tmp_path):
    path = save(_trained_tiny(), tmp_path / "tiny")
    path.with_suffix(".json").unlink()  # without its config the file claims nothing
    with pytest.raises(WeightsError, match=r"text\.head\.weight: checkpoint \(64, 64\) vs model \(32, 64\)"):
        vz.create_model("clip-vit-tiny", pretrained=path, embed_dim=32, text={"act": "quick_gelu"})


def test_position_embeddings_are_resampled_for_another_image_size(tmp_path):
    path = save(_trained_tiny(), tmp_path / "tiny")
    model = vz.create_model("clip-vit-tiny", pretrained=path, vision={"image_size": 96})
    assert model.visual.trunk.pos_embed.shape == (1, 1 + 12 * 12, 64)
    assert model.encode_image(torch.randn(1, 3, 96, 96)).shape == (1, 64)


def test_pretrained_tags_and_their_config():
    with pytest.raises(vz.UnknownModelError, match=r"no pretrained tag 'nope'.*openai"):
        vz.create_model("clip-vit-b-32:nope")
    with pytest.raises(WeightsError, match=r"neither one of its tags \(.*openai"):
        vz.create_model("clip-vit-b-32", pretrained="nope")
    # OpenAI's weights need QuickGELU: asking for them with GELU is refused before any download
    with pytest.raises(ConfigError, match=r"need text\.act='quick_gelu', not 'gelu'"):
        vz.create_model("clip-vit-b-32:openai", text={"act": "gelu"})


def test_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _trained_tiny().state_dict(), "hook": _Payload()}, path)
    with pytest.raises(WeightsError, match=r"evil\.pt"):
        vz.create_model("clip-vit-tiny", pretrained=path)


class _Payload:
    """Any class outside torch's allow-list: `weights_only=True` must refuse to rebuild it."""
