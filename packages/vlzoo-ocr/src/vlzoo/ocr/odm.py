"""ODM: "A Text-Image Further Alignment Pre-training Approach for Scene Text Detection and Spotting"
(Duan et al., CVPR 2024; official code PriNing/ODM, built on oCLIP).

Paper / official code → this file:
- image encoder: CLIP's ModifiedResNet-50 (`dbnet.ClipResNet`, timm's `resnet50_clip` architecture) with its
  attention pool; the pooled token is the image feature, the spatial tokens feed the generator.
- character-level text encoder (`CharTextEncoder`): 94 printable ASCII characters → ids 1–94, end-of-word
  95, unknown/padding 0 (vocabulary 96, `tools/oclip_char_dict.txt`), context 25; a transformer over
  each word, mean-pooled, projected. The image's text feature is the mean over its words. (Inferred: the
  mean pool skips the padding positions; the official transformer's depth and the decoder's are not in
  the paper: 12 / 2 layers here for `odm-rn50`.)
- destylization generator: a transformer decoder in which the image tokens attend to the word embeddings
  (official `transformer_decoder`: image tokens are the queries; the issue's "from the text instances to
  the image" is this cross-attention), reshaped to the C5 grid; an FPN over [C2, C3, C4, C5, decoded]
  (official `FPN([256, 512, 1024, 2048, 512], 256)`; the DBNet-style `FPNC` here); `SegMIM`: ×2 upsample,
  conv3×3-BN-ReLU, upsample to the input size, conv1×1-BN-ReLU-conv1×1 → 1-channel glyph logits. Its
  only inputs are the image and the prompt words: the glyph label is read by the loss alone.
- losses (official `get_loss_with_LPIPS`, weights 1 : 1 : 1 as the train script's defaults; the paper's
  table gives α, β, γ = 1, 1, 0.5): CLIP's symmetric InfoNCE between image and text features (the core's
  `ClipLoss`), BCE-with-logits on the glyph map (`pixel_loss="l1"`: L1 on its sigmoid, `--use-l1`), and
  a perceptual loss between sigmoid(logits) and the label, computed as OCR-LPIPS does (inputs → 2x − 1 →
  LPIPS scaling; per-layer channel-normalized squared differences summed over channels, averaged over
  space, summed over layers).
- perceptual network (`perceptual`): `"self"` (default) is a frozen copy of this model's own image
  encoder's stem and first two stages, refreshed from the live encoder every `perceptual_refresh` steps.
  Why: the official default (LPIPS' VGG-16, or CRAFT for OCR-LPIPS) needs downloaded weights, the `lpips`
  package is not installed here and nothing is fetched at training time; a frozen copy of the encoder
  gives the loss text-aware features (as CRAFT's are) once pre-training has shaped them, and never lets
  the loss move the network it measures with. `"lpips"` uses `lpips.LPIPS(net="vgg")` when installed;
  `"none"` turns the term off, and is `odm-tiny`'s choice: at CPU scale the "self" term (about 1.5 against
  a pixel BCE under 0.1) swamps the glyph loss: measured on odm-tiny, 200 steps at 96², held-out glyph BCE
  0.26 with it vs 0.07 without (the constant prior: 0.084), word-pixel AUROC of the glyph logits 0.47 vs
  0.90; DBNet fine-tuned 300 steps from its backbone reached val hmean 19 (after 300 pre-training steps
  with it) vs 76 (200 without; random backbone: 55); switched on only after 100 of the 200 steps, it
  pushed the pixel loss back up (0.08 → 0.16). The official term's LPIPS network comes pre-trained on
  images; an untrained or barely trained copy of a small encoder is no stand-in for it. `odm-rn50` keeps
  "self" (unmeasured at that scale).
- Text-Controller (paper §3; no code released): the prompt holds a random subset of the image's words and
  the glyph label only those words, so the generator learns to draw what the prompt asks and nothing
  else; that is what lets OCR-engine pseudo-labels, which miss words, label unlabelled images
  (`pseudo_label_images`). Inferred: each word is dropped with probability `text_controller_drop`
  (0.3 here; the paper gives no rate), at least one kept; the detection source applies it.
- export: `to_mmocr_state_dict` writes the backbone in MMOCR's `CLIPResNet` key layout, as the official
  `tools/convert2mmocr.py` does from OpenAI's layout (attention pool dropped; deep stem 0/1, 3/4, 6/7;
  avg-down downsample conv/bn at 1/2; `backbone.` prefix).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core import ConfigError, register_model
from vlzoo.core.losses import ClipLoss
from vlzoo.core.towers import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from vlzoo.ocr.dbnet import FPNC, OCR_TOY_DATA, TINY_BACKBONE, ClipResNet, ClipResNetConfig, ImageNormalize

CHARSET = "".join(chr(c) for c in range(33, 127))  # 94 printable ASCII characters
EOS_ID = len(CHARSET) + 1  # 95
VOCAB_SIZE = len(CHARSET) + 2  # 96: unknown/padding 0, characters 1–94, end-of-word 95
_CHAR_IDS = {c: i + 1 for i, c in enumerate(CHARSET)}


class CharTokenizer:
    """Words → `[N, context]` ids: characters (unknown → 0), then end-of-word, then padding 0."""

    def __init__(self, context_length: int = 25):
        self.context_length = context_length

    def __call__(self, words: Sequence[str]) -> torch.Tensor:
        ids = torch.zeros(len(words), self.context_length, dtype=torch.long)
        for i, word in enumerate(words):
            chars = [_CHAR_IDS.get(c, 0) for c in word[: self.context_length - 1]] + [EOS_ID]
            ids[i, : len(chars)] = torch.tensor(chars)
        return ids


@dataclass
class CharTextConfig:
    context_length: int = 25
    width: int = 512
    heads: int = 8
    layers: int = 12


class CharTextEncoder(nn.Module):
    """A character-level transformer: one embedding per word (mean over its non-padding positions)."""

    def __init__(self, cfg: CharTextConfig, embed_dim: int):
        super().__init__()
        self.token_embedding = nn.Embedding(VOCAB_SIZE, cfg.width)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, cfg.width) * 0.01)
        layer = nn.TransformerEncoderLayer(
            cfg.width,
            cfg.heads,
            4 * cfg.width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(cfg.width)
        self.projection = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """`[N, context]` ids → `[N, embed_dim]`."""
        x = self.token_embedding(ids) + self.positional_embedding
        real = ids != 0
        real[:, 0] = True  # an empty word still has one position to pool
        x = self.ln_final(self.transformer(x, src_key_padding_mask=~real))
        pooled = (x * real[..., None]).sum(1) / real.sum(1, keepdim=True)
        return self.projection(pooled)


class SegMIM(nn.Module):
    """ODM's glyph head: ×2 upsample, conv3×3-BN-ReLU, upsample to the image size, conv1×1-BN-ReLU-conv1×1."""

    def __init__(self, channels: int, out_channels: int = 1):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return self.out(F.interpolate(x, size=size, mode="bilinear", align_corners=False))


class SelfPerceptual(nn.Module):
    """OCR-LPIPS-style distance over a frozen copy of the image encoder's stem and first two stages."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, encoder: ClipResNet):
        super().__init__()
        self.stem = copy.deepcopy(encoder.net.stem)
        self.stages = copy.deepcopy(encoder.net.stages[:2])
        self.requires_grad_(False)
        self.register_buffer(
            "shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)

    def refresh(self, encoder: ClipResNet) -> None:
        self.stem.load_state_dict(encoder.net.stem.state_dict())
        self.stages.load_state_dict(encoder.net.stages[:2].state_dict())

    def train(self, mode: bool = True) -> SelfPerceptual:
        return super().train(False)  # frozen: its BatchNorms keep the copied statistics

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((2 * x - 1).expand(-1, 3, -1, -1) - self.shift) / self.scale
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        for a, b in zip(self._features(pred), self._features(target)):
            a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
            b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (a - b).square().sum(1).mean()
        return total


class LpipsPerceptual(nn.Module):
    """`lpips.LPIPS(net="vgg")`, for machines with the package and its weights."""

    def __init__(self):
        super().__init__()
        try:
            import lpips
        except ImportError as err:
            raise ConfigError("perceptual='lpips' needs the lpips package (pip install lpips)") from err
        self.net = lpips.LPIPS(net="vgg", verbose=False).requires_grad_(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.net(pred.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1), normalize=True).mean()


@dataclass
class ODMConfig:
    toy_data: ClassVar[str] = OCR_TOY_DATA
    backbone: ClipResNetConfig = field(default_factory=lambda: ClipResNetConfig(embed_dim=512))
    text: CharTextConfig = field(default_factory=CharTextConfig)
    image_size: int = 512
    decoder_layers: int = 2
    decoder_heads: int = 8
    fpn_channels: int = 256
    max_words: int = 32
    pixel_loss: str = "bce"  # or "l1" (official --use-l1)
    perceptual: str = "self"  # "self" | "lpips" | "none"
    perceptual_refresh: int = 100
    contrast_weight: float = 1.0
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    text_controller_drop: float = 0.3
    init_logit_scale: float = float(np.log(1 / 0.07))
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    data_targets: tuple[str, ...] = ("glyph",)

    def build(self) -> ODM:
        return ODM(self)

    def transform(self, train: bool, albumentations: Any | None = None) -> ImageNormalize:
        return ImageNormalize(self.mean, self.std, albumentations)

    def tokenizer(self) -> CharTokenizer:
        return CharTokenizer(self.text.context_length)


class ODM(nn.Module):
    def __init__(self, cfg: ODMConfig):
        super().__init__()
        if not cfg.backbone.embed_dim:
            raise ConfigError("ODM needs backbone.embed_dim > 0 (the attention pool's image feature)")
        if cfg.pixel_loss not in ("bce", "l1") or cfg.perceptual not in ("self", "lpips", "none"):
            raise ConfigError(
                "ODM: pixel_loss must be bce|l1 and perceptual self|lpips|none, "
                f"got {cfg.pixel_loss!r}, {cfg.perceptual!r}"
            )
        self.config = cfg
        dim = cfg.backbone.embed_dim
        self.image_encoder = ClipResNet(cfg.backbone, cfg.image_size)
        self.text_encoder = CharTextEncoder(cfg.text, dim)
        self.tokenizer = cfg.tokenizer()
        layer = nn.TransformerDecoderLayer(
            dim, cfg.decoder_heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, cfg.decoder_layers)
        self.fpn = FPNC(
            [*cfg.backbone.widths, dim],
            lateral_channels=cfg.fpn_channels,
            out_channels=cfg.fpn_channels,
            fuse="sum",
        )
        self.glyph_head = SegMIM(cfg.fpn_channels)
        self.logit_scale = nn.Parameter(torch.tensor(cfg.init_logit_scale))
        self.contrast = ClipLoss()
        self.perceptual = (
            SelfPerceptual(self.image_encoder)
            if cfg.perceptual == "self"
            else LpipsPerceptual()
            if cfg.perceptual == "lpips"
            else None
        )

    def no_weight_decay(self) -> set[str]:
        return {"logit_scale", "text_encoder.positional_embedding"}

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """The attention pool's image feature `[B, D]`, the side of the image–text contrast."""
        pooled = self.image_encoder.pool_tokens(self.image_encoder(images)[-1])[:, 0]
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def encode_text(self, text: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """One embedding `[N, D]` per word of `CharTokenizer` ids `[N, context]`."""
        words = self.text_encoder(text)
        return F.normalize(words, dim=-1) if normalize else words

    # --------------------------------------------------------------------------------------- parts
    def encode_words(
        self, prompts: Sequence[Sequence[str]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Word embeddings `[B, W, D]` and their padding mask `[B, W]` (True = no word) for each image's
        prompt (at most `max_words`; an image without words gets one empty word)."""
        words = [list(p)[: self.config.max_words] or [""] for p in prompts]
        width = max(len(w) for w in words)
        flat = self.text_encoder(self.tokenizer([w for ws in words for w in ws]).to(device))
        emb = flat.new_zeros(len(words), width, flat.shape[-1])
        pad = torch.ones(len(words), width, dtype=torch.bool, device=device)
        offset = 0
        for i, ws in enumerate(words):
            emb[i, : len(ws)] = flat[offset : offset + len(ws)]
            pad[i, : len(ws)] = False
            offset += len(ws)
        return emb, pad

    def generate(self, images: torch.Tensor, prompts: Sequence[Sequence[str]]) -> dict[str, torch.Tensor]:
        """Glyph logits `[B, 1, H, W]` from the images and prompt words alone, plus the image and text
        features (normalized) for the contrast."""
        c2, c3, c4, c5 = self.image_encoder(images)
        tokens = self.image_encoder.pool_tokens(c5)
        words, pad = self.encode_words(prompts, images.device)
        decoded = self.decoder(tokens[:, 1:], words, memory_key_padding_mask=pad)
        grid = decoded.transpose(1, 2).reshape(decoded.shape[0], -1, *c5.shape[-2:])
        logits = self.glyph_head(self.fpn([c2, c3, c4, c5, grid]), images.shape[-2:])
        keep = (~pad).float()[..., None]
        text = (words * keep).sum(1) / keep.sum(1)
        return {
            "glyph_logits": logits,
            "image_features": F.normalize(tokens[:, 0], dim=-1),
            "text_features": F.normalize(text, dim=-1),
        }

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        prompts = batch.get("prompt") or [[w for w in ws if w != "###"] for ws in batch["words"]]
        out = self.generate(batch["image"], prompts)
        if "glyph" not in batch:
            return out
        cfg = self.config
        target = batch["glyph"].unsqueeze(1).float()
        logits = out["glyph_logits"]
        contrast = self.contrast(out["image_features"], out["text_features"], self.logit_scale.exp())
        if cfg.pixel_loss == "bce":
            pixel = F.binary_cross_entropy_with_logits(logits, target)
        else:
            pixel = (torch.sigmoid(logits) - target).abs().mean()
        perceptual = (
            self.perceptual(torch.sigmoid(logits), target)
            if self.perceptual is not None
            else logits.new_zeros(())
        )
        loss = cfg.contrast_weight * contrast + cfg.pixel_weight * pixel + cfg.perceptual_weight * perceptual
        return {
            "loss": loss,
            "loss_contrast": contrast,
            "loss_pixel": pixel,
            "loss_perceptual": perceptual,
            **out,
        }

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        if isinstance(self.perceptual, SelfPerceptual) and step % self.config.perceptual_refresh == 0:
            self.perceptual.refresh(self.image_encoder)


# ------------------------------------------------------------------------------------------ export
_STEM = {"conv1": (0, 1), "conv2": (3, 4), "conv3": (6, 7)}
_BLOCK_CONVS = {"conv1_1x1": "1", "conv2_kxk": "2", "conv3_1x1": "3"}


def _mmocr_key(key: str) -> str | None:
    """A timm `ByobNet` (CLIP ResNet) key → MMOCR `CLIPResNet` key; None for the attention pool."""
    if key.startswith("head."):
        return None
    if m := re.fullmatch(r"stem\.(conv[123])\.(conv|bn)\.(.+)", key):
        conv, bn = _STEM[m[1]]
        return f"backbone.stem.{conv if m[2] == 'conv' else bn}.{m[3]}"
    if m := re.fullmatch(r"stages\.(\d+)\.(\d+)\.(conv1_1x1|conv2_kxk|conv3_1x1)\.(conv|bn)\.(.+)", key):
        n = _BLOCK_CONVS[m[3]]
        return f"backbone.layer{int(m[1]) + 1}.{m[2]}.{m[4]}{n}.{m[5]}"
    if m := re.fullmatch(r"stages\.(\d+)\.(\d+)\.shortcut\.conv\.(conv|bn)\.(.+)", key):
        return f"backbone.layer{int(m[1]) + 1}.{m[2]}.downsample.{1 if m[3] == 'conv' else 2}.{m[4]}"
    raise ConfigError(f"no MMOCR CLIPResNet key for backbone key {key!r}")


def to_mmocr_state_dict(backbone: ClipResNet) -> dict[str, torch.Tensor]:
    """The backbone's weights under MMOCR's DBNet `CLIPResNet` keys (`backbone.stem.0.weight`, ...)."""
    out = {}
    for key, value in backbone.net.state_dict().items():
        target = _mmocr_key(key)
        if target is not None:
            out[target] = value.detach().clone().contiguous()
    return out


def export_mmocr(checkpoint: str | Path, out: str | Path) -> Path:
    """Read an ODM (or DBNet) vlzoo checkpoint and write its backbone for MMOCR as a tensor-only
    `torch.save` dict (what `torch.load(weights_only=True)` and mmengine's loader read)."""
    from vlzoo.core.weights import load_state_dict

    state = load_state_dict(checkpoint)
    for prefix in ("image_encoder.net.", "backbone.net."):
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            break
    else:
        raise ConfigError(
            f"{checkpoint}: no backbone weights (keys under image_encoder.net. or backbone.net.)"
        )
    converted = {t: v.contiguous() for k, v in picked.items() if (t := _mmocr_key(k)) is not None}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(converted, out)
    return out


# ------------------------------------------------------------------------------ unlabelled images
def pseudo_label_images(
    images: Sequence[np.ndarray],
    detect: Callable[[np.ndarray], Sequence[np.ndarray]],
    recognize: Callable[[np.ndarray, np.ndarray], tuple[str, float]],
    min_confidence: float = 0.9,
) -> list[list[tuple[np.ndarray, str]]]:
    """ODM's labelling of unlabelled images: an OCR engine's words (`detect(image)` → polygons,
    `recognize(image, polygon)` → (text, confidence)), keeping the confident ones. The words it misses or
    drops are simply absent from prompt and glyph label alike, which the Text-Controller training makes
    harmless: the generator draws only what the prompt names."""
    labels = []
    for image in images:
        words = []
        for polygon in detect(image):
            text, confidence = recognize(image, polygon)
            if text and confidence >= min_confidence:
                words.append((np.asarray(polygon, np.float32), text))
        labels.append(words)
    return labels


# ------------------------------------------------------------------------------------ registrations
@register_model("odm-rn50")
def odm_rn50() -> ODMConfig:
    """ODM pre-training of CLIP's ResNet-50 at 512² (official `RN50_Seg_Clip.json`: embed 512, context 25,
    vocabulary 96)."""
    return ODMConfig()


@register_model("odm-tiny")
def odm_tiny() -> ODMConfig:
    """ODM with the tiny CLIP ResNet of `dbnet-tiny` at 128², for tests and CPU demos."""
    return ODMConfig(
        backbone=ClipResNetConfig(
            TINY_BACKBONE.depths, TINY_BACKBONE.widths, TINY_BACKBONE.stem, embed_dim=64
        ),
        text=CharTextConfig(width=64, heads=2, layers=2),
        image_size=128,
        decoder_layers=1,
        decoder_heads=2,
        fpn_channels=64,
        perceptual="none",  # measured harmful at this scale: see the module docstring
        perceptual_refresh=20,
    )


__all__ = [
    "CHARSET",
    "EOS_ID",
    "ODM",
    "VOCAB_SIZE",
    "CharTextConfig",
    "CharTextEncoder",
    "CharTokenizer",
    "LpipsPerceptual",
    "ODMConfig",
    "SegMIM",
    "SelfPerceptual",
    "export_mmocr",
    "pseudo_label_images",
    "to_mmocr_state_dict",
]
