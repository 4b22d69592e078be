"""PLIP: Language-Image Pre-training for Person Representation Learning (Zuo et al., 2023).

One dual encoder, a CLIP modified ResNet-50 image tower (timm's `resnet50_clip` family: 3-conv stem,
anti-aliased bottlenecks, attention pool) at H×W 256×128 and a BERT text tower of which only the top layers
train, pre-trained with three pretext tasks:

1. **Text-guided image colorization** (`colorization`): the image tower encodes the *grayscale* image; its
   last feature map, each position attending to the caption's colour-part phrases ("red jacket", "blue
   jeans"), is decoded back to the colour image. The head never sees colour: colour can only come from
   the text, which ties colour words to body parts.
2. **Image-guided attribute prediction** (`attribute_prediction`): the caption's attribute words (colours,
   garments, hair, bags, gender: `ATTRIBUTE_WORDS`) are replaced by [MASK] and predicted from the masked
   caption's tokens after they attend to the image's feature map.
3. **Identity-based vision-language contrast** (`identity_contrast`): the core's `MultiPositiveClipLoss`
   over person ids, every image and caption of one identity being positives of each other.

Fine-tuning for text-based person search (the paper's CMPM-C downstream) uses the core's `CMPMLoss` and
`CMPCLoss` on the same towers (`tasks=("cmpm", "cmpc")`, `num_classes` = training identities).

What the released code fixes (Zplusdragon/PLIP, inference only): the ModifiedResNet-50 with width 64,
heads 8 and output 768 whose attention pool has (256/32)×(128/32)+1 positions; BERT-base-uncased with its
layers 8-11 (and pooler) trainable, 64 tokens; normalization mean (0.357, 0.323, 0.328), std (0.252, 0.242,
0.239). The repository has no pre-training code, so these choices are ours where the paper is silent:
- the text feature is BERT's [CLS] state through a linear projection (the release uses BERT's pooler, a
  linear layer and tanh on the same state): the core's text tower, with the pooler's linear map kept;
- colorization encodes the grayscale copy with the same image tower, whose BatchNorm layers then use that
  batch's statistics but do not update their running ones (`frozen_norm_statistics`): evaluation normalizes
  colour images, so the running statistics must be those of colour batches;
- colorization decodes the last feature map (stride 32), fused by one cross-attention layer with the
  caption's colour-word tokens and the word after each (the garment or part it colours) plus [CLS], through
  `decoder_stages` ×2 upsampling conv blocks; the target is the normalized colour image at the decoder's
  resolution, the loss the mean squared error;
- attribute prediction masks *every* attribute word (so the answer must come from the image), fuses the
  masked caption with the image tokens by one transformer decoder layer (self-attention, cross-attention to
  the projected feature map, MLP: torch's `nn.TransformerDecoderLayer`), and classifies each masked token
  over the whole vocabulary (cross-entropy);
- the three losses are summed with weights 1 (`task_weights`), the contrast's temperature is CLIP's learnable
  one starting at 1/0.07.

Weights: the released checkpoints are pickled PyTorch files (`.pth`), and vlzoo never unpickles a download,
so no converter is registered; a checkpoint re-saved as safetensors by its owner would load through one.
The tiny variant's `tasks=("pair_contrast",)` is plain CLIP training on the same towers, the baseline of
`benchmarks/person_plip_ablation.py`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import timm
import torch
import torch.nn.functional as F
from timm.models.byobnet import ByoBlockCfg, ByobNet, model_cfgs
from torch import nn

from vlzoo.core import register_model
from vlzoo.core.errors import ConfigError
from vlzoo.core.losses import ClipLoss, CMPCLoss, CMPMLoss, MultiPositiveClipLoss
from vlzoo.core.towers import (
    TextTower,
    TextTowerConfig,
    TokenizedText,
    build_tokenizer,
    loads_pretrained,
)
from vlzoo.person.data import PERSON_TOYWORLD, pedestrian_transform
from vlzoo.person.tiny_text import tiny_bert_dir

__all__ = [
    "ATTRIBUTE_WORDS",
    "COLOUR_WORDS",
    "PLIP",
    "PLIP_MEAN",
    "PLIP_STD",
    "PLIP_TASKS",
    "PLIPConfig",
    "PLIPVisionConfig",
    "to_grayscale",
]

PLIP_MEAN = (0.357, 0.323, 0.328)
PLIP_STD = (0.252, 0.242, 0.239)
BERT_BASE_UNCASED = "bert-base-uncased"

# Words that name what a person looks like in pedestrian descriptions (CUHK-PEDES, ICFG-PEDES, RSTPReid and
# person-toyworld): the attribute words masked by attribute prediction.
COLOUR_WORDS = (
    "black",
    "white",
    "grey",
    "gray",
    "red",
    "blue",
    "green",
    "yellow",
    "purple",
    "pink",
    "orange",
    "brown",
    "blonde",
    "beige",
    "khaki",
    "navy",
    "dark",
    "light",
)
ATTRIBUTE_WORDS = (
    *COLOUR_WORDS,
    "man",
    "woman",
    "male",
    "female",
    "boy",
    "girl",
    "lady",
    "short",
    "long",
    "hair",
    "shirt",
    "jacket",
    "coat",
    "sweater",
    "hoodie",
    "vest",
    "dress",
    "skirt",
    "shorts",
    "trousers",
    "pants",
    "jeans",
    "shoes",
    "boots",
    "sneakers",
    "sandals",
    "hat",
    "cap",
    "glasses",
    "backpack",
    "bag",
    "handbag",
    "purse",
    "umbrella",
)
PLIP_TASKS = ("colorization", "attribute_prediction", "identity_contrast", "pair_contrast", "cmpm", "cmpc")


@dataclass
class PLIPVisionConfig:
    """The image tower: a timm CLIP ModifiedResNet (`resnet50_clip`), or a smaller net of the same family when
    `depths`/`widths` are given (blocks per stage, output channels per stage, `stem_widths` of the 3-conv stem)."""

    timm_model: str = "resnet50_clip"
    image_size: tuple[int, int] = (256, 128)  # H × W
    depths: tuple[int, ...] | None = None
    widths: tuple[int, ...] | None = None
    stem_widths: tuple[int, int, int] | None = None
    timm_pretrained: bool = False
    mean: tuple[float, ...] = PLIP_MEAN
    std: tuple[float, ...] = PLIP_STD


@dataclass
class PLIPConfig:
    """PLIP's towers, pretext tasks (or fine-tuning losses) and their heads' sizes."""

    toy_data: ClassVar[str] = PERSON_TOYWORLD  # the generated dataset its tiny models train on

    embed_dim: int = 768
    vision: PLIPVisionConfig = field(default_factory=PLIPVisionConfig)
    text: TextTowerConfig = field(
        default_factory=lambda: TextTowerConfig(
            kind="hf", hf_model=BERT_BASE_UNCASED, context_length=64, pool="cls", head="linear"
        )
    )
    text_trainable_layers: int | None = 4  # BERT's top layers that train (None: all, embeddings included)
    tasks: tuple[str, ...] = ("colorization", "attribute_prediction", "identity_contrast")
    task_weights: dict[str, float] = field(default_factory=dict)  # default 1 each
    num_classes: int | None = None  # training identities: CMPC's classes
    attribute_words: tuple[str, ...] = ATTRIBUTE_WORDS
    colour_words: tuple[str, ...] = COLOUR_WORDS
    fusion_width: int = 256  # colorization decoder width
    fusion_heads: int = 8
    decoder_stages: int = 3  # ×2 upsamplings: the reconstruction is at 1/2^(5-stages) of the input
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = 100.0

    def build(self) -> PLIP:
        return PLIP(self)

    def transform(self, train: bool, albumentations: Any | None = None):
        if albumentations:
            raise ConfigError(
                "PLIP uses the pedestrian transforms (flip, pad-and-crop); drop data.albumentations"
            )
        return pedestrian_transform(self.vision.image_size, self.vision.mean, self.vision.std, train)


# ----------------------------------------------------------------------------------------- image tower


def build_image_trunk(cfg: PLIPVisionConfig, embed_dim: int) -> nn.Module:
    """timm's ModifiedResNet whose attention pool projects to `embed_dim`, built for `cfg.image_size`."""
    size = tuple(cfg.image_size)
    if cfg.depths is None and cfg.widths is None:
        return timm.create_model(
            cfg.timm_model,
            pretrained=loads_pretrained(cfg.timm_pretrained),
            img_size=size,
            num_classes=embed_dim,
        )
    if cfg.depths is None or cfg.widths is None or len(cfg.depths) != len(cfg.widths):
        raise ConfigError(
            f"vision.depths and vision.widths go together, one per stage: {cfg.depths}, {cfg.widths}"
        )
    if cfg.timm_model not in model_cfgs:
        raise ConfigError(f"vision.depths/widths need a timm ByobNet family, not {cfg.timm_model!r}")
    base = model_cfgs[cfg.timm_model]
    blocks = tuple(
        ByoBlockCfg(type="bottle", d=d, c=c, s=1 if i == 0 else 2, br=0.25)
        for i, (d, c) in enumerate(zip(cfg.depths, cfg.widths))
    )
    arch = dataclasses.replace(base, blocks=blocks, stem_chs=tuple(cfg.stem_widths or base.stem_chs))
    return ByobNet(cfg=arch, img_size=size, num_classes=embed_dim)


def to_grayscale(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalized RGB `[B, 3, H, W]` → the normalized image of its luminance (ITU-R 601 weights) in all three
    channels: what the colorization branch sees. Two images with the same luminance give the same output."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device)[:, None, None]
    s = torch.tensor(std, dtype=images.dtype, device=images.device)[:, None, None]
    rgb = images * s + m
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    luminance = (rgb * weights[:, None, None]).sum(1, keepdim=True)
    return (luminance - m) / s


@contextmanager
def frozen_norm_statistics(module: nn.Module) -> Iterator[None]:
    """Inside, `module`'s BatchNorm layers normalize with the batch's statistics as usual in training but leave
    their running statistics alone. The colorization pass feeds the image tower grayscale images: left to
    update them, the running statistics would average colour and gray batches, and the colour features that
    retrieval evaluates would be normalized with statistics no colour batch has."""
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) · running + 0 · batch
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


# --------------------------------------------------------------------------------------------- heads


class ColorizationHead(nn.Module):
    """Grayscale feature map + the caption's colour-phrase tokens → colour image (normalized RGB)."""

    def __init__(self, in_channels: int, text_width: int, width: int, heads: int, stages: int):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, width, 1)
        self.text_proj = nn.Linear(text_width, width)
        self.attend = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        blocks: list[nn.Module] = []
        channels = width
        for _ in range(stages):
            out = max(channels // 2, 16)
            blocks += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(channels, out, 3, padding=1),
                nn.GroupNorm(min(8, out), out),
                nn.GELU(),
            ]
            channels = out
        self.decode = nn.Sequential(*blocks, nn.Conv2d(channels, 3, 3, padding=1))

    def forward(
        self, feature_map: torch.Tensor, text_tokens: torch.Tensor, phrase_mask: torch.Tensor
    ) -> torch.Tensor:
        x = self.reduce(feature_map)
        b, c, h, w = x.shape
        queries = x.flatten(2).transpose(1, 2)  # [B, h·w, C]
        keys = self.text_proj(text_tokens)
        fused, _ = self.attend(queries, keys, keys, key_padding_mask=~phrase_mask)
        x = self.norm(queries + fused).transpose(1, 2).reshape(b, c, h, w)
        return self.decode(x)


class AttributeHead(nn.Module):
    """Masked caption tokens attend to the image's feature map, then each is classified over the vocabulary."""

    def __init__(self, image_channels: int, text_width: int, heads: int, vocab_size: int):
        super().__init__()
        self.image_proj = nn.Linear(image_channels, text_width)
        self.fuse = nn.TransformerDecoderLayer(
            text_width,
            heads,
            dim_feedforward=4 * text_width,
            batch_first=True,
            norm_first=True,
            activation="gelu",
        )
        self.classify = nn.Sequential(
            nn.Linear(text_width, text_width),
            nn.GELU(),
            nn.LayerNorm(text_width),
            nn.Linear(text_width, vocab_size),
        )

    def forward(
        self, text_tokens: torch.Tensor, text_padding: torch.Tensor, feature_map: torch.Tensor
    ) -> torch.Tensor:
        image_tokens = self.image_proj(feature_map.flatten(2).transpose(1, 2))
        fused = self.fuse(text_tokens, image_tokens, tgt_key_padding_mask=text_padding)
        return self.classify(fused)


# ------------------------------------------------------------------------------------- word matching


class WordMatcher:
    """Finds whole words of a list in token ids, vectorized: each word's word-piece ids are compared with every
    window of the ids, and a match must not run on into a `##` continuation (so "bag" never matches the start
    of "bags" or "bagpipe" when those are pieces)."""

    def __init__(self, tokenizer: Any, words: Sequence[str]):
        backend = getattr(tokenizer, "backend", tokenizer)
        pieces = [tuple(backend(w, add_special_tokens=False)["input_ids"]) for w in dict.fromkeys(words)]
        unk = getattr(backend, "unk_token_id", None)
        self.patterns: dict[int, torch.Tensor] = {}
        for n in sorted({len(p) for p in pieces if p and unk not in p}):
            self.patterns[n] = torch.tensor([p for p in pieces if len(p) == n and unk not in p])
        vocab = backend.convert_ids_to_tokens(list(range(len(backend))))
        self.continuation = torch.tensor([str(t).startswith("##") for t in vocab])

    def __call__(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(mask, ends)`: tokens inside a matched word, and the last token of each match, `[B, L]` bool."""
        b, length = ids.shape
        continuation = self.continuation.to(ids.device)[ids.clamp(0, len(self.continuation) - 1)]
        mask = torch.zeros_like(ids, dtype=torch.bool)
        ends = torch.zeros_like(mask)
        for n, patterns in self.patterns.items():
            if n > length:
                continue
            windows = ids.unfold(1, n, 1)  # [B, L-n+1, n]
            hit = (windows[:, :, None, :] == patterns.to(ids.device)[None, None]).all(-1).any(-1)
            after = torch.cat(
                [continuation[:, n:], torch.zeros(b, 1, dtype=torch.bool, device=ids.device)], 1
            )
            hit &= ~after[:, : hit.shape[1]]
            for k in range(n):
                mask[:, k : k + hit.shape[1]] |= hit
            ends[:, n - 1 : n - 1 + hit.shape[1]] |= hit
        return mask, ends


# ---------------------------------------------------------------------------------------------- model


class PLIP(nn.Module):
    """PLIP's dual encoder and the heads of its pretext tasks (see the module docstring)."""

    def __init__(self, cfg: PLIPConfig):
        super().__init__()
        unknown = [t for t in cfg.tasks if t not in PLIP_TASKS]
        if unknown or not cfg.tasks:
            raise ConfigError(f"PLIP tasks must be among {PLIP_TASKS}, got {list(cfg.tasks)}")
        if "cmpc" in cfg.tasks and not cfg.num_classes:
            raise ConfigError("PLIP's cmpc task needs num_classes (the number of training identities)")
        self.config = cfg
        self.visual = build_image_trunk(cfg.vision, cfg.embed_dim)
        self.text = TextTower(cfg.text, cfg.embed_dim)
        if cfg.text_trainable_layers is not None:
            self.text.lock(unlocked_layers=cfg.text_trainable_layers, freeze_layer_norm=True)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        channels = self.visual.num_features
        text_width = self.text.transformer.config.hidden_size
        if "colorization" in cfg.tasks:
            self.colorization = ColorizationHead(
                channels, text_width, cfg.fusion_width, cfg.fusion_heads, cfg.decoder_stages
            )
        if "attribute_prediction" in cfg.tasks:
            heads = max(1, text_width // 64)
            self.attribute_head = AttributeHead(
                channels, text_width, heads, self.text.transformer.config.vocab_size
            )
        if "identity_contrast" in cfg.tasks:
            self.identity_loss = MultiPositiveClipLoss()
        if "cmpm" in cfg.tasks:
            self.cmpm = CMPMLoss()
        if "cmpc" in cfg.tasks:
            self.cmpc = CMPCLoss(cfg.embed_dim, int(cfg.num_classes))
        if "pair_contrast" in cfg.tasks:
            self.pair_loss = ClipLoss()
        self._matchers: tuple[WordMatcher, WordMatcher] | None = None
        self._tokenizer: Any = None

    # --------------------------------------------------------------------------------------- encoders
    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """`[B, D]`: the attention pool's output."""
        features = self.visual(images)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: TokenizedText | torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """`[B, D]`: the pooled token states ([CLS]; the mean for plip-tiny), projected."""
        features = self.text(text)
        return F.normalize(features, dim=-1) if normalize else features

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        self.text.lock(unlocked_layers=unlocked_layers, freeze_layer_norm=freeze_layer_norm)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"logit_scale"}

    # ----------------------------------------------------------------------------------- word masks
    def matchers(self) -> tuple[WordMatcher, WordMatcher]:
        """(attribute words, colour words) matchers, built from the text tower's tokenizer on first use."""
        if self._matchers is None:
            tokenizer = self.tokenizer()
            self._matchers = (
                WordMatcher(tokenizer, self.config.attribute_words),
                WordMatcher(tokenizer, self.config.colour_words),
            )
        return self._matchers

    def attribute_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """`[B, L]` bool: the tokens of the caption's attribute words, which attribute prediction masks."""
        return self.matchers()[0](ids)[0]

    def colour_phrase_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """`[B, L]` bool: colour words, the word after each (the part it colours) and [CLS] (so that a caption
        without colour still gives the attention a key)."""
        matcher = self.matchers()[1]
        colour, ends = matcher(ids)
        continuation = matcher.continuation.to(ids.device)[ids.clamp(0, len(matcher.continuation) - 1)]
        following = torch.zeros_like(colour)
        following[:, 1:] = ends[:, :-1]  # the first piece of the next word
        nxt = following
        for _ in range(4):  # and its continuation pieces
            nxt = torch.cat([torch.zeros_like(nxt[:, :1]), nxt[:, :-1]], 1) & continuation
            following |= nxt
        mask = colour | following
        mask[:, 0] = True
        return mask

    # --------------------------------------------------------------------------------------- training
    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """A training batch `{"image", "text", "pid"}` → each task's loss and their weighted sum `"loss"`."""
        images, text = batch["image"], batch["text"]
        if not isinstance(text, TokenizedText):
            raise ConfigError("PLIP needs TokenizedText captions (input ids and attention mask)")
        needs_ids = {"identity_contrast", "cmpm", "cmpc"} & set(self.config.tasks)
        if needs_ids and "pid" not in batch:
            raise ConfigError(
                f"PLIP's {sorted(needs_ids)} need the batch's person ids ('pid'): use TBPS data"
            )
        tokens, pooled, _ = self.text.forward_tokens(text)
        text_features = self.text.head(pooled)
        feature_map = self.visual.forward_features(images)  # attribute prediction reads it too
        image_features = self.visual.forward_head(feature_map)
        out: dict[str, torch.Tensor] = {
            "image_features": F.normalize(image_features, dim=-1),
            "text_features": F.normalize(text_features, dim=-1),
            "logit_scale": self.scale(),
        }
        state = {
            "images": images,
            "text": text,
            "tokens": tokens,
            "feature_map": feature_map,
            "image": image_features,
            "text_raw": text_features,
        }
        total = images.new_zeros(())
        for task in self.config.tasks:
            loss = getattr(self, f"_{task}")(batch, out, state)
            out[f"{task}_loss"] = loss
            total = total + self.config.task_weights.get(task, 1.0) * loss
        out["loss"] = total
        return out

    def colorize(
        self, images: torch.Tensor, text: TokenizedText, text_tokens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The colour image (normalized RGB, at the decoder's resolution) that the colorization head
        reconstructs from the grayscale of `images` and the colour phrases of `text`."""
        cfg = self.config
        gray = to_grayscale(images, cfg.vision.mean, cfg.vision.std)  # the head's only view of the pixels
        with frozen_norm_statistics(self.visual):
            feature_map = self.visual.forward_features(gray)
        if text_tokens is None:
            text_tokens = self.text.forward_tokens(text)[0]
        mask = self.colour_phrase_mask(text.input_ids) & text.attention_mask.bool()
        return self.colorization(feature_map, text_tokens, mask)

    def _colorization(self, batch, out, state) -> torch.Tensor:
        predicted = self.colorize(state["images"], state["text"], state["tokens"])
        target = F.adaptive_avg_pool2d(state["images"], predicted.shape[-2:])
        return F.mse_loss(predicted, target)

    def mask_attributes(self, text: TokenizedText) -> tuple[TokenizedText, torch.Tensor]:
        """(the caption with every attribute word's tokens replaced by [MASK], that mask `[B, L]`)."""
        ids = text.input_ids
        mask = self.attribute_mask(ids) & text.attention_mask.bool()
        return TokenizedText(ids.masked_fill(mask, self._mask_token_id()), text.attention_mask), mask

    def _attribute_prediction(self, batch, out, state) -> torch.Tensor:
        text = state["text"]
        ids = text.input_ids
        masked, mask = self.mask_attributes(text)
        tokens, _, _ = self.text.forward_tokens(masked)
        logits = self.attribute_head(tokens, ~text.attention_mask.bool(), state["feature_map"])
        if not bool(mask.any()):  # no attribute word in the batch: a zero that still reaches every weight
            return logits.sum() * 0.0
        return F.cross_entropy(logits[mask], ids[mask])

    def tokenizer(self) -> Any:
        """The text tower's tokenizer (loaded on first use: a meta-device build needs none)."""
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer(self.config.text)
        return self._tokenizer

    def _mask_token_id(self) -> int:
        mask_id = getattr(getattr(self.tokenizer(), "backend", None), "mask_token_id", None)
        if mask_id is None:
            raise ConfigError(
                f"PLIP's attribute prediction needs a [MASK] token; {self.config.text.hf_model} has none"
            )
        return int(mask_id)

    def _identity_contrast(self, batch, out, state) -> torch.Tensor:
        pid = torch.as_tensor(batch["pid"], device=state["images"].device)
        return self.identity_loss(out["image_features"], out["text_features"], out["logit_scale"], pid, pid)

    def _pair_contrast(self, batch, out, state) -> torch.Tensor:
        """CLIP's InfoNCE on the batch's pairs only (other images of the same person are negatives): the
        plain-CLIP baseline PLIP's identity contrast is compared with."""
        return self.pair_loss(out["image_features"], out["text_features"], out["logit_scale"])

    def _cmpm(self, batch, out, state) -> torch.Tensor:
        pid = torch.as_tensor(batch["pid"], device=state["images"].device)
        return self.cmpm(state["image"], state["text_raw"], pid)

    def _cmpc(self, batch, out, state) -> torch.Tensor:
        pid = torch.as_tensor(batch["pid"], device=state["images"].device)
        return self.cmpc(state["image"], state["text_raw"], pid)


# ------------------------------------------------------------------------------------------ registry


@register_model("plip-rn50")
def plip_rn50() -> PLIPConfig:
    """PLIP as released: ModifiedResNet-50 at 256×128 (attention pool → 768) and BERT-base-uncased with its
    top 4 layers trainable, pre-trained with the three pretext tasks."""
    return PLIPConfig()


@register_model("plip-tiny")
def plip_tiny() -> PLIPConfig:
    """PLIP on a 4-stage ModifiedResNet (one bottleneck a stage, 32-256 channels) at 64×32 and a 2-layer
    64-d BERT made locally (`tiny_bert_dir`), for tests and CPUs. Its BERT is random: every layer trains.

    Two choices of ours for a tower trained from scratch in a few hundred CPU steps (the released model
    starts from a pre-trained BERT and CLIP ResNet):
    - four stages, as ModifiedResNet-50 has (an earlier three-stage tiny tower stopped at stride 16). A
      supervised probe of the image tower alone (a scratch script, one seed: one head per person-toyworld
      attribute group, 200 AdamW steps of 32 of 640 images at 64×32, 320 test images) reads hair colour /
      lower colour / shoe colour at 23 / 29 / 29 % (chance 25 / 12.5 / 25) with three stages and 55 / 55 /
      73 % with four: the small parts' colours need the fourth stage;
    - the text feature is the mean over the caption's token states (`pool="mean"`), not [CLS]: a random
      BERT's [CLS] state is nearly the same for every caption, so the contrast starts with no signal, while
      the mean carries every word from the first step (three-stage tower, 160 identities, 200 steps, seeds
      0 / 1: test Rank-1 7.0 / 4.8 with [CLS], 10.4 / 13.4 with the mean). plip-rn50 keeps [CLS], as the
      release.
    Both together, at the tiny-recipe test's setting (identity contrast, 640 identities, 480 steps, 120 test
    identities, colours-only 11.7), seeds 0 / 1: Rank-1 6.0 / 7.7 before, 15.2 / 15.2 after."""
    return PLIPConfig(
        embed_dim=64,
        vision=PLIPVisionConfig(
            image_size=(64, 32),
            depths=(1, 1, 1, 1),
            widths=(32, 64, 128, 256),
            stem_widths=(8, 8, 16),
        ),
        text=TextTowerConfig(
            kind="hf", hf_model=tiny_bert_dir(), hf_pretrained=False, context_length=40, pool="mean"
        ),
        text_trainable_layers=None,
        fusion_width=64,
        fusion_heads=4,
        decoder_stages=3,  # stride 32 → 4: the reconstruction at 16×8, as the three-stage tower's was
    )
