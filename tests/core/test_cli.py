"""The `vlzoo` command: list, info, download (against a loopback server)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.http_server import LoopbackServer, sha256_hex

import vlzoo.core as vz
from vlzoo.core import registry
from vlzoo.core.cli import main
from vlzoo.core.weights import WeightSpec


def test_list_and_pattern(capsys):
    assert main(["list", "clip-vit-b-*"]) == 0
    assert capsys.readouterr().out.split() == ["clip-vit-b-16", "clip-vit-b-32"]
    assert main(["list", "--pretrained", "clip-vit-b-32*"]) == 0
    assert "clip-vit-b-32:openai" in capsys.readouterr().out.split()


def test_info_prints_config_and_size(capsys):
    assert main(["info", "clip-vit-tiny"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["vision"]["image_size"] == 64
    assert info["num_params"] == sum(p.numel() for p in vz.create_model("clip-vit-tiny").parameters())


def test_unknown_model_is_a_one_line_error(capsys):
    assert main(["info", "clip-vit-tinny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vlzoo: error: unknown model 'clip-vit-tinny'")
    assert "clip-vit-tiny" in err


@pytest.fixture
def served_model(tmp_path, monkeypatch):
    """A registered model whose pretrained tag points at weights served on 127.0.0.1."""
    for name in ("VLZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    path = vz.weights.save(vz.create_model("clip-vit-tiny"), tmp_path / "src")
    body = path.read_bytes()
    with LoopbackServer() as server:
        server.add("/tiny.safetensors", body)
        spec = WeightSpec.from_url(server.url("/tiny.safetensors"), sha256_hex(body))
        vz.register_model("cli-served-tiny", pretrained={"v1": spec}, default_tag="v1")(
            lambda: vz.get_model_config("clip-vit-tiny")
        )
        try:
            yield body, server
        finally:
            registry._REGISTRY.pop("cli-served-tiny", None)


def test_download_default_tag_then_cached(served_model, tmp_path, capsys):
    body, server = served_model
    assert main(["download", "cli-served-tiny", "--cache-dir", str(tmp_path / "cache"), "-q"]) == 0
    first = capsys.readouterr().out.strip()
    assert Path(first).read_bytes() == body
    assert main(["download", "cli-served-tiny:v1", "--cache-dir", str(tmp_path / "cache"), "-q"]) == 0
    assert capsys.readouterr().out.strip() == first
    assert len(server.log(method="GET")) == 1  # the second call found the verified file
    assert main(["download", "cli-served-tiny:v2"]) == 2
    assert "no pretrained tag 'v2'" in capsys.readouterr().err


def test_created_model_downloads_its_tag(served_model):
    model = vz.create_model("cli-served-tiny:v1")
    assert model.vlzoo_pretrained == "cli-served-tiny:v1"


def test_console_script_is_installed():
    exe = shutil.which("vlzoo")
    assert exe, "the vlzoo console script is not on PATH"
    out = subprocess.run([exe, "list", "clip-*"], capture_output=True, text=True, timeout=120, check=True)
    assert "clip-vit-b-32" in out.stdout.split()


@pytest.fixture(scope="module")
def toyworld(tmp_path_factory):
    from vlzoo.core.data import write_toyworld, write_toyworld_classes

    root = tmp_path_factory.mktemp("toy")
    return write_toyworld(root / "pairs", n_train=24, n_val=8, n_test=12), write_toyworld_classes(
        root / "classes", n_per_class=6
    )


def test_shards_command_writes_every_sample(toyworld, tmp_path, capsys):
    from vlzoo.core.data import ShardSource

    pairs, _ = toyworld
    pattern = str(tmp_path / "shards" / "train-%04d.tar")
    assert main(["shards", str(pairs), pattern, "--split", "train", "--max-count", "10"]) == 0
    shards = sorted((tmp_path / "shards").glob("*.tar"))
    assert len(shards) == 3  # 24 samples, 10 per shard
    assert sum(1 for _ in ShardSource([str(s) for s in shards], shuffle_buffer=0)) == 24
    assert "wrote 3 shards" in capsys.readouterr().out


def test_eval_commands_write_reports(toyworld, tmp_path, capsys):
    pairs, classes = toyworld
    assert (
        main(
            [
                "eval",
                "retrieval",
                "--model",
                "clip-vit-tiny",
                "--data",
                str(pairs),
                "--workers",
                "0",
                "--out",
                str(tmp_path / "retrieval"),
            ]
        )
        == 0
    )
    retrieval = json.loads((tmp_path / "retrieval" / "metrics.json").read_text())
    assert 0 <= retrieval["text_to_image_R@1"] <= 100
    assert (retrieval["images"], retrieval["captions"], retrieval["skipped"]) == (12, 12 * 5, 0)
    assert (tmp_path / "retrieval" / "query_grid.png").is_file()
    assert (
        main(
            [
                "eval",
                "zeroshot",
                "--model",
                "clip-vit-tiny",
                "--data",
                str(classes),
                "--workers",
                "0",
                "--template",
                "a photo of a {}.",
                "--out",
                str(tmp_path / "zeroshot"),
            ]
        )
        == 0
    )
    zeroshot = json.loads((tmp_path / "zeroshot" / "metrics.json").read_text())
    assert {"top1_accuracy", "top5_accuracy", "balanced_accuracy", "per_class_accuracy"} <= set(zeroshot)
    assert (
        main(
            [
                "eval",
                "linear-probe",
                "--model",
                "clip-vit-tiny",
                "--data",
                str(classes),
                "--train-data",
                str(classes),
                "--workers",
                "0",
                "--out",
                str(tmp_path / "probe"),
            ]
        )
        == 0
    )
    probe = json.loads((tmp_path / "probe" / "metrics.json").read_text())
    assert "accuracy" in probe
    assert main(["eval", "linear-probe", "--model", "clip-vit-tiny", "--data", str(classes)]) == 2
    assert "linear-probe needs train_data (--train-data)" in capsys.readouterr().err
    # a prompt given to a task without prompts is refused, not ignored
    argv = ["eval", "retrieval", "--model", "clip-vit-tiny", "--data", str(pairs), "--template", "a {}"]
    assert main(argv) == 2
    assert "'retrieval' does not take templates" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["list", "--bogus"], ["eval", "retrieval", "--help"]])
def test_help_and_argument_errors_import_no_torch(argv):
    code = (
        "import sys\nfrom vlzoo.core.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'timm', 'transformers', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
