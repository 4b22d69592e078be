"""FLIP (FaceCaption-15M, Dai et al., 2024): a face-caption dual encoder with an image-grounded matching head.

The paper's model: a ViT-B/16 image encoder and a BERT-base text encoder pretrained on FaceCaption-15M with
image-text contrast (ITC) and image-text matching (ITM), "BLIP-like", and its downstream protocol: every
backbone frozen, one linear layer trained, for facial attribute prediction (CelebA's 40 attributes, mean
accuracy: `vlzoo-person eval face-attributes`) and text-image retrieval (`eval retrieval`, the core's).

What could be read: the official code lives only on the Hugging Face hub (`OpenFace-CQUPT/FLIP`:
pretrain.py, models/fflip_pretrain.py, configs/); only the opening of `fflip_pretrain.py` could be read
(through a mirror's page): `FFLIP_Pretrain` is BLIP's `BLIP_Pretrain` with `embed_dim=256,
queue_size=57600, momentum=0.995`, and its image encoder starts from OpenAI CLIP's ViT-B/16
(`VisionModel.from_pretrained("openai/clip-vit-base-patch16")`). Its loss code, other config values and
evaluation script are unknown; where they are, this file chooses as BLIP (Li et al., 2022) does:
- the text encoder is BLIP's: BERT layers with a cross-attention block each, run without it (text mode,
  `[CLS]` first) for ITC and with it over the image tokens (`[ENC]` first, the id after BLIP's added
  `[DEC]`) for ITM. transformers' `BlipTextModel` is that encoder (built with cross-attention, run
  bidirectionally); BERT's weights load into it, the cross-attention and the two added tokens start random;
- the image encoder is a ViT-B/16 starting from OpenAI CLIP's weights (FLIP's code; timm's
  `vit_base_patch16_clip_quickgelu_224.openai`), all tokens with `[CLS]` given to the cross-attention,
  OpenAI CLIP's normalization;
- ITC: linear projections of both `[CLS]` to 256-d, normalized, a learnable temperature initialized to 0.07
  and clamped to [0.001, 0.5];
- ITM: for every image one hard-negative caption and for every caption one hard-negative image, drawn from
  the softmax of the ITC similarities (duplicates of the positive excluded), a linear head on the fused
  `[ENC]` token, cross-entropy over positive + both negatives; the loss is ITC + ITM, unweighted.
- ITC with **momentum distillation** (`momentum_distill`, on by default), BLIP's and ALBEF's: FLIP's
  pretraining model (`FFLIP_Pretrain`, read through its hub page's opening) is built from BLIP's
  `BLIP_Pretrain` and keeps its `queue_size=57600, momentum=0.995` arguments, so it has BLIP's momentum
  encoders and feature queues. Momentum copies of both towers and projections (EMA, updated at every
  training forward before use, as BLIP does) encode the batch; the online features are contrasted with the
  momentum features of the (all-gathered) batch followed by the queue, and the targets are
  `alpha · softmax(momentum similarities) + (1 - alpha) · one-hot` (alpha 0.4, ramped up linearly over
  `alpha_warmup_steps`, BLIP's first epoch); the gathered momentum features are then enqueued.
  `momentum_distill=False` gives the plain symmetric InfoNCE on the gathered batch (the core's `ClipLoss`).
`text_pool="mean"` (mean of the real text tokens for ITC) is offered beside BLIP's `[CLS]`, the default.
Not reproduced: BLIP's language-modelling decoder (FLIP's README names only ITC and ITM). ITM's negatives
are drawn from each rank's own batch.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core import register_model
from vlzoo.core.data import images_of_captions
from vlzoo.core.distributed import all_gather_features, get_rank
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.losses import ClipLoss
from vlzoo.core.towers import (
    HFTokenizer,
    TokenizedText,
    VisionTower,
    VisionTowerConfig,
    build_hf_encoder,
    hf_encoder_config,
    is_structure_only,
    loads_pretrained,
)
from vlzoo.person.tiny_text import tiny_bert_dir

# FLIP's image encoder starts from OpenAI CLIP's ViT-B/16 (QuickGELU, as those weights were trained)
FLIP_VIT = "vit_base_patch16_clip_quickgelu_224.openai"

__all__ = ["FLIP", "FLIPConfig", "build_blip_text_encoder", "distilled_itc_loss", "sample_negatives"]


@dataclass
class FLIPConfig:
    """Towers, projections and pretraining objectives of FLIP (BLIP's values where FLIP's are unknown)."""

    toy_data: ClassVar[str] = "face-toyworld"  # the generated dataset its tiny models train on

    vision: VisionTowerConfig = field(
        default_factory=lambda: VisionTowerConfig(timm_model=FLIP_VIT, head="none")
    )
    text_model: str = "bert-base-uncased"  # hub id or directory: its config, tokenizer and (maybe) weights
    text_pretrained: bool = True
    text_config: dict[str, Any] = field(default_factory=dict)  # overrides of the BERT config's fields
    context_length: int = 64  # FaceCaption's captions are longer than BLIP's 30-token web captions
    embed_dim: int = 256
    text_pool: str = "cls"  # the ITC text feature: "cls" (BLIP) or "mean" of the real tokens
    temperature: float = 0.07
    itm_hard_negatives: bool = True  # False: negatives drawn uniformly over the batch
    itc_weight: float = 1.0
    itm_weight: float = 1.0
    momentum_distill: bool = True  # BLIP's ITC against momentum encoders and queues, with soft targets
    momentum: float = 0.995  # of the momentum encoders' EMA
    alpha: float = 0.4  # weight of the momentum encoders' soft targets
    alpha_warmup_steps: int = 0  # alpha ramps up linearly over these optimizer steps (0: from the start)
    queue_size: int = 57600  # momentum features kept from earlier batches (0: none)

    def build(self) -> FLIP:
        return FLIP(self)

    def tokenizer(self) -> HFTokenizer:
        return HFTokenizer(self.text_model, self.context_length)


def build_blip_text_encoder(
    text_model: str, encoder_width: int, overrides: Mapping[str, Any] | None = None, pretrained: bool = False
) -> tuple[nn.Module, int]:
    """BLIP's text encoder on `text_model`'s BERT architecture: `(BlipTextModel, enc_token_id)`.

    Cross-attention to `encoder_width`-wide tokens in every layer; two token ids past BERT's vocabulary are
    BLIP's `[DEC]` and `[ENC]`. With `pretrained` (outside `structure_only()`), BERT's weights are copied in.
    """
    from transformers import BlipTextConfig, BlipTextModel

    bert = hf_encoder_config(text_model)
    fields = {
        "vocab_size": bert.vocab_size + 2,
        "hidden_size": bert.hidden_size,
        "num_hidden_layers": bert.num_hidden_layers,
        "num_attention_heads": bert.num_attention_heads,
        "intermediate_size": bert.intermediate_size,
        "hidden_act": bert.hidden_act,
        "hidden_dropout_prob": bert.hidden_dropout_prob,
        "attention_probs_dropout_prob": bert.attention_probs_dropout_prob,
        "max_position_embeddings": bert.max_position_embeddings,
        "layer_norm_eps": bert.layer_norm_eps,
        "pad_token_id": bert.pad_token_id,
        "bos_token_id": bert.vocab_size,  # BLIP's [DEC]
        **dict(overrides or {}),
    }
    # is_decoder builds the cross-attention blocks; forward(is_decoder=False) keeps attention bidirectional.
    config = BlipTextConfig(**fields, encoder_hidden_size=encoder_width, is_decoder=True)
    config._attn_implementation = "eager"  # BLIP's attention adds a float mask: the eager kernel's form
    model = BlipTextModel(config, add_pooling_layer=False)
    if loads_pretrained(pretrained):
        _copy_bert_weights(model, build_hf_encoder(text_model, pretrained=True, add_pooling_layer=False))
    return model, bert.vocab_size + 1


def _copy_bert_weights(model: nn.Module, bert: nn.Module) -> None:
    """BERT's weights into BLIP's text encoder (same names; the word embeddings gain `[DEC]`, `[ENC]`)."""
    own = model.state_dict()
    with torch.no_grad():
        for name, value in bert.state_dict().items():
            if name not in own:
                continue  # token-type embeddings: BLIP's embeddings have none
            target = own[name]
            rows = min(target.shape[0], value.shape[0]) if target.ndim else None
            target[:rows].copy_(value[:rows]) if rows is not None else target.copy_(value)


def sample_negatives(
    similarity: torch.Tensor,
    exclude: torch.Tensor,
    hard: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """For each row of `similarity [B, B]` one column drawn with probability softmax(row) (uniform when not
    `hard`) among the columns not in `exclude` (the diagonal is always excluded): BLIP's hard negatives.
    A row with every column excluded draws uniformly off the diagonal."""
    n = similarity.shape[0]
    if n < 2:
        raise DataError("image-text matching needs at least 2 pairs in a batch to draw negatives")
    eye = torch.eye(n, dtype=torch.bool, device=similarity.device)
    with torch.no_grad():
        weights = (
            similarity.float().softmax(dim=1) if hard else torch.ones_like(similarity, dtype=torch.float)
        )
        weights = weights.masked_fill(exclude | eye, 0.0)
        empty = weights.sum(1) <= 0
        weights[empty] = (~eye[empty]).float()
        return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def distilled_itc_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    image_targets: torch.Tensor,
    text_targets: torch.Tensor,
    image_momentum: torch.Tensor,
    text_momentum: torch.Tensor,
    positives: torch.Tensor,
    temperature: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """BLIP's ITC with momentum distillation, both directions averaged.

    `image_features`, `text_features [B, D]`: the online features of this rank's pairs;
    `image_targets`, `text_targets [N, D]`: the momentum features contrasted against (batch, then queue);
    `image_momentum`, `text_momentum [B, D]`: the momentum features of this rank's pairs;
    `positives [B]`: the column of each pair's own partner. The image→text target of row `i` is
    `alpha · softmax(image_momentum[i] · text_targets / t) + (1 - alpha) · one-hot(positives[i])`.
    """
    with torch.no_grad():
        hard = F.one_hot(positives, len(text_targets)).to(image_features.dtype)
        soft_i2t = (image_momentum @ text_targets.T / temperature).softmax(1)
        soft_t2i = (text_momentum @ image_targets.T / temperature).softmax(1)
        target_i2t = alpha * soft_i2t + (1 - alpha) * hard
        target_t2i = alpha * soft_t2i + (1 - alpha) * hard
    log_i2t = (image_features @ text_targets.T / temperature).log_softmax(1)
    log_t2i = (text_features @ image_targets.T / temperature).log_softmax(1)
    return (-(log_i2t * target_i2t).sum(1).mean() - (log_t2i * target_t2i).sum(1).mean()) / 2


class FLIP(nn.Module):
    """FLIP: ViT image encoder, BLIP text encoder, ITC projections and the ITM head.

    Faces: `forward(batch)` → ITC + ITM losses; `encode_image` / `encode_text` (normalized ITC embeddings);
    `itm_logits(images, text)`, `itm_scores(batch)` (match probability of each caption with its image).
    """

    def __init__(self, cfg: FLIPConfig):
        super().__init__()
        self.config = cfg
        self.visual = VisionTower(dataclasses.replace(cfg.vision, head="none"), embed_dim=0)
        if getattr(self.visual.trunk, "cls_token", None) is None:
            raise ConfigError(
                f"FLIP's image tower must be a ViT with a class token, got {cfg.vision.timm_model!r}"
            )
        width = self.visual.trunk.num_features
        self.text, self.enc_token_id = build_blip_text_encoder(
            cfg.text_model, width, cfg.text_config, pretrained=cfg.text_pretrained and not is_structure_only()
        )
        if cfg.text_pool not in ("cls", "mean"):
            raise ConfigError(f"FLIP's text_pool must be 'cls' or 'mean', got {cfg.text_pool!r}")
        hidden = self.text.config.hidden_size
        self.vision_proj = nn.Linear(width, cfg.embed_dim)
        self.text_proj = nn.Linear(hidden, cfg.embed_dim)
        self.itm_head = nn.Linear(hidden, 2)
        self.temp = nn.Parameter(torch.tensor(float(cfg.temperature)))
        self.itc_loss = ClipLoss(gather_with_grad=True)
        self.steps_done = 0  # optimizer steps, as the core's training hook reports them (alpha's ramp)
        if cfg.momentum_distill:
            self._build_momentum_encoders(cfg)

    # A checkpoint without momentum encoders (trained without distillation) loads; they start as copies.
    optional_state_prefixes = ("momentum_encoders.", "image_queue", "text_queue", "queue_ptr")

    def _build_momentum_encoders(self, cfg: FLIPConfig) -> None:
        if not 0.0 <= cfg.momentum < 1.0 or not 0.0 <= cfg.alpha <= 1.0 or cfg.queue_size < 0:
            raise ConfigError(
                f"FLIP's momentum must be in [0, 1), alpha in [0, 1] and queue_size >= 0, got "
                f"{cfg.momentum}, {cfg.alpha}, {cfg.queue_size}"
            )
        online = {"visual": self.visual, "vision_proj": self.vision_proj, "text": self.text,
                  "text_proj": self.text_proj}  # fmt: skip
        self.momentum_encoders = nn.ModuleDict({k: copy.deepcopy(m) for k, m in online.items()})
        self.momentum_encoders.requires_grad_(False)
        queue = torch.randn(2, cfg.queue_size, cfg.embed_dim)
        self.register_buffer("image_queue", F.normalize(queue[0], dim=-1))
        self.register_buffer("text_queue", F.normalize(queue[1], dim=-1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_load_state_dict_post_hook(_sync_momentum_if_missing)

    def no_weight_decay(self) -> set[str]:
        return {"temp"}

    def _momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [
            (self.momentum_encoders[k], getattr(self, k))
            for k in ("visual", "vision_proj", "text", "text_proj")
        ]

    @torch.no_grad()
    def sync_momentum(self) -> None:
        """Momentum encoders := online encoders (their start, as BLIP's `copy_params`)."""
        for target, source in self._momentum_pairs():
            target.load_state_dict(source.state_dict())

    @torch.no_grad()
    def update_momentum(self) -> None:
        """θ_m ← m θ_m + (1 - m) θ for every parameter of the towers and projections (BLIP's EMA)."""
        targets, sources = [], []
        for target, source in self._momentum_pairs():
            for t, p in zip(target.parameters(), source.parameters(), strict=True):
                targets.append(t)
                sources.append(p.detach())
        torch._foreach_lerp_(targets, sources, 1.0 - self.config.momentum)

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Core training hook after each optimizer step: counts the steps alpha's ramp is measured in."""
        self.steps_done = step

    @property
    def alpha(self) -> float:
        warmup = self.config.alpha_warmup_steps
        return self.config.alpha * (min(1.0, self.steps_done / warmup) if warmup > 0 else 1.0)

    @torch.no_grad()
    def _enqueue(self, image_features: torch.Tensor, text_features: torch.Tensor) -> None:
        """Write the gathered momentum features into the queues at the pointer, wrapping around."""
        size = self.image_queue.shape[0]
        if size == 0:
            return
        n = min(len(image_features), size)
        rows = (self.queue_ptr + torch.arange(n, device=self.queue_ptr.device)) % size
        self.image_queue[rows] = image_features[-n:].to(self.image_queue.dtype)
        self.text_queue[rows] = text_features[-n:].to(self.text_queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    # ------------------------------------------------------------------------------------------ towers
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, 1 + N, W]`: the ViT's tokens, `[CLS]` first (what the ITM cross-attention reads)."""
        self.visual.check_images(images)
        return self.visual.trunk.forward_features(images)

    def _text_inputs(self, text: TokenizedText | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(text, TokenizedText):
            return text.input_ids, text.attention_mask
        if torch.is_tensor(text) and text.ndim == 2 and not text.is_floating_point():
            return text, (text != self.text.config.pad_token_id).long()
        raise DataError(f"FLIP expects TokenizedText or token ids [B, L], got {type(text).__name__}")

    def text_tokens(self, ids: torch.Tensor, mask: torch.Tensor, image_tokens: torch.Tensor | None = None):
        """The text encoder's tokens: text mode (`image_tokens` None) or image-grounded (`[ENC]` first)."""
        if image_tokens is not None:
            ids = ids.clone()
            ids[:, 0] = self.enc_token_id
        out = self.text(
            input_ids=ids, attention_mask=mask, encoder_hidden_states=image_tokens, is_decoder=False
        )
        return out.last_hidden_state

    def pool_text(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The ITC text feature before projection: `[CLS]` (BLIP), or the mean of the real tokens."""
        if self.config.text_pool == "cls":
            return tokens[:, 0]
        weights = mask[..., None].to(tokens.dtype)
        return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.vision_proj(self.image_tokens(images)[:, 0])
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: TokenizedText | torch.Tensor, normalize: bool = True) -> torch.Tensor:
        ids, mask = self._text_inputs(text)
        features = self.text_proj(self.pool_text(self.text_tokens(ids, mask), mask))
        return F.normalize(features, dim=-1) if normalize else features

    def itm_logits(self, images: torch.Tensor, text: TokenizedText | torch.Tensor) -> torch.Tensor:
        """`[B, 2]` (no match, match) logits of the pairs `(images[i], text[i])`."""
        ids, mask = self._text_inputs(text)
        return self.itm_head(self.text_tokens(ids, mask, self.image_tokens(images))[:, 0])

    @torch.no_grad()
    def itm_scores(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Match probability of each caption of `batch` with its image: `[T]`, caption `j` paired with image
        `batch["text_to_image"][j]` when given, else with image `j`."""
        images = images_of_captions(batch, "itm_scores")
        return self.itm_logits(images, batch["text"]).softmax(-1)[:, 1]

    # ---------------------------------------------------------------------------------- pretraining
    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """ITC + ITM losses of `{"image": [B, C, H, W], "text": TokenizedText}` (one caption per image)."""
        cfg = self.config
        ids, mask = self._text_inputs(batch["text"])
        image_tokens = self.image_tokens(batch["image"])
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)  # BLIP keeps its learnable temperature in range this way
        image_features = F.normalize(self.vision_proj(image_tokens[:, 0]), dim=-1)
        text_features = F.normalize(self.text_proj(self.pool_text(self.text_tokens(ids, mask), mask)), dim=-1)
        logit_scale = 1.0 / self.temp
        if cfg.momentum_distill and self.training:
            itc_loss = self._distilled_itc(batch["image"], ids, mask, image_features, text_features)
        else:
            itc_loss = self.itc_loss(image_features, text_features, logit_scale)

        n = len(ids)
        similarity = (image_features @ text_features.T).detach() * logit_scale.detach()
        same_caption = (ids[:, None, :] == ids[None, :, :]).all(-1)  # a duplicate caption is no negative
        negative_text = sample_negatives(similarity, same_caption, cfg.itm_hard_negatives)
        negative_image = sample_negatives(similarity.T, same_caption, cfg.itm_hard_negatives)
        rows = torch.arange(n, device=ids.device)
        text_index = torch.cat([rows, rows, negative_text])
        image_index = torch.cat([rows, negative_image, rows])
        fused = self.text_tokens(ids[text_index], mask[text_index], image_tokens[image_index])[:, 0]
        itm_logits = self.itm_head(fused)
        itm_labels = torch.cat([torch.ones_like(rows), torch.zeros_like(rows), torch.zeros_like(rows)])
        itm_loss = F.cross_entropy(itm_logits, itm_labels)

        with torch.no_grad():
            itm_accuracy = (itm_logits.argmax(-1) == itm_labels).float().mean()
        return {
            "loss": cfg.itc_weight * itc_loss + cfg.itm_weight * itm_loss,
            "itc_loss": itc_loss.detach(),
            "itm_loss": itm_loss.detach(),
            "itm_accuracy": itm_accuracy,
            "temperature": self.temp.detach(),
            "image_features": image_features,
            "text_features": text_features,
            "itm_logits": itm_logits,
            "itm_labels": itm_labels,
            "itm_image_index": image_index,
            "itm_text_index": text_index,
        }

    def _distilled_itc(
        self,
        images: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
    ) -> torch.Tensor:
        """BLIP's momentum-distilled ITC (`distilled_itc_loss`) on the gathered batch and the queues, which
        then receive the gathered momentum features."""
        m = self.momentum_encoders
        with torch.no_grad():
            self.update_momentum()
            image_m = F.normalize(m["vision_proj"](m["visual"].trunk.forward_features(images)[:, 0]), dim=-1)
            tokens_m = m["text"](input_ids=ids, attention_mask=mask, is_decoder=False).last_hidden_state
            text_m = F.normalize(m["text_proj"](self.pool_text(tokens_m, mask)), dim=-1)
            image_all = all_gather_features(image_m, with_grad=False)
            text_all = all_gather_features(text_m, with_grad=False)
        offset = get_rank() * len(image_m) if len(image_all) > len(image_m) else 0
        positives = offset + torch.arange(len(image_m), device=ids.device)
        loss = distilled_itc_loss(
            image_features, text_features,
            torch.cat([image_all, self.image_queue.clone()]), torch.cat([text_all, self.text_queue.clone()]),
            image_m, text_m, positives, self.temp, self.alpha,
        )  # fmt: skip
        self._enqueue(image_all, text_all)
        return loss

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.text.encoder.gradient_checkpointing = enable


def _sync_momentum_if_missing(module: FLIP, incompatible: Any) -> None:
    """After loading weights without momentum encoders, start them as copies of the loaded towers."""
    if any(k.startswith("momentum_encoders.") for k in incompatible.missing_keys):
        module.sync_momentum()


# ---------------------------------------------------------------------------------------- registry


@register_model("flip-vit-b-16")
def flip_vit_b_16() -> FLIPConfig:
    """The paper's FLIP: ViT-B/16 at 224 px (OpenAI CLIP's weights through timm, FLIP's start) and BERT-base
    (uncased, BLIP's tokenizer), 256-d ITC space. Registered with random towers; the pretraining recipe
    starts from the towers' weights (`vision.timm_pretrained`, `text_pretrained`). There are no vlzoo weights
    of a trained FLIP: the official checkpoint (`ckpt/FLIP-base.pth`) is a pickle, which vlzoo never loads."""
    return FLIPConfig(
        vision=VisionTowerConfig(timm_model=FLIP_VIT, head="none", timm_pretrained=False),
        text_model="bert-base-uncased",
        text_pretrained=False,
    )


@register_model("flip-tiny")
def flip_tiny() -> FLIPConfig:
    """FLIP at 64 px on a 2-block ViT and a 2-layer BERT (64-d) made locally (`tiny_bert_dir`), for tests and
    CPUs; no dropout (a model this small underfits). BLIP's momentum distillation stays on with its momentum
    (0.995) and a queue of two batches. On face-toyworld (480 faces, 300 steps, benchmarks/person_flip_probe.py)
    the frozen-encoder probes reach 74.4 % with it and 77.7 % without it (`momentum_distill=False`), against
    64.3 % for the majority class and 70.5 % for the untrained encoder: at a few hundred steps the momentum
    encoders' soft targets cost a few points (a momentum of 0.9 costs more: 67.8 %)."""
    return FLIPConfig(
        vision=VisionTowerConfig(
            timm_model="vit_base_patch16_224",
            timm_kwargs={"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4},
            image_size=64,
            head="none",
        ),
        text_model=tiny_bert_dir(),
        text_pretrained=False,
        text_config={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        context_length=40,
        embed_dim=64,
        queue_size=64,  # two batches: face-toyworld's few hundred faces would sit in a larger queue twice
    )
