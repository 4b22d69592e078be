"""RadCLIP: the 2D model's frozen text side and fixed temperature, the slice-pooling adapter (order, padding,
batching), the frozen 2D tower of the 3D stage, loading 2D weights into it, and the tiny recipes on
med-toyworld."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers.recipes import MED_TOYWORLD, fit_recipe, generated

import vlzoo.core as vz
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import encode_pair_batch
from vlzoo.core.weights import save
from vlzoo.medical.radclip import SliceAdapterConfig, SlicePoolingAdapter

D = 64


@pytest.fixture(scope="module")
def model3d():
    torch.manual_seed(0)
    return vz.create_model("radclip-3d-tiny").eval()


@pytest.fixture(scope="module")
def tokenizer():
    return vz.get_tokenizer("radclip-3d-tiny")


def _volumes(batch: int = 2, slices: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, slices, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _trained_looking(adapter: SlicePoolingAdapter) -> SlicePoolingAdapter:
    """An adapter whose [CLS] query is not zero and whose slice positions differ as much as the slices do,
    as after training (at initialization attention is uniform and positions are 0.02-small)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        adapter.cls_token.normal_(0, 1.0, generator=gen)
        if adapter.pos_embed is not None:
            adapter.pos_embed.normal_(0, 1.0, generator=gen)
    return adapter.eval()


# ---------------------------------------------------------------------------------------------- adapter


def test_learned_slice_positions_make_pooling_order_aware():
    adapter = _trained_looking(SlicePoolingAdapter(D, SliceAdapterConfig(heads=4, max_slices=8)))
    slices = torch.randn(2, 5, D, generator=torch.Generator().manual_seed(2))
    order = torch.tensor([3, 0, 4, 1, 2])
    pooled, _ = adapter(slices)
    permuted, _ = adapter(slices[:, order])
    # The same slices in another order are another volume: the embedding must move (clearly, not by rounding).
    assert (pooled - permuted).norm(dim=-1).min() > 0.1 * pooled.norm(dim=-1).max()
    # ... and only through the position embeddings: moving them along with the slices gives the same volume.
    with torch.no_grad():
        adapter.pos_embed[:5] = adapter.pos_embed[:5][order].clone()
    torch.testing.assert_close(adapter(slices[:, order])[0], pooled, rtol=1e-5, atol=1e-5)


def test_pooling_without_positions_is_order_invariant():
    adapter = _trained_looking(
        SlicePoolingAdapter(D, SliceAdapterConfig(heads=4, depth=2, max_slices=8, position="none"))
    )
    slices = torch.randn(2, 5, D, generator=torch.Generator().manual_seed(2))
    order = torch.tensor([3, 0, 4, 1, 2])
    pooled, attention = adapter(slices)
    permuted, permuted_attention = adapter(slices[:, order])
    torch.testing.assert_close(permuted, pooled, rtol=1e-5, atol=1e-5)
    # Each slice keeps its attention weight wherever it sits.
    torch.testing.assert_close(permuted_attention, attention[:, order], rtol=1e-5, atol=1e-6)


def test_untrained_adapter_is_mean_pooling_of_normalized_slices():
    """Zero [CLS] query, identity value/output maps: attention is uniform over [CLS] + the real slices and
    the output is the mean of the layer-normed slices (the LayerNorm of the zero [CLS] is zero)."""
    adapter = SlicePoolingAdapter(D, SliceAdapterConfig(heads=4, max_slices=8, position="none"))
    slices = torch.randn(3, 6, D, generator=torch.Generator().manual_seed(3))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    pooled, attention = adapter(slices, mask)
    n = mask.sum(1, keepdim=True).float()
    torch.testing.assert_close(attention, mask.float() / (n + 1))
    normed = F.layer_norm(slices, (D,))
    expected = (normed * mask[..., None]).sum(1) / (n + 1)
    torch.testing.assert_close(pooled, expected, rtol=1e-4, atol=1e-5)


def test_padded_slices_get_no_attention_and_change_nothing():
    adapter = _trained_looking(SlicePoolingAdapter(D, SliceAdapterConfig(heads=4, depth=2, max_slices=8)))
    slices = torch.randn(2, 6, D, generator=torch.Generator().manual_seed(4))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    pooled, attention = adapter(slices, mask)
    assert attention[0, 4:].eq(0).all() and attention[0, :4].gt(0).all()
    other = slices.clone()
    other[0, 4:] = 100 * torch.randn(2, D)
    torch.testing.assert_close(adapter(other, mask)[0], pooled)
    # Dropping the padding altogether gives the same embedding (positions 0..3 are unchanged).
    torch.testing.assert_close(adapter(slices[:1, :4])[0], pooled[:1], rtol=1e-5, atol=1e-5)


def test_model_ignores_the_content_of_padded_slices(model3d):
    volume = _volumes()
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    emb, attention = model3d.encode_volume(volume, mask, return_attention=True)
    noisy = volume.clone()
    noisy[0, 3:] = torch.rand(3, 3, 64, 64) * 50
    torch.testing.assert_close(model3d.encode_volume(noisy, mask), emb)
    assert attention[0, 3:].eq(0).all()
    assert attention.shape == (2, 6)


# ----------------------------------------------------------------------------------------- 3D encoding


def test_batched_slice_encoding_equals_slice_by_slice(model3d):
    volume = _volumes(batch=3, slices=5, seed=5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    with torch.no_grad():
        batched = model3d.encode_volume(volume, mask)
        chunked = model3d.encode_volume(volume, mask, chunk_size=2)
        # First principles: every real slice through the 2D tower alone, padding as zeros, then the adapter.
        slices = torch.zeros(3, 5, D)
        for b in range(3):
            for s in range(5):
                if mask[b, s]:
                    slices[b, s] = model3d.visual(volume[b, s : s + 1])[0]
        expected = F.normalize(model3d.adapter(slices, mask)[0], dim=-1)
    torch.testing.assert_close(batched, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(chunked, expected, rtol=1e-4, atol=1e-5)


def test_2d_images_and_retrieval_batches(model3d, tokenizer):
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model3d.encode_image(images), F.normalize(model3d.visual(images), dim=-1))
        volume, mask = _volumes(), torch.tensor([[1, 1, 0, 0, 0, 0], [1] * 6], dtype=torch.bool)
        batch = {"image": volume, "slice_mask": mask, "text": tokenizer(["a lesion", "no focal lesion"])}
        image_features, text_features = encode_pair_batch(model3d, batch)
        torch.testing.assert_close(image_features, model3d.encode_volume(volume, mask))
        torch.testing.assert_close(text_features, model3d.encode_text(batch["text"]))
        # A 5D tensor through encode_image is a volume without padding.
        torch.testing.assert_close(model3d.encode_image(volume), model3d.encode_volume(volume))


def test_bad_volumes_are_refused(model3d):
    with pytest.raises(DataError, match="slices, 3, height, width"):
        model3d.encode_volume(torch.randn(2, 3, 64, 64))
    with pytest.raises(DataError, match="no slice"):
        model3d.encode_volume(_volumes(), torch.tensor([[1, 1, 0, 0, 0, 0], [0] * 6], dtype=torch.bool))
    with pytest.raises(DataError, match="max_slices=32"):
        model3d.encode_volume(torch.zeros(1, 33, 3, 64, 64))
    with pytest.raises(ConfigError, match="max_slices"):
        vz.create_model("radclip-3d-tiny", volume_slices=64)


def test_3d_training_updates_only_the_adapter(tokenizer):
    torch.manual_seed(0)
    model = vz.create_model("radclip-3d-tiny").train()
    assert not model.visual.training and not model.text.training  # frozen towers stay in eval mode
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.adapter.named_parameters(prefix="adapter")}
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {
        "image": _volumes(batch=4, slices=4, seed=6),
        "slice_mask": torch.tensor(
            [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool
        ),
        "text": tokenizer(["a small solid nodule", "a large cyst", "no focal lesion", "a calcified nodule"]),
    }
    out = model(batch)
    torch.testing.assert_close(out["logit_scale"], torch.tensor(1 / 0.07))  # the notebook's fixed tau
    out["loss"].backward()
    assert all(p.grad is None for p in model.visual.parameters())
    assert all(p.grad is None for p in model.text.parameters())
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("adapter.") for k in changed)


def test_2d_model_freezes_the_text_side_and_the_temperature(tokenizer):
    model = vz.create_model("radclip-tiny")
    assert not any(p.requires_grad for p in model.text.parameters())  # projection included
    assert all(p.requires_grad for p in model.visual.parameters())
    assert not model.logit_scale.requires_grad
    unlocked = vz.create_model("radclip-tiny", lock_text_tower=False, temperature=None)
    assert all(p.requires_grad for p in unlocked.text.parameters()) and unlocked.logit_scale.requires_grad
    torch.testing.assert_close(unlocked.scale(), unlocked.logit_scale.exp())


# -------------------------------------------------------------------------------------------- weights


def test_3d_model_starts_from_saved_2d_weights(tmp_path: Path):
    torch.manual_seed(1)
    model2d = vz.create_model("radclip-tiny")
    path = save(model2d, tmp_path / "radclip2d")
    model3d = vz.create_model("radclip-3d-tiny", image_encoder_weights=str(path))
    for name, tensor in model2d.state_dict().items():
        torch.testing.assert_close(model3d.state_dict()[name], tensor, msg=name)
    assert model3d.config.image_encoder_weights is None  # the saved 3D model won't look for the 2D file
    # A 2D checkpoint of another architecture is refused with the field that differs.
    other = vz.create_model("radclip-tiny", embed_dim=32)
    other_path = save(other, tmp_path / "other2d")
    with pytest.raises(ConfigError, match="embed_dim"):
        vz.create_model("radclip-3d-tiny", image_encoder_weights=str(other_path))


def test_release_format_loads(tmp_path: Path):
    """The released `RadCLIP.pth` is a Hugging Face `CLIPModel` state dict saved with torch.save: a tiny one
    of the same layout loads into `radclip-tiny` and computes what transformers computes."""
    from transformers import CLIPConfig, CLIPModel

    cfg = vz.get_model_config("radclip-tiny")
    hf = CLIPModel(
        CLIPConfig(
            projection_dim=cfg.embed_dim,
            vision_config={
                "hidden_size": 64,
                "intermediate_size": 256,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "image_size": 64,
                "patch_size": 8,
                "hidden_act": "gelu",
                "layer_norm_eps": 1e-5,
            },
            text_config={
                "hidden_size": 64,
                "intermediate_size": 256,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "max_position_embeddings": 32,
                "vocab_size": 49408,
                "hidden_act": "gelu",
                "eos_token_id": 49407,
                "bos_token_id": 49406,
                "pad_token_id": 0,
                "layer_norm_eps": 1e-5,
            },
        )
    ).eval()
    torch.save(hf.state_dict(), tmp_path / "RadCLIP.pth")
    model = vz.create_model("radclip-tiny", pretrained=str(tmp_path / "RadCLIP.pth")).eval()
    images = torch.randn(2, 3, 64, 64)
    tokens = vz.get_tokenizer("radclip-tiny")(["a chest x-ray", "a ct of the liver"])
    with torch.no_grad():
        want_image = hf.get_image_features(pixel_values=images)
        want_text = hf.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        want_image = getattr(want_image, "pooler_output", want_image)
        want_text = getattr(want_text, "pooler_output", want_text)
        torch.testing.assert_close(
            model.encode_image(images, normalize=False), want_image, rtol=1e-4, atol=1e-5
        )
        torch.testing.assert_close(
            model.encode_text(tokens, normalize=False), want_text, rtol=1e-4, atol=1e-5
        )
    spec = vz.registry.get_pretrained_spec("radclip-vit-l-14", "official")
    assert (spec.hf_hub_id, spec.filename, spec.converter) == ("zluvolyote/RadCLIP", "RadCLIP.pth", "hf_clip")


# ----------------------------------------------------------------------------- tiny recipes on med-toyworld


def assert_beats_chance(metrics: dict, n_gallery: int, recall_factor: float, rank_factor: float) -> None:
    # Chance: the right item at a uniform rank among n_gallery, so R@10 = 10/n and the median rank n/2.
    chance_r10 = 100 * 10 / n_gallery
    assert metrics["text_to_image_R@10"] >= recall_factor * chance_r10, metrics
    assert metrics["text_to_image_median_rank"] <= rank_factor * n_gallery / 2, metrics


@pytest.fixture(scope="module")
def radclip_2d_run(tmp_path_factory):
    data_dir = generated(tmp_path_factory, "med-toyworld", **MED_TOYWORLD)
    run_dir = tmp_path_factory.mktemp("radclip-tiny")
    run = fit_recipe(
        "radclip-tiny", {"data.data_dir": str(data_dir), "trainer.default_root_dir": str(run_dir)}
    )
    return run.metrics, run_dir / "model.safetensors", data_dir


@pytest.mark.slow
def test_tiny_2d_recipe_beats_chance_on_med_toyworld(radclip_2d_run):
    metrics, weights, _ = radclip_2d_run
    print("radclip-tiny 2D test retrieval:", metrics)
    assert_beats_chance(metrics, MED_TOYWORLD["n_test"], recall_factor=2.5, rank_factor=0.6)
    assert weights.is_file()


@pytest.mark.slow
def test_tiny_3d_recipe_beats_chance_on_med_toyworld(radclip_2d_run, tmp_path):
    _, weights_2d, data_dir = radclip_2d_run
    run = fit_recipe(
        "radclip-3d-tiny",
        {"data.data_dir": str(data_dir), "trainer.default_root_dir": str(tmp_path)},
        model_overrides={"image_encoder_weights": str(weights_2d)},
    )
    metrics, module = run.metrics, run.module
    print("radclip-3d-tiny 3D test retrieval:", metrics)
    # Modest but clear: the ceiling of the tiny 2D encoder is low (embedding each volume by its lesion slice,
    # which the adapter must find unaided, retrieves reports at ~40 % R@10 on med-toyworld).
    assert_beats_chance(metrics, MED_TOYWORLD["n_test"], recall_factor=1.8, rank_factor=0.8)
    # The 2D towers the adapter was trained on are the 2D run's, untouched.
    trained_2d = vz.create_model("radclip-tiny", pretrained=str(weights_2d))
    for name, tensor in trained_2d.visual.state_dict().items():
        torch.testing.assert_close(module.model.visual.state_dict()[name], tensor, msg=name)
