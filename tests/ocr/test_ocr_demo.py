"""The detection report and `vlzoo-ocr demo`, end to end on tiny sizes; DBNet learning on ocr-toyworld."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlzoo.ocr.cli import main
from vlzoo.ocr.evaluation import GREEN, GREY, RED, draw_detections


def test_the_figure_draws_predictions_green_misses_red_and_dont_care_grey():
    image = np.zeros((60, 100, 3), np.uint8)
    found = np.array([[5, 5], [30, 5], [30, 20], [5, 20]], np.float32)
    missed = np.array([[50, 5], [90, 5], [90, 20], [50, 20]], np.float32)
    dont_care = np.array([[5, 35], [40, 35], [40, 55], [5, 55]], np.float32)
    out = draw_detections(image, [found], [(found, "hit"), (missed, "miss"), (dont_care, "###")])
    assert tuple(out[5, 15]) == GREEN and tuple(out[5, 70]) == RED and tuple(out[35, 20]) == GREY
    assert tuple(out[12, 15]) == (0, 0, 0)  # outlines only


def _auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U): 0.5 for any constant or random score."""
    ranks = torch.empty_like(scores)
    ranks[scores.argsort()] = torch.arange(1, len(scores) + 1, dtype=scores.dtype)
    pos = labels.bool()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.mark.slow
def test_dbnet_trained_from_scratch_finds_the_text_pixels_and_reports(toyworld: Path, tmp_path: Path):
    """A short CPU run: the probability map ranks text pixels far above background (pixel AUROC; a
    constant map, the trivial detector's, scores 0.5). Box-level hmean needs a longer run from scratch
    (benchmarks/ocr_odm_transfer.py: ODM pre-training is what makes short fine-tunes detect words)."""
    from vlzoo.core.weights import save
    from vlzoo.ocr.data import DetectionCollator, DetectionDataset, read_detection_records
    from vlzoo.ocr.training import fit

    torch.set_num_threads(1)
    model = fit("dbnet-tiny", toyworld, steps=80, batch_size=8, lr=3e-3, model_overrides={"image_size": 96})
    test = DetectionDataset(read_detection_records(toyworld, "test"), 96, train=False, targets=("db",))
    batch = DetectionCollator(model.config.mean, model.config.std)([test[i] for i in range(len(test))])
    with torch.no_grad():
        prob = model.eval()({"image": batch["image"]})["prob_map"]
    care = batch["prob_mask"].bool()
    assert _auroc(prob[care], batch["prob_map"][care]) > 0.8
    assert (
        _auroc(torch.full_like(prob[care], 0.5) + 1e-7 * torch.rand(int(care.sum())), batch["prob_map"][care])
        < 0.6
    )

    weights = save(model, tmp_path / "dbnet.safetensors", name="dbnet-tiny")
    out = tmp_path / "report"
    args = [
        "eval",
        "detection",
        "--model",
        "dbnet-tiny",
        "--pretrained",
        str(weights),
        "--data",
        str(toyworld),
    ]
    assert main([*args, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 16 and 0 <= metrics["hmean"] <= 1
    assert (
        metrics["whole_image_detector"]["hmean"] < 0.05
    )  # one box over a scene never has IoU > 0.5 with a word
    assert Image.open(out / "detections.png").size[0] > 300


@pytest.mark.slow
def test_the_demo_pretrains_odm_fine_tunes_dbnet_and_writes_the_report(tmp_path: Path):
    code = main(
        [
            "demo",
            "--out",
            str(tmp_path),
            "--n-train",
            "16",
            "--pretrain-steps",
            "3",
            "--finetune-steps",
            "3",
            "--parts",
            "detection",
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert summary["pretrain"]["steps"] == 3 and summary["finetune"]["steps"] == 3
    assert summary["detection"]["hmean"] == metrics["hmean"]
    assert metrics["images"] == 48
    for figure in ("detections.png", "odm_glyphs.png"):
        assert Image.open(tmp_path / "report" / figure).format == "PNG"
    # the fine-tuned DBNet started from the pre-trained ODM backbone and moved away from it
    from vlzoo.core.weights import load_state_dict

    odm = load_state_dict(tmp_path / "odm-tiny" / "model.safetensors")
    dbnet = load_state_dict(tmp_path / "dbnet-tiny" / "model.safetensors")
    key = "stem.conv1.conv.weight"
    assert not torch.equal(odm[f"image_encoder.net.{key}"], dbnet[f"backbone.net.{key}"])
    assert torch.allclose(odm[f"image_encoder.net.{key}"], dbnet[f"backbone.net.{key}"], atol=0.05)


def test_the_demo_refuses_an_unknown_part_before_running(tmp_path: Path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--parts", "detection,spotting"]) == 2
    assert "unknown part(s) ['spotting']" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_pretraining_text_is_the_crop_labels_or_fresh_labels_of_their_kind():
    from vlzoo.core import ConfigError
    from vlzoo.ocr.data.toyworld import VOCABULARY
    from vlzoo.ocr.demo_recognition import pretraining_text

    crops = ["open", "taxi", "exit"]
    assert set(pretraining_text("crops", crops)(50)) == set(crops)
    fresh = pretraining_text("generated", crops, labels="random", style="clean")
    first, second = fresh(40), fresh(40)
    assert first != second and not set(first) & set(crops)  # a stream of new strings, not the crops'
    assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 10 for w in first + second)
    assert pretraining_text("generated", crops, labels="random")(40) == first  # seeded
    words = pretraining_text("generated", crops, labels="vocabulary", style="varied")(200)
    assert {w.lower() for w in words} <= {v.lower() for v in VOCABULARY}
    assert any(w != w.lower() for w in words)
    lexicon = ["abc", "defg", "hij", "klmno"]
    drawn = pretraining_text("lexicon", crops, lexicon=lexicon)(400)
    assert set(drawn) == set(lexicon)  # every lexicon word, none of the crops'
    with pytest.raises(ConfigError, match="must be 'crops', 'generated' or 'lexicon', got 'books'"):
        pretraining_text("books", crops)
    with pytest.raises(ConfigError, match="'lexicon' needs a non-empty word list"):
        pretraining_text("lexicon", crops)


def test_lexicon_labels_keep_the_crops_to_the_seen_words_and_test_both_halves():
    from vlzoo.core import ConfigError
    from vlzoo.ocr.demo_recognition import lexicon_labels

    lexicon, labels = lexicon_labels(200, 30, n_train=600, n_test=100, seed=2)
    seen = set(lexicon[:30])
    assert len(lexicon) == len(set(lexicon)) == 200
    assert set(labels["train"]) == seen  # 600 draws cover all 30 seen words, and nothing else
    assert all(w in seen for w in labels["test"][::2])
    assert all(w in lexicon and w not in seen for w in labels["test"][1::2])
    assert lexicon_labels(200, 30, n_train=600, n_test=100, seed=2) == (lexicon, labels)
    with pytest.raises(ConfigError, match=r"seen_words must be in 1\.\.199"):
        lexicon_labels(200, 200, n_train=10, n_test=10)


def test_group_accuracy_scores_each_group_on_its_own_members():
    from vlzoo.ocr.demo_recognition import group_accuracy

    labels = ["abc", "DEF", "ghi", "jkl"]
    predictions = ["abc", "def", "xyz", "jk"]  # case folds on the 36-character charset
    groups = {"seen": [True, True, False, False], "unseen": [False, False, True, True]}
    assert group_accuracy(predictions, labels, groups) == {"all": 50.0, "seen": 100.0, "unseen": 0.0}
    empty = group_accuracy(predictions, labels, {"none": [False] * 4})
    assert empty["all"] == 50.0 and empty["none"] != empty["none"]  # NaN: no member


@pytest.mark.slow
def test_the_clip_can_train_on_its_own_renders_and_every_arm_shares_its_encoder(tmp_path: Path):
    """`clip_crops`: the stage-1 CLIP trains on other renders of the train crops' words, not on the crops
    the recognizer fine-tunes on; `arm_overrides(encoder="clip")` starts every arm from that CLIP's image
    tower, and only the decoder's pre-training differs between the arms."""
    from vlzoo.ocr.data.crops import WordCrops
    from vlzoo.ocr.demo_recognition import RECOGNITION_DEMO, arm_overrides, pretrain_stages

    settings = {
        **RECOGNITION_DEMO,
        **{"n_train": 16, "n_test": 4, "lexicon": 20, "seen_words": 4, "text": "lexicon"},
        **{"clip_steps": 1, "pretrain_steps": 1, "batch": 8, "clip_crops": 12},
    }
    stages = pretrain_stages(tmp_path, settings, log=lambda line: None)
    train = WordCrops(stages["words"] / "train" / "labels.txt")
    (own_dir,) = tmp_path.glob("clip-crops-*")
    own = WordCrops(own_dir / "train" / "labels.txt")
    assert len(own) == 12 and set(own.labels) <= set(train.labels) == set(stages["lexicon"][:4])
    rendered = {np.asarray(train[i]["image"]).tobytes() for i in range(len(train))}
    assert not any(np.asarray(own[i]["image"]).tobytes() in rendered for i in range(len(own)))
    assert stages["clip"].is_file() and "own12" in stages["clip"].parent.name
    arms = arm_overrides(stages["pretrained"], stages["clip"], "clip")
    assert {arm["clip_pretrained"] for arm in arms.values()} == {str(stages["clip"])}
    assert {arm["encoder"] for arm in arms.values()} == {"clip"}
    assert "pretrained_decoder" not in arms["scratch"] and arms["frozen-decoder"]["freeze_decoder"]
    assert arm_overrides(stages["pretrained"], stages["clip"])["scratch"] == {"encoder": "vit"}
