"""GeoX ("GeoX: Geometric Problem Solving Through Unified Formalized Vision-Language Pre-training"): a diagram
encoder, a symbol decoder, GS-Former between them, instruction-tuned to write verifiable solution programs.

The paper's four stages, one model whose `stage` picks what trains (the rest is frozen) and what `forward`
computes; each stage starts from the previous stage's weights (`create_model(..., pretrained=path,
stage=...)`):

- `mae`: trains the diagram encoder. MAE on diagrams only: 75% of the patches masked, pixel MSE on them
  (transformers' `ViTMAEForPreTraining`: its ViT, its decoder and its loss).
- `symbol`: trains the symbol decoder. Next-token prediction on formal geometry text (formal descriptions).
- `align`: trains GS-Former. ITC + ITM + image-grounded LM (equal weights) + 0.01 · the samplers' sparsity,
  on diagram ↔ formal-description pairs.
- `instruct`: trains GS-Former's query path, the projector and the decoder. Next-token prediction of the
  solution program given the diagram and the question.

Instruction tuning is LLaVA's stage 2, as GeoX's `train_geox.py` builds on LLaVA: GS-Former gives 8 query
states, an `mm_projector` (LLaVA's `mlp2x_gelu`) maps them into the decoder's embedding space ahead of the
question, and GS-Former's query path, the projector and the decoder learn the program. Only the diagram
encoder stays frozen, as the official vision tower freezes exactly the MAE ViT's parameters
(`configs/param.yaml`). At test
time `generate_programs` beam-searches programs (10 beams, GeoX's protocol), optionally constrained to
well-formed GeoQA programs, for `vlzoo.geometry.choose_answer` to execute.

Paper scale (`geox-base`): MAE ViT-B/16 at 224, a BERT-base GS-Former with 8 queries and samplers at layers
3, 6, 9, and LLEMMA-7B (`EleutherAI/llemma_7b`) as the symbol decoder. `geox-tiny`: the same modules at a
CPU's scale, on the bundled geometry vocabulary.

A batch is what the geometry readers' sample dicts collate to: `image` (`[B, 3, H, W]`, this model's
`transform`), `question` (list of str), `program` (list of token lists), `numbers` (list of float lists),
`formal` (list of str).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from vlzoo.core import register_model
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.models import QFormerConfig, beam_search
from vlzoo.core.towers import TINY_LLAMA, CausalLM, CausalLMConfig, register_hf_config
from vlzoo.geometry.gsformer import GSFormer, GSFormerConfig
from vlzoo.geometry.tokenizer import ProgramGrammar, build_codec, pack_left, pack_right

__all__ = ["STAGES", "DiagramMAEConfig", "GeoX", "GeoXConfig"]

STAGES = ("mae", "symbol", "align", "instruct")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# geo-toyworld's pixel statistics at geox-tiny's 64 px (training diagrams): the tiny encoder is trained from
# scratch on diagrams only, so it normalises with its data's statistics, as MAE does with ImageNet's. With
# ImageNet's, a white page sits at +2.2 and a 1-px stroke moves a patch's embedding little: the frozen
# features varied 4% across diagrams and the decoder's visual prefix 0.01% (benchmarks/geometry_diagram_probe.py).
TOYWORLD_MEAN = (0.977, 0.977, 0.978)
TOYWORLD_STD = (0.079, 0.079, 0.076)
LLEMMA_7B = "EleutherAI/llemma_7b"
# LLEMMA-7B's config.json (a Code Llama 7B continued on Proof-Pile-2), so full-size builds need no network.
register_hf_config(
    LLEMMA_7B,
    {
        "model_type": "llama",
        "vocab_size": 32016,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    },
)


@dataclass
class DiagramMAEConfig:
    """The diagram encoder, a ViT trained as a masked autoencoder (MAE ViT-B/16 and its 8-layer decoder)."""

    image_size: int = 224
    patch_size: int = 16
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    decoder_hidden_size: int = 512
    decoder_num_layers: int = 8
    decoder_num_heads: int = 16
    decoder_intermediate_size: int = 2048
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True  # MAE's recipe: per-patch normalised pixel targets


@dataclass
class GeoXConfig:
    stage: str = "instruct"  # "mae" | "symbol" | "align" | "instruct"
    mae: DiagramMAEConfig = field(default_factory=DiagramMAEConfig)
    gsformer: GSFormerConfig = field(default_factory=GSFormerConfig)
    decoder: CausalLMConfig = field(
        default_factory=lambda: CausalLMConfig(hf_model=LLEMMA_7B, pretrained=True)
    )
    decoder_tokenizer: str | None = LLEMMA_7B  # None: the bundled geometry vocabulary
    qformer_tokenizer: str | None = "bert-base-uncased"  # + "[DEC]", as GS-Former's tokenizer
    projector: str = "mlp2x_gelu"  # "linear" | "mlp2x_gelu" (LLaVA's mm_projector_type)
    max_text_len: int = 64  # GS-Former's max_txt_len
    max_prompt_len: int = 128
    max_program_len: int = 24
    use_diagram: bool = True  # False: the text-only baseline (no visual prefix)
    constrained: bool = True  # decode only well-formed GeoQA programs (needs one token per program token)
    num_beams: int = 10
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    toy_data: ClassVar[str] = "geo-toyworld"

    def build(self) -> GeoX:
        return GeoX(self)

    def tokenizer(self):
        """The Q-Former's text tokenizer (`[CLS] text [SEP]` rows): what the core's collator tokenizes with."""
        return build_codec(self.qformer_tokenizer, self.max_text_len, add_dec=True)

    def transform(self, train: bool, albumentations: Any = None):
        """Diagram → normalised `[3, S, S]`: the whole figure resized, never cropped or flipped (a crop can cut
        off a label, a flip swaps the sides the question names)."""
        if albumentations is not None:
            raise ConfigError("GeoX diagrams are not augmented: drop data.albumentations")
        import torchvision.transforms.v2 as T

        size = self.mae.image_size
        return T.Compose(
            [
                T.ToImage(),
                T.RGB(),
                T.Resize((size, size), antialias=True),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(mean=list(self.mean), std=list(self.std)),
            ]
        )


def _vit_mae(cfg: DiagramMAEConfig):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        decoder_hidden_size=cfg.decoder_hidden_size,
        decoder_num_hidden_layers=cfg.decoder_num_layers,
        decoder_num_attention_heads=cfg.decoder_num_heads,
        decoder_intermediate_size=cfg.decoder_intermediate_size,
        mask_ratio=cfg.mask_ratio,
        norm_pix_loss=cfg.norm_pix_loss,
        layer_norm_eps=1e-6,
    )
    config._attn_implementation = "eager"
    return ViTMAEForPreTraining(config)


def _projector(kind: str, width: int, hidden: int) -> nn.Module:
    builders = {
        "linear": lambda: nn.Linear(width, hidden),
        "mlp2x_gelu": lambda: nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden)),
    }
    if kind not in builders:
        raise ConfigError(f"unknown projector {kind!r}; choose one of {sorted(builders)}")
    return builders[kind]()


class GeoX(nn.Module):
    def __init__(self, cfg: GeoXConfig):
        super().__init__()
        if cfg.stage not in STAGES:
            raise ConfigError(f"GeoX stage {cfg.stage!r} is not one of {STAGES}")
        if cfg.gsformer.qformer.encoder_width != cfg.mae.hidden_size:
            raise ConfigError(
                f"gsformer.qformer.encoder_width ({cfg.gsformer.qformer.encoder_width}) must be the diagram "
                f"encoder's width (mae.hidden_size = {cfg.mae.hidden_size})"
            )
        self.config = cfg
        self.mae = _vit_mae(cfg.mae)
        self.gsformer = GSFormer(cfg.gsformer)
        self.decoder = CausalLM(cfg.decoder)
        self.projector = _projector(cfg.projector, cfg.gsformer.qformer.hidden_size, self.decoder.hidden_size)
        # MAE's sin-cos position embeddings are fixed in every stage.
        self._fixed = {n for n, p in self.named_parameters() if not p.requires_grad}
        self._codecs: tuple[Any, Any] | None = None
        self.set_stage(cfg.stage)

    # ---------------------------------------------------------------------------------- stages
    def _stage_modules(self, stage: str) -> list[nn.Module]:
        """The modules `stage` trains (kept in train mode; the others stay in eval mode)."""
        return {
            "mae": [self.mae],
            "symbol": [self.decoder],
            "align": [self.gsformer],
            "instruct": [self.gsformer, self.projector, self.decoder],
        }[stage]

    def _stage_parameters(self, stage: str) -> list[nn.Parameter]:
        if (
            stage == "instruct"
        ):  # GS-Former's query path: its text side and pre-training heads are unused here
            return [
                *self.gsformer.query_path_parameters(),
                *self.projector.parameters(),
                *self.decoder.parameters(),
            ]
        return [p for m in self._stage_modules(stage) for p in m.parameters()]

    def set_stage(self, stage: str) -> None:
        """Train `stage`'s parameters only; the others are frozen (and their modules kept in eval mode)."""
        if stage not in STAGES:
            raise ConfigError(f"GeoX stage {stage!r} is not one of {STAGES}")
        self.stage = stage
        trainable = {id(p) for p in self._stage_parameters(stage)}
        for name, p in self.named_parameters():
            p.requires_grad_(id(p) in trainable and name not in self._fixed)
        self.train(self.training)

    def train(self, mode: bool = True) -> GeoX:
        super().train(mode)
        active = {id(m) for m in self._stage_modules(self.stage)} if hasattr(self, "stage") else set()
        for child in (self.mae, self.gsformer, self.decoder, self.projector):
            if id(child) not in active:
                child.eval()  # frozen: no dropout, deterministic samplers
        return self

    def codecs(self) -> tuple[Any, Any]:
        """(Q-Former tokenizer, decoder tokenizer), built on first use (never in a structure-only build)."""
        if self._codecs is None:
            cfg = self.config
            qformer = build_codec(cfg.qformer_tokenizer, cfg.max_text_len, add_dec=True)
            decoder = build_codec(cfg.decoder_tokenizer, cfg.max_prompt_len)
            for what, codec, size in (
                ("Q-Former", qformer, cfg.gsformer.qformer.vocab_size),
                ("decoder", decoder, self.decoder.vocab_size),
            ):
                if codec.vocab_size > size:
                    raise ConfigError(
                        f"the {what} tokenizer has {codec.vocab_size} tokens but the {what} only {size}"
                    )
            self._codecs = (qformer, decoder)
        return self._codecs

    # -------------------------------------------------------------------------------- features
    def diagram_features(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, 1 + N, W]` the frozen encoder's [CLS] and patch states of whole (unmasked) diagrams."""
        vit = self.mae.vit
        emb = vit.embeddings
        patches = emb.patch_embeddings(images) + emb.position_embeddings[:, 1:]
        cls = (emb.cls_token + emb.position_embeddings[:, :1]).expand(images.shape[0], -1, -1)
        hidden = torch.cat([cls, patches], dim=1)
        for layer in vit.layers:
            hidden = layer(hidden)
        return vit.layernorm(hidden)

    def visual_prefix(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, Q, D]` GS-Former's query states mapped into the decoder's embedding space."""
        with torch.no_grad():  # the diagram encoder is frozen after its MAE stage
            features = self.diagram_features(images)
        return self.projector(self.gsformer.query_output(features).query_states)

    def query_states(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, Q, H]` GS-Former's query states (what the projector reads)."""
        return self.gsformer.query_output(self.diagram_features(images)).query_states

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, E]` a diagram in GS-Former's ITC space: the mean of its queries' normalised projections."""
        queries = self.query_states(images.to(self._device()))
        image = torch.nn.functional.normalize(self.gsformer.vision_proj(queries), dim=-1).mean(dim=1)
        return torch.nn.functional.normalize(image, dim=-1)

    def encode_text(self, text: Any) -> torch.Tensor:
        """`[B, E]` a formal description (`TokenizedText` of `config.tokenizer()`) in GS-Former's ITC space."""
        device = self._device()
        return self.gsformer.text_embedding(text.input_ids.to(device), text.attention_mask.to(device))

    def retrieval_features(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Diagram ↔ formal-description retrieval through GS-Former's ITC space (what validation reports)."""
        text = batch.get("text")
        if text is None:
            codec, _ = self.codecs()
            text = codec(_texts(batch, "formal"), self.config.max_text_len)
        return self.encode_image(batch["image"]), self.encode_text(text)

    def patch_keep_mask(self, images: torch.Tensor) -> torch.Tensor | None:
        """`[B, 1 + N]` which diagram tokens the queries attend to at the last layer ([CLS] first), as the
        samplers decide; None without samplers."""
        out = self.gsformer.query_output(self.diagram_features(images))
        return out.image_mask if out.patch_masks else None

    def kept_patches(self, batch: Mapping[str, Any]) -> torch.Tensor | None:
        """`[B, gh, gw]` 1 where the queries still attend to a diagram patch after the last sampler (what the
        evaluation report draws over the diagrams); None without samplers (the plain Q-Former)."""
        keep = self.patch_keep_mask(batch["image"].to(self._device()))
        if keep is None:
            return None
        grid = round((keep.shape[1] - 1) ** 0.5)
        return keep[:, 1:].reshape(keep.shape[0], grid, grid)

    # --------------------------------------------------------------------------------- forward
    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"mae": self._mae, "symbol": self._symbol, "align": self._align, "instruct": self._instruct}[
            self.stage
        ](batch)

    def _mae(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        out = self.mae(pixel_values=batch["image"])
        return {"loss": out.loss, "mae": out.loss.detach()}

    def _symbol(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        _, codec = self.codecs()
        rows = [
            [codec.bos_token_id, *ids, codec.eos_token_id]
            for ids in codec.encode_batch(_texts(batch, "formal"))
        ]
        packed = pack_right(rows, self.config.max_prompt_len, codec.pad_token_id)
        labels = packed.input_ids.masked_fill(packed.attention_mask == 0, -100)
        device = self._device()
        out = self.decoder(
            packed.input_ids.to(device), packed.attention_mask.to(device), labels=labels.to(device)
        )
        return {"loss": out.loss, "ntp": out.loss.detach()}

    def _align(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        codec, _ = self.codecs()
        text = codec(_texts(batch, "formal"), self.config.max_text_len)
        device = self._device()
        with torch.no_grad():
            features = self.diagram_features(batch["image"])
        return self.gsformer.pretraining_losses(
            features,
            text.input_ids.to(device),
            text.attention_mask.to(device),
            bos_token_id=codec.dec_token_id,
        )

    def _instruct(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        _, codec = self.codecs()
        prompts = self._prompts(batch)
        programs = [
            " ".join(p) if not isinstance(p, str) else p for p in _texts(batch, "program", allow_lists=True)
        ]
        targets = [[*ids, codec.eos_token_id] for ids in codec.encode_batch(programs)]
        rows = [p + t for p, t in zip(prompts, targets, strict=True)]
        length = max(len(r) for r in rows)
        packed = pack_right(rows, length, codec.pad_token_id)
        labels = packed.input_ids.clone()
        for i, p in enumerate(prompts):  # the prompt is context, never a target
            labels[i, : len(p)] = -100
        labels = labels.masked_fill(packed.attention_mask == 0, -100)
        device = self._device()
        prefix = self.visual_prefix(batch["image"]) if self.config.use_diagram else None
        out = self.decoder(
            packed.input_ids.to(device),
            packed.attention_mask.to(device),
            prefix_embeds=prefix,
            labels=labels.to(device),
        )
        return {"loss": out.loss, "program_ntp": out.loss.detach()}

    def _prompts(self, batch: Mapping[str, Any]) -> list[list[int]]:
        _, codec = self.codecs()
        limit = self.config.max_prompt_len - 1
        return [
            [codec.bos_token_id, *ids[: limit - 1], codec.sep_token_id]
            for ids in codec.encode_batch(_texts(batch, "question"))
        ]

    def _device(self) -> torch.device:
        return (
            self.projector[0].weight.device
            if isinstance(self.projector, nn.Sequential)
            else self.projector.weight.device
        )

    # ------------------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate_programs(
        self, batch: Mapping[str, Any], num_beams: int | None = None, *, use_cache: bool = True
    ) -> list[list[list[str]]]:
        """Top-k programs per sample, best first, each a list of GeoQA tokens (`[["g_add", "N_0", "N_1"], ...]`):
        beam search from the diagram and the question; beams the grammar killed are left out."""
        _, codec = self.codecs()
        beams = num_beams or self.config.num_beams
        device = self._device()
        ids, mask = pack_left(self._prompts(batch), codec.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        prefix, prefix_mask = self.decoder.embed(ids), mask
        if self.config.use_diagram:
            visual = self.visual_prefix(batch["image"].to(device))
            prefix = torch.cat([visual, prefix], dim=1)
            prefix_mask = torch.cat(
                [torch.ones(visual.shape[:2], dtype=torch.long, device=device), mask], dim=1
            )
        grammar = None
        if self.config.constrained:
            numbers = [len(n) for n in batch.get("numbers", [[0] * 16] * len(ids))]
            grammar = ProgramGrammar(codec, self.decoder.vocab_size, numbers)
        out = beam_search(
            self.decoder,
            prefix,
            prefix_mask,
            num_beams=beams,
            max_new_tokens=self.config.max_program_len,
            eos_token_id=codec.eos_token_id,
            pad_token_id=codec.pad_token_id,
            allowed_tokens=grammar,
            use_cache=use_cache,
        )
        sequences, scores = out.sequences.tolist(), out.scores.tolist()
        return [
            [
                codec.words(_until(seq, codec.eos_token_id))
                for seq, score in zip(rows, row_scores)
                if score > float("-inf")
            ]
            for rows, row_scores in zip(sequences, scores, strict=True)
        ]


def _until(ids: Sequence[int], eos: int) -> list[int]:
    return list(ids[: ids.index(eos)]) if eos in ids else list(ids)


def _texts(batch: Mapping[str, Any], key: str, allow_lists: bool = False) -> list:
    if key not in batch:
        raise DataError(
            f"GeoX needs batch[{key!r}] (the geometry sample dicts' field); the batch has {sorted(batch)}"
        )
    values = list(batch[key])
    bad = [
        i
        for i, v in enumerate(values)
        if not (isinstance(v, str) or (allow_lists and isinstance(v, (list, tuple))))
    ]
    if bad:
        raise DataError(f"batch[{key!r}] item {bad[0]} is {type(values[bad[0]]).__name__}, not text")
    return values


# --------------------------------------------------------------------------------------- registry


@register_model("geox-base")
def geox_base() -> GeoXConfig:
    """Paper scale: MAE ViT-B/16 (224), BERT-base GS-Former (8 queries, samplers at 3/6/9), LLEMMA-7B."""
    return GeoXConfig()


@register_model("geox-tiny")
def geox_tiny() -> GeoXConfig:
    """CPU scale on the bundled geometry vocabulary: every module of geox-base, a few layers of 64 wide."""
    from vlzoo.geometry.tokenizer import GeometryTokenizer

    vocab = GeometryTokenizer().vocab_size
    return GeoXConfig(
        mae=DiagramMAEConfig(
            image_size=64,
            patch_size=8,
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            intermediate_size=128,
            decoder_hidden_size=32,
            decoder_num_layers=1,
            decoder_num_heads=4,
            decoder_intermediate_size=64,
        ),
        gsformer=GSFormerConfig(
            qformer=QFormerConfig(
                hidden_size=64,
                num_layers=4,
                num_heads=4,
                intermediate_size=128,
                encoder_width=64,
                num_query_tokens=8,
                vocab_size=vocab,
                max_position_embeddings=128,
                embed_dim=32,
                itc_label_smoothing=0.1,
                lm_label_smoothing=0.1,
                # geox-base's GS-Former starts from bert-base-uncased, whose [CLS] already reads the sentence;
                # this one starts at random. With BERT's 0.02 init at width 64 its [CLS] barely reads the text
                # (two formal descriptions' ITC features: cosine 0.99996) and 10% dropout moves it ~100x more
                # than the text does, so ITC/ITM sat at chance (log B) while LM learned. BERT's init scaled to
                # the width (0.02 * sqrt(768 / 64)) and no dropout: ITC 2.82 -> 0.83 on its own 16 pairs in 60
                # steps, where it stayed at 2.77 = log 16 (benchmarks/geometry_alignment_overfit.py).
                initializer_range=0.07,
                hidden_dropout=0.0,
                attention_dropout=0.0,
            ),
            vote_layers=1,
            vote_heads=4,
            vote_ffn=128,
            sampler_layers=(1, 2),  # official 3, 6, 9 of 12: each masks the cross-attention after it
        ),
        decoder=CausalLMConfig(hf_model=TINY_LLAMA, pretrained=False, config_overrides={"vocab_size": vocab}),
        decoder_tokenizer=None,
        qformer_tokenizer=None,
        max_text_len=96,
        max_prompt_len=96,
        mean=TOYWORLD_MEAN,
        std=TOYWORLD_STD,
    )
