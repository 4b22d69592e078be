"""Dict-valued settings are checked key by key before any data is read, with suggestions; `image_root` is
honoured by every data kind with image paths."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

from vlzoo.core import ConfigError
from vlzoo.core.data import build_source, check_data_options, is_skipped, write_toyworld
from vlzoo.core.train import ImageTextDataModule

VLZOO = shutil.which("vlzoo") or "vlzoo"


@pytest.mark.parametrize(
    ("key", "value", "named", "suggested"),
    [
        ("generate", {"n_trian": 10}, "'n_trian'", "n_train"),
        ("toyworld", {"image_sise": 32}, "'image_sise'", "image_size"),
        ("data_options", {"image_rot": "x"}, "'image_rot'", "image_root"),
    ],
)
def test_a_typo_in_a_dict_setting_is_named_before_anything_is_read(tmp_path, key, value, named, suggested):
    with pytest.raises(ConfigError, match=f"data.{key}") as err:
        ImageTextDataModule("toyworld", data_dir=str(tmp_path / "tw"), **{key: value})
    assert named in str(err.value) and f"did you mean {suggested}" in str(err.value)
    assert not (tmp_path / "tw").exists()


def test_generate_without_a_generated_dataset_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no data is a generated dataset"):
        ImageTextDataModule(str(tmp_path / "pairs.csv"), generate={"n_train": 4})


def test_the_cli_rejects_the_typo_without_a_traceback(tmp_path):
    result = subprocess.run(
        [VLZOO, "fit", "--data.data", "toyworld", "--data.data_dir", str(tmp_path / "tw"),
         "--data.generate", "{n_trian: 10}", "--trainer.default_root_dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "did you mean n_train" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tw").exists()


@pytest.fixture(scope="module")
def moved_images(tmp_path_factory):
    """toyworld's index files in one folder, its images moved to another: only `image_root` finds them."""
    root = tmp_path_factory.mktemp("moved")
    karpathy = write_toyworld(root / "tw", n_train=4, n_val=2, n_test=2, seed=7)
    images = root / "images"
    shutil.move(str(root / "tw" / "train"), str(images / "train"))
    entries = [e for e in json.loads(karpathy.read_text())["images"] if e["split"] == "train"]
    rows = [(f"{e['filepath']}/{e['filename']}", e["sentences"][0]["raw"]) for e in entries]
    index = root / "index"
    index.mkdir()
    with open(index / "pairs.csv", "w", newline="") as f:
        csv.writer(f).writerows([("filepath", "title"), *rows])
    (index / "pairs.jsonl").write_text("".join(json.dumps({"image": p, "text": t}) + "\n" for p, t in rows))
    shutil.copy(karpathy, index / "karpathy.json")
    return index, images, len(rows)


@pytest.mark.parametrize(("file", "kind", "captions"), [
    ("pairs.csv", "csv", "random"), ("pairs.jsonl", "jsonl", "all"), ("karpathy.json", "karpathy", "all"),
])  # fmt: skip
def test_image_root_is_honoured_by_every_kind_with_image_paths(moved_images, file, kind, captions):
    index, images, n = moved_images
    without = build_source(str(index / file), kind, "train", captions, {})
    with_root = build_source(str(index / file), kind, "train", captions, {"image_root": str(images)})
    assert len(with_root) == n
    assert not any(is_skipped(with_root[i]) for i in range(n))
    assert all(is_skipped(without[i]) for i in range(n))  # the index's own folder has no images


def test_each_kind_declares_its_options():
    check_data_options(["csv", "karpathy"], {"image_root": "/data"})
    with pytest.raises(
        ConfigError, match=r"not read by data kind webdataset.*takes \['cache_decoded', 'jpeg_draft'\]"
    ):
        check_data_options(["webdataset"], {"image_root": "/data"})
