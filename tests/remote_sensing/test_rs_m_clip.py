"""RS-M-CLIP: EMA teacher, DINO head and loss against formulas written here, multi-crop views, the open_clip
multilingual-checkpoint converter, and the tiny recipe learning retrieval on rs-toyworld."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.recipes import fit_recipe, load_recipe

import vlzoo.core as vz
from vlzoo.core.errors import DataError, WeightsError
from vlzoo.core.weights.checkpoint import PretrainedSource, load_weights
from vlzoo.remote_sensing.rs_m_clip import (
    DINOHead,
    DINOLoss,
    SelfDistillConfig,
    from_open_clip_hf_text,
    teacher_momentum,
    teacher_temperature,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# A smaller head than the tiny recipe's keeps these unit tests fast; the recipe's own is trained below.
SMALL = {"distill": {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16}, "crops": {"local_crops": 3}}


def _model(**overrides):
    torch.manual_seed(0)
    return vz.create_model("rs-m-clip-tiny", **{**SMALL, **overrides})


def _batch(model, n: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    size, local = cfg.vision.image_size, cfg.crops.local_size
    c = cfg.vision.in_chans
    return {
        "image": torch.randn(n, c, size, size, generator=g),
        "global_crops": torch.randn(n, cfg.crops.global_crops, c, size, size, generator=g),
        "local_crops": torch.randn(n, cfg.crops.local_crops, c, local, local, generator=g),
        "text": vz.get_tokenizer("rs-m-clip-tiny")([f"scene {i} with a river" for i in range(n)]),
    }


# ------------------------------------------------------------------------------------ EMA teacher


def test_teacher_starts_as_the_student_and_gets_no_gradients():
    model = _model().train()
    for (name, t), s in zip(model.teacher["visual"].state_dict().items(), model.visual.state_dict().values()):
        assert torch.equal(t, s), name
    out = model(_batch(model))
    out["loss"].backward()
    teacher_params = list(model.teacher.parameters())
    assert teacher_params and all(not p.requires_grad and p.grad is None for p in teacher_params)
    assert all(p.grad is not None for p in model.student_head.mlp.parameters())
    assert not model.teacher.training and model.visual.training  # the teacher runs without drop-path


def test_teacher_moves_exactly_by_the_momentum_formula():
    model = _model().train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(_batch(model))["loss"].backward()
    optimizer.step()
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    student = {
        **{f"visual.{k}": v.clone() for k, v in model.visual.state_dict().items()},
        **{f"head.{k}": v.clone() for k, v in model.student_head.state_dict().items()},
    }
    done, total, base = 31, 200, 0.996  # the hook gets the number of optimizer steps taken
    model.on_train_step_end(done, total)
    it = done - 1  # DINO's 0-based iteration index of the step just taken
    m = 1.0 + (base - 1.0) * 0.5 * (1.0 + math.cos(math.pi * it / total))  # DINO's cosine schedule
    moved = 0
    for key, after in model.teacher.state_dict().items():
        expected = m * before[key] + (1.0 - m) * student[key]
        torch.testing.assert_close(after, expected, rtol=0, atol=1e-6, msg=key)  # float rounding only
        moved += int(not torch.equal(after, before[key]))
    assert moved > 10  # the optimizer step made the student differ, so the teacher moved


def test_momentum_schedule_runs_from_base_to_final():
    assert teacher_momentum(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert teacher_momentum(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert teacher_momentum(100, 100, 0.996, 1.0) == pytest.approx(1.0)
    assert teacher_momentum(37, 100, 0.99, 0.99) == pytest.approx(0.99)  # equal ends: a fixed momentum
    warm = SelfDistillConfig(warmup_teacher_temp=0.04, teacher_temp=0.07, teacher_temp_warmup=0.5)
    temps = [teacher_temperature(step, 100, warm) for step in (0, 25, 50, 99)]
    assert temps == pytest.approx([0.04, 0.055, 0.07, 0.07])  # linear over the first half, then constant


def test_last_layer_gets_zero_gradients_while_frozen():
    model = _model(distill={**SMALL["distill"], "freeze_last_layer": 0.5}).train()
    v = model.student_head.last_layer.parametrizations.weight.original1
    model(_batch(model))["loss"].backward()
    assert v.grad is not None and torch.count_nonzero(v.grad) == 0  # frozen from the first step on
    assert torch.count_nonzero(model.student_head.mlp[0].weight.grad) > 0  # the rest of the head learns
    model.zero_grad()
    model.on_train_step_end(5, 10)  # half of the steps done: no longer frozen
    model(_batch(model))["loss"].backward()
    assert torch.count_nonzero(v.grad) > 0


# ---------------------------------------------------------------------------------------- DINO head


def test_dino_head_shapes_bottleneck_and_weight_norm():
    torch.manual_seed(0)
    head = DINOHead(in_dim=24, out_dim=50, hidden_dim=40, bottleneck_dim=8, layers=3)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(24, 40), (40, 40), (40, 8)]
    x = torch.randn(5, 24)
    out = head(x)
    assert out.shape == (5, 50)
    weight = head.last_layer.weight  # g * v / ||v||, each output unit's row
    torch.testing.assert_close(weight.norm(dim=1), torch.ones(50))
    g, v = (
        head.last_layer.parametrizations.weight.original0,
        head.last_layer.parametrizations.weight.original1,
    )
    assert not g.requires_grad and v.requires_grad
    torch.testing.assert_close(weight, v / v.norm(dim=1, keepdim=True))
    bottleneck = F.normalize(head.mlp(x), dim=-1)
    torch.testing.assert_close(out, bottleneck @ weight.T)
    assert DINOHead(
        24, 50, 40, 8, norm_last_layer=False
    ).last_layer.parametrizations.weight.original0.requires_grad


# ---------------------------------------------------------------------------------------- DINO loss


def test_dino_loss_equals_cross_entropy_over_distinct_view_pairs():
    g = torch.Generator().manual_seed(3)
    views, globals_, batch, k = 5, 2, 4, 11
    student, teacher = torch.randn(views, batch, k, generator=g), torch.randn(globals_, batch, k, generator=g)
    loss_fn = DINOLoss(k, student_temp=0.1, center_momentum=0.9)
    center = torch.randn(1, k, generator=g)
    loss_fn.center.copy_(center)
    teacher_temp = 0.04

    total, terms = 0.0, 0
    for t in range(globals_):
        q = torch.exp((teacher[t] - center) / teacher_temp)
        q = q / q.sum(dim=-1, keepdim=True)
        for v in range(views):
            if v == t:  # the teacher's crop t and the student's crop t are the same view
                continue
            z = student[v] / 0.1
            log_p = z - torch.log(torch.exp(z).sum(dim=-1, keepdim=True))
            total += (-(q * log_p).sum(dim=-1)).mean()
            terms += 1
    assert terms == globals_ * (views - 1)
    torch.testing.assert_close(loss_fn(student, teacher, teacher_temp), total / terms)


def test_center_is_an_ema_of_the_teacher_batch_mean():
    loss_fn = DINOLoss(6, center_momentum=0.8)
    start = torch.arange(6.0).view(1, 6)
    loss_fn.center.copy_(start)
    teacher = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(1))
    loss_fn.update_center(teacher)
    expected = 0.8 * start + 0.2 * teacher.reshape(6, 6).sum(0, keepdim=True) / 6
    torch.testing.assert_close(loss_fn.center, expected)


def test_forward_sums_contrastive_and_weighted_distillation():
    model = _model(distill={**SMALL["distill"], "weight": 0.3}).train()
    batch = _batch(model)
    out = model(batch)
    assert set(out) >= {"loss", "contrastive_loss", "distill_loss", "image_features", "text_features"}
    torch.testing.assert_close(out["loss"], out["contrastive_loss"] + 0.3 * out["distill_loss"])
    # The contrastive term is CLIP's on the "image" view, whatever the crops.
    expected = model.loss(
        F.normalize(model.visual(batch["image"]), dim=-1), model.encode_text(batch["text"]), model.scale()
    )
    torch.testing.assert_close(out["contrastive_loss"], expected.detach())


def test_training_batch_without_crops_is_refused():
    model = _model().train()
    batch = _batch(model)
    del batch["global_crops"], batch["local_crops"]
    with pytest.raises(DataError, match="global_crops"):
        model(batch)
    assert set(model.eval()(batch)) >= {"loss", "contrastive_loss"}  # evaluation needs no crops


# --------------------------------------------------------------------------------------- multi-crop


def test_multi_crop_views_of_a_multispectral_scene_with_nodata():
    cfg = vz.get_model_config("rs-m-clip-tiny")  # rs-toyworld's 4 bands in reflectance units
    scene = np.random.default_rng(0).uniform(300, 3000, (80, 96, 4)).astype(np.float32)
    scene[:20] = np.nan  # nodata, as the GeoTIFF decoder marks it
    sample = cfg.transform(train=True)(scene)
    size, crops = cfg.vision.image_size, cfg.crops
    assert sample["image"].shape == (4, size, size)
    assert sample["global_crops"].shape == (crops.global_crops, 4, size, size)
    assert sample["local_crops"].shape == (crops.local_crops, 4, crops.local_size, crops.local_size)
    assert all(torch.isfinite(v).all() for v in sample.values())  # nodata filled before any resampling
    assert not torch.equal(sample["global_crops"][0], sample["global_crops"][1])  # two random views
    assert cfg.transform(train=False)(scene).shape == (4, size, size)  # eval: one plain view
    no_distill = dataclasses.replace(cfg, distill=SelfDistillConfig(enabled=False))
    assert torch.is_tensor(no_distill.transform(train=True)(scene))


def test_rgb_views_get_dino_colour_augmentations():
    from vlzoo.core.towers.vision import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    rgb = {"in_chans": 3, "mean": OPENAI_CLIP_MEAN, "std": OPENAI_CLIP_STD}
    cfg = vz.get_model_config("rs-m-clip-tiny", vision=rgb)
    grey = np.full((64, 64, 3), 128, dtype=np.uint8)
    grey[:, :32] = (200, 40, 40)  # half red, half grey: colour jitter must change the pixel values
    views = [cfg.transform(train=True)(grey)["global_crops"] for _ in range(6)]
    pixels = torch.stack(views) * torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1) + torch.tensor(
        OPENAI_CLIP_MEAN
    ).view(3, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5  # back in [0, 1] once un-normalized
    assert len({round(float(v.mean()), 3) for v in views}) > 1  # brightness/contrast differ between views
    model = vz.create_model("rs-m-clip-tiny", vision=rgb, **SMALL).train()
    assert torch.isfinite(model(_batch(model))["loss"])


# ---------------------------------------------------------------------------------------- converter


@pytest.fixture(scope="module")
def tiny_xlmr_dir(tmp_path_factory):
    """A 2-layer XLM-RoBERTa config saved by transformers (random weights are made from it)."""
    from transformers import XLMRobertaConfig

    root = tmp_path_factory.mktemp("tiny_xlmr")
    XLMRobertaConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
    ).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def open_clip_multilingual(tiny_xlmr_dir):
    """open_clip's `xlm-roberta-base-ViT-B-32` layout at toy size (ViT 32 px, XLM-R 2×32), random weights."""
    from open_clip.model import CustomTextCLIP

    torch.manual_seed(0)
    model = CustomTextCLIP(
        embed_dim=24,
        vision_cfg={"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
        text_cfg={
            "hf_model_name": str(tiny_xlmr_dir),
            "hf_model_pretrained": False,
            "hf_proj_type": "mlp",
            "hf_pooler_type": "mean_pooler",
            "context_length": 16,
        },
    ).eval()
    with torch.no_grad():  # random weights, but not the init's zeros/ones where a bug could hide
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _vlzoo_twin(tiny_xlmr_dir):
    return vz.create_model(
        "rs-m-clip-vit-b-32",
        embed_dim=24,
        vision={
            "timm_kwargs": {
                "patch_size": 8,
                "embed_dim": 64,
                "depth": 2,
                "num_heads": 2,
                "dynamic_img_size": True,
            },
            "image_size": 32,
        },
        text={"hf_model": str(tiny_xlmr_dir), "hf_pretrained": False, "context_length": 16},
        **SMALL,
    ).eval()


def test_open_clip_multilingual_checkpoint_gives_the_same_embeddings(
    tmp_path, tiny_xlmr_dir, open_clip_multilingual
):
    from safetensors.torch import save_file

    reference = open_clip_multilingual
    path = tmp_path / "open_clip_model.safetensors"
    save_file(reference.state_dict(), str(path))
    model = _vlzoo_twin(tiny_xlmr_dir)
    # Strict: the release lacks only the training-only state the model declares optional (teacher, head).
    report = load_weights(model, PretrainedSource("tiny", path=path, converter="open_clip_hf_text"))
    assert report == {"missing": [], "unexpected": []}

    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[0, 5, 17, 33, 2, 1, 1, 1], [0, 9, 2, 1, 1, 1, 1, 1], [0, 44, 45, 46, 47, 48, 49, 2]])
    with torch.no_grad():
        image_diff = (model.encode_image(images) - reference.encode_image(images, normalize=True)).abs().max()
        text_diff = (model.encode_text(ids) - reference.encode_text(ids, normalize=True)).abs().max()
    print(f"open_clip xlm-roberta layout: image max|Δ| = {image_diff:.2e}, text max|Δ| = {text_diff:.2e}")
    assert image_diff < 1e-5 and text_diff < 1e-5
    # A release has no teacher: it starts as a copy of the loaded student, not of the random init.
    for (name, t), s in zip(model.teacher["visual"].state_dict().items(), model.visual.state_dict().values()):
        assert torch.equal(t, s), name


def test_converter_refuses_other_layouts(tmp_path, tiny_xlmr_dir, open_clip_multilingual):
    from safetensors.torch import save_file

    sd = open_clip_multilingual.state_dict()
    path = tmp_path / "no_text_head.safetensors"
    save_file({k: v for k, v in sd.items() if not k.startswith("text.proj.")}, str(path))
    twin = _vlzoo_twin(tiny_xlmr_dir)
    with pytest.raises(WeightsError, match=r"missing keys \(2\): text\.head\.0\.weight"):  # not optional
        load_weights(twin, PretrainedSource("t", path=path, converter="open_clip_hf_text"))
    with pytest.raises(WeightsError, match=r"text\.transformer"):
        from_open_clip_hf_text({k: v for k, v in sd.items() if not k.startswith("text.")})
    with pytest.raises(WeightsError, match="no counterpart"):
        from_open_clip_hf_text({**sd, "text.unknown.weight": torch.zeros(1)})
    converted = from_open_clip_hf_text(
        {**sd, "text.transformer.embeddings.position_ids": torch.arange(16)[None]}
    )
    assert "text.transformer.embeddings.position_ids" not in converted  # an index buffer, not a weight
    assert {"text.head.0.weight", "text.head.2.weight", "visual.head.weight"} <= set(converted)


def test_release_tags_name_the_open_clip_files():
    from vlzoo.core.registry import get_pretrained_spec

    release = get_pretrained_spec("rs-m-clip-vit-b-32", "rs_m_clip")
    assert (release.hf_hub_id, release.filename) == ("joaodaniel/RS-M-CLIP", "open_clip_model.safetensors")
    assert release.converter == "open_clip_hf_text"
    start = get_pretrained_spec("rs-m-clip-vit-b-32", "laion5b_s13b_b90k")
    assert start.format == "pt" and start.converter == "open_clip_hf_text"


# ------------------------------------------------------------------------------------- tiny recipe

N_TEST = 100


@pytest.mark.slow
def test_tiny_recipe_learns_rs_toyworld_retrieval(tmp_path):
    """The recipe's model and optimizer through `data: rs-toyworld` (written on first use), on fewer scenes
    and steps than the recipe runs: R@5 over 100 test scenes well above chance (5%) both ways, the teacher
    an EMA that moved with the student, and both losses logged at every step."""
    recipe = load_recipe("rs-m-clip-tiny")
    assert recipe["data"]["data"] == "rs-toyworld" and recipe["model"]["model"] == "rs-m-clip-tiny"
    run = fit_recipe(
        "rs-m-clip-tiny",
        {
            "trainer.max_epochs": 8,
            "trainer.default_root_dir": str(tmp_path),
            "model.export_weights": False,
            "data.data_dir": str(tmp_path / "rs-toyworld"),
            "data.generate": {**recipe["data"]["generate"], "n_train": 320, "n_val": 8, "n_test": N_TEST},
            "data.num_workers": 0,
            "data.batch_size": 32,
        },
    )
    module, trainer, metrics = run.module, run.trainer, run.metrics
    start = {k.removeprefix("teacher."): v for k, v in run.start_state.items() if k.startswith("teacher.")}
    chance = 100 * 5 / N_TEST
    print({k: round(v, 2) for k, v in metrics.items()})
    assert metrics["text_to_image_R@5"] >= 2 * chance, metrics
    assert metrics["image_to_text_R@5"] >= 2 * chance, metrics
    assert all({"train/contrastive_loss", "train/distill_loss"} <= set(step) for step in run.steps)

    model = module.model
    assert model.steps_done == trainer.global_step == 80  # the core called the hook once per step
    teacher, student = model.teacher["visual"].state_dict(), model.visual.state_dict()
    key = "trunk.blocks.0.attn.qkv.weight"
    moved, lag = (teacher[key] - start[f"visual.{key}"]).norm(), (teacher[key] - student[key]).norm()
    assert moved > 0 and lag > 0  # it followed the student, a step behind
