"""The detection data pipeline: decode → multi-scale resize → polygon-aware augmentation → DB targets
(+ ODM glyph labels), as samples the core's collator batches.

DB targets follow DBNet (Liao et al. 2020) and its official `MakeSegDetectionData` / `MakeBorderMap`:
- probability map: each word polygon shrunk by `D = A (1 - r²) / L` (area A, perimeter L, r = 0.4) with
  pyclipper, filled with 1; a word that is don't-care, smaller than `min_text_size` or that vanishes when
  shrunk is masked out of the loss instead (`prob_mask` 0 over it);
- threshold map: in the polygon dilated by D, 1 − (distance to the nearest polygon edge) / D, clipped to
  [0, 1] and scaled to [0.3, 0.7]; `thresh_mask` is 1 inside the dilated polygons.

Geometry: training images are resized so the shorter side is a random `scales × image_size` (the longer
side capped at `max_long × image_size`), rotated by up to `rotate` degrees (albumentations `Affine` with
the polygons as keypoints), then padded / randomly cropped to `image_size²`. Words cut by the crop keep
the part inside when that is at least half of them, else become don't-care. No horizontal flip (DBNet's
recipe has one): mirrored glyphs would contradict the upright glyph labels ODM learns from.
Evaluation images are resized so the longer side is `image_size` and padded bottom/right; `scale` maps
predictions back to the original image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyclipper
import shapely
import torch
from torch.utils.data import Dataset

from vlzoo.core.data import SAMPLE_ERRORS, skip_marker
from vlzoo.ocr.data.glyphs import render_glyph_map
from vlzoo.ocr.data.icdar import DONT_CARE, DetectionRecord, read_detection_records

TARGETS = ("db", "glyph")


@dataclass(frozen=True)
class DBTargetConfig:
    shrink_ratio: float = 0.4  # DBNet's r
    thresh_min: float = 0.3
    thresh_max: float = 0.7
    min_text_size: int = 8  # words whose box is smaller on a side are masked out (DBNet's default)


def _offset(polygon: np.ndarray, distance: float) -> list[np.ndarray]:
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(
        np.round(polygon).astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON
    )
    return [np.asarray(p, dtype=np.float32) for p in offset.Execute(distance)]


def shrink_distance(polygon: np.ndarray, ratio: float) -> float:
    geom = shapely.Polygon(polygon)
    return float(geom.area * (1 - ratio**2) / max(geom.length, 1e-6))


def _segment_distances(xs: np.ndarray, ys: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Distance of every grid point to its nearest polygon edge: `[h, w]`, vectorized over the edges
    (x and y kept apart and the square root taken once, after the minimum: the hot loop of the targets)."""
    a = polygon.astype(np.float32)
    ab = np.roll(a, -1, axis=0) - a
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    abx, aby = ab[:, 0, None, None], ab[:, 1, None, None]
    dx, dy = xs[None] - ax, ys[None] - ay
    t = np.clip((dx * abx + dy * aby) / np.maximum(abx * abx + aby * aby, 1e-6), 0, 1)
    dx -= t * abx
    dy -= t * aby
    return np.sqrt((dx * dx + dy * dy).min(0))


def db_targets(
    polygons: Sequence[np.ndarray],
    ignore: Sequence[bool],
    size: tuple[int, int],
    cfg: DBTargetConfig = DBTargetConfig(),
) -> dict[str, np.ndarray]:
    """`prob_map`, `prob_mask`, `thresh_map`, `thresh_mask`, each `[H, W]` float32, for an image of `size`."""
    h, w = size
    prob = np.zeros(size, np.float32)
    prob_mask = np.ones(size, np.float32)
    thresh = np.zeros(size, np.float32)
    thresh_mask = np.zeros(size, np.float32)
    for polygon, dont_care in zip(polygons, ignore):
        polygon = np.asarray(polygon, np.float32).reshape(-1, 2)
        extent = polygon.max(0) - polygon.min(0)
        distance = shrink_distance(polygon, cfg.shrink_ratio) if len(polygon) >= 3 else 0.0
        shrunk = _offset(polygon, -distance) if not dont_care and extent.min() >= cfg.min_text_size else []
        if not shrunk:
            cv2.fillPoly(prob_mask, [np.round(polygon).astype(np.int32)], 0.0)
            continue
        cv2.fillPoly(prob, [np.round(shrunk[0]).astype(np.int32)], 1.0)
        padded = _offset(polygon, distance)
        if not padded or distance <= 0:
            continue
        padded = padded[0]
        cv2.fillPoly(thresh_mask, [np.round(padded).astype(np.int32)], 1.0)
        x0, y0 = np.floor(padded.min(0)).astype(int)
        x1, y1 = np.ceil(padded.max(0)).astype(int)
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1, dtype=np.float32), np.arange(y0, y1 + 1, dtype=np.float32))
        border = 1 - np.clip(_segment_distances(xs, ys, polygon) / distance, 0, 1)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
        if cx1 < cx0 or cy1 < cy0:
            continue
        region = thresh[cy0 : cy1 + 1, cx0 : cx1 + 1]
        np.maximum(region, border[cy0 - y0 : cy1 - y0 + 1, cx0 - x0 : cx1 - x0 + 1], out=region)
    thresh = thresh * (cfg.thresh_max - cfg.thresh_min) + cfg.thresh_min
    return {"prob_map": prob, "prob_mask": prob_mask, "thresh_map": thresh, "thresh_mask": thresh_mask}


def _albumentations():
    # albumentations asks PyPI for a newer version at import unless told not to; training stays offline
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


def resize_for_eval(image: np.ndarray, image_size: int) -> tuple[np.ndarray, float]:
    """Longer side to `image_size`, padded bottom/right to `image_size²`; returns (image, scale)."""
    h, w = image.shape[:2]
    scale = image_size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((image_size, image_size, 3), np.uint8)
    out[:nh, :nw] = cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    return out, scale


def _clip_to_frame(polygon: np.ndarray, size: int) -> np.ndarray | None:
    """The part of `polygon` inside the `size²` frame, or None when less than half of it is."""
    geom = shapely.Polygon(polygon)
    if not geom.is_valid:
        geom = geom.buffer(0)
    inside = geom.intersection(shapely.box(0, 0, size, size))
    if geom.area <= 0 or inside.area < 0.5 * geom.area or inside.geom_type != "Polygon":
        return None
    if inside.equals(geom):
        return polygon
    return np.asarray(inside.exterior.coords[:-1], np.float32)


class DetectionAugment:
    """Training geometry: multi-scale resize, rotation and a random `image_size²` crop, polygons moved with
    the pixels (albumentations keypoints)."""

    def __init__(
        self,
        image_size: int,
        scales: tuple[float, float] = (0.75, 1.5),
        max_long: float = 2.5,
        rotate: float = 10.0,
    ):
        A = _albumentations()
        self.image_size, self.scales, self.max_long = image_size, scales, max_long
        self.compose = A.Compose(
            [
                A.Affine(rotate=(-rotate, rotate), p=0.5 if rotate else 0.0),
                A.PadIfNeeded(image_size, image_size, position="top_left", border_mode=cv2.BORDER_CONSTANT),
                A.RandomCrop(image_size, image_size),
            ],
            keypoint_params=A.KeypointParams(format="xy", remove_invisible=False, check_each_transform=False),
        )

    def __call__(
        self, image: np.ndarray, polygons: Sequence[np.ndarray], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        h, w = image.shape[:2]
        short = rng.uniform(*self.scales) * self.image_size
        scale = min(short / min(h, w), self.max_long * self.image_size / max(h, w))
        image = cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR
        )
        points = (
            np.concatenate([np.asarray(p, np.float32).reshape(-1, 2) for p in polygons]) * scale
            if polygons
            else np.zeros((0, 2), np.float32)
        )
        # albumentations draws from its own generator, seeded from OS entropy unless told: seeding it from
        # `rng` makes a seeded run repeat its augmentations
        self.compose.set_random_seed(int(rng.integers(2**31 - 1)))
        out = self.compose(image=image, keypoints=points)
        moved = np.asarray(out["keypoints"], np.float32).reshape(-1, 2)
        splits = np.cumsum([len(np.asarray(p).reshape(-1, 2)) for p in polygons])[:-1]
        return out["image"], list(np.split(moved, splits)) if polygons else []


class DetectionDataset(Dataset):
    """Detection records → samples: `image` ([S, S, 3] uint8, S = `image_size`), the DB maps and `glyph`
    (`[S, S]` float32 tensors, as `targets` asks), `polygons` / `words` / `ignore` (per word, in the
    sample's pixel coordinates), `gt` (the original `(polygon, transcription)` pairs) and `scale`
    (original → sample pixels; evaluation only maps back with it). An unreadable image is a skip marker."""

    def __init__(
        self,
        records: Sequence[DetectionRecord],
        image_size: int = 640,
        train: bool = True,
        targets: Sequence[str] = TARGETS,
        db: DBTargetConfig = DBTargetConfig(),
        scales: tuple[float, float] = (0.75, 1.5),
        rotate: float = 10.0,
        prompt_drop: float = 0.0,
        seed: int = 0,
    ):
        unknown = set(targets) - set(TARGETS)
        if unknown:
            raise ValueError(f"unknown targets {sorted(unknown)}; the targets are {TARGETS}")
        self.records = list(records)
        self.image_size, self.train, self.targets, self.db, self.seed = (
            image_size,
            train,
            tuple(targets),
            db,
            seed,
        )
        self.augment = DetectionAugment(image_size, scales, rotate=rotate) if train else None
        self.prompt_drop = prompt_drop if train else 0.0

    def __len__(self) -> int:
        return len(self.records)

    def _rng(self, index: int) -> np.random.Generator:
        # training draws differ per access (epochs, workers: torch seeds each worker), evaluation is fixed
        draw = int(torch.randint(0, 2**31 - 1, ())) if self.train else 0
        return np.random.default_rng([self.seed, index, draw])

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
        if image is None:
            return skip_marker(index, record.image_path, "the image cannot be decoded")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        gt = [(i.polygon, i.text) for i in record.instances]
        words = [t for _, t in gt]
        ignore = [t == DONT_CARE for t in words]
        if self.augment is not None:
            try:
                image, moved = self.augment(image, [p for p, _ in gt], self._rng(index))
            except SAMPLE_ERRORS as err:
                return skip_marker(index, record.image_path, f"augmentation failed: {err}")
            scale = 1.0
        else:
            image, scale = resize_for_eval(image, self.image_size)
            moved = [np.asarray(p, np.float32) * scale for p, _ in gt]
        clipped = [_clip_to_frame(p, self.image_size) for p in moved]
        polygons = [c if c is not None else p for c, p in zip(clipped, moved)]
        ignore = [ig or c is None for ig, c in zip(ignore, clipped)]
        sample: dict[str, Any] = {
            "id": index,
            "path": str(record.image_path),
            "image": image,
            "polygons": polygons,
            "words": [DONT_CARE if ig else t for ig, t in zip(ignore, words)],
            "ignore": ignore,
            "gt": gt,
            "scale": float(scale),
        }
        size = (self.image_size, self.image_size)
        if "db" in self.targets:
            sample.update(
                {k: torch.from_numpy(v) for k, v in db_targets(polygons, ignore, size, self.db).items()}
            )
        # ODM's prompt: the legible words, less those the Text-Controller drops (from the label too)
        prompt = [(p, t) for p, t, ig in zip(moved, words, ignore) if not ig]
        if self.prompt_drop > 0 and len(prompt) > 1:
            rng = np.random.default_rng([self.seed, index, int(torch.randint(0, 2**31 - 1, ()))])
            keep = rng.random(len(prompt)) >= self.prompt_drop
            keep[rng.integers(len(prompt))] = True
            prompt = [w for w, k in zip(prompt, keep) if k]
        sample["prompt"] = [t for _, t in prompt]
        if "glyph" in self.targets:
            # glyphs are drawn into the uncut polygons, so a word cut by the crop keeps its visible glyphs
            glyph, _ = render_glyph_map(prompt, size)
            sample["glyph"] = torch.from_numpy(glyph.astype(np.float32))
        return sample


DETECTION_DATA_OPTIONS = ("image_size", "targets", "scales", "rotate", "min_text_size", "points")


def _model_config(options: Mapping[str, Any]) -> Any:
    """The config of the model the data is for (its image size, targets and Text-Controller rate)."""
    from vlzoo.core import resolve_config

    if not options.get("model"):
        return None
    try:
        cfg, _ = resolve_config(
            options["model"], options.get("pretrained"), **(options.get("model_overrides") or {})
        )
    except Exception:
        return None
    return cfg


def build_detection_source(
    path: str, split: str, captions: str, options: Mapping[str, Any]
) -> DetectionDataset:
    """The `icdar-detection` data kind: an index JSON or an `images/` + `gt/` folder (see `icdar`), with
    the model config's `image_size`, `data_targets` and `text_controller_drop` unless `data_options`
    give `image_size` / `targets`."""
    cfg = _model_config(options)
    image_size = int(options.get("image_size") or getattr(cfg, "image_size", None) or 640)
    targets = options.get("targets") or getattr(cfg, "data_targets", None) or TARGETS
    return DetectionDataset(
        read_detection_records(Path(path), split, options.get("points")),
        image_size=image_size,
        train=bool(options.get("train", False)),
        targets=tuple(targets),
        db=DBTargetConfig(min_text_size=int(options.get("min_text_size") or max(2, image_size // 80))),
        scales=tuple(options.get("scales") or (0.75, 1.5)),
        rotate=float(options["rotate"]) if options.get("rotate") is not None else 10.0,
        prompt_drop=float(getattr(cfg, "text_controller_drop", 0.0) or 0.0),
        seed=int(options.get("seed") or 0),
    )


class DetectionCollator:
    """Detection samples → a batch without the core's collator: `image` normalized `[B, 3, S, S]`, the
    target maps stacked, per-image lists kept, skip markers listed in `skipped`."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [s for s in samples if not s.get("__skipped__")]
        batch: dict[str, Any] = {
            "skipped": [(s["path"], s["reason"]) for s in samples if s.get("__skipped__")]
        }
        if not kept:
            return {**batch, "id": [], "image": torch.empty(0)}
        images = torch.from_numpy(np.stack([s["image"] for s in kept])).permute(0, 3, 1, 2).float() / 255.0
        batch["image"] = (images - self.mean) / self.std
        for key in kept[0]:
            if key == "image":
                continue
            values = [s[key] for s in kept]
            batch[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
        return batch


__all__ = [
    "DETECTION_DATA_OPTIONS",
    "TARGETS",
    "DBTargetConfig",
    "DetectionAugment",
    "DetectionCollator",
    "DetectionDataset",
    "build_detection_source",
    "db_targets",
    "resize_for_eval",
    "shrink_distance",
]
