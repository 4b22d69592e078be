"""ConceptCLIP: PC-Align's loss against its formula (one process and two gloo processes), concept spans to
tokens, the total loss of both pre-training stages, concept maps, preprocessing, and the tiny recipe on
med-toyworld."""

from __future__ import annotations

import math
import multiprocessing
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from helpers import conceptclip_dist_worker
from helpers.recipes import MED_TOYWORLD, fit_recipe, generated
from PIL import Image

import vlzoo.core as vz
from vlzoo.core.errors import DataError
from vlzoo.core.losses import SigLipLoss
from vlzoo.core.weights import save
from vlzoo.medical.conceptclip import (
    ConceptAlignLoss,
    concept_spans,
    concept_targets,
    span_mean,
    span_token_mask,
)

CAPTION = "a 12 mm hypodense lesion in the left lobe of the liver"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return vz.create_model("conceptclip-tiny").eval()


@pytest.fixture(scope="module")
def tokenizer():
    return vz.get_tokenizer("conceptclip-tiny")


def _span(caption: str, phrase: str, cui: str) -> dict:
    start = caption.index(phrase)
    return {"cui": cui, "start": start, "end": start + len(phrase)}


# ------------------------------------------------------------------------------------------------ loss


def test_concept_align_loss_is_the_papers_formula():
    gen = torch.Generator().manual_seed(0)
    B, P, C, Dm = 3, 5, 4, 6
    patches = F.normalize(torch.randn(B, P, Dm, generator=gen, dtype=torch.float64), dim=-1)
    concepts = F.normalize(torch.randn(C, Dm, generator=gen, dtype=torch.float64), dim=-1)
    targets = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    t, bias = torch.tensor(7.0, dtype=torch.float64), torch.tensor(-2.0, dtype=torch.float64)
    # L = -(1/C) sum_b sum_c log sigmoid(y_bc * max_p (t <patch_bp, concept_c> + bias))
    expected = 0.0
    for b in range(B):
        for c in range(C):
            s = max(float(t * patches[b, p] @ concepts[c] + bias) for p in range(P))
            y = 1.0 if targets[b, c] else -1.0
            expected -= math.log(1.0 / (1.0 + math.exp(-y * s)))
    expected /= C
    got = ConceptAlignLoss()(patches, concepts, targets, t, bias)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # With ids but one process, ids change nothing: every concept is local.
    ids = torch.tensor([5, 9, 9, 1])
    assert ConceptAlignLoss()(patches, concepts, targets, t, bias, concept_ids=ids).item() == pytest.approx(
        expected
    )


def test_concept_align_loss_refuses_mismatched_inputs():
    loss = ConceptAlignLoss()
    with pytest.raises(vz.ConfigError, match="bool tensor of shape"):
        loss(
            torch.randn(2, 3, 4),
            torch.randn(5, 4),
            torch.ones(2, 4, dtype=torch.bool),
            torch.tensor(1.0),
            torch.tensor(0.0),
        )
    with pytest.raises(vz.ConfigError, match=">= 0"):
        loss(
            torch.randn(2, 3, 4),
            torch.randn(2, 4),
            torch.ones(2, 2, dtype=torch.bool),
            torch.tensor(1.0),
            torch.tensor(0.0),
            concept_ids=torch.tensor([1, -1]),
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.distributed
def test_two_ranks_recombine_to_the_single_process_loss(tmp_path: Path):
    """2 gloo processes, each with 3 images and its own concepts (4 and 7, or 5 and 0): sum of the ranks'
    losses = 2 x the loss of one process with the whole batch; the gradients likewise (patches and concepts
    of each rank = 2 x their slice of the one-process gradient; scale and bias summed over ranks)."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "forkserver":
        multiprocessing.get_context(method).set_forkserver_preload(["torch", "vlzoo.medical.conceptclip"])
    mp.start_processes(
        conceptclip_dist_worker.worker,
        args=(2, _free_port(), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method=method,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name in conceptclip_dist_worker.CASES:
        want = conceptclip_dist_worker.run_case(name, None, 1)
        got = [r[name] for r in ranks]
        tol = {"rtol": 1e-9, "atol": 1e-12, "msg": name}
        torch.testing.assert_close(got[0]["loss"] + got[1]["loss"], 2 * want["loss"], **tol)
        for key in ("grad_patches", "grad_concepts"):  # rank 0 holds the first images and their concepts
            torch.testing.assert_close(torch.cat([g[key] for g in got]), 2 * want[key], **tol)
        for key in ("grad_scale", "grad_bias"):
            torch.testing.assert_close(got[0][key] + got[1][key], 2 * want[key], **tol)
    # The CUI reading matters: with a shared id across ranks the two target rules give different losses.
    assert not torch.isclose(ranks[0]["unequal_cui_bidir"]["loss"], ranks[0]["unequal_caption_bidir"]["loss"])


# -------------------------------------------------------------------------------------------- concepts


def test_spans_map_to_the_tokens_they_cover(tokenizer):
    text = tokenizer([CAPTION])
    tokens = tokenizer.backend.convert_ids_to_tokens(text.input_ids[0])
    # [CLS] a 1 ##2 mm hypodense lesion in the left lobe of the liver [SEP]: positions counted by hand.
    assert tokens[:14] == [
        "[CLS]",
        "a",
        "1",
        "##2",
        "mm",
        "hypodense",
        "lesion",
        "in",
        "the",
        "left",
        "lobe",
        "of",
        "the",
        "liver",
    ]
    spans = concept_spans(
        [[_span(CAPTION, "left lobe", "C1"), _span(CAPTION, "12 mm", "C2"), _span(CAPTION, "a", "C3")]]
    )
    mask = span_token_mask(text.offsets, spans.owner, spans.spans)
    assert [torch.nonzero(row).flatten().tolist() for row in mask] == [[9, 10], [2, 3, 4], [1]]  # never [CLS]
    # A span cutting into a word takes the whole token it touches: "ypod" lies inside "hypodense".
    partial = concept_spans(
        [[{"cui": "C4", "start": CAPTION.index("ypod"), "end": CAPTION.index("ypod") + 4}]]
    )
    assert torch.nonzero(
        span_token_mask(text.offsets, partial.owner, partial.spans)[0]
    ).flatten().tolist() == [5]


def test_concept_embedding_is_the_mean_of_its_projected_tokens(model, tokenizer):
    other = "no focal lesion in the liver"
    text = tokenizer([CAPTION, other])
    assert tokenizer.backend.convert_ids_to_tokens(text.input_ids[1])[:7] == [
        "[CLS]",
        "no",
        "focal",
        "lesion",
        "in",
        "the",
        "liver",
    ]
    with torch.no_grad():
        tokens, _, _ = model.text.forward_tokens(text)
        spans = concept_spans([[_span(CAPTION, "left lobe", "C1")], [_span(other, "focal lesion in", "C5")]])
        mask = span_token_mask(text.offsets, spans.owner, spans.spans)
        got = span_mean(tokens, spans.owner, mask, model.token_proj)
        expected = torch.stack(
            [
                (model.token_proj(tokens[0, 9]) + model.token_proj(tokens[0, 10])) / 2,
                # [CLS] no focal lesion in the liver
                (
                    model.token_proj(tokens[1, 2])
                    + model.token_proj(tokens[1, 3])
                    + model.token_proj(tokens[1, 4])
                )
                / 3,
            ]
        )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_targets_compare_cuis_across_captions():
    # image 0: C1, C2; image 1: C1 (another span of the same CUI), C1 again (a duplicate); image 2: none.
    spans = concept_spans(
        [
            [{"cui": "C1", "start": 0, "end": 1}, {"cui": "C2", "start": 2, "end": 3}],
            [{"cui": "C1", "start": 0, "end": 2}, {"cui": "C1", "start": 4, "end": 6}],
            [],
        ]
    )
    by_cui = concept_targets(spans.owner, spans.ids, 3, "cui")
    by_caption = concept_targets(spans.owner, spans.ids, 3, "caption")
    assert by_cui.int().tolist() == [[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 0, 0]]
    assert by_caption.int().tolist() == [[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    with pytest.raises(DataError, match="start < end"):
        concept_spans([[{"cui": "C1", "start": 5, "end": 5}]])
    # Spans without a CUI (MedConcept's minimized form) are the same concept when their words are.
    unnamed = concept_spans(
        [
            [{"cui": None, "start": 0, "end": 5, "name": "Liver"}],
            [
                {"cui": None, "start": 3, "end": 8, "name": "liver"},
                {"cui": None, "start": 9, "end": 13, "name": "lung"},
            ],
        ]
    )
    assert concept_targets(unnamed.owner, unnamed.ids, 2, "cui").int().tolist() == [[1, 1, 0], [1, 1, 1]]


# ----------------------------------------------------------------------------------------------- model


def _batch(tokenizer, n: int = 4) -> dict:
    captions = [
        CAPTION,
        "a small solid nodule in the right lung",
        "a large hyperdense lesion in the left lobe of the liver",
        "no focal lesion in the lungs",
    ]
    concepts = [
        [_span(CAPTION, "hypodense lesion", "C1"), _span(CAPTION, "left lobe of the liver", "C14")],
        [_span(captions[1], "solid nodule", "C3"), _span(captions[1], "right lung", "C11")],
        [_span(captions[2], "hyperdense lesion", "C2"), _span(captions[2], "left lobe of the liver", "C14")],
        [_span(captions[3], "no focal lesion", "C0"), _span(captions[3], "lungs", "C21")],
    ]
    gen = torch.Generator().manual_seed(3)
    return {
        "image": torch.randn(n, 3, 64, 64, generator=gen),
        "text": tokenizer(captions[:n]),
        "captions": captions[:n],
        "concepts": concepts[:n],
    }


def test_total_loss_is_siglip_plus_half_the_concept_loss(model, tokenizer):
    batch = _batch(tokenizer)
    with torch.no_grad():
        out = model(batch)
        siglip = SigLipLoss()(
            model.encode_image(batch["image"]),
            model.encode_text(batch["text"]),
            model.scale(),
            model.logit_bias,
        )
        # PC-Align rebuilt from the model's parts: C14 is in captions 0 and 2, so both images own it.
        spans = concept_spans(batch["concepts"])
        tokens, _, _ = model.text.forward_tokens(batch["text"])
        mask = span_token_mask(batch["text"].offsets, spans.owner, spans.spans)
        concepts = F.normalize(span_mean(tokens, spans.owner, mask, model.token_proj), dim=-1)
        targets = concept_targets(spans.owner, spans.ids, 4, "cui")
        assert targets[2, 1] and targets[0, 5]
        concept = ConceptAlignLoss()(
            model.encode_patches(batch["image"]),
            concepts,
            targets,
            model.concept_scale(),
            model.concept_logit_bias,
        )
    torch.testing.assert_close(out["contrastive_loss"], siglip)
    torch.testing.assert_close(out["concept_loss"], concept)
    torch.testing.assert_close(out["loss"], siglip + 0.5 * concept)
    assert model.logit_bias.item() == -10.0 and model.concept_logit_bias.item() == -10.0
    assert model.concept_scale().item() == pytest.approx(1 / 0.07)


def test_truncated_spans_are_dropped(tokenizer):
    model = vz.create_model("conceptclip-tiny", text={"context_length": 8}).eval()
    batch = _batch(vz.get_tokenizer("conceptclip-tiny", text={"context_length": 8}), n=2)
    with torch.no_grad():
        out = model(batch)
    # 8 tokens keep "[CLS] a 1 ##2 mm hypodense lesion [SEP]" and "[CLS] a small solid nodule in the [SEP]":
    # "left lobe of the liver" and "right lung" are cut away.
    assert out["num_concepts"].item() == 2


def test_stage_one_is_siglip_only_and_loads_into_stage_two(tmp_path: Path, tokenizer):
    stage1 = vz.create_model("conceptclip-tiny", pc_align=False)
    frozen = ("patch_proj", "token_proj", "concept_logit_scale", "concept_logit_bias")
    assert all(not p.requires_grad for n, p in stage1.named_parameters() if n.startswith(frozen))
    batch = _batch(tokenizer)
    del batch["concepts"]  # stage 1 needs none
    out = stage1(batch)
    assert "concept_loss" not in out
    torch.testing.assert_close(out["loss"], out["contrastive_loss"])
    path = save(stage1, tmp_path / "stage1")
    stage2 = vz.create_model("conceptclip-tiny", pretrained=str(path), pc_align=True)
    assert all(p.requires_grad for n, p in stage2.named_parameters() if n.startswith(frozen))
    for name, tensor in stage1.state_dict().items():
        torch.testing.assert_close(stage2.state_dict()[name], tensor, msg=name)


def test_pc_align_needs_concepts_and_offsets(model, tokenizer):
    batch = _batch(tokenizer, n=2)
    with pytest.raises(DataError, match="batch\\['concepts'\\]"):
        model({k: v for k, v in batch.items() if k != "concepts"})
    batch["text"] = vz.TokenizedText(batch["text"].input_ids, batch["text"].attention_mask)
    with pytest.raises(DataError, match="offsets"):
        model(batch)


def test_concept_similarity_map_is_patch_cosine_on_the_grid(model):
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        maps = model.concept_similarity_map(images, ["hypodense lesion", "right lung", "liver"])
        patches = model.encode_patches(images)  # [2, 64, D], row-major over the 8 x 8 grid
        concepts = model.encode_concepts(["hypodense lesion", "right lung", "liver"])
        logits = model.concept_logits(images, ["hypodense lesion", "right lung", "liver"])
    assert maps.shape == (2, 3, 8, 8)
    for b in range(2):
        for c in range(3):
            for row, col in [(0, 0), (0, 7), (5, 2), (7, 7)]:
                want = float(patches[b, row * 8 + col] @ concepts[c])
                assert maps[b, c, row, col].item() == pytest.approx(want, abs=1e-5)
    want_logits = maps.flatten(2).amax(-1) * model.concept_scale() + model.concept_logit_bias
    torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)


def test_evaluation_squashes_training_crops():
    """Evaluation resizes the whole image to the square input ("squash"), so a wide image keeps both sides."""
    image = np.zeros((64, 128, 3), dtype=np.uint8)
    image[:, :64] = 255  # left half white, right half black
    pixels = vz.get_transforms("conceptclip-tiny", train=False)(Image.fromarray(image))
    assert pixels.shape == (3, 64, 64)
    # mean/std 0.5: white -> 1, black -> -1; a center crop would have kept only the middle.
    assert pixels[:, :, :28].min() > 0.99 and pixels[:, :, 36:].max() < -0.99
    train = vz.get_transforms("conceptclip-tiny", train=True)(Image.fromarray(image))
    assert train.shape == (3, 64, 64)


def test_tiny_text_tower_builds_offline(tokenizer):
    cfg = vz.get_model_config("conceptclip-tiny")
    assert Path(cfg.text.hf_model, "vocab.txt").is_file()  # written locally, nothing from a hub
    text = tokenizer(["A 3.5 cm HYPODENSE lesion; x-ray"])
    tokens = tokenizer.backend.convert_ids_to_tokens(text.input_ids[0][: int(text.attention_mask.sum())])
    assert "[UNK]" not in tokens and "hypodense" in tokens


# ------------------------------------------------------------------------- tiny recipe on med-toyworld


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """P(a positive outscores a negative), ties counting one half (the Mann-Whitney statistic)."""
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    return 100 * wins.mean().item()


@pytest.mark.slow
def test_tiny_recipe_detects_concepts_on_med_toyworld(tmp_path_factory, tmp_path):
    """conceptclip-tiny.yaml trained on med-toyworld's concept captions: on the test slices, PC-Align's score
    of each concept phrase (max over patches) ranks the slices whose report names it above the others."""
    import json

    from vlzoo.medical.data import CONCEPT_IDS

    data_dir = generated(tmp_path_factory, "med-toyworld", **MED_TOYWORLD)
    run = fit_recipe(
        "conceptclip-tiny",
        {"data.data_dir": str(data_dir), "trainer.default_root_dir": str(tmp_path)},
        test=False,
    )
    model = run.module.model.eval()

    lines = (data_dir / "med-toyworld-concepts.jsonl").read_text().splitlines()
    records = [r for r in map(json.loads, lines) if r["split"] == "test"]
    preprocess = vz.get_transforms("conceptclip-tiny", train=False)
    images = torch.stack([preprocess(Image.open(data_dir / r["image"]).convert("RGB")) for r in records])
    names = list(CONCEPT_IDS)
    truth = torch.tensor(
        [[CONCEPT_IDS[n] in {c["umls_cui"] for c in r["umls_meta_info"]} for n in names] for r in records]
    )
    with torch.no_grad():
        scores = model.concept_logits(images, names)
    aucs = [
        auroc(scores[:, k], truth[:, k]) for k in range(len(names)) if 0 < truth[:, k].sum() < len(records)
    ]
    assert len(aucs) >= 8
    assert sum(aucs) / len(aucs) >= 65, aucs  # chance: 50
