"""Training with Lightning: optimizer groups, schedule, NaN guard, skipped samples, export, CLI recipes."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import load_file

import vlzoo.core as vz
from vlzoo.core.data import write_toyworld
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.train import (
    ImageTextDataModule,
    NonFiniteLossError,
    ZooModule,
    param_groups,
    warmup_cosine_factor,
)


@pytest.fixture(scope="module")
def toyworld_json(tmp_path_factory) -> Path:
    return write_toyworld(tmp_path_factory.mktemp("toyworld"), n_train=96, n_val=24, n_test=24, seed=1)


def _trainer(root: Path, **kwargs) -> L.Trainer:
    defaults = {
        "accelerator": "cpu",
        "default_root_dir": root,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return L.Trainer(**{**defaults, **kwargs})


def _data(json_path: Path, **kwargs) -> ImageTextDataModule:
    return ImageTextDataModule(str(json_path), batch_size=16, num_workers=0, **kwargs)


def test_param_groups_exempt_norms_biases_embeddings_and_temperature():
    model = vz.create_model("clip-vit-tiny")
    groups = param_groups(model, weight_decay=0.2, lr=1e-3, tower_lr={"text": 1e-4})
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())

    def group_of(name):
        return by_param[id(named[name])]

    assert group_of("visual.trunk.blocks.0.attn.qkv.weight")["weight_decay"] == 0.2
    token_embedding = next(n for n in named if n.endswith("token_embedding.weight"))  # path varies by version
    for exempt in (
        "visual.trunk.blocks.0.norm1.weight",
        "visual.trunk.blocks.0.attn.qkv.bias",
        "visual.trunk.pos_embed",
        "visual.trunk.cls_token",
        token_embedding,
        "logit_scale",
    ):
        assert group_of(exempt)["weight_decay"] == 0.0, exempt
    assert group_of("text.head.weight")["lr"] == 1e-4
    assert group_of("visual.head.weight")["lr"] == 1e-3
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_warmup_then_cosine():
    factors = [warmup_cosine_factor(s, warmup_steps=10, total_steps=110, min_ratio=0.1) for s in range(110)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)
    decay = factors[9:]
    assert all(a >= b for a, b in itertools.pairwise(decay))


def test_scheduler_steps_per_optimizer_step(toyworld_json, tmp_path):
    module = ZooModule("clip-vit-tiny", lr=1e-3, warmup_steps=100, export_weights=False)
    trainer = _trainer(tmp_path, max_steps=3, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(module, _data(toyworld_json))
    # 3 optimizer steps (6 batches): the warmup is at step 3 of 100, whatever the accumulation
    assert trainer.global_step == 3
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3 * 4 / 100)


class _PoisonAt(L.Callback):
    """Turns the temperature into NaN before training step `step`, as a diverging run would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.model.logit_scale.fill_(float("nan"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(toyworld_json, tmp_path):
    module = ZooModule("clip-vit-tiny", export_weights=False)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    trainer = _trainer(tmp_path, max_steps=10, callbacks=[ckpt, _PoisonAt(3)], limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3.*checkpoints on disk predate it"):
        trainer.fit(module, _data(toyworld_json))
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3
    assert torch.isfinite(saved["state_dict"]["model.logit_scale"])


def test_unreadable_samples_stop_the_run_naming_files(tmp_path):
    json_path = write_toyworld(tmp_path / "toy", n_train=48, n_val=8, n_test=8, seed=2)
    broken = sorted((tmp_path / "toy" / "train").glob("*.png"))[:10]
    for path in broken:
        path.write_bytes(b"not a png")
    module = ZooModule("clip-vit-tiny", export_weights=False, max_skip_rate=0.05)
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    with pytest.raises(DataError, match=r"10 of 48 samples .* unreadable") as err:
        trainer.fit(module, _data(json_path))
    assert str(broken[0]) in str(err.value) or any(str(p) in str(err.value) for p in broken)


def test_fit_exports_weights_that_load_back(toyworld_json, tmp_path):
    module = ZooModule("clip-vit-tiny", lr=1e-3)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(module, _data(toyworld_json))
    exported = tmp_path / "model.safetensors"
    assert exported.is_file()
    reloaded = vz.create_model("clip-vit-tiny", pretrained=exported)
    for name, value in load_file(exported).items():
        assert torch.equal(reloaded.state_dict()[name], value)
        assert torch.equal(module.model.state_dict()[name], value)
    assert "val/text_to_image_R@1" in trainer.callback_metrics


def test_bad_module_arguments_are_named():
    with pytest.raises(ConfigError, match=r"clip-vit-tiny\.embed_dimm"):
        ZooModule("clip-vit-tiny", model_overrides={"embed_dimm": 3})
    with pytest.raises(ConfigError, match="ema_decay"):
        ZooModule("clip-vit-tiny", ema_decay=1.5)
    with pytest.raises(ConfigError, match="unknown loss 'clipp'"):
        ZooModule("clip-vit-tiny", loss={"name": "clipp"})


def test_a_recipe_loss_replaces_the_models_loss_by_value():
    torch.manual_seed(0)
    plain = ZooModule("clip-vit-tiny", export_weights=False).model.eval()
    torch.manual_seed(0)
    smoothed = ZooModule("clip-vit-tiny", loss={"name": "clip", "label_smoothing": 0.5}, export_weights=False)
    smoothed = smoothed.model.eval()
    assert smoothed.loss.label_smoothing == 0.5
    tokenizer = vz.get_tokenizer("clip-vit-tiny")
    batch = {"image": torch.randn(4, 3, 64, 64), "text": tokenizer(["a", "red circle", "blue square", "cat"])}
    with torch.no_grad():
        a, b = plain(batch), smoothed(batch)
    torch.testing.assert_close(a["image_features"], b["image_features"])
    logits = a["logit_scale"] * a["image_features"] @ a["text_features"].T
    target = torch.arange(4)
    expected = 0.5 * (
        torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.5)
        + torch.nn.functional.cross_entropy(logits.T, target, label_smoothing=0.5)
    )
    torch.testing.assert_close(b["loss"], expected)
    assert not torch.allclose(a["loss"], b["loss"])


def test_a_sigmoid_loss_on_a_model_without_a_bias_is_refused_naming_the_fix():
    with pytest.raises(ConfigError, match=r"model\.loss: SigLipLoss needs a logit_bias.*init_logit_bias"):
        ZooModule("clip-vit-tiny", loss={"name": "siglip"}, export_weights=False)


@pytest.mark.parametrize(
    ("option", "key"),
    [
        ({"loss": {"name": "clip"}}, "model.loss"),
        ({"lock_image_tower": 0}, "model.lock_image_tower"),
        ({"lock_text_tower": 1}, "model.lock_text_tower"),
        ({"grad_checkpointing": True}, "model.grad_checkpointing"),
    ],
)
def test_an_option_the_model_cannot_honour_is_refused_naming_key_and_model(monkeypatch, option, key):
    """A model with only the required faces (config, forward): every optional recipe key is a ConfigError."""

    class Bare(torch.nn.Module):
        config = None

        def forward(self, batch):
            return {"loss": torch.zeros(())}

    monkeypatch.setattr("vlzoo.core.train.module.create_model", lambda *a, **k: Bare())
    with pytest.raises(ConfigError, match=rf"^{key}: model 'clip-vit-tiny' \(Bare\) cannot do this"):
        ZooModule("clip-vit-tiny", export_weights=False, **option)


def test_loss_can_be_swapped_from_the_recipe(toyworld_json, tmp_path):
    module = ZooModule(
        "clip-vit-tiny",
        model_overrides={"init_logit_bias": -10.0},
        loss={"name": "siglip"},
        export_weights=False,
    )
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0, log_every_n_steps=1)
    trainer.fit(module, _data(toyworld_json))
    assert "train/logit_bias" in trainer.callback_metrics


def test_fit_streams_webdataset_shards(toyworld_json, tmp_path):
    from vlzoo.core.data import KarpathySplits, write_shards

    source = KarpathySplits(toyworld_json, "train", captions="all")
    shards = write_shards(source, tmp_path / "s-%04d.tar", max_count=48)
    assert len(shards) == 2  # one per DataLoader worker, 48 samples = 3 batches each
    pattern = str(tmp_path / "s-{0000..0001}.tar")
    data = ImageTextDataModule(pattern, batch_size=16, num_workers=2, val_data=str(toyworld_json))
    with pytest.raises(ConfigError, match=r"data\.epoch_length for streamed shards"):
        _trainer(tmp_path, max_epochs=1).fit(ZooModule("clip-vit-tiny", export_weights=False), data)
    data = ImageTextDataModule(
        pattern, batch_size=16, num_workers=2, val_data=str(toyworld_json), epoch_length=96
    )
    module = ZooModule("clip-vit-tiny", export_weights=False)
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=1)
    trainer.fit(module, data)
    assert trainer.global_step == 96 // 16  # every sample once per epoch, over both workers
    assert "val/text_to_image_R@1" in trainer.callback_metrics


def test_mixed_precision_and_ema(toyworld_json, tmp_path):
    from lightning.pytorch.callbacks import EMAWeightAveraging

    module = ZooModule("clip-vit-tiny", ema_decay=0.9, export_weights=False)
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=0, precision="bf16-mixed")
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer.fit(module, _data(toyworld_json))
    ema = next(c for c in trainer.callbacks if isinstance(c, EMAWeightAveraging))
    averaged = dict(ema._average_model.module.state_dict())
    after = module.model.state_dict()
    # at the end of fit Lightning swaps the averaged weights in: the model is the EMA, not the last step
    key = "visual.head.weight"
    assert torch.equal(after[key], averaged[f"model.{key}"])
    assert not torch.equal(after[key], before[key])
    assert torch.isfinite(after[key]).all()
