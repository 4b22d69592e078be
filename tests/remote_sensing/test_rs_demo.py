"""`vlzoo-remote-sensing demo` on a small rs-toyworld: the report covers the whole test split, with chance
and the class-only matcher beside the model, and shows the GeoTIFFs as RGB composites."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from PIL import Image

from vlzoo.core.demo import run_demo
from vlzoo.remote_sensing.demo import REMOTE_SENSING_DEMO


def test_a_small_remote_sensing_demo_reports_on_the_whole_test_split(tmp_path):
    generate = {**REMOTE_SENSING_DEMO.generate, "n_train": 32, "n_val": 4, "n_test": 30}
    spec = replace(REMOTE_SENSING_DEMO, generate=generate, epochs=1, num_workers=0)
    result = run_demo(spec, tmp_path)

    scenes = json.loads((tmp_path / "data" / "rs-toyworld.json").read_text())["images"]
    test = [scene for scene in scenes if scene["split"] == "test"]
    captions = sum(len(scene["sentences"]) for scene in test)
    assert (result.metrics["images"], result.metrics["captions"]) == (30, captions)
    assert result.baselines["chance_text_to_image_R@10"] == pytest.approx(100 * 10 / 30)
    classes = [scene["class_name"] for scene in test]
    expected = 100 * sum(min(10, classes.count(c)) / classes.count(c) for c in classes) / len(classes)
    # every scene has the same number of captions, so the per-caption mean is the per-scene one
    assert result.baselines["class_only_text_to_image_R@10"] == pytest.approx(expected)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"]["mean_recall"] == pytest.approx(result.metrics["mean_recall"])
    with Image.open(tmp_path / "query_grid.png") as grid:
        assert min(grid.size) > 100
    assert result.weights.is_file()
