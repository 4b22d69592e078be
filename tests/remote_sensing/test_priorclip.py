"""PriorCLIP: Spatial-PAE top-k selection, frozen prior encoder, Temporal-PAE cycles, the open-domain belief
weighting, and the attribution loss against its formula, alone and on 2 processes."""

from __future__ import annotations

import copy
import math
import multiprocessing
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from helpers import priorclip_dist_worker
from helpers.recipes import fit_recipe, load_recipe

import vlzoo.core as vz
from vlzoo.core.errors import ConfigError
from vlzoo.core.losses import ClipLoss
from vlzoo.remote_sensing.priorclip import (
    AttributionLoss,
    PriorEncoderConfig,
    SpatialPAE,
    SpatialPAEConfig,
    TemporalPAE,
    TemporalPAEConfig,
    belief_reweight,
)

DIM = 16


@pytest.fixture(scope="module")
def closed_tiny():
    torch.manual_seed(0)
    return vz.create_model("priorclip-closed-tiny")


def _batch(model_name: str, n: int = 6, classes=(0, 0, 1, 1, 2, 2)) -> dict:
    tokenizer = vz.get_tokenizer(model_name)
    captions = ["a green field", "fields of crops", "a blue lake", "water and a shore", "a road", "roads"]
    gen = torch.Generator().manual_seed(3)
    return {
        "image": torch.randn(n, 4, 64, 64, generator=gen),  # rs-toyworld's 4 bands
        "text": tokenizer(captions[:n]),
        "class_id": torch.tensor(classes[:n]),
    }


# ------------------------------------------------------------------------------------------ Spatial-PAE


def _scored_tokens(batch: int = 3, n: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(batch, DIM, generator=gen),
        torch.randn(batch, n, DIM, generator=gen),
        torch.randn(batch, DIM, generator=gen),
    )


def test_belief_is_a_softmax_over_tokens_and_top_k_keeps_exactly_the_k_most_believed():
    global_feat, tokens, prior = _scored_tokens()
    pae = SpatialPAE(DIM, SpatialPAEConfig(num_scored=None, keep=5, rounds=1, heads=2)).eval()
    kept, belief, index = pae.select(global_feat, tokens, prior)

    candidates = torch.cat([global_feat[:, None], tokens], dim=1)  # the global token is scored first
    assert belief.shape == (3, 13) and kept.shape == (3, 5, DIM) and index.shape == (3, 5)
    torch.testing.assert_close(belief.sum(dim=1), torch.ones(3))
    for b in range(3):
        scores = [float(candidates[b, i] @ prior[b]) for i in range(13)]
        norm = sum(math.exp(s) for s in scores)
        torch.testing.assert_close(belief[b], torch.tensor([math.exp(s) / norm for s in scores]))
        best_first = sorted(range(13), key=lambda i: -scores[i])[:5]
        assert index[b].tolist() == best_first
        torch.testing.assert_close(kept[b], candidates[b, best_first])


def test_only_the_first_num_scored_tokens_compete():
    global_feat, tokens, prior = _scored_tokens()
    tokens[:, -1] = 100 * prior  # by far the most believed, but past the scored window
    pae = SpatialPAE(DIM, SpatialPAEConfig(num_scored=8, keep=4, rounds=1, heads=2)).eval()
    _, belief, index = pae.select(global_feat, tokens, prior)
    assert belief.shape == (3, 8)
    assert int(index.max()) < 8


def test_spatial_pae_output_ignores_the_dropped_tokens():
    global_feat, tokens, prior = _scored_tokens()
    pae = SpatialPAE(DIM, SpatialPAEConfig(num_scored=None, keep=4, rounds=2, heads=2)).eval()
    _, belief, index = pae.select(global_feat, tokens, prior)
    out = pae(global_feat, tokens, prior)

    worst = int(belief[0, 1:].argmin()) + 1  # a dropped image token (candidate index; 0 is the global)
    assert worst not in index[0].tolist()
    moved = tokens.clone()
    moved[0, worst - 1] = -5 * prior[0] + 0.1 * torch.randn(DIM)  # changes, but stays the least believed
    torch.testing.assert_close(pae(global_feat, moved, prior), out)

    best = int(index[0, 0])
    moved = tokens.clone()
    moved[0, best - 1] = moved[0, best - 1] * 1.5  # a kept token: its refinement changes
    assert not torch.allclose(pae(global_feat, moved, prior)[0], out[0])


def test_keeping_more_tokens_than_the_tower_gives_is_refused():
    global_feat, tokens, prior = _scored_tokens(n=3)
    pae = SpatialPAE(DIM, SpatialPAEConfig(num_scored=None, keep=10, rounds=1, heads=2))
    with pytest.raises(ConfigError, match="keeps 10 tokens but the image tower gives 4"):
        pae(global_feat, tokens, prior)


# --------------------------------------------------------------------------------------- prior encoder


def test_prior_encoder_is_frozen_and_stays_in_eval_mode(closed_tiny):
    model = closed_tiny
    model.train()
    backbone = model.prior.backbone
    assert not backbone.training
    assert all(not m.training for m in backbone.modules())
    assert model.spatial.training and model.prior.proj.training
    stats = {k: v.clone() for k, v in backbone.state_dict().items() if "running" in k}
    model.zero_grad()
    out = model(_batch("priorclip-closed-tiny"))
    out["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    assert model.prior.proj.weight.grad is not None and model.prior.proj.weight.grad.abs().sum() > 0
    for key, value in backbone.state_dict().items():
        if key in stats:
            assert torch.equal(value, stats[key]), f"{key} moved in training mode"


def test_prior_checkpoint_loads_and_a_wrong_one_is_named(tmp_path):
    from safetensors.torch import save_file

    from vlzoo.core.errors import WeightsError
    from vlzoo.remote_sensing.priorclip import PriorEncoder

    cfg = PriorEncoderConfig(
        timm_model="resnet18", timm_kwargs={"channels": (8, 16, 32, 64), "stem_width": 8}
    )
    source = PriorEncoder(cfg, in_chans=3, out_dim=4)
    weights = {k: v.clone() + 0.5 for k, v in source.backbone.state_dict().items() if v.is_floating_point()}
    weights["fc.weight"] = torch.zeros(30, 64)  # the scene classifier's head, ignored
    good = tmp_path / "aid_resnet.safetensors"
    save_file(weights, good)
    loaded = PriorEncoder(PriorEncoderConfig(**{**cfg.__dict__, "checkpoint": str(good)}), 3, 4)
    for key, value in weights.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded.backbone.state_dict()[key], value)

    bad = tmp_path / "other.safetensors"
    save_file({"conv1.weight": torch.zeros(2, 3, 7, 7)}, bad)
    with pytest.raises(WeightsError, match=r"other\.safetensors does not fit timm 'resnet18'"):
        PriorEncoder(PriorEncoderConfig(**{**cfg.__dict__, "checkpoint": str(bad)}), 3, 4)


# --------------------------------------------------------------------------------------- Temporal-PAE


def test_temporal_pae_keeps_shapes_and_every_cycle_changes_the_state():
    torch.manual_seed(0)
    pae = TemporalPAE(DIM, TemporalPAEConfig(cycles=3, heads=4, dropout=0.2)).eval()
    tokens = torch.randn(2, 7, DIM)
    out = pae(tokens)
    assert out.shape == (2, 7, DIM)
    assert not torch.allclose(out, tokens)

    two_cycles = copy.deepcopy(pae)
    for name in ("self_attn", "cross_attn", "state_maps"):
        setattr(two_cycles, name, getattr(two_cycles, name)[:2])
    assert not torch.allclose(two_cycles(tokens), out)  # the third cycle moves the state again

    # the cross-attention queries come from the previous cycle's state: its map matters
    with torch.no_grad():
        pae.state_maps[2].weight.mul_(-1)
    assert not torch.allclose(pae(tokens), out)


def test_temporal_pae_ignores_padding():
    torch.manual_seed(0)
    pae = TemporalPAE(DIM, TemporalPAEConfig(cycles=3, heads=4)).eval()
    tokens = torch.randn(2, 5, DIM)
    padded = torch.cat([tokens, torch.randn(2, 4, DIM)], dim=1)
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[:, 5:] = True
    torch.testing.assert_close(pae(padded, padding)[:, :5], pae(tokens), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- open-domain belief weights


def test_open_domain_belief_weights_follow_the_rank_or_the_official_sort_index():
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 6, DIM, generator=gen)
    prior = torch.randn(2, DIM, generator=gen)
    for mode in ("rank", "sort_index"):
        out = belief_reweight(tokens, prior, mode)
        expected = torch.empty_like(tokens)
        for b in range(2):
            scores = [float(tokens[b, i] @ prior[b]) for i in range(6)]
            norm = sum(math.exp(s) for s in scores)
            order = sorted(range(6), key=lambda i: -scores[i])  # token indices, most believed first
            for i in range(6):
                position = order.index(i) if mode == "rank" else order[i]
                expected[b, i] = tokens[b, i] * (math.exp(scores[i]) / norm + 1 / math.sqrt(position + 1))
        expected = expected / expected.norm(dim=1, keepdim=True)  # over the tokens, as the official code
        torch.testing.assert_close(out, expected)
    with pytest.raises(ConfigError, match="rank_weights"):
        belief_reweight(tokens, prior, "sorted")


def test_open_domain_image_features_follow_the_prior():
    torch.manual_seed(0)
    model = vz.create_model("priorclip-open-tiny").eval()
    images = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        prior = model.prior(images)
        out = model.visual(images, prior)
        torch.testing.assert_close(model.encode_image(images), F.normalize(out, dim=-1))
        assert not torch.allclose(model.visual(images, prior.flip(0)), out, atol=1e-4)


# ---------------------------------------------------------------------------------- attribution loss


def _features(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (
        F.normalize(torch.randn(n, DIM, generator=gen, dtype=torch.float64), dim=-1),
        F.normalize(torch.randn(n, DIM, generator=gen, dtype=torch.float64), dim=-1),
    )


def _attribution_by_hand(image, text, classes, scale, per_sample=True) -> float:
    """The paper's formula, one sample at a time."""
    n = len(classes)

    def centre(features, c):
        members = [features[j] for j in range(n) if classes[j] == c]
        return sum(members) / len(members)

    columns = list(classes) if per_sample else sorted(set(classes))
    total = 0.0
    for rows, others in ((image, text), (text, image)):
        for i in range(n):
            logits = [scale * float(rows[i] @ centre(others, c)) for c in columns]
            own = scale * float(rows[i] @ centre(others, classes[i]))
            total += -(own - math.log(sum(math.exp(v) for v in logits))) / n
    return total / 2


@pytest.mark.parametrize("per_sample", [True, False])
def test_attribution_loss_equals_the_formula(per_sample):
    image, text = _features(7)
    classes = [4, 1, 4, 4, 2, 1, 9]
    loss = AttributionLoss(per_sample_centres=per_sample)(
        image, text, torch.tensor(classes), torch.tensor(3.0, dtype=torch.float64)
    )
    assert float(loss) == pytest.approx(
        _attribution_by_hand(image, text, classes, 3.0, per_sample), rel=1e-10
    )


def test_attribution_loss_with_one_sample_per_class_is_clip_infonce():
    image, text = _features(5, seed=1)
    scale = torch.tensor(10.0, dtype=torch.float64)
    loss = AttributionLoss()(image, text, torch.tensor([8, 3, 5, 0, 1]), scale)
    logits = scale * image @ text.T
    infonce = 0.5 * (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5)))
    torch.testing.assert_close(loss, infonce)
    torch.testing.assert_close(loss, ClipLoss()(image, text, scale))


def test_attribution_loss_depends_on_the_grouping_not_the_class_numbers():
    image, text = _features(6, seed=2)
    scale = torch.tensor(5.0, dtype=torch.float64)
    loss_fn = AttributionLoss()
    a = loss_fn(image, text, torch.tensor([0, 0, 1, 1, 2, 2]), scale)
    relabelled = loss_fn(image, text, torch.tensor([70, 70, -3, -3, 12, 12]), scale)
    regrouped = loss_fn(image, text, torch.tensor([0, 1, 1, 2, 2, 0]), scale)
    torch.testing.assert_close(a, relabelled)
    assert not torch.allclose(a, regrouped)


def test_attribution_loss_rejects_bad_class_ids():
    image, text = _features(4)
    with pytest.raises(ConfigError, match=r"class_ids must be an integer tensor of shape \(4,\)"):
        AttributionLoss()(image, text, torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor(1.0))
    with pytest.raises(ConfigError, match=r"shape \(4,\), got \(3,\)"):
        AttributionLoss()(image, text, torch.tensor([0, 1, 1]), torch.tensor(1.0))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.distributed
def test_attribution_loss_on_two_ranks_is_the_global_batch_loss(tmp_path: Path):
    """Class centres span both ranks: each rank's loss and gradients recombine into the single-process
    ones (sum of per-rank losses = W x loss; features: each rank holds W x its slice's gradient)."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "forkserver":
        multiprocessing.get_context(method).set_forkserver_preload(
            ["torch", "vlzoo.remote_sensing.priorclip"]
        )
    world = 2
    mp.start_processes(
        priorclip_dist_worker.worker,
        args=(world, _free_port(), str(tmp_path)),
        nprocs=world,
        join=True,
        start_method=method,
    )
    per_rank = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    reference = priorclip_dist_worker.single_process_results(world)
    tol = {"rtol": 1e-6, "atol": 1e-9}
    for name, want in reference.items():
        got = [r[name] for r in per_rank]
        torch.testing.assert_close(sum(g["loss"] for g in got), world * want["loss"], **tol, msg=name)
        for key in ("grad_image", "grad_text"):
            combined = torch.cat([g[key] for g in got])
            torch.testing.assert_close(combined, world * want[key], **tol, msg=f"{name}: {key}")
        summed = sum(g["grad_scale"] for g in got)
        torch.testing.assert_close(summed, world * want["grad_scale"], **tol, msg=f"{name}: scale")


# ------------------------------------------------------------------------------------------ the model


def test_training_batch_gives_both_losses_added_one_to_one(closed_tiny):
    model = closed_tiny.eval()
    batch = _batch("priorclip-closed-tiny")
    with torch.no_grad():
        out = model(batch)
        expected_attr = AttributionLoss()(
            out["image_features"], out["text_features"], batch["class_id"], model.attribution_scale()
        )
    assert set(out) >= {"loss", "contrastive_loss", "attribution_loss", "image_features", "text_features"}
    torch.testing.assert_close(out["attribution_loss"], expected_attr)
    torch.testing.assert_close(out["loss"], out["contrastive_loss"] + out["attribution_loss"])
    torch.testing.assert_close(out["image_features"].norm(dim=-1), torch.ones(6))


def test_missing_class_ids_name_the_fix(closed_tiny):
    batch = _batch("priorclip-closed-tiny")
    del batch["class_id"]
    with pytest.raises(ConfigError, match=r"batch\['class_id'\].*attribution_weight: 0"):
        closed_tiny(batch)


def test_text_features_read_the_refined_state_where_the_tower_pools(closed_tiny):
    """Temporal-PAE's output is read at the end-of-text token of the CLIP text tower: tokens after it
    (padding) change nothing."""
    model = closed_tiny.eval()
    tokenizer = vz.get_tokenizer("priorclip-closed-tiny")
    text = tokenizer(["a blue lake near a road", "fields"])
    ids = text.input_ids.clone()
    ends = ids.argmax(dim=-1)
    ids[0, ends[0] + 1 :] = 5  # garbage after the end of text
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(ids)[0], model.encode_text(text.input_ids)[0])


def test_exported_weights_and_config_load_back(closed_tiny, tmp_path):
    """The config (nested dataclasses, timm kwargs with tuples, per-band statistics) survives its JSON."""
    from vlzoo.core.weights.checkpoint import save

    path = save(closed_tiny, tmp_path / "model.safetensors")
    reloaded = vz.create_model("priorclip-closed-tiny", pretrained=path).eval()
    assert reloaded.config == closed_tiny.config
    images = _batch("priorclip-closed-tiny")["image"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode_image(images), closed_tiny.eval().encode_image(images))


# ------------------------------------------------------------------------- a recipe's loss: replaces


def _loss_terms(model, batch) -> dict:
    model.eval()
    with torch.no_grad():
        return model(batch)


def test_a_recipe_loss_replaces_the_contrastive_part_by_value():
    """`ZooModule(loss=...)` reaches PriorCLIP: SigLIP replaces CLIP's InfoNCE, the attribution term stays."""
    from vlzoo.core.losses import SigLipLoss
    from vlzoo.core.train import ZooModule

    batch = _batch("priorclip-closed-tiny")
    torch.manual_seed(0)
    clip = ZooModule(
        "priorclip-closed-tiny", model_overrides={"init_logit_bias": -10.0}, export_weights=False
    )
    torch.manual_seed(0)
    siglip = ZooModule(
        "priorclip-closed-tiny",
        model_overrides={"init_logit_bias": -10.0},
        loss={"name": "siglip", "dist_impl": "gather"},
        export_weights=False,
    )
    assert isinstance(siglip.model.contrastive_loss, SigLipLoss)
    before, after = _loss_terms(clip.model, batch), _loss_terms(siglip.model, batch)
    # same weights, same features: only the contrastive term changed, and it is SigLIP's by value
    torch.testing.assert_close(after["image_features"], before["image_features"])
    torch.testing.assert_close(after["attribution_loss"], before["attribution_loss"])
    img, txt = after["image_features"], after["text_features"]
    z = after["logit_scale"] * img @ txt.T + after["logit_bias"]
    labels = 2 * torch.eye(len(img)) - 1
    expected = -F.logsigmoid(labels * z).sum() / len(img)
    torch.testing.assert_close(after["contrastive_loss"], expected)
    torch.testing.assert_close(after["loss"], expected + after["attribution_loss"])
    assert not torch.allclose(after["loss"], before["loss"])


def test_a_sigmoid_loss_without_a_logit_bias_is_refused_naming_the_fix(closed_tiny):
    from vlzoo.core.train import ZooModule

    with pytest.raises(ConfigError, match=r"model\.loss: SigLipLoss needs a logit_bias.*init_logit_bias"):
        ZooModule("priorclip-closed-tiny", loss={"name": "siglip"}, export_weights=False)


def test_priorclip_shares_the_dual_encoder_faces_and_keeps_its_state_dict_keys(closed_tiny):
    from vlzoo.core.models import DualEncoderFaces, capabilities

    assert isinstance(closed_tiny, DualEncoderFaces)
    assert {"replaceable_loss", "lockable_image_tower", "grad_checkpointing"} <= set(
        capabilities(closed_tiny)
    )
    # no logit_bias unless asked for: checkpoints saved before it existed keep loading strictly
    assert not any(k.startswith("logit_bias") for k in closed_tiny.state_dict())
    open_tiny = vz.create_model("priorclip-open-tiny")
    open_tiny.lock_image_tower(unlocked_groups=0)
    assert not any(p.requires_grad for p in open_tiny.visual.tower.trunk.parameters())
    assert all(p.requires_grad for p in open_tiny.visual.tower.head.parameters())  # LiT keeps the head
    assert open_tiny.image_tower() is open_tiny.visual.tower


# -------------------------------------------------------------------------------------- tiny recipes

N_TEST = 100


@pytest.fixture(scope="module")
def rs_toyworld_dir(tmp_path_factory) -> Path:
    from vlzoo.remote_sensing.data.toyworld import write_rs_toyworld

    root = tmp_path_factory.mktemp("rs-toyworld")
    write_rs_toyworld(root, n_train=512, n_val=16, n_test=N_TEST, image_size=64, bands=4, seed=0)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["closed", "open"])
def test_tiny_recipe_learns_rs_toyworld_retrieval(setting, rs_toyworld_dir, tmp_path):
    """The recipe's model, optimizer and data, on fewer scenes and epochs than the recipe runs (80 steps):
    retrieval over 100 test scenes well above chance both ways, and both losses falling."""
    recipe = load_recipe(f"priorclip-{setting}-tiny")
    assert recipe["data"]["data"] == "rs-toyworld" and recipe["model"]["model"] == f"priorclip-{setting}-tiny"
    run = fit_recipe(
        f"priorclip-{setting}-tiny",
        {
            "trainer.max_epochs": 5,
            "trainer.default_root_dir": str(tmp_path),
            "model.export_weights": False,
            "data.data_dir": str(rs_toyworld_dir),
            "data.num_workers": 1,
        },
    )
    metrics = run.metrics
    losses = [{k: step[f"train/{k}"] for k in ("contrastive_loss", "attribution_loss")} for step in run.steps]
    # Chance of a hit in the top k: k/100 for a caption (one image of 100), about k/100 for an image too
    # (5 captions of 500), so chance mean recall is (1 + 5 + 10) / 3.
    assert metrics["mean_recall"] >= 2.5 * (1 + 5 + 10) / 3, metrics
    for direction in ("image_to_text", "text_to_image"):
        assert metrics[f"{direction}_R@10"] >= 2 * 10, metrics
    for key in ("contrastive_loss", "attribution_loss"):
        first, last = losses[0][key], sum(step[key] for step in losses[-4:]) / 4
        assert last < 0.8 * first, (key, first, last)
