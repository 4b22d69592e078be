"""PTUnifier (Chen et al., ICCV 2023): one fusion encoder for image-text, image-only and text-only inputs.

A METER-style model — CLIP ViT image tower, RoBERTa text tower, co-attention fusion layers
(`vlzoo.core.models.fusion`) — with two **prompt pools** that stand in for a missing modality:

- text only: the text tokens' mean embedding queries the visual pool; the top-k visual prompts, behind the
  ViT's class embedding (with its position), go through the ViT blocks as the image stream;
- image only: the patch embeddings' mean (with positions) queries the textual pool; `<s>` + the top-k
  textual prompts + `</s>` go through the RoBERTa layers as the text stream;
- image and text: both real streams.

The same fusion encoder serves all three, so the model is a fusion encoder (ITM, VQA) and a dual encoder
(retrieval through the image-only and text-only paths) at once. Pretraining: ITM (hard negatives drawn from
the ITC similarities, as ALBEF does), whole-word MLM and ITC between the image-only and text-only fused
features, weighted 0.5 / 1 / 0.1.

Read from the official code (zhjohnchan/PTUnifier) where the paper is silent:
- the query is the mean of the tower's embeddings before its transformer: the text embeddings (after
  RoBERTa's embedding LayerNorm) over the real tokens after `<s>`, the patch + position embeddings over the
  patches; selection is the top-k dot products with the pool, computed without gradient;
- `<s>` and `</s>` around the textual prompts are each embedded as a one-token sequence (both take the first
  position embedding); the textual prompts themselves get no position embedding;
- ITC compares the fused `[text CLS, image CLS]` features of the two uni-modal paths through an ITC head
  (LayerNorm + linear, 2 × hidden → hidden, per modality) with a fixed temperature of 0.1;
- the official code wraps the whole prompt lookup in `no_grad`, so its pools, although declared trainable,
  never receive a gradient; the paper calls the prompts learnable. Here only the *selection* is gradient-free
  and the selected prompts are trained (`train_prompt_pools=False` reproduces the official behaviour);
- the official pretraining draws ITM negatives at random (METER's false images); vlzoo's specification asks
  for hard negatives mined from the ITC similarities, which is the default here (ALBEF's sampling, see
  `sample_hard_negatives`, within each rank's batch); `itm_hard_negatives=False` draws them uniformly;
- MLM masks whole words (transformers' `DataCollatorForWholeWordMask` in the official code): words are drawn
  in random order until round(0.15 × tokens) are covered; the chosen tokens follow BERT's 80/10/10 rule.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core import register_model
from vlzoo.core.data import images_of_captions
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.losses import ClipLoss
from vlzoo.core.models import FusionConfig, FusionEncoder, FusionOutput
from vlzoo.core.towers import (
    HFTokenizer,
    TextTowerConfig,
    TokenizedText,
    VisionTower,
    VisionTowerConfig,
    build_hf_encoder,
    build_tokenizer,
    is_structure_only,
    register_hf_config,
)

__all__ = [
    "PTUnifier",
    "PTUnifierConfig",
    "TextVocabulary",
    "sample_hard_negatives",
    "select_prompts",
    "whole_word_mask",
]

IGNORE_INDEX = -100  # cross-entropy's ignore index: tokens MLM does not predict

# ---------------------------------------------------------------------------------------------- config


@dataclass
class PTUnifierConfig:
    """Towers, fusion, prompt pools and pretraining objectives of PTUnifier.

    The text tower is RoBERTa: `text_model` names it (hub id or directory; `text_pretrained` loads its
    weights), or, when None, it is built with random weights from `text_config` (RobertaConfig fields) and
    the byte-level BPE that vlzoo-medical builds in memory (`bundled_tokenizer`), so tiny models need no files.
    """

    toy_data: ClassVar[str] = "med-toyworld"  # the generated dataset its tiny models train on

    vision: VisionTowerConfig = field(
        default_factory=lambda: VisionTowerConfig(
            timm_model="vit_base_patch16_clip_224", act_layer="quick_gelu", head="none"
        )
    )
    text_model: str | None = "allenai/biomed_roberta_base"
    text_pretrained: bool = True
    text_config: dict[str, Any] = field(default_factory=dict)
    context_length: int = 48  # max_text_len of the official pretraining
    fusion: FusionConfig = field(default_factory=FusionConfig)
    visual_pool_size: int = 2048
    text_pool_size: int = 2048
    num_visual_prompts: int = 49
    num_text_prompts: int = 32
    prompt_init_std: float = 0.02
    train_prompt_pools: bool = True
    itc_temperature: float = 0.1
    itm_hard_negatives: bool = True  # False: uniform over the batch's other captions/images (official code)
    mlm_probability: float = 0.15
    itm_weight: float = 0.5
    mlm_weight: float = 1.0
    itc_weight: float = 0.1

    def build(self) -> PTUnifier:
        return PTUnifier(self)

    def tokenizer(self) -> HFTokenizer:
        """RoBERTa's tokenizer of `text_model`, or the bundled byte-level BPE of a randomly built tower."""
        if self.text_model is None:
            return bundled_tokenizer(self.context_length)
        return build_tokenizer(
            TextTowerConfig(kind="hf", hf_model=self.text_model, context_length=self.context_length)
        )


# ------------------------------------------------------------------------------------------ tokenizer

# Bundled text the tiny models' byte-level BPE learns its merges from: radiology report phrases. Any caption
# still tokenizes (byte-level BPE falls back to bytes); these words just become single tokens.
_BUNDLED_CORPUS = """\
a 12 mm hypodense lesion in the left lobe of the liver. a 5 mm hyperdense nodule in the right lung.
there is a small calcified nodule in the left lung. a large solid nodule is seen in the right lung.
right lobe of the liver: large hypodense lesion measuring 30 mm. no focal lesion in the liver.
the liver shows no focal lesion. no lesion is seen in the spleen. the lungs are normal.
no acute cardiopulmonary abnormality. no focal consolidation, pleural effusion or pneumothorax.
small right pleural effusion with adjacent atelectasis. mild cardiomegaly. the lungs are clear.
an 8 mm isodense mass in the upper pole of the left kidney. a cyst in the lower pole of the right kidney.
a 20 mm enhancing lesion in the spleen. the spleen is normal in size. the pancreas is unremarkable.
multiple hypodense lesions in both lobes of the liver, likely metastases. a large bright lesion.
chest x-ray, ct, mri, ultrasound, axial, coronal, sagittal slice of the abdomen, pelvis, head and brain.
fracture of the left rib. degenerative changes of the spine. no evidence of bowel obstruction.
mediastinum, heart, aorta, trachea, bronchus, diaphragm, stomach, gallbladder, bladder, bone, soft tissue.
10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 40 45 50 mm cm
"""
_BUNDLED_VOCAB_SIZE = 640
_ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0-4, RoBERTa's order


@lru_cache(maxsize=1)
def _bundled_backend():
    """A RoBERTa-style byte-level BPE (same pre-tokenizer, specials and `<s> … </s>` template as RoBERTa),
    trained with `tokenizers` on `_BUNDLED_CORPUS`; training is deterministic, so every process agrees."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BUNDLED_VOCAB_SIZE,
        special_tokens=list(_ROBERTA_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_BUNDLED_CORPUS.splitlines(), trainer)
    bpe.post_processor = processors.RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
    )
    specials = dict(zip(("bos", "pad", "eos", "unk", "mask"), _ROBERTA_SPECIALS))
    return RobertaTokenizerFast(
        tokenizer_object=bpe,
        bos_token=specials["bos"],
        cls_token=specials["bos"],
        eos_token=specials["eos"],
        sep_token=specials["eos"],
        pad_token=specials["pad"],
        unk_token=specials["unk"],
        mask_token=specials["mask"],
    )


def bundled_tokenizer(context_length: int) -> HFTokenizer:
    """The bundled BPE as the core's `HFTokenizer` (saved once to a temporary directory to be loaded by it)."""
    with tempfile.TemporaryDirectory() as directory:
        _bundled_backend().save_pretrained(directory)
        return HFTokenizer(directory, context_length)


@dataclass
class TextVocabulary:
    """What MLM and the pseudo-text stream need from a tokenizer, as tensors indexed by token id."""

    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    special: torch.Tensor  # bool [V]: never masked, never a word
    word_start: torch.Tensor  # bool [V]: the token begins a word (given a real token before it)

    @classmethod
    def from_tokenizer(cls, backend, vocab_size: int) -> TextVocabulary:
        """Word starts from the vocabulary's own markers: `Ġ` (byte-level BPE, RoBERTa/GPT-2) or `▁`
        (SentencePiece) begin a word and other tokens continue one; in a WordPiece vocabulary `##` continues."""
        for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id"):
            if getattr(backend, name, None) is None:
                raise ConfigError(
                    f"PTUnifier needs a tokenizer with a {name[:-9]} token; {backend!r} has none"
                )
        tokens = backend.convert_ids_to_tokens(list(range(vocab_size)))
        tokens = [t if isinstance(t, str) else "" for t in tokens]  # ids past the tokenizer's own vocabulary
        marker = next((m for m in ("Ġ", "▁") if any(t.startswith(m) for t in tokens)), None)
        starts = [(t.startswith(marker) if marker else not t.startswith("##")) for t in tokens]
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[[i for i in backend.all_special_ids if i < vocab_size]] = True
        return cls(
            backend.cls_token_id,
            backend.sep_token_id,
            backend.pad_token_id,
            backend.mask_token_id,
            special,
            torch.tensor(starts, dtype=torch.bool),
        )

    @classmethod
    def placeholder(cls, config: Any) -> TextVocabulary:
        """The tables' shapes without a tokenizer, for a structure-only build (`vlzoo info`): ids from the
        encoder's config (RoBERTa's `<mask>` is its last id), no token marked special or word start."""
        size = config.vocab_size
        empty = torch.zeros(size, dtype=torch.bool)
        return cls(
            config.bos_token_id, config.eos_token_id, config.pad_token_id, size - 1, empty, empty.clone()
        )


# ------------------------------------------------------------------------------- the paper's pieces


def select_prompts(
    query: torch.Tensor, pool: torch.Tensor, k: int, trainable: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` prompts of `pool [P, D]` with the largest dot product with each `query [B, D]`.

    Returns `(prompts [B, k, D], indices [B, k])`. The choice is made without gradient (the query gets none
    from it); with `trainable`, the chosen prompts carry the pool's gradient.
    """
    if not 0 < k <= pool.shape[0]:
        raise ConfigError(f"cannot select {k} prompts from a pool of {pool.shape[0]}")
    with torch.no_grad():
        indices = (query.to(pool.dtype) @ pool.T).topk(k, dim=-1).indices
    prompts = pool[indices] if trainable else pool.detach()[indices]
    return prompts, indices


def whole_word_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    vocab: TextVocabulary,
    vocab_size: int,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-word masking for MLM: `(masked input_ids, labels)`, labels `-100` where nothing is predicted.

    Per caption, words are taken in random order while their tokens fit in a budget of
    max(1, round(probability × real tokens)) (the first word drawn is always taken); every token of a chosen
    word is predicted. A predicted token becomes `<mask>` 80% of the time, a random token 10%, and stays
    10%. Special tokens and padding are never chosen. Vectorized over the batch.
    """
    device = input_ids.device
    rows, length = input_ids.shape
    special, starts = vocab.special.to(device), vocab.word_start.to(device)
    real = attention_mask.bool() & ~special[input_ids]
    previous_real = F.pad(real[:, :-1], (1, 0), value=False)
    word_start = real & (starts[input_ids] | ~previous_real)
    word_of_token = (word_start.cumsum(1) - 1).clamp_min(0)  # word index of each token in its caption
    n_words = word_start.sum(1, keepdim=True)
    word_lengths = torch.zeros(rows, length, device=device).scatter_add_(1, word_of_token, real.float())

    # Draw a random order of each caption's words; keep the prefix whose tokens fit in the budget.
    scores = torch.rand(rows, length, generator=generator, device=device)
    slots = torch.arange(length, device=device).expand(rows, -1)
    order = scores.masked_fill(slots >= n_words, math.inf).argsort(dim=1)
    covered = word_lengths.gather(1, order).cumsum(1)
    budget = (real.sum(1, keepdim=True) * probability).round().clamp_min(1)
    take = ((covered <= budget) | (slots == 0)) & (slots < n_words)
    chosen_words = torch.zeros_like(take).scatter_(1, order, take)
    predict = real & chosen_words.gather(1, word_of_token)

    labels = input_ids.masked_fill(~predict, IGNORE_INDEX)
    draw = torch.rand(rows, length, generator=generator, device=device)
    random_tokens = torch.randint(vocab_size, (rows, length), generator=generator, device=device)
    masked = torch.where(predict & (draw < 0.8), torch.full_like(input_ids, vocab.mask_id), input_ids)
    masked = torch.where(predict & (draw >= 0.8) & (draw < 0.9), random_tokens, masked)
    return masked, labels


def sample_hard_negatives(
    similarity: torch.Tensor, exclude: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """For each row of `similarity [B, B]` one column, drawn with probability softmax(row) over the
    columns not in `exclude` (which holds at least the diagonal: the positive); ALBEF's hard negatives.

    A row whose columns are all excluded (a batch of identical captions) draws uniformly among the
    off-diagonal ones, so that every row still gets a negative that is not its own pair.
    """
    n = similarity.shape[0]
    if n < 2:
        raise DataError("image-text matching needs at least 2 pairs in a batch to draw negatives")
    eye = torch.eye(n, dtype=torch.bool, device=similarity.device)
    exclude = exclude | eye
    with torch.no_grad():
        weights = similarity.float().softmax(dim=1).masked_fill(exclude, 0.0)
        empty = weights.sum(1) <= 0
        weights[empty] = (~eye[empty]).float()
        return torch.multinomial(weights, 1, generator=generator).squeeze(1)


class MLMHead(nn.Module):
    """BERT's prediction head on the fused text tokens: transform (dense, act, LayerNorm), then vocabulary
    logits with their own bias (METER's MLM head; not tied to the text embeddings)."""

    def __init__(self, fusion: FusionConfig, vocab_size: int):
        super().__init__()
        from transformers.models.bert.modeling_bert import BertPredictionHeadTransform

        self.transform = BertPredictionHeadTransform(fusion.bert_config())
        self.decoder = nn.Linear(fusion.hidden_size, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(tokens)) + self.bias


class ITCHead(nn.Module):
    """Per modality, LayerNorm and a linear map of the fused pair feature `[B, 2H]` into the ITC space `[B, H]`."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.image_norm = nn.LayerNorm(2 * hidden_size)
        self.image_proj = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.text_norm = nn.LayerNorm(2 * hidden_size)
        self.text_proj = nn.Linear(2 * hidden_size, hidden_size, bias=False)

    def image(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.image_proj(self.image_norm(pooled))

    def text(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.text_proj(self.text_norm(pooled))


@dataclass
class Stream:
    """One modality's tokens after its tower, `[B, L, W]`, and their 0/1 mask `[B, L]` (None = all real)."""

    tokens: torch.Tensor
    mask: torch.Tensor | None = None

    def index(self, rows: torch.Tensor) -> Stream:
        return Stream(self.tokens[rows], None if self.mask is None else self.mask[rows])


# ------------------------------------------------------------------------------------------------ model


def _build_roberta(cfg: PTUnifierConfig, tokenizer: HFTokenizer | None) -> nn.Module:
    from transformers import AutoModel, RobertaConfig

    if cfg.text_model is not None:
        return build_hf_encoder(cfg.text_model, pretrained=cfg.text_pretrained, add_pooling_layer=False)
    assert tokenizer is not None  # the bundled BPE, built in memory, sizes a tower without text_model
    backend = tokenizer.backend
    config = RobertaConfig(
        **{
            "vocab_size": len(backend),
            "max_position_embeddings": cfg.context_length + backend.pad_token_id + 1,  # RoBERTa's offset
            "pad_token_id": backend.pad_token_id,
            "bos_token_id": backend.cls_token_id,
            "eos_token_id": backend.sep_token_id,
            "type_vocab_size": 1,
            **cfg.text_config,
        }
    )
    return AutoModel.from_config(config, add_pooling_layer=False)


def _check_vit(trunk: nn.Module, name: str) -> None:
    needed = ("patch_embed", "_pos_embed", "norm_pre", "blocks", "norm", "cls_token")
    if any(not hasattr(trunk, a) for a in needed) or trunk.cls_token is None:
        raise ConfigError(
            f"PTUnifier's image tower must be a timm VisionTransformer with a class token, got {name!r}"
        )
    if getattr(trunk, "reg_token", None) is not None:
        raise ConfigError(f"PTUnifier's image tower {name!r} has register tokens, which it does not place")


class PTUnifier(nn.Module):
    """PTUnifier: towers, prompt pools, fusion encoder and the ITM / MLM / ITC heads.

    Faces: `forward(batch)` → losses; `encode_image` / `encode_text` (image-only / text-only paths, the ITC
    embeddings, for retrieval); `itm_logits(images, text)` and `itm_scores(batch)` (match probability of
    each image-caption pair, fusion of both real streams).
    """

    def __init__(self, cfg: PTUnifierConfig):
        super().__init__()
        self.config = cfg
        vision = dataclasses.replace(cfg.vision, head="none")  # the fusion reads the trunk's tokens
        self.visual = VisionTower(vision, embed_dim=0)
        _check_vit(self.visual.trunk, vision.timm_model)
        # A structure-only build (`vlzoo info`) reads no tokenizer files: the hub encoder's size comes from its
        # config, the vocabulary tables (non-persistent buffers) are placeholders of the right shape.
        hub_tokenizer_skipped = is_structure_only() and cfg.text_model is not None
        tokenizer = None if hub_tokenizer_skipped else cfg.tokenizer()
        self.text = _build_roberta(cfg, tokenizer)
        vocab_size = self.text.config.vocab_size
        if tokenizer is None:
            vocab = TextVocabulary.placeholder(self.text.config)
        else:
            vocab = TextVocabulary.from_tokenizer(tokenizer.backend, vocab_size)
        self.vocab = dataclasses.replace(vocab, special=None, word_start=None)  # ids; tables are buffers
        self.register_buffer("special_tokens", vocab.special, persistent=False)
        self.register_buffer("word_start", vocab.word_start, persistent=False)

        vision_width, text_width = self.visual.trunk.num_features, self.text.config.hidden_size
        self.visual_prompts = nn.Parameter(
            torch.randn(cfg.visual_pool_size, vision_width) * cfg.prompt_init_std
        )
        self.text_prompts = nn.Parameter(torch.randn(cfg.text_pool_size, text_width) * cfg.prompt_init_std)
        self.fusion = FusionEncoder(cfg.fusion, text_width=text_width, image_width=vision_width)

        hidden = cfg.fusion.hidden_size
        self.itm_head = nn.Linear(2 * hidden, 2)
        self.mlm_head = MLMHead(cfg.fusion, vocab_size)
        self.itc_head = ITCHead(hidden)
        for head in (self.itm_head, self.mlm_head, self.itc_head):
            head.apply(self.fusion.init_weights)
        self.register_buffer("itc_logit_scale", torch.tensor(1.0 / cfg.itc_temperature), persistent=False)
        self.itc_loss = ClipLoss(gather_with_grad=True)

    # ------------------------------------------------------------------------------- uni-modal streams
    def _vocabulary(self) -> TextVocabulary:
        return dataclasses.replace(self.vocab, special=self.special_tokens, word_start=self.word_start)

    def _text_inputs(self, text: TokenizedText | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and mask, cut after the batch's longest caption: right padding is never attended to,
        and the fusion runs six times per step over these tokens."""
        if isinstance(text, TokenizedText):
            ids, mask = text.input_ids, text.attention_mask
        elif torch.is_tensor(text) and text.ndim == 2 and not text.is_floating_point():
            ids, mask = text, (text != self.vocab.pad_id).long()
        else:
            raise DataError(f"PTUnifier expects TokenizedText or token ids [B, L], got {type(text).__name__}")
        length = int(mask.sum(1).max()) if mask.numel() else 0
        if 0 < length < mask.shape[1] and not mask[:, length:].any():
            ids, mask = ids[:, :length], mask[:, :length]
        return ids, mask

    def _encode_text_embeddings(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        attention = create_bidirectional_mask(
            config=self.text.config, inputs_embeds=embeddings, attention_mask=mask
        )
        return self.text.encoder(embeddings, attention_mask=attention).last_hidden_state

    def _encode_image_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        trunk = self.visual.trunk
        x = trunk.norm_pre(embeddings)
        if trunk.grad_checkpointing and self.training:
            from timm.models import checkpoint_seq

            x = checkpoint_seq(trunk.blocks, x)
        else:
            x = trunk.blocks(x)
        return trunk.norm(x)

    def text_stream(self, text: TokenizedText | torch.Tensor) -> tuple[Stream, torch.Tensor]:
        """RoBERTa over the caption, and the prompt query: the mean embedding of its real tokens after `<s>`."""
        ids, mask = self._text_inputs(text)
        embeddings = self.text.embeddings(input_ids=ids)
        weights = mask[:, 1:, None].to(embeddings.dtype)
        query = (embeddings[:, 1:] * weights).sum(1) / weights.sum(1).clamp_min(1e-8)
        return Stream(self._encode_text_embeddings(embeddings, mask), mask), query

    def image_stream(self, images: torch.Tensor) -> tuple[Stream, torch.Tensor]:
        """The ViT over the image, and the prompt query: the mean patch + position embedding."""
        self.visual.check_images(images)
        trunk = self.visual.trunk
        embeddings = trunk.patch_drop(trunk._pos_embed(trunk.patch_embed(images)))
        query = embeddings[:, trunk.num_prefix_tokens :].mean(1)
        return Stream(self._encode_image_embeddings(embeddings)), query

    def pseudo_image_stream(self, text_query: torch.Tensor) -> Stream:
        """Text-only input: the ViT's class embedding (with its position) + the top-k visual prompts."""
        trunk = self.visual.trunk
        cls = trunk.cls_token
        if trunk.pos_embed is not None and not trunk.no_embed_class:
            cls = cls + trunk.pos_embed[:, :1]
        prompts, _ = select_prompts(
            text_query, self.visual_prompts, self.config.num_visual_prompts, self.config.train_prompt_pools
        )
        embeddings = torch.cat([cls.expand(len(prompts), -1, -1), prompts], dim=1)
        return Stream(self._encode_image_embeddings(embeddings))

    def pseudo_text_stream(self, image_query: torch.Tensor) -> Stream:
        """Image-only input: `<s>` + the top-k textual prompts + `</s>`, through RoBERTa's layers."""
        prompts, _ = select_prompts(
            image_query, self.text_prompts, self.config.num_text_prompts, self.config.train_prompt_pools
        )
        batch = len(prompts)
        ends = torch.tensor([[self.vocab.cls_id], [self.vocab.sep_id]], device=prompts.device)
        cls, sep = self.text.embeddings(input_ids=ends).unsqueeze(1).expand(-1, batch, -1, -1)
        embeddings = torch.cat([cls, prompts.to(cls.dtype), sep], dim=1)
        mask = torch.ones(embeddings.shape[:2], dtype=torch.long, device=embeddings.device)
        return Stream(self._encode_text_embeddings(embeddings, mask), mask)

    def fuse(self, text: Stream, image: Stream) -> FusionOutput:
        return self.fusion(text.tokens, image.tokens, text.mask, image.mask)

    # -------------------------------------------------------------------------------------- faces
    def image_only(self, images: torch.Tensor) -> FusionOutput:
        image, query = self.image_stream(images)
        return self.fuse(self.pseudo_text_stream(query), image)

    def text_only(self, text: TokenizedText | torch.Tensor) -> FusionOutput:
        stream, query = self.text_stream(text)
        return self.fuse(stream, self.pseudo_image_stream(query))

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """`[B, H]` ITC embedding of images alone (image + selected textual prompts, fused)."""
        features = self.itc_head.image(self.image_only(images).pooled)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: TokenizedText | torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """`[B, H]` ITC embedding of captions alone (caption + selected visual prompts, fused)."""
        features = self.itc_head.text(self.text_only(text).pooled)
        return F.normalize(features, dim=-1) if normalize else features

    def itm_logits(self, images: torch.Tensor, text: TokenizedText | torch.Tensor) -> torch.Tensor:
        """`[B, 2]` (no match, match) logits of the pairs `(images[i], text[i])`."""
        image, _ = self.image_stream(images)
        stream, _ = self.text_stream(text)
        return self.itm_head(self.fuse(stream, image).pooled)

    @torch.no_grad()
    def itm_scores(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Match probability of each caption of `batch` with its image: `[T]`, caption `j` paired with image
        `batch["text_to_image"][j]` when the batch has several captions per image, else with image `j`."""
        images = images_of_captions(batch, "itm_scores")
        return self.itm_logits(images, batch["text"]).softmax(-1)[:, 1]

    # ----------------------------------------------------------------------------------- pretraining
    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """ITM + MLM + ITC losses of a batch `{"image": [B, C, H, W], "text": TokenizedText}`.

        Each tower runs once on the real inputs; the ITM pairs and the MLM pass reuse the image tokens.
        """
        images, text = batch["image"], batch["text"]
        ids, mask = self._text_inputs(text)
        image, image_query = self.image_stream(images)
        caption, text_query = self.text_stream(text)
        cfg = self.config

        # ITC: the image-only path against the text-only path.
        image_features = F.normalize(
            self.itc_head.image(self.fuse(self.pseudo_text_stream(image_query), image).pooled), dim=-1
        )
        text_features = F.normalize(
            self.itc_head.text(self.fuse(caption, self.pseudo_image_stream(text_query)).pooled), dim=-1
        )
        itc_loss = self.itc_loss(image_features, text_features, self.itc_logit_scale)

        # ITM: every positive, one hard negative caption per image and one hard negative image per caption.
        n = len(ids)
        similarity = (image_features @ text_features.T).detach() * self.itc_logit_scale
        if not cfg.itm_hard_negatives:
            similarity = torch.zeros_like(similarity)  # every allowed negative equally likely
        same_caption = (ids[:, None, :] == ids[None, :, :]).all(-1)  # duplicates are no negatives
        negative_text = sample_hard_negatives(similarity, same_caption)
        negative_image = sample_hard_negatives(similarity.T, same_caption)
        rows = torch.arange(n, device=ids.device)
        image_index = torch.cat([rows, rows, negative_image])
        text_index = torch.cat([rows, negative_text, rows])
        itm_labels = torch.cat([torch.ones_like(rows), torch.zeros_like(rows), torch.zeros_like(rows)])
        itm_logits = self.itm_head(self.fuse(caption.index(text_index), image.index(image_index)).pooled)
        itm_loss = F.cross_entropy(itm_logits, itm_labels)

        # MLM: whole words masked, predicted from the fused caption tokens of the real pair.
        masked_ids, mlm_labels = whole_word_mask(
            ids, mask, self._vocabulary(), self.text.config.vocab_size, cfg.mlm_probability
        )
        masked_caption, _ = self.text_stream(TokenizedText(masked_ids, mask))
        fused_text = self.fuse(masked_caption, image).text_tokens
        predicted = mlm_labels != IGNORE_INDEX
        mlm_logits = self.mlm_head(fused_text[predicted])  # only where a token is predicted
        # Captions of special tokens only leave nothing to predict; the graph still stays whole for DDP.
        mlm_loss = (
            F.cross_entropy(mlm_logits, mlm_labels[predicted]) if predicted.any() else mlm_logits.sum() * 0.0
        )

        loss = cfg.itm_weight * itm_loss + cfg.mlm_weight * mlm_loss + cfg.itc_weight * itc_loss
        with torch.no_grad():
            itm_accuracy = (itm_logits.argmax(-1) == itm_labels).float().mean()
            mlm_accuracy = (mlm_logits.argmax(-1) == mlm_labels[predicted]).float().mean().nan_to_num(0.0)
        return {
            "loss": loss,
            "itm_loss": itm_loss.detach(),
            "mlm_loss": mlm_loss.detach(),
            "itc_loss": itc_loss.detach(),
            "itm_accuracy": itm_accuracy,
            "mlm_accuracy": mlm_accuracy,
            "image_features": image_features,
            "text_features": text_features,
            "itm_logits": itm_logits,
            "itm_labels": itm_labels,
            "itm_image_index": image_index,
            "itm_text_index": text_index,
            "mlm_input_ids": masked_ids,
            "mlm_labels": mlm_labels,
            "mlm_logits": mlm_logits,
        }

    # ----------------------------------------------------------------------------------- training
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        if enable:
            self.text.gradient_checkpointing_enable()
        else:
            self.text.gradient_checkpointing_disable()
        self.fusion.set_grad_checkpointing(enable)


# ---------------------------------------------------------------------------------------- registry


# allenai/biomed_roberta_base's config.json (hub revision ffc2f2d), so that its architecture builds without it.
register_hf_config(
    "allenai/biomed_roberta_base",
    {
        "model_type": "roberta",
        "vocab_size": 50265,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-05,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    },
)


@register_model("ptunifier-base")
def ptunifier_base() -> PTUnifierConfig:
    """The paper's model: CLIP ViT-B/16 (OpenAI weights through timm), biomed RoBERTa-base, 6 fusion layers of
    width 768 with 12 heads, pools of 2048 prompts, 49 visual / 32 textual prompts selected.

    Built with the towers' pretrained weights (the pretraining's starting point); there are no vlzoo weights
    of a pretrained PTUnifier (the official checkpoint is a pickled Lightning file, which vlzoo never loads).
    """
    return PTUnifierConfig(
        vision=VisionTowerConfig(
            timm_model="vit_base_patch16_clip_224.openai",
            act_layer="quick_gelu",
            head="none",
            timm_pretrained=True,
        ),
        text_model="allenai/biomed_roberta_base",
        text_pretrained=True,
    )


@register_model("ptunifier-tiny")
def ptunifier_tiny() -> PTUnifierConfig:
    """A PTUnifier of under a million parameters at 64×64 pixels with the bundled BPE, for tests and CPU demos."""
    return PTUnifierConfig(
        vision=VisionTowerConfig(
            timm_model="vit_base_patch16_clip_224",
            timm_kwargs={"patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 4},
            image_size=64,
            head="none",
        ),
        text_model=None,
        text_config={
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            # No dropout: a model this small underfits rather than overfits, and dropout is a third of
            # its CPU step.
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
        context_length=32,
        fusion=FusionConfig(hidden_size=64, num_layers=2, num_heads=4, dropout=0.0),
        visual_pool_size=128,
        text_pool_size=128,
        num_visual_prompts=16,
        num_text_prompts=8,
    )
