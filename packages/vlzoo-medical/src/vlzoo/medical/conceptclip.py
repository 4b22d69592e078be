"""ConceptCLIP (Nie et al., "ConceptCLIP: Towards Trustworthy Medical AI via Concept-Enhanced Contrastive
Language-Image Pre-training", arXiv:2501.15579): SigLIP image-text alignment (IT-Align) plus patch-concept
alignment (PC-Align) of image patches with the UMLS concepts marked in the captions.

PC-Align, as the paper and its official code (JerrryNie/ConceptCLIP, `model.py`, `loss.py`
`SigLipConceptLoss`) do it:

- the image tower's patch tokens and the text tower's token features each go through their own two-layer
  projector (Linear-GELU-Linear, no biases) into the joint space;
- a concept's embedding is the mean of the projected token features inside its span of the caption, L2
  normalized; patch features are L2 normalized;
- for every image b and every concept c of the batch, `s_bc = max_p (t * <patch_bp, concept_c>) + bias`
  with its own learnable `t = exp(concept_logit_scale)` (init 1/0.07) and bias (init -10);
- `L = -(1/#concepts) sum_bc log sigmoid(y_bc s_bc)`, y = +1 where concept c belongs to image b, else -1;
  across ranks the concepts travel like SigLIP's texts (`ConceptAlignLoss`);
- total = SigLIP + 0.5 * L.

Choices where the official code gives no answer or where vlzoo differs, each stated once:

- Spans are characters; they are mapped to tokens through the tokenizer's offsets (a token belongs to a span
  when their characters overlap). Offsets index the full token sequence, [CLS] included, which is the
  official "+1 for [CLS]". A concept whose tokens were all cut by truncation is dropped.
- Targets (`concept_targets="cui"`): image b is positive for concept c when b's caption mentions c's CUI,
  so the same CUI in two captions is one concept for both images. The official code makes a concept
  positive only for the image of its own caption (`concept_targets="caption"`), which reads a shared CUI as
  a negative; the paper's "concept c belongs to image b" is the CUI reading. Duplicates are kept as the
  official code keeps them: every span is one column of the loss and counts in #concepts, also when its CUI
  repeats.
- #concepts is the global number of concepts, so that the ranks' losses add up to W times the one-process
  loss on the whole batch (the official code divides each exchanged block by its own rank's concept count,
  which is the same when all ranks hold as many concepts).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core import register_model
from vlzoo.core.data import build_transform, image_transform
from vlzoo.core.distributed import all_gather_features
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.losses import SigLipLoss
from vlzoo.core.models import CLIPConfig, DualEncoder
from vlzoo.core.towers import (
    BERT_BASE_CONFIG,
    TextTowerConfig,
    TokenizedText,
    VisionTowerConfig,
    build_tokenizer,
    register_hf_config,
)
from vlzoo.core.weights import local_bert_dir

__all__ = [
    "ConceptAlignLoss",
    "ConceptCLIP",
    "ConceptCLIPConfig",
    "ConceptSpans",
    "concept_id",
    "concept_spans",
    "patch_concept_logits",
]

CONCEPT_TARGETS = ("cui", "caption")
PUBMEDBERT = "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext"
SIGLIP_MEAN_STD = (0.5, 0.5, 0.5)


# ---------------------------------------------------------------------------------------------- loss


def patch_concept_logits(
    patch_features: torch.Tensor,
    concept_features: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
) -> torch.Tensor:
    """`s [B, C] = max_p (logit_scale * <patch_bp, concept_c>) + logit_bias` for patches `[B, P, D]`.

    The scale is positive, so the max over patches of the scaled similarity is the scaled max similarity.
    """
    B, P, D = patch_features.shape
    similarity = (patch_features.reshape(B * P, D) @ concept_features.T).view(B, P, -1).amax(dim=1)
    return similarity * logit_scale + logit_bias


def _block_loss(
    patch_features: torch.Tensor,
    concept_features: torch.Tensor,
    targets: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """`sum_bc -log sigmoid(y_bc s_bc)` over one block of concepts (`valid` drops padding columns)."""
    logits = patch_concept_logits(patch_features, concept_features, logit_scale, logit_bias)
    # -log sigmoid(y z) = softplus(-y z): -z where the concept belongs to the image, z where it does not.
    terms = F.softplus(torch.where(targets, -logits, logits))
    if valid is not None:
        terms = terms * valid
    return terms.sum()


class ConceptAlignLoss(SigLipLoss):
    """PC-Align's sigmoid loss of image patches vs concepts, exchanged across ranks as SigLIP's texts are.

    `loss(patch_features [b, P, D], concept_features [c, D], concept_targets [b, c] bool, logit_scale,
    logit_bias, concept_ids=None)`; features L2 normalized, `logit_scale` already exponentiated.

    Each rank scores its own images against its own concepts and then against every other rank's concepts,
    which arrive one block at a time through the ring of `dist_impl` (SigLIP's "bidir", "shift" or
    "gather"; differentiable, so gradients return to the rank owning a concept). Ranks may hold different
    numbers of concepts: blocks are padded to the largest count and the padding is masked. Another rank's
    concept is a positive for a local image when `concept_ids` (one integer id >= 0 per concept, e.g. of its
    CUI) are given and the image has a local concept of the same id; without ids all of them are negatives.

    The loss is the sum over local images and all concepts divided by #concepts / W (#concepts counted over
    all ranks), so that `sum_r L_r = W * L` of one process holding the whole batch, as `SigLipLoss` does.
    """

    output_key: ClassVar[str] = "concept_loss"

    def forward(  # type: ignore[override]
        self,
        patch_features: torch.Tensor,
        concept_features: torch.Tensor,
        concept_targets: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor,
        concept_ids: torch.Tensor | None = None,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        self._check(patch_features, concept_features, concept_targets, concept_ids)
        scale = self.checked_scalar(logit_scale, "logit_scale")
        bias = self.checked_scalar(logit_bias, "logit_bias")
        rank, world_size = self.resolve_world()
        loss = _block_loss(patch_features, concept_features, concept_targets, scale, bias)
        n_concepts = concept_features.shape[0]
        if world_size > 1:
            counts = all_gather_features(
                torch.tensor([n_concepts], device=concept_features.device), with_grad=False, group=self.group
            )
            n_concepts, most = int(counts.sum()), int(counts.max())
            if most:
                loss = loss + self._other_ranks_loss(
                    patch_features, concept_features, concept_targets, concept_ids, scale, bias, most, rank
                )
        # No concept anywhere: zero, but still a function of the inputs, so every rank's backward matches.
        loss = loss * (world_size / n_concepts) if n_concepts else loss * 0.0
        return self.result(loss, output_dict)

    def _other_ranks_loss(self, patches, concepts, targets, ids, scale, bias, most: int, rank: int):
        n = concepts.shape[0]
        padded = F.pad(concepts, (0, 0, 0, most - n))
        # Per concept: its id (0 when no ids are compared), -1 marking padding.
        meta = torch.full((most,), -1, dtype=torch.long, device=concepts.device)
        meta[:n] = ids if ids is not None else 0
        world_size = self.resolve_world()[1]
        loss = patches.new_zeros(())
        blocks = zip(self._other_texts(padded, rank, world_size), self._other_texts(meta, rank, world_size))
        for other_concepts, other_meta in blocks:
            valid = other_meta >= 0
            if ids is not None:  # a local image is positive for a remote concept sharing one of its ids
                same = (ids[:, None] == other_meta[None, :]).to(patches.dtype)
                other_targets = (targets.to(patches.dtype) @ same) > 0
            else:
                other_targets = torch.zeros(len(patches), most, dtype=torch.bool, device=patches.device)
            loss = loss + _block_loss(patches, other_concepts, other_targets, scale, bias, valid)
        return loss

    def _check(self, patches, concepts, targets, ids) -> None:
        if patches.ndim != 3 or concepts.ndim != 2 or patches.shape[-1] != concepts.shape[-1]:
            raise ConfigError(
                "ConceptAlignLoss takes patch_features [B, P, D] and concept_features [C, D], got "
                f"{tuple(patches.shape)} and {tuple(concepts.shape)}"
            )
        want = (patches.shape[0], concepts.shape[0])
        if tuple(targets.shape) != want or targets.dtype != torch.bool:
            raise ConfigError(
                f"concept_targets must be a bool tensor of shape {want}, got {targets.dtype} {tuple(targets.shape)}"
            )
        if ids is not None:
            if tuple(ids.shape) != (concepts.shape[0],) or ids.is_floating_point():
                raise ConfigError(f"concept_ids must be integers of shape ({concepts.shape[0]},)")
            if self.check_inputs and len(ids) and int(ids.min()) < 0:
                raise ConfigError("concept_ids must be >= 0 (-1 marks padding between ranks)")


# ------------------------------------------------------------------------------------------ concepts


def concept_id(cui: str) -> int:
    """A stable non-negative 56-bit integer for a concept identifier (the same in every process and run)."""
    return int.from_bytes(hashlib.blake2b(str(cui).encode("utf-8"), digest_size=7).digest(), "big")


@dataclass
class ConceptSpans:
    """The concepts of a batch, flattened: `owner [C]` (the sample whose caption holds the span),
    `spans [C, 2]` (`[start, end)` characters in that caption) and `ids [C]` (`concept_id` of the CUI)."""

    owner: torch.Tensor
    spans: torch.Tensor
    ids: torch.Tensor

    def __len__(self) -> int:
        return self.owner.shape[0]


def _concept_key(concept: Mapping[str, Any]) -> str:
    # A span without a CUI (MedConcept's minimized [start, end] form) is identified by its words.
    if concept.get("cui") is not None:
        return str(concept["cui"])
    if concept.get("name"):
        return "text:" + " ".join(str(concept["name"]).lower().split())
    raise KeyError("cui")


def concept_spans(concepts: Sequence[Sequence[Mapping[str, Any]]]) -> ConceptSpans:
    """`batch["concepts"]` (per sample, a list of `{"cui", "start", "end"}`) → `ConceptSpans`.

    A concept whose `cui` is None is identified by its text (`name`, the span's characters) instead.
    """
    flat = [(i, c) for i, sample in enumerate(concepts) for c in sample]
    try:
        spans = [(int(c["start"]), int(c["end"])) for _, c in flat]
        ids = [concept_id(_concept_key(c)) for _, c in flat]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(
            "a concept must be a mapping with 'start' and 'end' (character offsets) and a 'cui' (or, "
            f"without one, its 'name'): {err!r}"
        ) from err
    bad = [(i, s) for (i, _), s in zip(flat, spans) if not 0 <= s[0] < s[1]]
    if bad:
        raise DataError(f"concept spans must satisfy 0 <= start < end; sample {bad[0][0]} has {bad[0][1]}")
    return ConceptSpans(
        owner=torch.tensor([i for i, _ in flat], dtype=torch.long),
        spans=torch.tensor(spans, dtype=torch.long).reshape(-1, 2),
        ids=torch.tensor(ids, dtype=torch.long),
    )


def span_token_mask(offsets: torch.Tensor, owner: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """`[C, L]` bool: token l of concept c's caption overlaps c's characters (special tokens never do)."""
    token_start, token_end = offsets[owner].unbind(-1)  # [C, L] each
    start, end = spans[:, :1], spans[:, 1:]
    return (token_start < end) & (token_end > start) & (token_end > token_start)


def span_mean(tokens: torch.Tensor, owner: torch.Tensor, token_mask: torch.Tensor, projector: nn.Module):
    """Mean of `projector(tokens[owner[c], l])` over the tokens l of each concept c: `[C, D]`.

    Only the tokens inside spans are projected and summed (index_add), never a `[C, L, D]` gather.
    """
    concept, position = token_mask.nonzero(as_tuple=True)
    rows = owner[concept] * tokens.shape[1] + position
    projected = projector(tokens.reshape(-1, tokens.shape[-1])[rows])
    sums = projected.new_zeros(token_mask.shape[0], projected.shape[-1]).index_add(0, concept, projected)
    return sums / token_mask.sum(dim=1, keepdim=True).to(sums.dtype)


def concept_targets(owner: torch.Tensor, ids: torch.Tensor, batch_size: int, mode: str) -> torch.Tensor:
    """`[B, C]` bool: concept c belongs to image b (by CUI, or only to its own caption's image)."""
    own = owner[None, :] == torch.arange(batch_size, device=owner.device)[:, None]
    if mode == "caption":
        return own
    same_cui = (ids[:, None] == ids[None, :]).to(torch.float32)
    return (own.to(torch.float32) @ same_cui) > 0


# ---------------------------------------------------------------------------------------------- model


def _projector(in_dim: int, out_dim: int) -> nn.Sequential:
    # The official PC-Align projectors: Linear-GELU-Linear, no biases, hidden width = the joint width.
    return nn.Sequential(
        nn.Linear(in_dim, out_dim, bias=False), nn.GELU(), nn.Linear(out_dim, out_dim, bias=False)
    )


@dataclass
class ConceptCLIPConfig(CLIPConfig):
    """ConceptCLIP: a SigLIP dual encoder and, when `pc_align`, the PC-Align projectors and loss.

    `pc_align=False` is the first pre-training stage (SigLIP only; the PC-Align weights exist but are frozen,
    so a stage-1 checkpoint loads into stage 2). `concept_targets`: `"cui"` or `"caption"` (module doc).
    `concept_dist_impl`: how concepts travel between ranks (`SigLipLoss`'s dist_impl).
    `train_crop_scale`: area range of the training random resized crop; evaluation resizes ("squashes") to
    the square input size, as the official preprocessing does.
    """

    toy_data: ClassVar[str] = "med-toyworld-concepts"  # the generated dataset its tiny models train on

    init_logit_bias: float | None = -10.0
    loss: str = "siglip"
    pc_align: bool = True
    concept_loss_weight: float = 0.5
    init_concept_logit_scale: float = math.log(1 / 0.07)
    init_concept_logit_bias: float = -10.0
    concept_targets: str = "cui"
    concept_dist_impl: str = "bidir"
    train_crop_scale: tuple[float, float] = (0.5, 1.0)

    def transform(self, train: bool, albumentations: Any | None = None):
        if albumentations is not None:
            return build_transform(self.vision, train, albumentations)
        if train:
            return image_transform(self.vision, True, scale=tuple(self.train_crop_scale))
        from torchvision.transforms import v2 as T

        size = self.vision.image_size
        return T.Compose(
            [
                T.ToImage(),
                T.Resize((size, size), interpolation=T.InterpolationMode[self.vision.interpolation.upper()]),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(mean=list(self.vision.mean), std=list(self.vision.std)),
            ]
        )

    def build(self) -> ConceptCLIP:
        return ConceptCLIP(self)


class ConceptCLIP(DualEncoder):
    """SigLIP dual encoder + PC-Align. `forward(batch)` needs `batch["concepts"]` when `pc_align`."""

    def __init__(self, cfg: ConceptCLIPConfig):
        super().__init__(cfg)
        if cfg.concept_targets not in CONCEPT_TARGETS:
            raise ConfigError(
                f"concept_targets must be one of {CONCEPT_TARGETS}, got {cfg.concept_targets!r}"
            )
        if self.logit_bias is None:
            raise ConfigError("ConceptCLIP's IT-Align is a sigmoid loss: set init_logit_bias (e.g. -10)")
        self.patch_proj = _projector(self.visual.trunk.num_features, cfg.embed_dim)
        self.token_proj = _projector(self.text.transformer.config.hidden_size, cfg.embed_dim)
        self.concept_logit_scale = nn.Parameter(torch.tensor(float(cfg.init_concept_logit_scale)))
        self.concept_logit_bias = nn.Parameter(torch.tensor(float(cfg.init_concept_logit_bias)))
        self.concept_loss = ConceptAlignLoss(dist_impl=cfg.concept_dist_impl)
        if not cfg.pc_align:
            for module in self.pc_align_parameters():
                module.requires_grad_(False)
        self._tokenizer = None

    def pc_align_parameters(self) -> list[nn.Module | nn.Parameter]:
        return [self.patch_proj, self.token_proj, self.concept_logit_scale, self.concept_logit_bias]

    def concept_scale(self) -> torch.Tensor:
        # Clamped at 100 like the image-text temperature (the official loop clamps both at ln 100).
        return self.concept_logit_scale.exp().clamp(max=self.config.max_logit_scale)

    # ------------------------------------------------------------------------------------ training
    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if not self.config.pc_align:
            out = super().forward_batch(batch)
            out["contrastive_loss"] = out["loss"]
            return out
        images, text = batch["image"], batch["text"]
        self.visual.check_images(images)
        patch_tokens, pooled = self.visual.forward_tokens(images)
        text_tokens, text_pooled, _ = self.text.forward_tokens(text)
        image_features = F.normalize(self.visual.head(pooled), dim=-1)
        text_features = F.normalize(self.text.head(text_pooled), dim=-1)
        scale, bias = self.scale(), self.logit_bias
        contrastive = self.contrastive_loss_of(
            {"image_features": image_features, "text_features": text_features, "logit_scale": scale}
            | ({"logit_bias": bias} if bias is not None else {})
        )

        spans, token_mask = self._batch_concepts(batch, text)
        patches = F.normalize(self.patch_proj(patch_tokens), dim=-1)
        concepts = F.normalize(span_mean(text_tokens, spans.owner, token_mask, self.token_proj), dim=-1)
        targets = concept_targets(spans.owner, spans.ids, len(images), self.config.concept_targets)
        ids = spans.ids if self.config.concept_targets == "cui" else None
        concept_scale, concept_bias = self.concept_scale(), self.concept_logit_bias
        concept = self.concept_loss(patches, concepts, targets, concept_scale, concept_bias, concept_ids=ids)
        return {
            "image_features": image_features,
            "text_features": text_features,
            "logit_scale": scale,
            "logit_bias": bias,
            "concept_logit_scale": concept_scale,
            "concept_logit_bias": concept_bias,
            "contrastive_loss": contrastive,
            "concept_loss": concept,
            "num_concepts": torch.tensor(float(len(spans))),
            "loss": contrastive + self.config.concept_loss_weight * concept,
        }

    def _batch_concepts(self, batch: Mapping[str, Any], text: Any) -> tuple[ConceptSpans, torch.Tensor]:
        if "concepts" not in batch:
            raise DataError(
                "PC-Align needs batch['concepts'] (per sample, a list of {'cui', 'start', 'end'}): train on a "
                "concept dataset (data_kind 'medconcept', 'med-toyworld-concepts') or set pc_align=False"
            )
        if not isinstance(text, TokenizedText) or text.offsets is None:
            raise DataError(
                "PC-Align maps concept spans to tokens through the tokenizer's character offsets; this batch's "
                "text has none (use the model's own fast Hugging Face tokenizer)"
            )
        device = text.offsets.device
        spans = concept_spans(batch["concepts"])
        spans = ConceptSpans(spans.owner.to(device), spans.spans.to(device), spans.ids.to(device))
        token_mask = span_token_mask(text.offsets, spans.owner, spans.spans)
        kept = token_mask.any(dim=1)  # spans truncated away leave no token
        if not bool(kept.all()):
            spans = ConceptSpans(spans.owner[kept], spans.spans[kept], spans.ids[kept])
            token_mask = token_mask[kept]
        return spans, token_mask

    # -------------------------------------------------------------------------------- concept maps
    def tokenizer(self):
        """The text tower's tokenizer (built once)."""
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer(self.config.text)
        return self._tokenizer

    def encode_concepts(
        self, concepts: Sequence[str] | TokenizedText, normalize: bool = True
    ) -> torch.Tensor:
        """`[C, D]` embeddings of concept phrases, each encoded alone: the mean of its projected tokens (the
        whole phrase is the span), as PC-Align embeds a concept inside a caption."""
        if not isinstance(concepts, TokenizedText):
            if isinstance(concepts, str):
                raise DataError("concepts must be a list of phrases, not one string")
            concepts = self.tokenizer()(list(concepts))
        if concepts.offsets is None:
            raise DataError("encode_concepts needs token offsets (a fast Hugging Face tokenizer)")
        concepts = concepts.to(self.logit_scale.device)
        tokens, _, _ = self.text.forward_tokens(concepts)
        start, end = concepts.offsets.unbind(-1)
        token_mask = end > start  # every real token of the phrase, none of [CLS]/[SEP]/padding
        if not bool(token_mask.any(dim=1).all()):
            raise DataError("a concept phrase is empty (no token)")
        owner = torch.arange(len(concepts), device=tokens.device)
        embeddings = span_mean(tokens, owner, token_mask, self.token_proj)
        return F.normalize(embeddings, dim=-1) if normalize else embeddings

    def encode_patches(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, P, D]` L2-normalized PC-Align patch features."""
        self.visual.check_images(images)
        tokens, _ = self.visual.forward_tokens(images)
        return F.normalize(self.patch_proj(tokens), dim=-1)

    def concept_logits(self, images: torch.Tensor, concepts: Sequence[str] | TokenizedText) -> torch.Tensor:
        """`[B, C]` PC-Align scores `max_p t <patch, concept> + bias` (sigmoid = P(concept in image))."""
        return patch_concept_logits(
            self.encode_patches(images),
            self.encode_concepts(concepts),
            self.concept_scale(),
            self.concept_logit_bias,
        )

    def concept_similarity_map(
        self, images: torch.Tensor, concepts: Sequence[str] | TokenizedText
    ) -> torch.Tensor:
        """`[B, C, h, w]` cosine similarity of every patch with every concept, on the patch grid."""
        patches = self.encode_patches(images)
        similarity = torch.einsum("bpd,cd->bcp", patches, self.encode_concepts(concepts))
        h, w = self.visual.trunk.patch_embed.grid_size
        return similarity.reshape(*similarity.shape[:2], h, w)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"concept_logit_scale", "concept_logit_bias"}


# ------------------------------------------------------------------------------------- tiny text tower

# A WordPiece vocabulary small enough for a CPU model: BERT's specials, every character a caption of
# med-toyworld (or any lower-case ASCII text) can hold, as word starts and "##" continuations, so nothing
# is [UNK], and whole words of radiology reports so that common words are one token.
_TINY_LINES = (
    "a an the of in on at to and or with without no not is are there this that as by from for near",
    "left right upper lower middle anterior posterior lateral medial central peripheral bilateral",
    "lobe lobes liver lung lungs kidney kidneys spleen heart brain bone bones chest abdomen pelvis",
    "head neck organ organs body wall segment region side base apex",
    "lesion lesions mass masses nodule nodules cyst cysts tumor tumour focus focal foci opacity",
    "opacities effusion solid calcified calcification hypodense hyperdense isodense hypointense",
    "hyperintense dense bright dark round oval irregular",
    "small large tiny big single multiple several one two three four five",
    "mm cm size sized measuring measures diameter",
    "ct mri mr x ray xray scan image slice axial sagittal coronal contrast enhanced enhancing",
    "normal abnormal findings finding impression seen show shows showing present absent evidence",
)
_TINY_WORDS = [word for line in _TINY_LINES for word in line.split()]


def tiny_medical_bert_dir() -> str:
    """A local folder with a tiny BERT config and its fast WordPiece tokenizer (random weights), its
    vocabulary holding the reports' words (`vlzoo.core.weights.local_bert_dir`)."""
    config = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
    return local_bert_dir(
        "tiny-medical-bert",
        _TINY_WORDS,
        {**config, "max_position_embeddings": 64},
        punctuation=".,;:!?'\"()[]{}-+/%&*=<>#_~^|@$\\`",
    )


# ------------------------------------------------------------------------------------------ registry


# PubMedBERT is BERT-base with its own vocabulary of the same size: its config.json (as the fine-tunes naming
# it as their base repeat it) has BERT-base's fields, so the text tower's architecture builds without the hub.
register_hf_config(PUBMEDBERT, BERT_BASE_CONFIG)


@register_model("conceptclip-so400m")
def conceptclip_so400m() -> ConceptCLIPConfig:
    """The paper's ConceptCLIP: SigLIP so400m/14 at 384 px (attention-pool, no projection: 1152-d) and
    PubMedBERT (mean pooled, linear projection to 1152).

    Registered without weights and with random towers; the stage-1 recipe starts from SigLIP's and
    PubMedBERT's own weights (`vision.timm_pretrained`, `text.hf_pretrained`) as the paper does.
    """
    return ConceptCLIPConfig(
        embed_dim=1152,
        vision=VisionTowerConfig(
            timm_model="vit_so400m_patch14_siglip_384",
            image_size=384,
            pool="map",
            head="none",
            mean=SIGLIP_MEAN_STD,
            std=SIGLIP_MEAN_STD,
        ),
        text=TextTowerConfig(
            kind="hf", hf_model=PUBMEDBERT, hf_pretrained=False, context_length=77, pool="mean", head="linear"
        ),
    )


@register_model("conceptclip-tiny")
def conceptclip_tiny() -> ConceptCLIPConfig:
    """ConceptCLIP at 64 px on a 2-block SigLIP-style ViT and a 2-layer BERT (64-d), for tests and CPUs.

    The BERT and its tokenizer are made locally (`tiny_medical_bert_dir`): nothing is downloaded.
    """
    return ConceptCLIPConfig(
        embed_dim=64,
        vision=VisionTowerConfig(
            timm_model="vit_base_patch16_siglip_224",
            timm_kwargs={"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4},
            image_size=64,
            pool="map",
            head="none",
            mean=SIGLIP_MEAN_STD,
            std=SIGLIP_MEAN_STD,
        ),
        text=TextTowerConfig(
            kind="hf",
            hf_model=tiny_medical_bert_dir(),
            hf_pretrained=False,
            context_length=48,
            pool="mean",
            head="linear",
        ),
    )
