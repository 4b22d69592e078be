"""A model's own validation metrics (`validation_metrics(batch)`): logged by `ZooModule` instead of
retrieval, averaged over the epoch by batch size, and usable as the checkpoint monitor."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset

import vlzoo.core as vz
from vlzoo.core.errors import ConfigError
from vlzoo.core.train import ZooModule


class _ThresholdReader(nn.Module):
    """Predicts `image.mean() > threshold`; its accuracy against `batch["label"]` is its own metric."""

    def __init__(self, cfg: _ThresholdConfig):
        super().__init__()
        self.config = cfg
        self.threshold = nn.Parameter(torch.tensor(cfg.threshold))

    def forward(self, batch):
        score = batch["image"].flatten(1).mean(1) - self.threshold
        return {"loss": nn.functional.binary_cross_entropy_with_logits(score, batch["label"].float())}

    def validation_metrics(self, batch):
        predicted = batch["image"].flatten(1).mean(1) > self.threshold
        correct = (predicted == batch["label"].bool()).float()
        if self.config.broken:
            return {"accuracy": 100 * correct}  # per sample: not a scalar
        return {"accuracy": 100 * correct.mean(), "positives": predicted.float().mean()}


@dataclass
class _ThresholdConfig:
    threshold: float = 0.5
    broken: bool = False

    def build(self) -> _ThresholdReader:
        return _ThresholdReader(self)


class _Samples(Dataset):
    """Image means 0.1 .. 0.8 with labels set so a threshold of 0.5 gets exactly samples 0, 1, 2, 5 wrong."""

    means = (0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8)
    labels = (1, 1, 1, 0, 1, 0, 1)

    def __len__(self) -> int:
        return len(self.means)

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((3, 4, 4), self.means[i]), "label": torch.tensor(self.labels[i])}


@pytest.fixture(scope="module")
def threshold_model() -> str:
    name = "test-validation-metrics-threshold"
    if name not in vz.list_models():
        vz.register_model(name)(_ThresholdConfig)
    return name


def _validate(module: ZooModule, batch_size: int, tmp_path, callbacks=()) -> dict[str, float]:
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
    )
    loader = DataLoader(_Samples(), batch_size=batch_size)
    (results,) = trainer.validate(module, dataloaders=loader, verbose=False)
    return results


def test_own_metrics_are_averaged_by_sample_not_by_batch(threshold_model: str, tmp_path):
    module = ZooModule(threshold_model, export_weights=False)
    # batches of 3, 3, 1 samples: 0/3, 2/3 and 1/1 correct. By sample 3/7 = 42.86%; a mean of the batch
    # means would give 55.56%.
    results = _validate(module, batch_size=3, tmp_path=tmp_path)
    assert results["val/accuracy"] == pytest.approx(100 * 3 / 7, abs=1e-4)
    assert results["val/positives"] == pytest.approx(3 / 7, abs=1e-6)  # samples 4, 5, 6 above 0.5
    assert not any(k.startswith("val/i2t") or k.startswith("val/t2i") for k in results)  # no retrieval


def test_a_checkpoint_monitors_the_models_metric(threshold_model: str, tmp_path):
    module = ZooModule(threshold_model, model_overrides={"threshold": 0.35}, export_weights=False)
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/accuracy", mode="max")
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[best],
        default_root_dir=tmp_path,
    )
    module.hparams.lr = 0.0  # the threshold stays put: the metric below is known
    trainer.fit(
        module,
        train_dataloaders=DataLoader(_Samples(), batch_size=7),
        val_dataloaders=DataLoader(_Samples(), batch_size=4),
    )
    # threshold 0.35: predicted positive from 0.4 on, so only samples 4 (0.6, label 1) and 6 (0.8, 1) right
    assert float(best.best_model_score) == pytest.approx(100 * 2 / 7, abs=1e-4)
    assert best.best_model_path.endswith(".ckpt")


def test_metrics_that_are_not_scalars_are_a_config_error(threshold_model: str, tmp_path):
    module = ZooModule(threshold_model, model_overrides={"broken": True}, export_weights=False)
    with pytest.raises(
        ConfigError, match="validation_metrics returned non-scalar values for \\['accuracy'\\]"
    ):
        _validate(module, batch_size=3, tmp_path=tmp_path)
