"""`vlzoo fit/test` from YAML recipes, as users run them: bad recipes, SIGKILL and resume, DDP on 2 CPUs."""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from vlzoo.core.data import write_toyworld

VLZOO = shutil.which("vlzoo") or "vlzoo"


@pytest.fixture(scope="module")
def toyworld_json(tmp_path_factory) -> Path:
    return write_toyworld(tmp_path_factory.mktemp("toyworld"), n_train=128, n_val=16, n_test=16, seed=3)


def _recipe(path: Path, root: Path, data: str, **sections) -> Path:
    recipe = {
        "seed_everything": 0,
        "checkpoint_every": 2,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 3,
            "default_root_dir": str(root),
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 0,
            "log_every_n_steps": 1,
        },
        "model": {"model": "clip-vit-tiny", "lr": 1e-3},
        "data": {"data": data, "batch_size": 16, "num_workers": 0},
    }
    for section, values in sections.items():
        recipe[section].update(values)
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([VLZOO, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("override", "named"),
    [("--model.lrr=0.1", "lrr"), ("--model.lr=fast", "model.lr"), ("--data.batch_sise=4", "batch_sise")],
)
def test_bad_recipe_is_rejected_before_any_data_is_read(tmp_path, override, named):
    recipe = _recipe(tmp_path / "r.yaml", tmp_path / "runs", data=str(tmp_path / "missing.json"))
    result = _run("fit", "-c", str(recipe), override)
    assert result.returncode != 0
    assert named in result.stderr
    assert "missing.json" not in result.stderr  # rejected at parsing, before the data was looked at
    assert not (tmp_path / "runs").exists()


def test_unknown_model_override_is_named(tmp_path, toyworld_json):
    recipe = _recipe(
        tmp_path / "r.yaml",
        tmp_path / "runs",
        data=str(toyworld_json),
        model={"model_overrides": {"vision": {"img_size": 32}}},
    )
    result = _run("fit", "-c", str(recipe))
    assert result.returncode != 0
    assert "clip-vit-tiny.vision.img_size" in result.stderr


def _logged_rows(metrics_csv: Path) -> list[dict]:
    with open(metrics_csv) as f:
        return [row for row in csv.DictReader(f) if row.get("train/loss")]


def _last_step(ckpt: Path) -> int:
    return torch.load(ckpt, weights_only=True)["global_step"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_from_last_checkpoint(tmp_path, toyworld_json):
    root = tmp_path / "runs"
    recipe = _recipe(tmp_path / "r.yaml", root, data=str(toyworld_json))
    last = root / "checkpoints" / "last.ckpt"
    steps_per_epoch, epochs = 128 // 16, 3
    proc = subprocess.Popen(
        [VLZOO, "fit", "-c", str(recipe)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if last.is_file() and 2 <= _last_step(last) < steps_per_epoch:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = _last_step(last)
    assert 2 <= killed_at < steps_per_epoch  # mid-epoch
    resumed = _run("fit", "-c", str(recipe), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint" in resumed.stderr + resumed.stdout
    assert _last_step(last) == steps_per_epoch * epochs
    assert (root / "version_1" / "model.safetensors").is_file()
    steps = [int(row["step"]) for row in _logged_rows(root / "version_1" / "metrics.csv")]
    assert min(steps) >= killed_at  # the second run continued, it did not start over


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_on_two_cpu_processes_gathers_the_global_batch(tmp_path, toyworld_json):
    """With logit scale 1 and random features, the first loss is ≈ log(batch the loss sees): log(32) when the
    two ranks' 16 samples are gathered, log(16) if they were not."""
    root = tmp_path / "runs"
    recipe = _recipe(
        tmp_path / "r.yaml",
        root,
        data=str(toyworld_json),
        trainer={"strategy": "ddp", "devices": 2, "max_steps": 2, "max_epochs": None},
        model={"model_overrides": {"init_logit_scale": 0.0}, "lr": 1e-6},
    )
    result = _run("fit", "-c", str(recipe), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _logged_rows(root / "version_0" / "metrics.csv")
    first = float(rows[0]["train/loss"])
    assert abs(first - math.log(32)) < 0.15, first
    assert _last_step(root / "checkpoints" / "last.ckpt") == 2


def test_lightning_subcommands_show_help():
    result = _run("fit", "--help")
    assert result.returncode == 0
    for option in ("--model.model", "--data.data", "--checkpoint_every", "--ckpt_path"):
        assert option in result.stdout
    assert sys.executable  # the console script runs in this interpreter's environment


def test_a_fresh_fit_shows_its_skipped_samples_and_no_false_warnings(tmp_path):
    data = write_toyworld(tmp_path / "toyworld", n_train=64, n_val=8, n_test=8, seed=4)
    broken = sorted((tmp_path / "toyworld" / "train").glob("*.png"))[:2]
    for path in broken:
        path.write_bytes(b"not a png")
    root = tmp_path / "runs"
    recipe = _recipe(
        tmp_path / "r.yaml",
        root,
        data=str(data),
        trainer={"max_epochs": 1, "enable_progress_bar": True},
        model={"max_skip_rate": 0.5, "export_weights": False},
    )
    result = _run("fit", "-c", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    summary = next(line for line in output.splitlines() if "vlzoo fit done" in line)
    assert f"skipped {len(broken)} of 64 samples" in summary, summary
    assert any(str(p) in summary for p in broken), summary  # an example names the file
    # On the progress bar too (what it shows; a non-terminal only gets the bar's last frame).
    from vlzoo.core.lightning_cli import run_lightning_cli

    cli = run_lightning_cli(["fit", "-c", str(recipe), "--trainer.default_root_dir", str(tmp_path / "again")])
    assert cli.trainer.progress_bar_metrics["skipped"] == len(broken)
    assert "exists and is not empty" not in output
    assert "args parameter is intended" not in output


def test_every_unknown_key_is_named_at_once_without_a_usage_dump(tmp_path):
    recipe = _recipe(
        tmp_path / "r.yaml",
        tmp_path / "runs",
        data=str(tmp_path / "missing.json"),
        model={"lrr": 0.1},
        trainer={"max_epoch": 2},
    )
    spec = yaml.safe_load(recipe.read_text())
    spec["data"]["batch_sise"] = 4
    recipe.write_text(yaml.safe_dump(spec))
    result = _run("fit", "-c", str(recipe), "--model.warmup_step=3")
    assert result.returncode == 2
    for key, suggestion in [
        ("model.lrr", "model.lr"),
        ("data.batch_sise", "data.batch_size"),
        ("trainer.max_epoch", "trainer.max_epochs"),
        ("model.warmup_step", "model.warmup_steps"),
    ]:
        assert f"'{key}' (did you mean {suggestion}?)" in result.stderr
    assert "usage:" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    bad_type = _run(
        "fit", "-c", str(_recipe(tmp_path / "t.yaml", tmp_path / "runs", "x.json")), "--model.lr=fast"
    )
    assert bad_type.returncode == 2 and "usage:" not in bad_type.stderr
    assert 'Parser key "model.lr"' in bad_type.stderr and "fast" in bad_type.stderr
