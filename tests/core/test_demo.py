"""The README's first command: `vlzoo demo` learns toyworld on the CPU and writes its report."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import vlzoo.core as vz
from vlzoo.core.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_beats_chance_and_colours_and_writes_its_report(tmp_path):
    cfg = DemoConfig(out_dir=str(tmp_path / "demo"))  # the defaults `vlzoo demo` runs with
    result = run_demo(cfg)
    r1 = result["metrics"]["text_to_image_R@1"]
    chance = result["baselines"]["chance_text_to_image_R@1"]
    colours = result["baselines"]["bag_of_colours_text_to_image_R@1"]
    assert chance == pytest.approx(100 / cfg.n_test)
    assert r1 >= 10 * chance, result["metrics"]
    assert r1 > 2 * colours, (r1, colours)  # shapes, sizes and relations were learned, not colours alone

    out = tmp_path / "demo"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["text_to_image_R@1"] == pytest.approx(r1)
    for plot in ("recall_curves.png", "similarity_heatmap.png", "query_grid.png"):
        with Image.open(out / plot) as image:
            assert image.size[0] > 100 and image.size[1] > 100
    assert (out / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (out / "run" / "metrics.csv").is_file()

    # the exported weights are the trained model
    model = vz.create_model("clip-vit-tiny", pretrained=result["weights"]).eval()
    trained = result["trainer"].lightning_module.model.eval()
    images = torch.randn(2, 3, 64, 64)
    assert torch.allclose(model.encode_image(images), trained.encode_image(images), atol=1e-6)
