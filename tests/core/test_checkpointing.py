"""Checkpoints survive kills (atomic writes in the run folder) and `--ckpt_path last` resumes from the newest
checkpoint that loads, or fails clearly: never a silent fresh start."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from vlzoo.core.data import write_toyworld
from vlzoo.core.train.checkpointing import (
    CheckpointError,
    atomic_torch_save,
    checkpoint_problem,
    newest_loadable_checkpoint,
)

VLZOO = shutil.which("vlzoo") or "vlzoo"
STEPS_PER_EPOCH = 64 // 16


class _FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("killed mid-write")


def test_an_interrupted_save_leaves_the_previous_checkpoint_whole(tmp_path):
    path = atomic_torch_save({"step": 1, "w": torch.ones(1000)}, tmp_path / "last.ckpt")
    with pytest.raises(RuntimeError, match="mid-write"):
        atomic_torch_save({"w": torch.zeros(1000), "bad": _FailsToPickle()}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no partial file left either


def test_a_truncated_checkpoint_is_named_with_its_problem(tmp_path):
    good = atomic_torch_save({"w": torch.randn(4096)}, tmp_path / "good.ckpt")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert checkpoint_problem(good) is None
    assert "cut short" in checkpoint_problem(cut)
    assert checkpoint_problem(tmp_path / "absent.ckpt") == "no such file"


def test_newest_loadable_skips_a_newer_broken_checkpoint(tmp_path):
    old = atomic_torch_save({"step": 4}, tmp_path / "epoch=0-step=4.ckpt")
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"PK\x03\x04 truncated")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))  # last.ckpt is the newer file
    found, rejected = newest_loadable_checkpoint(tmp_path)
    assert found == old
    assert [p.name for p, _ in rejected] == ["last.ckpt"]
    last.unlink()
    old.unlink()
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        newest_loadable_checkpoint(tmp_path)


# ------------------------------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def toyworld_json(tmp_path_factory) -> Path:
    return write_toyworld(tmp_path_factory.mktemp("toyworld"), n_train=64, n_val=8, n_test=8, seed=5)


def _recipe(path: Path, root: Path, data: Path, epochs: int, every: int = 2) -> Path:
    recipe = {
        "seed_everything": 0,
        "checkpoint_every": every,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": epochs,
            "default_root_dir": str(root),
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 0,
            "log_every_n_steps": 1,
        },
        "model": {"model": "clip-vit-tiny", "lr": 1e-3, "export_weights": False},
        "data": {"data": str(data), "batch_size": 16, "num_workers": 0},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([VLZOO, *args], capture_output=True, text=True, timeout=300, env=env)


def _step(ckpt: Path) -> int:
    return torch.load(ckpt, weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, toyworld_json) -> Path:
    """A run folder after one epoch: `last.ckpt` and one step checkpoint."""
    root = tmp_path_factory.mktemp("run") / "runs"
    result = _run("fit", "-c", str(_recipe(root.parent / "r.yaml", root, toyworld_json, epochs=1)))
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def _copy_run(trained_run: Path, tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(trained_run / "checkpoints", root / "checkpoints")
    return root


def test_resume_uses_the_step_checkpoint_when_last_is_missing(tmp_path, trained_run, toyworld_json):
    root = _copy_run(trained_run, tmp_path)
    (root / "checkpoints" / "last.ckpt").unlink()
    step_ckpt = next((root / "checkpoints").glob("epoch=*.ckpt"))
    recipe = _recipe(tmp_path / "r.yaml", root, toyworld_json, epochs=2)
    result = _run("fit", "-c", str(recipe), "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {step_ckpt}" in result.stderr + result.stdout
    assert _step(root / "checkpoints" / "last.ckpt") == 2 * STEPS_PER_EPOCH  # continued, not restarted


def test_resume_skips_a_truncated_last_checkpoint_and_says_so(tmp_path, trained_run, toyworld_json):
    root = _copy_run(trained_run, tmp_path)
    last = root / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    recipe = _recipe(tmp_path / "r.yaml", root, toyworld_json, epochs=2)
    result = _run("fit", "-c", str(recipe), "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped last.ckpt" in result.stderr + result.stdout
    assert _step(last) == 2 * STEPS_PER_EPOCH


def test_resume_without_any_checkpoint_fails_clearly(tmp_path, toyworld_json):
    root = tmp_path / "runs"
    recipe = _recipe(tmp_path / "r.yaml", root, toyworld_json, epochs=1)
    result = _run("fit", "-c", str(recipe), "--ckpt_path", "last")
    assert result.returncode != 0
    assert f"no checkpoint under {root / 'checkpoints'} loads" in result.stderr
    assert not list(root.glob("version_*/metrics.csv"))  # nothing was trained


def test_an_explicit_broken_checkpoint_is_named(tmp_path, toyworld_json):
    broken = tmp_path / "epoch=0-step=4.ckpt"
    broken.write_bytes(b"not a checkpoint")
    recipe = _recipe(tmp_path / "r.yaml", tmp_path / "runs", toyworld_json, epochs=1)
    result = _run("fit", "-c", str(recipe), "--ckpt_path", str(broken))
    assert result.returncode != 0
    assert f"checkpoint {broken}: not a whole checkpoint archive" in result.stderr


@pytest.mark.slow
def test_kills_while_saving_with_tmpdir_on_tmpfs_never_leave_a_broken_checkpoint(tmp_path, toyworld_json):
    """TMPDIR on tmpfs, checkpoints on the disk: Lightning's own writer then moves each checkpoint across
    filesystems. Kill the run at random moments while it saves every step; every checkpoint on disk loads."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no tmpfs at /dev/shm")
    tmpdir = Path(os.environ.get("VLZOO_TEST_TMPFS", shm)) / f"vlzoo-ckpt-{os.getpid()}"
    tmpdir.mkdir(exist_ok=True)
    root = tmp_path / "runs"
    recipe = _recipe(tmp_path / "r.yaml", root, toyworld_json, epochs=1000, every=1)
    rng = random.Random(0)
    env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1"}
    try:
        for attempt in range(10):
            resume = ["--ckpt_path", "last"] if attempt else []
            proc = subprocess.Popen(
                [VLZOO, "fit", "-c", str(recipe), *resume],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            last = root / "checkpoints" / "last.ckpt"
            before = last.stat().st_mtime_ns if last.exists() else 0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if last.exists() and last.stat().st_mtime_ns != before:
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere inside the next saves
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            for ckpt in (root / "checkpoints").glob("*.ckpt"):
                assert checkpoint_problem(ckpt) is None, f"attempt {attempt}: {ckpt.name} does not load"
                torch.load(ckpt, weights_only=True)
        assert _step(root / "checkpoints" / "last.ckpt") > 0
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
