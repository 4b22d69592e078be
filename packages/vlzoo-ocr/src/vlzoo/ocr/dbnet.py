"""DBNet: "Real-time Scene Text Detection with Differentiable Binarization" (Liao et al., AAAI 2020), over
CLIP's modified ResNet, the backbone ODM pre-trains.

Paper → code:
- backbone: CLIP's ModifiedResNet (deep 3-conv stem, average-pool downsampling, anti-aliased strides) as
  timm builds it (`resnet50_clip`, a `ByobNet`); `ClipResNetConfig` sets depths/widths, so a tiny one is
  the same architecture, smaller. Features C2–C5 (strides 4–32).
- neck `FPNC` (as MMOCR's DBNet neck): 1×1 laterals to 256, top-down sum, a 3×3 conv to 64 per level,
  all upsampled to stride 4 and concatenated (256 channels).
- head `DBHead`: probability and threshold branches, each conv3×3-BN-ReLU, 2× deconv-BN-ReLU, 2× deconv,
  sigmoid; approximate binarization `B = 1 / (1 + exp(-k (P - T)))`, k = 50 (paper eq. 2).
- losses: balanced BCE with hard negative mining (negatives ≤ 3 × positives) on P, masked L1 on T, dice on
  B, weighted 5 : 10 : 1 as the official code (`L1BalanceCELoss`: bce_scale 5, l1_scale 10) and MMOCR do
  (the paper writes L = Ls + α·Lb + β·Lt with α = 1, β = 10).
- inference: the probability map binarized at 0.3, OpenCV contours, a minimum-area box per contour scored
  by its mean probability (kept ≥ `box_thresh`, 0.3 as MMOCR's DBPostprocessor), expanded by
  `D' = A' · r' / L'` (r' = 1.5) with pyclipper,
  boxed again (the official `SegDetectorRepresenter` in box mode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np
import pyclipper
import torch
import torch.nn.functional as F
from timm.layers.attention_pool2d import AttentionPool2d
from timm.models.byobnet import ByoBlockCfg, ByobNet, ByoModelCfg
from torch import nn

from vlzoo.core import ConfigError, register_model
from vlzoo.core.towers import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, is_structure_only

OCR_TOY_DATA = "ocr-toyworld"


# ------------------------------------------------------------------------------------------ backbone
@dataclass
class ClipResNetConfig:
    """CLIP's modified ResNet: ResNet-50 is depths (3, 4, 6, 3), widths (256, 512, 1024, 2048), stem
    (32, 32, 64). `embed_dim` > 0 adds CLIP's attention pool projecting to it (ODM's image feature);
    a detector's backbone has none (MMOCR's CLIPResNet drops it)."""

    depths: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (256, 512, 1024, 2048)
    stem: tuple[int, ...] = (32, 32, 64)
    embed_dim: int = 0

    def byob(self) -> ByoModelCfg:
        """The timm architecture: `resnet50_clip`'s `ByoModelCfg` with these depths and widths."""
        if len(self.depths) != 4 or len(self.widths) != 4 or len(self.stem) != 3:
            raise ConfigError(f"ClipResNetConfig needs 4 depths, 4 widths and 3 stem widths, got {self}")
        blocks = tuple(
            ByoBlockCfg(type="bottle", d=d, c=c, s=1 if i == 0 else 2, br=0.25)
            for i, (d, c) in enumerate(zip(self.depths, self.widths))
        )
        return ByoModelCfg(
            blocks=blocks,
            stem_chs=tuple(self.stem),
            stem_type="",
            stem_pool="avg2",
            downsample="avg",
            aa_layer="avg",
            head_type="attn_abs" if self.embed_dim else "",
        )


class _AllTokensAttentionPool(AttentionPool2d):
    """timm's attention pool returning every output token, the pooled one first: `[B, 1 + HW, D]`
    (ODM contrasts the pooled token and decodes the spatial ones)."""

    def _pool(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:  # noqa: N803  (timm's signature)
        return x


class ClipResNet(nn.Module):
    """C2–C5 feature maps of a CLIP ModifiedResNet (timm `ByobNet`), and its attention-pool tokens."""

    def __init__(self, cfg: ClipResNetConfig, image_size: int):
        super().__init__()
        self.net = ByobNet(
            cfg.byob(),
            num_classes=cfg.embed_dim,
            global_pool="" if cfg.embed_dim else None,
            img_size=image_size,
        )
        if cfg.embed_dim:
            self.net.head.__class__ = _AllTokensAttentionPool
        self.channels = list(cfg.widths)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.net.stem(images)
        features = []
        for stage in self.net.stages:
            x = stage(x)
            features.append(x)
        return features

    def pool_tokens(self, c5: torch.Tensor) -> torch.Tensor:
        return self.net.head(c5)


# -------------------------------------------------------------------------------------------- neck
def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class FPNC(nn.Module):
    """DBNet's FPN: laterals, top-down sums, per-level 3×3 convs, upsampled to the finest level and fused:
    `"concat"` (DBNet: `out_channels // levels` each, concatenated) or `"sum"` (a plain FPN's finest
    output, `out_channels` each, as ODM's generator reads it). Levels of equal size (ODM's decoded map
    beside C5) are summed top-down without resizing."""

    def __init__(
        self,
        in_channels: Sequence[int],
        lateral_channels: int = 256,
        out_channels: int = 256,
        fuse: str = "concat",
    ):
        super().__init__()
        if fuse not in ("concat", "sum"):
            raise ConfigError(f"FPNC: fuse must be 'concat' or 'sum', got {fuse!r}")
        if fuse == "concat" and out_channels % len(in_channels):
            raise ConfigError(
                f"FPNC: out_channels {out_channels} must divide by the {len(in_channels)} levels"
            )
        level = out_channels // len(in_channels) if fuse == "concat" else out_channels
        self.fuse = fuse
        self.laterals = nn.ModuleList(nn.Conv2d(c, lateral_channels, 1, bias=False) for c in in_channels)
        self.smooth = nn.ModuleList(_conv_bn_relu(lateral_channels, level) for _ in in_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        lat = [conv(f) for conv, f in zip(self.laterals, features)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        size = lat[0].shape[-2:]
        outs = [
            F.interpolate(s(x), size=size, mode="nearest") if i else s(x)
            for i, (s, x) in enumerate(zip(self.smooth, lat))
        ]
        return torch.cat(outs, dim=1) if self.fuse == "concat" else torch.stack(outs).sum(0)


# -------------------------------------------------------------------------------------------- head
def _db_branch(channels: int) -> nn.Sequential:
    mid = channels // 4
    return nn.Sequential(
        _conv_bn_relu(channels, mid),
        nn.ConvTranspose2d(mid, mid, 2, stride=2),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(mid, 1, 2, stride=2),
    )


class DBHead(nn.Module):
    """Probability and threshold maps at the input resolution (stride 4 → 2 deconvs), and their
    differentiable binarization."""

    def __init__(self, channels: int = 256, k: float = 50.0):
        super().__init__()
        self.prob = _db_branch(channels)
        self.thresh = _db_branch(channels)
        self.k = k

    def forward(self, x: torch.Tensor, with_threshold: bool = True) -> dict[str, torch.Tensor]:
        prob = torch.sigmoid(self.prob(x)).squeeze(1)
        if not with_threshold:
            return {"prob_map": prob}
        thresh = torch.sigmoid(self.thresh(x)).squeeze(1)
        binary = torch.sigmoid(self.k * (prob - thresh))
        return {"prob_map": prob, "thresh_map": thresh, "binary_map": binary}


# ------------------------------------------------------------------------------------------ losses
def balanced_bce(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, negative_ratio: float = 3.0
) -> torch.Tensor:
    """BCE over positives plus the hardest negatives, at most `negative_ratio` × as many (OHEM)."""
    positive = gt * mask
    negative = (1 - gt) * mask
    n_pos = int(positive.sum())
    n_neg = min(int(negative.sum()), int(n_pos * negative_ratio))
    loss = F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), gt, reduction="none")
    hardest = torch.topk((loss * negative).flatten(), n_neg).values if n_neg else loss.new_zeros(0)
    return ((loss * positive).sum() + hardest.sum()) / (n_pos + n_neg + 1e-6)


def masked_l1(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (torch.abs(pred - gt) * mask).sum() / (mask.sum() + 1e-6)


def dice_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    inter = (pred * gt * mask).sum()
    return 1 - 2 * inter / ((pred * mask).sum() + (gt * mask).sum() + 1e-6)


# ------------------------------------------------------------------------------------ post-process
def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    h, w = prob.shape
    x0, y0 = np.clip(np.floor(box.min(0)).astype(int), 0, (w - 1, h - 1))
    x1, y1 = np.clip(np.ceil(box.max(0)).astype(int), 0, (w - 1, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(mask, [np.round(box - (x0, y0)).astype(np.int32)], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray | None:
    area = cv2.contourArea(box)
    length = cv2.arcLength(box, True)
    if length <= 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(np.round(box).astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    out = offset.Execute(area * ratio / length)
    return np.asarray(out[0], np.float32) if len(out) == 1 else None


def _ordered_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area box of `points`, clockwise from the top-left, and its shorter side."""
    rect = cv2.minAreaRect(points.astype(np.float32))
    box = cv2.boxPoints(rect)
    box = box[np.argsort(box[:, 0])]
    left, right = box[:2][np.argsort(box[:2, 1])], box[2:][np.argsort(box[2:, 1])]
    return np.array([left[0], right[0], right[1], left[1]], np.float32), min(rect[1])


def boxes_from_prob_map(
    prob: np.ndarray,
    *,
    bin_thresh: float = 0.3,
    box_thresh: float = 0.6,
    unclip_ratio: float = 1.5,
    min_size: float = 3.0,
    max_candidates: int = 1000,
) -> tuple[list[np.ndarray], list[float]]:
    """Word quadrilaterals `[4, 2]` (in the map's pixels) and their scores from a probability map."""
    bitmap = (prob > bin_thresh).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[:max_candidates]:
        box, short = _ordered_box(contour.reshape(-1, 2))
        if short < min_size:
            continue
        score = _box_score(prob, box)
        if score < box_thresh:
            continue
        grown = _unclip(box, unclip_ratio)
        if grown is None:
            continue
        box, short = _ordered_box(grown)
        if short < min_size + 2:
            continue
        h, w = prob.shape
        boxes.append(np.clip(box, 0, (w, h)))
        scores.append(score)
    return boxes, scores


# ------------------------------------------------------------------------------------------- model
@dataclass
class DBNetConfig:
    """DBNet over a CLIP ResNet. `backbone_init`: a checkpoint (vlzoo safetensors of an ODM model, or of
    a DBNet) whose backbone weights start this model, e.g. ODM pre-training's output. It travels with the
    saved config: to reload a fine-tuned DBNet where that file is gone, pass `backbone_init=None`."""

    toy_data: ClassVar[str] = OCR_TOY_DATA
    backbone: ClipResNetConfig = field(default_factory=ClipResNetConfig)
    image_size: int = 640
    fpn_channels: int = 256
    k: float = 50.0
    bce_weight: float = 5.0
    l1_weight: float = 10.0
    dice_weight: float = 1.0
    ohem_ratio: float = 3.0
    bin_thresh: float = 0.3
    box_thresh: float = 0.3  # MMOCR's DBPostprocessor min_text_score (the DB repo: 0.6-0.7)
    unclip_ratio: float = 1.5
    min_size: float = 3.0
    backbone_init: str | None = None
    data_targets: tuple[str, ...] = ("db",)
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD

    def build(self) -> DBNet:
        return DBNet(self)

    def transform(self, train: bool, albumentations: Any | None = None) -> ImageNormalize:
        return ImageNormalize(self.mean, self.std, albumentations)

    def tokenizer(self) -> None:
        return None  # detection reads no text


class ImageNormalize:
    """`[H, W, 3]` uint8 (geometry already done by the detection source) → optional pixel-level
    albumentations (colour, blur: geometry must move the polygons too, so it lives in the source) →
    normalized `[3, H, W]` float tensor."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], albumentations: Any | None = None):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.augment = None
        if albumentations:
            import os

            os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
            import albumentations as A

            self.augment = A.Compose(
                [getattr(A, a["type"])(**{k: v for k, v in a.items() if k != "type"}) for a in albumentations]
            )

    def __call__(self, image: Any) -> torch.Tensor:
        array = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        if self.augment is not None:
            array = self.augment(image=array)["image"]
        tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255.0
        return (tensor - self.mean) / self.std


def load_backbone_weights(backbone: ClipResNet, path: str) -> None:
    """Start `backbone` from the backbone weights of a vlzoo checkpoint (ODM's `image_encoder.net.*`, or a
    DBNet's `backbone.net.*`); the attention pool, which a detector has not, is left out."""
    from vlzoo.core.weights import load_state_dict

    state = load_state_dict(path)
    for prefix in ("image_encoder.net.", "backbone.net."):
        picked = {
            k[len(prefix) :]: v
            for k, v in state.items()
            if k.startswith(prefix) and not k[len(prefix) :].startswith("head.")
        }
        if picked:
            own = backbone.net.state_dict()
            missing = sorted(set(own) - set(picked))
            if missing:
                raise ConfigError(f"{path}: the backbone weights lack {missing[:5]} ({len(missing)} keys)")
            backbone.net.load_state_dict(picked)
            return
    raise ConfigError(f"{path}: no backbone weights (keys under image_encoder.net. or backbone.net.)")


class DBNet(nn.Module):
    def __init__(self, cfg: DBNetConfig):
        super().__init__()
        self.config = cfg
        self.backbone = ClipResNet(
            ClipResNetConfig(cfg.backbone.depths, cfg.backbone.widths, cfg.backbone.stem, 0), cfg.image_size
        )
        self.neck = FPNC(cfg.backbone.widths, out_channels=cfg.fpn_channels)
        self.head = DBHead(cfg.fpn_channels, cfg.k)
        if cfg.backbone_init and not is_structure_only():
            load_backbone_weights(self.backbone, cfg.backbone_init)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["image"]
        maps = self.head(
            self.neck(self.backbone(images)), with_threshold=self.training or "prob_map" in batch
        )
        if "prob_map" not in batch:
            return maps
        cfg = self.config
        loss_prob = balanced_bce(maps["prob_map"], batch["prob_map"], batch["prob_mask"], cfg.ohem_ratio)
        loss_thresh = masked_l1(maps["thresh_map"], batch["thresh_map"], batch["thresh_mask"])
        loss_binary = dice_loss(maps["binary_map"], batch["prob_map"], batch["prob_mask"])
        loss = cfg.bce_weight * loss_prob + cfg.l1_weight * loss_thresh + cfg.dice_weight * loss_binary
        return {
            "loss": loss,
            "loss_prob": loss_prob,
            "loss_thresh": loss_thresh,
            "loss_binary": loss_binary,
            **maps,
        }

    @torch.no_grad()
    def predict(self, images: torch.Tensor, scales: Sequence[float] | None = None) -> list[list[np.ndarray]]:
        """Word quadrilaterals per image, in original-image pixels when `scales` (original → input) given."""
        was_training = self.training
        self.eval()
        prob = self.head(self.neck(self.backbone(images)), with_threshold=False)["prob_map"].cpu().numpy()
        self.train(was_training)
        cfg = self.config
        out = []
        for i, p in enumerate(prob):
            boxes, _ = boxes_from_prob_map(
                p,
                bin_thresh=cfg.bin_thresh,
                box_thresh=cfg.box_thresh,
                unclip_ratio=cfg.unclip_ratio,
                min_size=cfg.min_size,
            )
            scale = scales[i] if scales is not None else 1.0
            out.append([b / scale for b in boxes])
        return out


# ------------------------------------------------------------------------------------ registrations
TINY_BACKBONE = ClipResNetConfig(depths=(1, 1, 1, 1), widths=(32, 64, 128, 256), stem=(16, 16, 32))


@register_model("dbnet-rn50")
def dbnet_rn50() -> DBNetConfig:
    """DBNet over CLIP's ResNet-50 at 640² crops (MMOCR's `dbnet_resnet50-oclip` ICDAR 2015 recipe)."""
    return DBNetConfig()


@register_model("dbnet-tiny")
def dbnet_tiny() -> DBNetConfig:
    """A DBNet of ~0.4 M parameters at 128² for tests and CPU demos: the same architecture, narrower."""
    return DBNetConfig(backbone=TINY_BACKBONE, image_size=128, fpn_channels=64)


__all__ = [
    "FPNC",
    "ClipResNet",
    "ClipResNetConfig",
    "DBHead",
    "DBNet",
    "DBNetConfig",
    "ImageNormalize",
    "balanced_bce",
    "boxes_from_prob_map",
    "dice_loss",
    "load_backbone_weights",
    "masked_l1",
]
