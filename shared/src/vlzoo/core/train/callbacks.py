"""Callbacks every vlzoo run gets: skipped-sample accounting and the export of the final weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from vlzoo.core.data import SkipCounter
from vlzoo.core.weights import save


class SkippedSamplesMonitor(L.Callback):
    """Counts the unreadable samples the collator dropped, logs them per epoch, stops past `max_rate`.

    The check waits for `min_samples` samples, so that two bad files in the first batch of a large run
    don't stop it, and runs again at every epoch's end.
    """

    def __init__(self, max_rate: float = 0.01, min_samples: int = 1000):
        self.max_rate = max_rate
        self.min_samples = min_samples
        self.counter = SkipCounter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.reset()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: dict[str, Any], batch_idx: int) -> None:
        self.counter.update_from_batch(batch)
        if self.counter.seen >= self.min_samples:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("train/skipped_samples", float(self.counter.skipped), reduce_fx="sum", sync_dist=True)
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        seen = trainer.strategy.reduce(torch.tensor(float(self.counter.seen)), reduce_op="sum")
        skipped = trainer.strategy.reduce(torch.tensor(float(self.counter.skipped)), reduce_op="sum")
        global_counter = SkipCounter(seen=int(seen), skipped=int(skipped), examples=self.counter.examples)
        global_counter.check(self.max_rate)


class ExportWeights(L.Callback):
    """At the end of `fit`, write the model as `<dir>/model.safetensors` + `model.json` (vlzoo format)."""

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        self.path: Path | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.interrupted:
            return
        directory = Path(self.dirpath or run_dir(trainer))
        self.path = save(pl_module.model, directory / "model.safetensors")
        rank_zero_info(f"vlzoo: exported weights to {self.path}")


def run_dir(trainer: L.Trainer) -> Path:
    """The run's folder: the first logger's, else the root dir. Unlike `trainer.log_dir` it needs no
    collective call, so one rank alone may ask."""
    for logger in trainer.loggers:
        if logger.log_dir:
            return Path(logger.log_dir)
    return Path(trainer.default_root_dir)
