"""Training and scoring a detector on the CPU with the core's Lightning loop: what the demo, the transfer
benchmark and the learning tests share (the CLI's `fit` runs the same `ZooModule` + `ImageTextDataModule`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vlzoo.core.train import ImageTextDataModule, ZooModule
from vlzoo.ocr.data import DetectionCollator, DetectionDataset, read_detection_records
from vlzoo.ocr.metrics_detection import detection_metrics


def fit(
    model: str,
    data: str | Path,
    *,
    steps: int,
    batch_size: int = 8,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    warmup_steps: int = 10,
    model_overrides: Mapping[str, Any] | None = None,
    data_options: Mapping[str, Any] | None = None,
    num_workers: int = 0,
    out_dir: str | Path | None = None,
    seed: int = 0,
) -> nn.Module:
    """Train registered `model` for `steps` optimizer steps on the detection data `data` (an index JSON
    or an `images/` + `gt/` folder) with Lightning; returns the trained model (eval mode)."""
    L.seed_everything(seed, workers=True, verbose=False)
    module = ZooModule(
        model=model,
        model_overrides=dict(model_overrides or {}),
        lr=lr,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        export_weights=out_dir is not None,
    )
    datamodule = ImageTextDataModule(
        data=str(data),
        data_kind="icdar-detection",
        model=model,
        model_overrides=dict(model_overrides or {}),
        batch_size=batch_size,
        num_workers=num_workers,
        data_options=dict(data_options or {}) or None,
        seed=seed,
    )
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(out_dir) if out_dir is not None else None,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        gradient_clip_val=5.0,
    )
    trainer.fit(module, datamodule=datamodule)
    return module.model.eval()


@torch.no_grad()
def predict_detections(
    model: nn.Module, data: str | Path, split: str = "test", batch_size: int = 16
) -> tuple[list[list[np.ndarray]], list[list[tuple[np.ndarray, str]]], list[str]]:
    """The detector's quadrilaterals for every image of `split` (original pixels), the ground truth and
    the image paths."""
    cfg = model.config
    dataset = DetectionDataset(read_detection_records(data, split), cfg.image_size, train=False, targets=())
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=DetectionCollator(cfg.mean, cfg.std))
    predictions, truth, paths = [], [], []
    for batch in loader:
        if len(batch["image"]) == 0:
            continue
        predictions += model.predict(batch["image"], batch["scale"])
        truth += batch["gt"]
        paths += batch["path"]
    return predictions, truth, paths


def score_detector(model: nn.Module, data: str | Path, split: str = "test") -> dict[str, float]:
    predictions, truth, _ = predict_detections(model, data, split)
    return detection_metrics(predictions, truth)


def whole_image_detector(
    truth: Sequence[Sequence[tuple[np.ndarray, str]]], sizes: Sequence[tuple[int, int]]
) -> list[list[np.ndarray]]:
    """The trivial detector: one box over the whole image."""
    return [[np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)] for h, w in sizes]


__all__ = ["fit", "predict_detections", "score_detector", "whole_image_detector"]
