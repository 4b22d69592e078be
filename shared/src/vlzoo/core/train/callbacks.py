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
        self.total = SkipCounter()  # the whole run (all ranks, completed epochs), for the run's summary

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.reset()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: dict[str, Any], batch_idx: int) -> None:
        self.counter.update_from_batch(batch)
        # This rank's count so far this epoch, on the progress bar: a skip is seen when it happens.
        pl_module.log("skipped", float(self.counter.skipped), on_step=True, on_epoch=False, prog_bar=True)
        if self.counter.seen >= self.min_samples:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("train/skipped_samples", float(self.counter.skipped), reduce_fx="sum", sync_dist=True)
        epoch = self._check(trainer)
        self.total.seen += epoch.seen
        self.total.skipped += epoch.skipped
        self.total.examples = (self.total.examples + epoch.examples)[: self.total.max_examples]

    def _check(self, trainer: L.Trainer) -> SkipCounter:
        seen = trainer.strategy.reduce(torch.tensor(float(self.counter.seen)), reduce_op="sum")
        skipped = trainer.strategy.reduce(torch.tensor(float(self.counter.skipped)), reduce_op="sum")
        global_counter = SkipCounter(
            seen=int(seen), skipped=int(skipped), examples=list(self.counter.examples)
        )
        global_counter.check(self.max_rate)
        return global_counter

    def summary(self) -> str:
        """`skipped 3 of 640 samples (0.47%), e.g. a.png: cannot identify image`, or `no samples skipped`."""
        if not self.total.skipped:
            return "no samples skipped"
        example = (
            f", e.g. {self.total.examples[0][0]}: {self.total.examples[0][1]}" if self.total.examples else ""
        )
        return f"skipped {self.total.skipped} of {self.total.seen} samples ({self.total.rate:.2%}){example}"


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
