"""R3M's time-contrastive objective as an option for pre-training a zoo model's visual encoder.

R3M (Nair et al., "R3M: A Universal Visual Representation for Robot Manipulation") trains an image encoder
on egocentric videos so that its embedding moves smoothly with time: for three frames s0 ≤ s1 ≤ s2 of one
clip, s1 must be nearer s2 than s0 is, and nearer s0 than s2 is, with same-position frames of other clips
as negatives; similarity is the negative L2 distance of the raw (unnormalized) embeddings, and small L1
and L2 penalties keep the embedding sparse and compact. As in the official trainer: three negatives per
term, ε = 1e-8 inside the logarithms, weights tcn 1, l1 1e-5, l2 1e-5 (its `config_rep.yaml`), frames
drawn as s1 ∈ [1, T), s0 ∈ [0, s1), s2 ∈ [s1, T) (its loader, 0-indexed). Where vlzoo differs, on purpose:
- negatives are the other clips of the batch shifted by 1, 2, 3 places (the official code draws random
  permutations, which may pair a clip with itself); the loss is otherwise the same expression;
- R3M's language term scores a pair of frames with a learned reward head over a sentence encoder; a zoo
  CLIP has a text tower, so the language term here (weight `clip_weight`, 0 to leave it out, as the
  official config does) is the model's own frame–caption contrastive loss on each clip's middle frame.

    module = TimeContrastiveModule("h2r-clip-tiny")
    L.Trainer(max_epochs=20).fit(module, DataLoader(VideoTriplets("runs/h2r/captions.csv", ...), ...))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from vlzoo.core import create_model, get_tokenizer, get_transforms
from vlzoo.core.errors import DataError
from vlzoo.robotics.video import split_frames

__all__ = ["TimeContrastiveModule", "VideoTriplets", "time_contrastive_loss"]

_EPS = 1e-8  # the official trainer's epsilon


def _sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return -torch.linalg.vector_norm(a - b, dim=-1)  # R3M's `l2dist: true`


def time_contrastive_loss(
    e0: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor, negatives: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """R3M's TCN loss of `[B, D]` embeddings of frames s0 ≤ s1 ≤ s2 (one clip per row) and the fraction
    of rows already in time order (s1 nearer s2 than s0 is, and nearer s0 than s2 is: R3M's `aligned`)."""
    if len(e0) <= negatives:
        raise DataError(
            f"time-contrastive loss: a batch of {len(e0)} clips has too few for {negatives} negatives"
        )
    sim_02, sim_12, sim_01 = _sim(e2, e0), _sim(e2, e1), _sim(e1, e0)
    shifts = range(1, negatives + 1)
    neg0 = torch.stack([_sim(e0, e0.roll(k, 0)) for k in shifts], -1)
    neg2 = torch.stack([_sim(e2, e2.roll(k, 0)) for k in shifts], -1)
    loss1 = -torch.log(_EPS + sim_12.exp() / (_EPS + sim_02.exp() + sim_12.exp() + neg2.exp().sum(-1)))
    loss2 = -torch.log(_EPS + sim_01.exp() / (_EPS + sim_01.exp() + sim_02.exp() + neg0.exp().sum(-1)))
    aligned = ((sim_02 < sim_12) & (sim_01 > sim_02)).float().mean()
    return ((loss1 + loss2) / 2).mean(), aligned


class VideoTriplets(Dataset):
    """Three frames s0 ≤ s1 ≤ s2 of one clip per item (R3M's draw, above), from any layout `list_clips`
    reads (robot-toyworld's or `augment`'s captions.csv, SSv2, Ego4D/EPIC CSVs), preprocessed as `model`
    trains (`train`, one random crop for the three) or evaluates: `{"images": [3, C, H, W], "text": caption}`.
    Clips are decoded once and kept (toy-sized data); an unreadable one is a `DataError` naming it."""

    def __init__(
        self, path: str | os.PathLike, model: str, split: str = "train", seed: int = 0, train: bool = True
    ):
        clips, self.frames = split_frames(path, split)
        self.captions = [c.caption for c in clips]
        short = [str(c.video) for c, f in zip(clips, self.frames, strict=True) if len(f) < 2]
        if short:
            raise DataError(f"time-contrastive triplets need ≥ 2 frames per clip; too short: {short[:3]}")
        self.preprocess = get_transforms(model, train=train)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        frames = self.frames[index]
        n = len(frames)
        s1 = int(self.rng.integers(1, n))
        s0, s2 = int(self.rng.integers(0, s1)), int(self.rng.integers(s1, n))
        # one draw of the random crop for the three frames, as R3M's loader augments a clip's stacked frames:
        # frames cropped apart would differ by the crop, not only by what moved between them
        images = self.preprocess(torch.from_numpy(frames[[s0, s1, s2]]).permute(0, 3, 1, 2))
        return {"images": images, "text": self.captions[index]}


class TimeContrastiveModule(L.LightningModule):
    """A zoo CLIP's image tower trained with R3M's objective (module docstring); `self.model` is the whole
    zoo model, saved with `vlzoo.core.weights.save` like any other."""

    def __init__(
        self,
        model: str,
        pretrained: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        tcn_weight: float = 1.0,
        l1_weight: float = 1e-5,
        l2_weight: float = 1e-5,
        clip_weight: float = 0.0,
        negatives: int = 3,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model, pretrained=pretrained)
        self.tokenizer = get_tokenizer(model) if clip_weight > 0 else None

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        images = batch["images"]  # [B, 3, C, H, W]
        b = len(images)
        emb = self.model.encode_image(images.flatten(0, 1), normalize=False).view(b, 3, -1)
        tcn, aligned = time_contrastive_loss(emb[:, 0], emb[:, 1], emb[:, 2], hp.negatives)
        flat = emb.flatten(0, 1)
        loss = (hp.tcn_weight * tcn + hp.l1_weight * flat.abs().sum(-1).mean()
                + hp.l2_weight * flat.norm(dim=-1).mean())  # fmt: skip
        if self.tokenizer is not None:
            # one frame per clip: three frames of a clip under one caption would be each other's negatives
            out = self.model({"image": images[:, 1], "text": self.tokenizer(list(batch["text"]))})
            loss = loss + hp.clip_weight * out["loss"]
        self.log_dict({"train/tcn": tcn.detach(), "train/aligned": aligned}, batch_size=b)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(
            self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
