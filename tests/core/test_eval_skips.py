"""Evaluation never reports metrics over a silently smaller set: every task counts the samples it could not
read, lists them with their reasons in its table and JSON, and fails above `--max-skip-rate` (1%)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from helpers.data_files import write_png
from PIL import Image
from rich.console import Console

from vlzoo.core.cli import main
from vlzoo.core.data import skip_marker
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import (
    eval_loader,
    evaluate_zeroshot,
    evaluation_runner,
    get_eval_task,
    register_eval_task,
    report_metrics,
    skip_scope,
)
from vlzoo.core.eval import tasks as tasks_module

BROKEN = (3, 9, 15)  # of 20 images


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> tuple[Path, list[str]]:
    """A CSV of 20 image-caption pairs, 3 of whose images are not images: (csv, the 3 broken paths)."""
    root = tmp_path_factory.mktemp("pairs")
    rows, broken = ["filepath,title"], []
    for i in range(20):
        path = root / "img" / f"{i:02d}.png"
        write_png(path, i, 32)
        if i in BROKEN:
            path.write_bytes(b"not an image")
            broken.append(str(path))
        rows.append(f"img/{i:02d}.png,a photo number {i}")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root / "pairs.csv", broken


def _retrieval(csv: Path, *flags: str) -> int:
    return main(
        ["eval", "retrieval", "--model", "clip-vit-tiny", "--data", str(csv), "--workers", "0", *flags]
    )


def test_retrieval_fails_above_the_default_threshold_naming_the_files(pairs, capsys):
    csv, broken = pairs
    assert _retrieval(csv) == 2
    err = capsys.readouterr().err
    assert "3 of 20 samples (15.0%) could not be read, more than the 1.0% allowed" in err
    assert "--max-skip-rate" in err
    for path in broken:
        assert f"{path}: UnidentifiedImageError" in err


def test_retrieval_below_the_threshold_reports_what_it_skipped(pairs, tmp_path, capsys):
    csv, broken = pairs
    out = tmp_path / "report"
    assert _retrieval(csv, "--max-skip-rate", "0.2", "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["images"], metrics["skipped"], metrics["samples_seen"]) == (17, 3, 20)
    assert metrics["skip_rate"] == pytest.approx(0.15)
    assert [e["path"] for e in metrics["skipped_examples"]] == broken
    assert all("cannot identify image file" in e["reason"] for e in metrics["skipped_examples"])
    printed = capsys.readouterr().out
    assert "3 of 20 samples skipped (15.0%), the metrics are over the other 17" in printed
    assert all(path in printed for path in broken)
    # the query grid indexes images by position: with a sample skipped, it is not drawn at all
    assert (out / "recall_curves.png").is_file() and not (out / "query_grid.png").exists()


def test_a_bad_threshold_is_a_config_error(pairs, capsys):
    assert _retrieval(pairs[0], "--max-skip-rate", "5") == 2
    assert "max_skip_rate must be a fraction in [0, 1]" in capsys.readouterr().err


@pytest.fixture(scope="module")
def classes(tmp_path_factory) -> tuple[Path, Path]:
    """A class folder of 2 × 5 images, one of them unreadable: (root, the broken file)."""
    root = tmp_path_factory.mktemp("classes")
    for c, name in enumerate(("red", "blue")):
        for i in range(5):
            write_png(root / name / f"{i}.png", 10 * c + i, 32)
    broken = root / "blue" / "2.png"
    broken.write_bytes(b"\x89PNG cut short")
    return root, broken


def test_zeroshot_from_python_counts_and_checks_the_same_way(classes):
    root, broken = classes
    options = {"data": str(root), "workers": 0, "templates": ["a {} photo"]}
    with pytest.raises(DataError, match=r"1 of 10 samples \(10\.0%\)") as err:
        evaluate_zeroshot("clip-vit-tiny", **options)
    assert str(broken) in str(err.value)
    metrics = evaluate_zeroshot("clip-vit-tiny", max_skip_rate=0.1, **options)
    assert (metrics["skipped"], metrics["samples_seen"]) == (1, 10)
    assert metrics["skipped_examples"][0]["path"] == str(broken)


class _Marked(torch.utils.data.Dataset):
    """Four samples, the last `bad` of them skip markers."""

    def __init__(self, bad: int):
        self.bad = bad

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i >= 4 - self.bad:
            return skip_marker(i, f"sample-{i}.png", "OSError: truncated")
        return {"image": Image.new("RGB", (64, 64)), "id": i, "label": 0}


def plain_runner(model, *, data, batch_size=2):
    """A domain's runner written without `@evaluation_runner`: it reads through `eval_loader`, which is
    all the mechanism needs when the task runs through `EvalTask.run`."""
    n = sum(len(b["id"]) for b in eval_loader(model, _Marked(int(data)), batch_size, captions=False))
    return {"read": n}


def test_a_registered_task_gets_the_counting_without_asking(monkeypatch):
    monkeypatch.setattr(tasks_module, "_TASKS", {k: dict(v) for k, v in tasks_module._TASKS.items()})
    task = register_eval_task("plain", plain_runner, help="plain", domain="skips-test")
    assert task.run("clip-vit-tiny", data="0") == {
        "read": 4,
        "samples_seen": 4,
        "skipped": 0,
        "skip_rate": 0.0,
        "skipped_examples": [],
    }
    with pytest.raises(DataError, match=r"1 of 4 samples .*\n  sample-3\.png: OSError: truncated"):
        task.run("clip-vit-tiny", data="1")
    metrics = task.run("clip-vit-tiny", data="1", max_skip_rate=0.25)
    assert (metrics["read"], metrics["skipped"]) == (3, 1)
    # a task that reads nothing through eval_loader has nothing to say about skips
    register_eval_task("silent", lambda model, *, data: {"x": 1.0}, help="silent", domain="skips-test")
    assert get_eval_task("silent", "skips-test").run("clip-vit-tiny", data="0") == {"x": 1.0}


@evaluation_runner
def outer_runner(model, *, data):
    """A runner calling another (a domain's task on the core's): one task, one tally."""
    first = inner_runner(model, data=data)
    second = inner_runner(model, data=data)
    return {"inner": first["skipped"], "after both": second["skipped"]}


@evaluation_runner
def inner_runner(model, *, data):
    for _ in eval_loader(model, _Marked(int(data)), 4, captions=False):
        pass
    return {}


def test_nested_runners_count_into_one_tally_with_the_outer_threshold():
    metrics = outer_runner("clip-vit-tiny", data="1", max_skip_rate=0.3)
    assert (metrics["inner"], metrics["after both"], metrics["samples_seen"]) == (1, 2, 8)
    with pytest.raises(DataError, match="1 of 4 samples"):  # the inner runner's default would refuse it
        outer_runner("clip-vit-tiny", data="1")
    with pytest.raises(ConfigError, match="fraction"):
        outer_runner("clip-vit-tiny", data="0", max_skip_rate=-0.1)


def test_a_report_outside_any_evaluation_is_unchanged_and_inside_it_says_what_was_skipped(tmp_path):
    printed = io.StringIO()
    paths = report_metrics({"top1": 50.0}, "t", tmp_path / "plain", console=Console(file=printed))
    assert json.loads(paths["json"].read_text()) == {"top1": 50.0} and "skipped" not in printed.getvalue()
    with skip_scope(0.5) as skips:
        skips.count({"id": [0, 1, 2], "skipped": [("a [1].png", "OSError: broken")]})
        paths = report_metrics({"top1": 50.0}, "t", tmp_path / "inside", console=Console(file=printed))
    report = json.loads(paths["json"].read_text())
    assert report["skipped"] == 1 and report["skipped_examples"] == [
        {"path": "a [1].png", "reason": "OSError: broken"}
    ]
    # the file is named whole: no rich markup eats its brackets, no wrapping splits it
    assert (
        "1 of 4 samples skipped (25.0%), the metrics are over the other 3:\n  a [1].png: OSError: broken"
        in (printed.getvalue())
    )
