"""`vlzoo-person demo`: person-toyworld → plip-tiny → TBPS report, through the console script, small."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from vlzoo.person.cli import main
from vlzoo.person.demo import PERSON_DEMO


def test_demo_writes_the_report(tmp_path: Path, capsys, monkeypatch):
    # one epoch on 8 identities: the command's plumbing, not the learning (test_plip trains)
    small = {**PERSON_DEMO.generate, "n_test": 8, "n_val": 2}
    monkeypatch.setattr("vlzoo.person.demo.PERSON_DEMO", PERSON_DEMO.__class__(generate=small, num_workers=0))
    assert main(["demo", "--out", str(tmp_path), "--epochs", "1", "--n-train", "8", "--workers", "0"]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["model"] == "plip-tiny"
    assert set(report["test"]) >= {"R@1", "R@5", "R@10", "mAP", "mINP"}
    assert report["test"]["gallery"] == 8 * 4 and report["test"]["queries"] == 8 * 4 * 5
    assert report["baselines"]["chance_R@1"] == 100 * 4 / 32
    assert report["baselines"]["colours_only_R@1"] == 100 / 8  # one family of 8: the matcher is at chance
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert Image.open(tmp_path / "tbps_queries.png").size[0] > 500
    assert "Rank-1" in capsys.readouterr().out
