"""`vlzoo-geometry demo` end to end at a very small budget: the four stages' checkpoints, the report with its
accuracy table and the solved examples (diagram with the samplers' kept patches, program, trace, verdict)."""

from __future__ import annotations

import json

import pytest
import torch

from vlzoo.geometry.cli import main


@pytest.mark.slow
def test_the_demo_trains_the_pipeline_and_reports_solved_examples(tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(
            [
                "demo",
                "--out",
                str(tmp_path),
                "--steps",
                "2",
                "2",
                "2",
                "4",
                "--n-train",
                "24",
                "--n-test",
                "6",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "run").glob("*.safetensors")) == [
        "align.safetensors",
        "instruct.safetensors",
        "mae.safetensors",
        "symbol.safetensors",
    ]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_problems"] == 6 and summary["choice_baseline"] == 0.25
    assert 0.0 <= summary["top1"] <= summary["top10"] <= 1.0
    report = (tmp_path / "report.md").read_text()
    assert "| top-1 accuracy |" in report and "| 25% |" in report
    examples = sorted((tmp_path / "examples").glob("*.png"))
    assert len(examples) == 6 and all(p.stat().st_size > 5000 for p in examples)
    assert report.count("![](examples/") == 6 and report.count("→ `") == 6
    assert "top-1" in capsys.readouterr().out
