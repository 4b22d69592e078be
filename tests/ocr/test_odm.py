"""ODM: the character tokenizer, the generator's inputs, the losses' parts, the Text-Controller and the
MMOCR export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vlzoo.core import create_model
from vlzoo.core.towers import structure_only
from vlzoo.core.weights import save
from vlzoo.ocr.data import DetectionDataset, read_detection_records
from vlzoo.ocr.odm import EOS_ID, CharTokenizer, export_mmocr, to_mmocr_state_dict


@pytest.fixture(scope="module")
def odm():
    torch.manual_seed(0)
    return create_model("odm-tiny")


def _batch(n: int = 2, size: int = 128) -> dict:
    g = torch.Generator().manual_seed(0)
    glyph = (torch.rand(n, size, size, generator=g) > 0.9).float()
    return {
        "image": torch.randn(n, 3, size, size, generator=g),
        "prompt": [["Open", "cafe"], ["EXIT"]][:n],
        "glyph": glyph,
    }


def test_words_become_printable_ascii_ids_with_end_of_word_and_padding():
    ids = CharTokenizer(context_length=6)(["Ab!", "é", "toolongword"])
    assert ids[0].tolist() == [ord("A") - 32, ord("b") - 32, ord("!") - 32, EOS_ID, 0, 0]
    assert ids[1].tolist() == [0, EOS_ID, 0, 0, 0, 0]  # outside the charset: unknown id 0
    assert ids[2].tolist()[-1] == EOS_ID and len(ids[2]) == 6  # cut to the context


def test_the_generator_never_sees_the_glyph_label(odm):
    odm.eval()
    batch = _batch()
    with torch.no_grad():
        a = odm(batch)
        b = odm({**batch, "glyph": 1 - batch["glyph"]})
        c = odm({**batch, "prompt": [["Closed"], ["ENTRY"]]})
    assert torch.equal(a["glyph_logits"], b["glyph_logits"])  # the label changes only the loss
    assert not torch.equal(a["loss_pixel"], b["loss_pixel"])
    assert not torch.allclose(a["glyph_logits"], c["glyph_logits"])  # the prompt steers the glyphs


def test_the_text_feature_is_the_mean_of_the_words_and_ignores_padding(odm):
    odm.eval()
    with torch.no_grad():
        words, pad = odm.encode_words([["Open", "cafe"], ["EXIT"]], torch.device("cpu"))
        alone = odm.text_encoder(odm.tokenizer(["EXIT"]))
    assert pad.tolist() == [[False, False], [False, True]]
    assert torch.allclose(words[1, 0], alone[0], atol=1e-5)  # batching with a longer prompt changes nothing


def test_the_perceptual_network_is_a_frozen_copy_refreshed_from_the_encoder():
    torch.manual_seed(0)
    odm = create_model("odm-tiny", perceptual="self")  # odm-tiny's own default is "none"
    perceptual = odm.perceptual
    assert all(not p.requires_grad for p in perceptual.parameters())
    target = _batch()["glyph"].unsqueeze(1)
    assert float(perceptual(target, target)) == 0.0 and float(perceptual(1 - target, target)) > 0
    with torch.no_grad():
        odm.image_encoder.net.stem.conv1.conv.weight.add_(1.0)
    assert not torch.equal(perceptual.stem.conv1.conv.weight, odm.image_encoder.net.stem.conv1.conv.weight)
    odm.on_train_step_end(odm.config.perceptual_refresh, 1000)
    assert torch.equal(perceptual.stem.conv1.conv.weight, odm.image_encoder.net.stem.conv1.conv.weight)


def test_the_text_controller_drops_words_from_prompt_and_glyph_label_together(toyworld: Path):
    records = read_detection_records(toyworld, "train")
    many = [r for r in records if sum(not i.ignore for i in r.instances) >= 3][:4]
    full = DetectionDataset(many, 128, train=True, targets=("glyph",), rotate=0, scales=(1.0, 1.0))
    dropped = DetectionDataset(
        many, 128, train=True, targets=("glyph",), rotate=0, scales=(1.0, 1.0), prompt_drop=0.7
    )
    torch.manual_seed(0)
    shorter = 0
    for i in range(len(many)):
        for _ in range(3):
            a, b = full[i], dropped[i]
            assert a["prompt"] == [w for w in a["words"] if w != "###"]
            assert 1 <= len(b["prompt"]) <= len(a["prompt"])
            if len(b["prompt"]) < len(a["prompt"]):
                shorter += 1
                # fewer words drawn: the dropped words' glyphs are gone from the label
                assert b["glyph"].sum() < a["glyph"].sum()
    assert shorter > 0


def test_export_writes_mmocr_clipresnet_keys_with_resnet50_shapes(tmp_path: Path):
    torchvision = pytest.importorskip("torchvision")
    with structure_only(), torch.device("meta"):
        model = create_model("odm-rn50")
    exported = to_mmocr_state_dict(model.image_encoder)
    assert not any("attnpool" in k or "head" in k for k in exported)
    # MMOCR's CLIPResNet: a deep stem (32, 32, 64), then torchvision's ResNet-50 stages, with the
    # avg-down downsample's conv/bn at indices 1/2 (torchvision: 0/1)
    assert exported["backbone.stem.0.weight"].shape == (32, 3, 3, 3)
    assert exported["backbone.stem.3.weight"].shape == (32, 32, 3, 3)
    assert exported["backbone.stem.6.weight"].shape == (64, 32, 3, 3)
    assert exported["backbone.stem.7.running_var"].shape == (64,)
    reference = torchvision.models.resnet50().state_dict()
    expected = {}
    for key, value in reference.items():
        if key.startswith("layer"):
            key = key.replace("downsample.1", "downsample.2").replace("downsample.0", "downsample.1")
            expected["backbone." + key] = tuple(value.shape)
    got = {k: tuple(v.shape) for k, v in exported.items() if k.startswith("backbone.layer")}
    assert got == expected


def test_export_mmocr_from_a_saved_checkpoint_is_tensor_only(odm, tmp_path: Path):
    path = save(odm, tmp_path / "odm.safetensors", name="odm-tiny")
    out = export_mmocr(path, tmp_path / "mmocr" / "backbone.pth")
    state = torch.load(out, weights_only=True)
    assert all(torch.is_tensor(v) for v in state.values())
    assert torch.equal(state["backbone.stem.0.weight"], odm.image_encoder.net.stem.conv1.conv.weight)
    assert torch.equal(
        state["backbone.layer2.0.downsample.1.weight"],
        odm.image_encoder.net.stages[1][0].shortcut.conv.conv.weight,
    )


def test_mmengine_loads_the_export_safely(odm, tmp_path: Path):
    runner = pytest.importorskip("mmengine.runner")
    path = export_mmocr(save(odm, tmp_path / "odm.safetensors", name="odm-tiny"), tmp_path / "b.pth")
    state = runner.load_checkpoint(torch.nn.Module(), str(path), map_location="cpu", strict=False)
    assert "backbone.stem.0.weight" in state


def test_pseudo_labels_keep_confident_words_only():
    from vlzoo.ocr.odm import pseudo_label_images

    quad = np.array([[0, 0], [10, 0], [10, 5], [0, 5]], np.float32)
    readings = iter([("OPEN", 0.95), ("??", 0.2)])
    labels = pseudo_label_images(
        [np.zeros((8, 12, 3), np.uint8)], lambda im: [quad, quad + 1], lambda im, p: next(readings)
    )
    assert [t for _, t in labels[0]] == ["OPEN"]


def test_dbnet_starts_from_the_odm_backbone_without_its_attention_pool(odm, tmp_path: Path):
    path = save(odm, tmp_path / "odm.safetensors", name="odm-tiny")
    dbnet = create_model("dbnet-tiny", backbone_init=str(path))
    theirs = odm.image_encoder.net.state_dict()
    ours = dbnet.backbone.net.state_dict()
    assert not any(k.startswith("head.") for k in ours) and any(k.startswith("head.") for k in theirs)
    assert all(torch.equal(v, theirs[k]) for k, v in ours.items())
    assert not torch.equal(
        create_model("dbnet-tiny").backbone.net.stem.conv1.conv.weight, ours["stem.conv1.conv.weight"]
    )


def _auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U): 0.5 for a constant or random score."""
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[scores.argsort()] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    n_pos = int(positive.sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(scores) - n_pos)))


@pytest.mark.slow
def test_odm_pretraining_learns_to_draw_glyphs_where_held_out_words_are(toyworld: Path):
    """The pre-training objective on held-out images: the glyph logits rank the pixels inside the words
    above the rest (AUROC; an untrained generator is near chance) and the pixel BCE beats the constant
    predictor at the glyph prior. With odm-tiny's former "self" perceptual term this failed (AUROC 0.47)."""
    import cv2

    from vlzoo.ocr.data import DetectionCollator
    from vlzoo.ocr.training import fit

    torch.set_num_threads(1)
    model = fit("odm-tiny", toyworld, steps=150, batch_size=8, lr=3e-3, model_overrides={"image_size": 96})
    test = DetectionDataset(read_detection_records(toyworld, "test"), 96, train=False, targets=("glyph",))
    samples = [test[i] for i in range(len(test))]
    batch = DetectionCollator(model.config.mean, model.config.std)(samples)
    with torch.no_grad():
        out = model.eval()(batch)
    words = np.zeros((len(samples), 96, 96), np.uint8)
    for i, sample in enumerate(samples):
        cv2.fillPoly(words[i], [np.round(p).astype(np.int32) for p in sample["polygons"]], 1)
    assert _auroc(out["glyph_logits"].flatten(), torch.from_numpy(words).bool().flatten()) > 0.8
    prior = batch["glyph"].mean()
    constant = torch.nn.functional.binary_cross_entropy(prior.expand_as(batch["glyph"]), batch["glyph"])
    assert float(out["loss_pixel"]) < float(constant)
