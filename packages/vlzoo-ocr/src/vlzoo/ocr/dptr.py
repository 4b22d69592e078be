"""DPTR: "Decoder Pre-training with only Text for Scene Text Recognition" (Zhao et al., ACM MM 2024), as
OpenOCR's `dptr_parseq` (openrec/modeling/decoders/dptr_parseq_clip_b_decoder.py) implements it.

>>> pre = create_model("dptr-parseq-tiny", stage="pretrain", clip_pretrained="clip.safetensors")
>>> pre(batch)["loss"]                         # decoder trained on CLIP text features of the labels only
>>> ft = create_model("dptr-parseq-tiny", pretrained="pretrain/model.safetensors", stage="finetune")
>>> ft.recognize(images)                        # ["hello", ...]: ViT → FMU → the pre-trained decoder

Paper → code:
- **Pseudo-visual memory** (`pseudo_visual_memory`): a frozen CLIP (any vlzoo CLIP: `clip-vit-b-16:openai`
  at full size) reads the prompt `a photo of a '{label}'`; the memory is its end-of-text embedding through
  the text projection followed by the hidden state of every token after the final LayerNorm (not
  projected), `[B, 1 + context_length, width]`, as the official modified `encode_text`. It is computed
  under `no_grad` and the CLIP is held outside the module tree: never trained, never saved with the model
  (it loads from `clip_model` + `clip_pretrained`). The label is normalized to the charset first (the
  official data pipeline uses the NFKD/whitespace-cleaned label).
- **ORP** (`perturb`): image features of natural text-free images, computed once with the CLIP image
  encoder (`vlzoo-ocr orp-bank IMAGES OUT.safetensors`: the projected class and patch tokens, official
  `ln_post(x) @ proj` of every token), are added at `orp_scale` (official 0.1) in training only: per batch,
  random bank images (without replacement, as the official code; with replacement when the bank holds
  fewer images than the batch, where the official code fails) and random token positions of them.
- **Decoder**: PARSeq's permutation language model (`vlzoo.ocr.parseq`), official defaults 512-d, 8 heads,
  depth 6, 6 mirrored permutations, AR decoding + 1 refinement.
- **FMU** (`FeatureMergeUnit`): learnable queries (max_length + 1 of them, official 26), one
  cross-attention into the visual encoder's features (no norm before it, as the official code), then a
  pre-norm GELU FFN, each with a residual; its output replaces the memory when fine-tuning on images.
  The official queries are never initialized (`torch.Tensor(1, 26, dim)`, which its `_init_weights`
  does not reach), so their scale is ours to choose: `fmu_query_std` (default PARSeq's 0.02, under which
  every query starts attending uniformly; at 1.0 they attend to different positions from the start).
- **Fine-tuning**: a timm ViT on 32×128 crops (PARSeq's patch 4×8, no class token) + FMU + the decoder;
  the ViT starts fresh, not from CLIP's image encoder (OpenOCR's configs/rec/dptr/dptr_parseq_finetune.yml
  builds a plain ViT with no pretrained model): only the decoder carries the text-only pre-training;
  `freeze_decoder` trains ViT + FMU under a frozen pre-trained decoder (the paper's transfer check).
  The frozen decoder is reachable (`vlzoo.ocr.demo_recognition.memory_table_probe`: a memory learned per
  word, with no image, is read back within tens of steps); at CPU scale what learns slowly is the path
  from the image: ViT + FMU, whose one cross-attention starts out pooling every ViT token alike.
  `stem="conv"` (not in the paper; `STEMS`) swaps the ViT's linear patch embedding for a small
  convolutional stem on the same token grid, for CPU-sized ViTs that learn too slowly from scratch.
  `encoder="clip"` (not the official fine-tuning; `ENCODERS`) starts the encoder from the image tower of
  the CLIP whose text memory the decoder read (`clip_model`, `clip_pretrained`): the crop squashed to the
  CLIP's square, its projected class and patch tokens (`ln_post(x) @ proj`, as the ORP bank's) into the
  FMU. DPTR's premise is that CLIP puts images and text in one space; with it, the pre-trained and the
  scratch decoder share one pre-trained encoder and differ only in the decoder's text-only pre-training.
  On the CPU this is where the text-only pre-training shows through images: with that CLIP a
  `word-clip-tiny` (`clip-vit-tiny` with a conv stem, not in the paper) trained on its own renders of the
  seen words, a 100-step fine-tune reads 12.0 / 19.5 / 17.0% of ocr-words test crops against
  2.5 / 3.5 / 6.5% from scratch (seeds 1 / 2 / 3; `benchmarks/ocr_dptr_transfer.py --encoder clip
  --clip-model word-clip-tiny --clip-crops 5000`, its docstring: scratch catches up after ~250 steps).

Validation (`validation_metrics`, logged by the core's `ZooModule` as `val/accuracy`, `val/one_minus_ned`):
word accuracy and 1-NED on the 36-character charset as PARSeq and OpenOCR's `RecMetric(is_filter=True)`
report them; read from the images when fine-tuning, from the labels' pseudo-visual memory when pre-training
(how well the decoder reads CLIP's text features, the only thing the pre-training stage trains).

`stage` chooses the memory: `"pretrain"` (text only; the ViT and FMU are frozen and unused) or
`"finetune"` (images). Both stages hold the same parameters, so a pre-training checkpoint loads into a
fine-tuning model as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import timm
import torch
from torch import nn

from vlzoo.core import (
    CLIPConfig,
    ConfigError,
    DataError,
    WeightsError,
    create_model,
    get_model_config,
    get_tokenizer,
    get_transforms,
    register_model,
    towers,
)
from vlzoo.core.towers import is_structure_only, loads_pretrained
from vlzoo.core.weights import load_checked, load_state_dict
from vlzoo.ocr.data.crops import OCR_WORDS
from vlzoo.ocr.data.labels import CHARSET_36, CharTokenizer, load_charset, normalize_label
from vlzoo.ocr.metrics_recognition import recognition_metrics
from vlzoo.ocr.parseq import ParseqConfig, ParseqDecoder

__all__ = [
    "DPTR",
    "ENCODERS",
    "STAGES",
    "STEMS",
    "ClipImageEncoder",
    "DPTRConfig",
    "FeatureMergeUnit",
    "clip_image_tokens",
    "load_orp_bank",
    "write_orp_bank",
]

STAGES = ("pretrain", "finetune")
ORP_KEY = "features"


@dataclass
class DPTRConfig:
    """DPTR with a PARSeq decoder. Defaults: the paper's scale (CLIP ViT-B/16 text memory, 512-d decoder,
    ViT-S visual encoder)."""

    toy_data: ClassVar[str] = OCR_WORDS

    decoder: ParseqConfig = field(default_factory=ParseqConfig)
    charset: str = "94"  # "94" (printable ASCII), "36" (0-9a-z) or a file with one character per line
    stage: str = "finetune"  # "pretrain" (CLIP text memory) | "finetune" (ViT + FMU memory)
    # text-only pre-training
    clip_model: str = "clip-vit-b-16"
    clip_pretrained: str | None = "openai"
    prompt: str = "a photo of a '{}'"
    orp_bank: str | None = None  # safetensors of CLIP image features of text-free images; None = no ORP
    orp_scale: float = 0.1
    # fine-tuning on images
    timm_model: str = "vit_small_patch16_224"
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    image_size: tuple[int, int] = (32, 128)
    patch_size: tuple[int, int] = (4, 8)
    # `ENCODERS`: "vit" (a fresh timm ViT, the official fine-tuning) or "clip" (`clip_model`'s image tower)
    encoder: str = "vit"
    stem: str = "patch"  # `STEMS`: "patch" (ViT's linear patch embedding, the paper's) or "conv"
    stem_width: int = 16  # channels of the conv stem's first stage (doubling per stage)
    timm_pretrained: bool = False
    fmu_mlp_ratio: float = 4.0  # official FFN 2048 for a 512-d FMU
    # the FMU queries' initial std: the official code leaves them uninitialized (`torch.Tensor(1, 26, dim)`,
    # outside its `_init_weights`); 0.02 is PARSeq's position-query scale, under which every query attends
    # almost uniformly (the memory starts as mean-pooled features, the same at every position)
    fmu_query_std: float = 0.02
    pretrained_decoder: str | None = None  # weights of a text-only pre-training run: its decoder is loaded
    freeze_decoder: bool = False
    keep_aspect: bool = False  # resize keeping the aspect ratio (padded) instead of PARSeq's plain resize

    def build(self) -> DPTR:
        model = DPTR(self)
        on_meta = any(p.is_meta for p in model.parameters())  # nothing to load weights into
        if self.pretrained_decoder is not None and not (on_meta or is_structure_only()):
            model.load_decoder(self.pretrained_decoder)
        return model

    def tokenizer(self) -> CharTokenizer:
        return CharTokenizer(load_charset(self.charset), self.decoder.max_length)

    def transform(self, train: bool, albumentations: Any | None = None):
        from vlzoo.ocr.data.str_transforms import str_transform

        return str_transform(self.image_size, train, self.keep_aspect, albumentations)


def patch_stem(cfg: DPTRConfig) -> dict[str, Any]:
    """ViT's own linear patch embedding of `patch_size` patches (the paper's encoder)."""
    return {"patch_size": tuple(cfg.patch_size)}


def conv_stem(cfg: DPTRConfig) -> dict[str, Any]:
    """A convolutional stem ("Early Convolutions Help Transformers See Better", Xiao et al., NeurIPS 2021):
    stride-2 3×3 conv-BN-ReLU stages (`stem_width` channels, doubling) down to the `patch_size` grid, then
    timm's `HybridEmbed` 1×1 projection to the ViT's width; the tokens and everything after are unchanged.

    Not in the paper, whose ViT-S learns from millions of crops. On the CPU, a linear word classifier on
    the tiny ViT's tokens reads 89% of ocr-words test crops after 150 steps with this stem, 38% with the
    patch stem (`benchmarks/ocr_dptr_transfer.py --encoder-probe`)."""
    return towers.conv_stem(cfg.patch_size, tuple(cfg.image_size), cfg.stem_width)


STEMS = {"patch": patch_stem, "conv": conv_stem}


# the crops' normalization (`str_transform`'s default, PARSeq's): undone before a CLIP's own
CROP_MEAN, CROP_STD = 0.5, 0.5


def vit_encoder(cfg: DPTRConfig) -> nn.Module:
    """A timm ViT on the crop (PARSeq's, no class token), fresh unless `timm_pretrained`: the official
    fine-tuning's encoder."""
    return timm.create_model(
        cfg.timm_model,
        pretrained=loads_pretrained(cfg.timm_pretrained),
        img_size=tuple(cfg.image_size),
        num_classes=0,
        global_pool="",
        class_token=False,
        **STEMS[cfg.stem](cfg),
        **cfg.timm_kwargs,
    )


class ClipImageEncoder(nn.Module):
    """A CLIP's image tower as DPTR's visual encoder: the crop squashed to the CLIP's square input (as the
    CLIP saw word crops when it was trained on them), its projected class and patch tokens
    `[B, 1 + N, D]` (`ln_post(x) @ proj` of every token, the features the ORP bank holds)."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.visual = clip.visual
        vision = clip.config.vision
        self.register_buffer("mean", torch.tensor(vision.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(vision.std).view(3, 1, 1), persistent=False)
        self.num_features = self.visual.output_dim

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images * CROP_STD + CROP_MEAN
        square = nn.functional.interpolate(
            pixels, size=self.visual.image_hw, mode="bilinear", antialias=True, align_corners=False
        )
        tokens, pooled = self.visual.forward_tokens((square - self.mean) / self.std)
        return torch.cat([self.visual.head(pooled).unsqueeze(1), self.visual.head(tokens)], dim=1)


def clip_encoder(cfg: DPTRConfig) -> nn.Module:
    """The image tower of `clip_model`, loaded from `clip_pretrained` when fine-tuning: the CLIP whose text
    memory the decoder was pre-trained on (not the official fine-tuning, whose ViT starts fresh)."""
    fine_tuning = cfg.stage == "finetune" and not is_structure_only()
    return ClipImageEncoder(
        create_model(cfg.clip_model, pretrained=cfg.clip_pretrained if fine_tuning else None)
    )


ENCODERS = {"vit": vit_encoder, "clip": clip_encoder}


class FeatureMergeUnit(nn.Module):
    """Learnable queries → cross-attention into visual features (+ residual) → pre-norm FFN (+ residual)."""

    def __init__(
        self,
        dim: int,
        feature_dim: int,
        num_queries: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
        query_std: float = 0.02,
    ):
        super().__init__()
        self.queries = nn.Parameter(torch.empty(1, num_queries, dim))
        self.cross_attn = nn.MultiheadAttention(
            dim, heads, dropout=dropout, batch_first=True, kdim=feature_dim, vdim=feature_dim
        )
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, int(dim * mlp_ratio)),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(int(dim * mlp_ratio), dim),
        )
        self.drop_attn, self.drop_ffn = nn.Dropout(dropout), nn.Dropout(dropout)
        nn.init.trunc_normal_(self.queries, std=query_std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        query = self.queries.expand(features.shape[0], -1, -1)
        query = query + self.drop_attn(self.cross_attn(query, features, features, need_weights=False)[0])
        return query + self.drop_ffn(self.ffn(self.norm(query)))


class DPTR(nn.Module):
    """ViT + FMU + PARSeq decoder; in the pretrain stage the decoder reads a frozen CLIP's text features."""

    def __init__(self, cfg: DPTRConfig):
        super().__init__()
        if cfg.stage not in STAGES:
            raise ConfigError(f"dptr stage must be one of {STAGES}, got {cfg.stage!r}")
        self.config = cfg
        self.chars = CharTokenizer(load_charset(cfg.charset), cfg.decoder.max_length)
        dim = cfg.decoder.embed_dim
        if cfg.stem not in STEMS:
            raise ConfigError(f"dptr stem must be one of {sorted(STEMS)}, got {cfg.stem!r}")
        if cfg.encoder not in ENCODERS:
            raise ConfigError(f"dptr encoder must be one of {sorted(ENCODERS)}, got {cfg.encoder!r}")
        self.encoder = ENCODERS[cfg.encoder](cfg)
        self.fmu = FeatureMergeUnit(
            dim,
            self.encoder.num_features,
            cfg.decoder.max_length + 1,
            cfg.decoder.num_heads,
            cfg.fmu_mlp_ratio,
            cfg.decoder.dropout,
            cfg.fmu_query_std,
        )
        self.decoder = ParseqDecoder(cfg.decoder, self.chars.num_classes, memory_dim=dim)
        # Frozen helpers outside the module tree: not trained, not in state_dict, built on first use.
        self._frozen: dict[str, Any] = {}
        pretrain = cfg.stage == "pretrain"
        for module in (self.encoder, self.fmu):
            module.requires_grad_(not pretrain)
        self.decoder.requires_grad_(not (cfg.freeze_decoder and not pretrain))

    def load_decoder(self, path: str | Path) -> None:
        """The decoder of a saved DPTR (vlzoo weights or a Lightning checkpoint of a pre-training run)."""
        state = load_state_dict(path)
        prefixes = ("model.decoder.", "decoder.")
        decoder = {k.split("decoder.", 1)[1]: v for k, v in state.items() if k.startswith(prefixes)}
        if not decoder:
            raise WeightsError(f"{path}: no 'decoder.' weights: not a DPTR checkpoint")
        load_checked(self.decoder, decoder, where=str(path))

    # --------------------------------------------------------------------------------- the memories
    def clip(self) -> tuple[nn.Module, Any]:
        """The frozen CLIP and its tokenizer (loaded on first use, in eval mode, no gradients)."""
        if "clip" not in self._frozen:
            cfg = self.config
            clip = create_model(cfg.clip_model, pretrained=cfg.clip_pretrained).eval().requires_grad_(False)
            dim = cfg.decoder.embed_dim
            text = clip.text
            if text.transformer.config.hidden_size != dim or text.output_dim != dim:
                raise ConfigError(
                    f"{cfg.clip_model}: its text width ({text.transformer.config.hidden_size}) and embedding "
                    f"({text.output_dim}) must both equal the decoder's embed_dim {dim}: the memory "
                    "concatenates the projected EOT embedding with the token states"
                )
            self._frozen["clip"] = clip
            self._frozen["clip_tokenizer"] = get_tokenizer(clip)
        clip = self._frozen["clip"]
        device = self.decoder.pos_queries.device
        if next(clip.parameters()).device != device:
            clip.to(device)
        return clip, self._frozen["clip_tokenizer"]

    def prompts(self, labels: Sequence[str]) -> list[str]:
        return [self.config.prompt.format(normalize_label(label, self.chars.charset)) for label in labels]

    @torch.no_grad()
    def pseudo_visual_memory(self, labels: Sequence[str]) -> torch.Tensor:
        """`[B, 1 + context_length, D]`: CLIP's projected EOT embedding of each label's prompt, then the hidden
        state of every prompt token (official `encode_text` of DPTR)."""
        clip, tokenizer = self.clip()
        ids = tokenizer(self.prompts(labels)).to(self.decoder.pos_queries.device)
        tokens, pooled, _ = clip.text.forward_tokens(ids)
        return torch.cat([clip.text.head(pooled).unsqueeze(1), tokens], dim=1)

    def orp_bank(self) -> torch.Tensor | None:
        path = self.config.orp_bank
        if path is None:
            return None
        if "orp" not in self._frozen:
            self._frozen["orp"] = load_orp_bank(path, self.config.decoder.embed_dim)
        bank = self._frozen["orp"]
        device = self.decoder.pos_queries.device
        if bank.device != device:
            bank = self._frozen["orp"] = bank.to(device)
        return bank

    def perturb(self, memory: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """ORP: `memory + orp_scale * noise`, the noise being random bank images at random token positions;
        the memory unchanged outside training or without a bank."""
        bank = self.orp_bank()
        if not self.training or bank is None:
            return memory
        batch, length = memory.shape[:2]
        if bank.shape[1] < length:
            raise ConfigError(
                f"ORP bank {self.config.orp_bank} has {bank.shape[1]} tokens per image, fewer than the memory's "
                f"{length}: compute it with a CLIP image encoder of more patches"
            )
        if bank.shape[0] >= batch:
            rows = torch.randperm(bank.shape[0], generator=generator)[:batch]
        else:
            rows = torch.randint(bank.shape[0], (batch,), generator=generator)
        cols = torch.randperm(bank.shape[1], generator=generator)[:length]
        noise = bank[rows.to(bank.device)][:, cols.to(bank.device)]
        return memory + self.config.orp_scale * noise.to(memory.dtype)

    def visual_memory(self, images: torch.Tensor) -> torch.Tensor:
        """FMU(ViT(images)): `[B, max_length + 1, D]`."""
        if images.ndim != 4 or tuple(images.shape[-2:]) != tuple(self.config.image_size):
            raise DataError(
                f"dptr takes images [B, 3, {self.config.image_size[0]}, {self.config.image_size[1]}], "
                f"got {tuple(images.shape)}"
            )
        return self.fmu(self.encoder.forward_features(images))

    def memory(self, batch: Mapping[str, Any]) -> torch.Tensor:
        if self.config.stage == "pretrain":
            return self.perturb(self.pseudo_visual_memory(_labels(batch)))
        return self.visual_memory(batch["image"])

    # ------------------------------------------------------------------------------------- faces
    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """`{"loss"}`: the permutation LM loss of `batch["text"]` (`CharTokenizer` ids) over the memory."""
        targets = batch["text"]
        if not torch.is_tensor(targets):
            targets = self.chars(list(targets))
        memory = self.memory(batch)
        return {"loss": self.decoder.loss(memory, targets.to(memory.device))}

    @torch.no_grad()
    def encode_text(self, text: torch.Tensor | Sequence[str], normalize: bool = True) -> torch.Tensor:
        """`[B, D]`: the frozen CLIP's projected end-of-text embedding of each label's prompt, the first token
        of the pseudo-visual memory (DPTR's text side). `text`: labels, or `CharTokenizer` ids `[B, L]`."""
        labels = self.chars.decode(text[:, 1:]) if torch.is_tensor(text) else list(text)
        embedding = self.pseudo_visual_memory(labels)[:, 0]
        return torch.nn.functional.normalize(embedding, dim=-1) if normalize else embedding

    @torch.no_grad()
    def recognize(
        self, images: torch.Tensor | None = None, labels: Sequence[str] | None = None, **decode: Any
    ):
        """The words read from `images` (fine-tuning stage) or, text only, from the pseudo-visual memory of
        `labels`; `decode` goes to `ParseqDecoder.decode` (`ar`, `refine_iters`, `max_length`)."""
        memory = self.pseudo_visual_memory(labels) if images is None else self.visual_memory(images)
        return self.chars.decode(self.decoder.decode(memory, **decode).argmax(-1))

    @torch.no_grad()
    def validation_metrics(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """`{"accuracy", "one_minus_ned"}` (percent, 36-character charset) of this batch: the words read from
        `batch["image"]` (fine-tuning) or from the pseudo-visual memory of its labels (pre-training) against
        its label strings (`captions`)."""
        labels = _labels(batch)
        if self.config.stage == "pretrain":
            predictions = self.recognize(labels=labels)
        else:
            predictions = self.recognize(batch["image"])
        metrics = recognition_metrics(predictions, labels, CHARSET_36)
        return {k: torch.tensor(float(metrics[k])) for k in ("accuracy", "one_minus_ned")}

    def no_weight_decay(self) -> set[str]:
        names = {"decoder.pos_queries", "fmu.queries"}
        return names | (
            {"encoder.pos_embed"} if getattr(self.encoder, "pos_embed", None) is not None else set()
        )


def _labels(batch: Mapping[str, Any]) -> list[str]:
    labels = batch.get("captions")
    if labels is None:
        raise DataError("dptr pre-training and validation need the batch's label strings ('captions')")
    return list(labels)


# ------------------------------------------------------------------------------------------ ORP bank


@torch.no_grad()
def clip_image_tokens(clip: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """`[B, 1 + N, D]`: a CLIP's projected pooled (class) token and projected patch tokens, not normalized
    (the official `encode_image` of DPTR's `get_noise`: `ln_post(x) @ proj` for every token)."""
    pooled, tokens = clip.encode_image(images, normalize=False, output_tokens=True)
    return torch.cat([pooled.unsqueeze(1), tokens], dim=1)


def write_orp_bank(
    images: str | Path,
    out: str | Path,
    clip_model: str,
    clip_pretrained: str | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> dict[str, Any]:
    """Encode every image under `images` (png/jpg/jpeg/bmp/webp, recursively) with the CLIP's image encoder
    and save `{"features": [N, 1 + P, D]}` as safetensors at `out` (metadata: the CLIP). Unreadable images are
    counted and left out. Returns `{"images", "skipped", "shape"}`."""
    from PIL import Image
    from safetensors.torch import save_file

    from vlzoo.core.data import IMAGE_EXTENSIONS, SAMPLE_ERRORS

    files = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"{images}: no image files for the ORP bank")
    clip = create_model(clip_model, pretrained=clip_pretrained).eval().to(device)
    transform = get_transforms(clip, train=False)
    feats, skipped, pending = [], 0, []
    for i, path in enumerate(files):
        try:
            with Image.open(path) as img:
                pending.append(transform(img.convert("RGB")))
        except SAMPLE_ERRORS:
            skipped += 1
        if pending and (len(pending) == batch_size or i == len(files) - 1):
            feats.append(clip_image_tokens(clip, torch.stack(pending).to(device)).cpu())
            pending = []
    if not feats:
        raise DataError(f"{images}: none of the {len(files)} images could be read")
    bank = torch.cat(feats).contiguous()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(
        {ORP_KEY: bank},
        str(tmp),
        metadata={"clip_model": clip_model, "clip_pretrained": str(clip_pretrained)},
    )
    tmp.replace(out)
    return {"images": bank.shape[0], "skipped": skipped, "shape": tuple(bank.shape)}


def load_orp_bank(path: str | Path, dim: int | None = None) -> torch.Tensor:
    """The `[N, T, D]` features of an ORP bank file (safetensors; key `features`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise DataError(f"{path}: not a readable ORP bank (safetensors): {err}") from err
    bank = tensors.get(ORP_KEY)
    if bank is None or bank.ndim != 3:
        raise DataError(f"{path}: an ORP bank holds '{ORP_KEY}' [images, tokens, dim], got {sorted(tensors)}")
    if dim is not None and bank.shape[-1] != dim:
        raise DataError(f"{path}: ORP features are {bank.shape[-1]}-d, the memory is {dim}-d")
    return bank.float()


def configure_orp_command(parser: Any) -> None:
    """`vlzoo-ocr orp-bank IMAGES OUT.safetensors [--clip NAME] [--clip-pretrained TAG|PATH]`."""
    parser.add_argument("images", help="a folder of natural images without text")
    parser.add_argument("out", help="the .safetensors file to write")
    parser.add_argument(
        "--clip", default="clip-vit-b-16", help="the vlzoo CLIP model (default clip-vit-b-16)"
    )
    parser.add_argument("--clip-pretrained", default="openai", help="its weights: a tag or a file")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(func=_run_orp)


def _run_orp(args: Any) -> int:
    pretrained = None if args.clip_pretrained in ("", "none", "None") else args.clip_pretrained
    result = write_orp_bank(args.images, args.out, args.clip, pretrained, args.batch_size, args.device)
    print(
        f"wrote {args.out}: {result['images']} images, features {result['shape']}; skipped {result['skipped']}"
    )
    return 0


# ---------------------------------------------------------------------------------------- registry


@register_model("dptr-parseq-vit-s")
def dptr_parseq_vit_s() -> DPTRConfig:
    """The paper's scale: CLIP ViT-B/16 text memory (512-d), OpenOCR's dptr_parseq decoder, ViT-S encoder."""
    return DPTRConfig()


@register_model("dptr-parseq-tiny")
def dptr_parseq_tiny() -> DPTRConfig:
    """A CPU-sized DPTR on the 36-character charset, with `clip-vit-tiny` (64-d) as its text memory."""
    return DPTRConfig(
        decoder=ParseqConfig(embed_dim=64, num_heads=4, depth=2, max_length=16, dropout=0.1),
        charset="36",
        clip_model="clip-vit-tiny",
        clip_pretrained=None,
        timm_kwargs={"embed_dim": 64, "depth": 2, "num_heads": 2},
        patch_size=(8, 8),
    )


@register_model("word-clip-tiny")
def word_clip_tiny() -> CLIPConfig:
    """`clip-vit-tiny` with a convolutional stem (`VisionTowerConfig.stem="conv"`, 32 channels doubling to 128)
    in place of its linear 8×8 patch embedding: the stage-1 CLIP of DPTR's CPU demo, trained on word crops.
    Not in the paper (its CLIP is OpenAI's ViT-B/16). Trained from scratch for 1000 steps on 5000 renders of
    40 words, its image tower finds a held-out crop's word among the 106 test words for 25% of the crops,
    the linear stem's for 9% (`benchmarks/ocr_dptr_transfer.py`'s docstring)."""
    return get_model_config("clip-vit-tiny", vision={"stem": "conv", "stem_width": 32})
