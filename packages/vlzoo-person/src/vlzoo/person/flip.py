"""FLIP (FaceCaption-15M, Dai et al., 2024): a face-caption dual encoder with an image-grounded matching head.

The paper's model: a ViT-B/16 image encoder and a BERT-base text encoder pretrained on FaceCaption-15M with
image-text contrast (ITC) and image-text matching (ITM), "BLIP-like", and its downstream protocol: every
backbone frozen, one linear layer trained, for facial attribute prediction (CelebA's 40 attributes, mean
accuracy: `vlzoo-person eval face-attributes`) and text-image retrieval (`eval retrieval`, the core's).

What could not be read: the official code lives only on the Hugging Face hub (`OpenFace-CQUPT/FLIP`:
pretrain.py, models/, configs/), which vlzoo's sources could not open; its loss code, config values and
evaluation script are unknown. Where they are, this file chooses as BLIP (Li et al., 2022) does:
- the text encoder is BLIP's: BERT layers with a cross-attention block each, run without it (text mode,
  `[CLS]` first) for ITC and with it over the image tokens (`[ENC]` first, the id after BLIP's added
  `[DEC]`) for ITM. transformers' `BlipTextModel` is that encoder (built with cross-attention, run
  bidirectionally); BERT's weights load into it, the cross-attention and the two added tokens start random;
- the image encoder is a ViT-B/16 from ImageNet weights (DeiT-B, BLIP's starting point), all tokens with
  `[CLS]` given to the cross-attention, OpenAI CLIP's normalization (BLIP's);
- ITC: linear projections of both `[CLS]` to 256-d, normalized, a learnable temperature initialized to 0.07
  and clamped to [0.001, 0.5];
- ITM: for every image one hard-negative caption and for every caption one hard-negative image, drawn from
  the softmax of the ITC similarities (duplicates of the positive excluded), a linear head on the fused
  `[ENC]` token, cross-entropy over positive + both negatives; the loss is ITC + ITM, unweighted.
`text_pool="mean"` (mean of the real text tokens for ITC) is offered beside BLIP's `[CLS]`, the default.
Not reproduced: BLIP's momentum encoders, feature queue and momentum distillation (its pretraining has
them; FLIP's README names only ITC and ITM), and BLIP's language-modelling decoder. Contrast and negatives
use each rank's own batch gathered by the core's `ClipLoss` (the negatives stay per rank).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core import register_model
from vlzoo.core.data import images_of_captions
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

__all__ = ["FLIP", "FLIPConfig", "build_blip_text_encoder", "sample_negatives"]


@dataclass
class FLIPConfig:
    """Towers, projections and pretraining objectives of FLIP (BLIP's values where FLIP's are unknown)."""

    toy_data: ClassVar[str] = "face-toyworld"  # the generated dataset its tiny models train on

    vision: VisionTowerConfig = field(
        default_factory=lambda: VisionTowerConfig(timm_model="deit_base_patch16_224", head="none")
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

    def no_weight_decay(self) -> set[str]:
        return {"temp"}

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

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.text.encoder.gradient_checkpointing = enable


# ---------------------------------------------------------------------------------------- registry


@register_model("flip-vit-b-16")
def flip_vit_b_16() -> FLIPConfig:
    """The paper's FLIP: ViT-B/16 at 224 px (DeiT-B ImageNet weights through timm, BLIP's start) and BERT-base
    (uncased, BLIP's tokenizer), 256-d ITC space. Registered with random towers; the pretraining recipe
    starts from the towers' weights (`vision.timm_pretrained`, `text_pretrained`). There are no vlzoo weights
    of a trained FLIP: the official checkpoint (`ckpt/FLIP-base.pth`) is a pickle, which vlzoo never loads."""
    return FLIPConfig(
        vision=VisionTowerConfig(timm_model="deit_base_patch16_224", head="none", timm_pretrained=False),
        text_model="bert-base-uncased",
        text_pretrained=False,
    )


@register_model("flip-tiny")
def flip_tiny() -> FLIPConfig:
    """FLIP at 64 px on a 2-block ViT and a 2-layer BERT (64-d) made locally (`tiny_bert_dir`), for tests and
    CPUs; no dropout (a model this small underfits)."""
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
    )
