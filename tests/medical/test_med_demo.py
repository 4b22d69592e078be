"""`vlzoo-medical demo` on a small med-toyworld: the report covers the whole test split, with chance and
the region-only and finding-only matchers beside the model."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from PIL import Image

from vlzoo.core.demo import run_demo
from vlzoo.medical.demo import MEDICAL_DEMO


def test_a_small_medical_demo_reports_on_the_whole_test_split(tmp_path):
    generate = {**MEDICAL_DEMO.generate, "n_train": 32, "n_val": 4, "n_test": 20}
    spec = replace(MEDICAL_DEMO, generate=generate, epochs=1, num_workers=0)
    result = run_demo(spec, tmp_path)

    reports = json.loads((tmp_path / "data" / "med-toyworld-2d.json").read_text())["images"]
    test = [image for image in reports if image["split"] == "test"]
    captions = sum(len(image["sentences"]) for image in test)
    assert (result.metrics["images"], result.metrics["captions"]) == (20, captions)
    assert result.baselines["chance_text_to_image_R@10"] == pytest.approx(100 * 10 / 20)
    # the region-only matcher knows more than chance and less than everything
    region = result.baselines["region_only_text_to_image_R@10"]
    finding = result.baselines["finding_only_text_to_image_R@10"]
    assert 50 <= region <= 100 and 50 <= finding <= 100
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"]["text_to_image_R@10"] == pytest.approx(result.metrics["text_to_image_R@10"])
    with Image.open(tmp_path / "query_grid.png") as grid:
        assert min(grid.size) > 100
    assert result.weights.is_file()
