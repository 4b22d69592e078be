"""The README's first command: `vlzoo demo` learns toyworld on the CPU and writes its report; and the demo
runner every domain configures (`DemoSpec`, `run_demo`)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from PIL import Image

import vlzoo.core as vz
from vlzoo.core.demo import TOYWORLD_DEMO, attribute_only_recall, run_demo


def test_attribute_only_recall_is_the_expected_recall_of_a_random_order_within_the_attribute():
    # images 0-2 are "a", image 3 is "b"; captions of images 0 and 3
    attributes, owners = ["a", "a", "a", "b"], torch.tensor([0, 0, 3])
    assert attribute_only_recall(attributes, owners, k=1) == pytest.approx(100 * (1 / 3 + 1 / 3 + 1) / 3)
    assert attribute_only_recall(attributes, owners, k=2) == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3)
    assert attribute_only_recall(attributes, owners, k=5) == pytest.approx(100.0)


def test_a_small_demo_reports_on_the_whole_test_split(tmp_path):
    spec = replace(
        TOYWORLD_DEMO.resized(epochs=1, num_workers=0),
        batch_size=16,
        generate={**TOYWORLD_DEMO.generate, "n_train": 64, "n_val": 8, "n_test": 24},
        reference="plain batches: R@1 1.0%",
    )
    result = run_demo(spec, tmp_path)
    assert (result.metrics["images"], result.metrics["captions"], result.metrics["skipped"]) == (24, 120, 0)
    assert result.baselines["chance_text_to_image_R@1"] == pytest.approx(100 / 24)
    assert 0 <= result.baselines["bag_of_colours_text_to_image_R@1"] <= 100
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"]["text_to_image_R@1"] == pytest.approx(result.metrics["text_to_image_R@1"])
    assert saved["baselines"] == pytest.approx(result.baselines)
    assert saved["reference"] == "plain batches: R@1 1.0%"  # the comparison the spec states beside its result
    assert result.weights.is_file() and (tmp_path / "run" / "metrics.csv").is_file()


@pytest.mark.slow
def test_demo_beats_chance_and_colours_and_writes_its_report(tmp_path):
    result = run_demo(TOYWORLD_DEMO, tmp_path / "demo")  # the defaults `vlzoo demo` runs with
    r1 = result.metrics["text_to_image_R@1"]
    chance = result.baselines["chance_text_to_image_R@1"]
    colours = result.baselines["bag_of_colours_text_to_image_R@1"]
    assert chance == pytest.approx(100 / TOYWORLD_DEMO.generate["n_test"])
    assert r1 >= 10 * chance, result.metrics
    assert r1 > 2 * colours, (r1, colours)  # shapes, sizes and relations were learned, not colours alone

    out = tmp_path / "demo"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["text_to_image_R@1"] == pytest.approx(r1)
    # every test image beside its distractor: 100 pairs, scored above Winoground's chance (16.7 %)
    pairs = saved["pair_scores"]
    assert pairs["pairs"] == TOYWORLD_DEMO.generate["n_test"] // 2
    assert saved["pair_scores_chance"]["group_score"] == pytest.approx(100 / 6)
    assert pairs["group_score"] <= min(pairs["text_score"], pairs["image_score"])
    # the goals (R@1 >= 75 %, group >= 50 %): benchmarks/hard_negatives.py measured 85.0 % and 80 % for
    # training seed 0 and 80.5-88.0 % and 73-85 % over seeds 0-3, with the ViT's convolutional stem (70.6 % and
    # 58 % with its linear patch embedding)
    assert pairs["group_score"] >= 50.0, pairs
    assert r1 >= 75.0, result.metrics
    for plot in ("recall_curves.png", "similarity_heatmap.png", "query_grid.png"):
        with Image.open(out / plot) as image:
            assert image.size[0] > 100 and image.size[1] > 100
    assert (out / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (out / "run" / "metrics.csv").is_file()

    # the exported weights are the trained model
    model = vz.create_model("clip-vit-tiny", pretrained=result.weights).eval()
    trained = result.trainer.lightning_module.model.eval()
    images = torch.randn(2, 3, 64, 64)
    assert torch.allclose(model.encode_image(images), trained.encode_image(images), atol=1e-6)
