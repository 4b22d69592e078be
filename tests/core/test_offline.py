"""`VLZOO_OFFLINE=1` never reaches the network, checked where it would show: a Python audit hook in a fresh
process records (and refuses) every name lookup or connection that is not to the loopback interface.

Only `VLZOO_OFFLINE` is set in that process (not `HF_HUB_OFFLINE`), with empty vlzoo and Hugging Face
caches: vlzoo must put huggingface_hub, transformers and timm offline itself, and `vlzoo info` must count
every registered model's parameters from configs alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import vlzoo.core as vz
from vlzoo.core.registry import model_entry

INSTALLED_MODELS = [n for n in vz.list_models() if model_entry(n).module.startswith("vlzoo.")]

# Runs in the child before anything else is imported: the hook sees vlzoo's imports too. It refuses a
# non-loopback lookup (so a retry loop cannot hang on it) and records it (so a caught refusal still shows).
_BOOTSTRAP = r"""
import contextlib, io, json, socket, sys, time

attempts = []
LOOPBACK = {"localhost", "127.0.0.1", "::1", "", None}

def _host(event, args):
    if event == "socket.connect":
        sock, address = args
        if sock.family == socket.AF_UNIX:
            return None
        return address[0] if isinstance(address, tuple) else address
    return args[0]  # getaddrinfo, gethostbyname(_ex), gethostbyaddr: the host comes first

def _audit(event, args):
    if event not in ("socket.getaddrinfo", "socket.connect", "socket.gethostbyname", "socket.gethostbyname_ex"):
        return
    host = _host(event, args)
    host = host.decode() if isinstance(host, bytes) else host
    if host in LOOPBACK or str(host).startswith("127."):
        return
    attempts.append(f"{event} {host}")
    raise OSError(f"audit hook: network access to {host} refused")

sys.addaudithook(_audit)

from vlzoo.core.cli import main
from vlzoo.core import register_model
from vlzoo.core.models import CLIPConfig
from vlzoo.core.towers import TextTowerConfig, VisionTowerConfig

# Models whose text encoder's config is not registered inline: one cached by huggingface_hub, one not.
for probe, encoder in (("unknown", "example-org/uncached-bert"), ("cached", "example-org/cached-bert")):
    register_model(f"offline-probe-{probe}-bert")(lambda encoder=encoder: CLIPConfig(
        embed_dim=8,
        vision=VisionTowerConfig(timm_model="vit_tiny_patch16_224", timm_kwargs={"depth": 1}, image_size=32),
        text=TextTowerConfig(kind="hf", hf_model=encoder),
    ))

results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    attempts.clear()
    start = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except BaseException as e:  # a traceback the CLI let through is a failure of its own
            rc, _ = "raised", err.write(f"{type(e).__name__}: {e}")
    results.append({"argv": argv, "rc": rc, "seconds": time.monotonic() - start, "attempts": list(attempts),
                    "stdout": out.getvalue(), "stderr": err.getvalue()})
print("RESULTS " + json.dumps(results))
"""


_CACHED_BERT = {
    "model_type": "bert",
    "vocab_size": 100,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 80,
}


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One child process: `vlzoo info` of every registered model, of a model whose encoder config is
    missing, and `vlzoo download` of weights that are not cached."""
    home = tmp_path_factory.mktemp("offline")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        VLZOO_OFFLINE="1",
        VLZOO_HOME=str(home / "vlzoo"),
        HF_HOME=str(home / "hf"),
        HF_HUB_CACHE=str(home / "hf" / "hub"),
        OMP_NUM_THREADS="1",
    )
    # huggingface_hub's cache layout: the snapshot of a commit, and the ref naming it.
    snapshot = home / "hf" / "hub" / "models--example-org--cached-bert" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text(json.dumps(_CACHED_BERT))
    commands = [["download", "clip-vit-b-32:openai"], ["info", "offline-probe-unknown-bert"]]
    commands += [["info", "offline-probe-cached-bert"]]
    commands += [["info", name] for name in INSTALLED_MODELS]
    proc = subprocess.run(
        [sys.executable, "-c", _BOOTSTRAP, json.dumps(commands)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")), None)
    assert line is not None, f"the child process failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return {" ".join(r["argv"]): r for r in json.loads(line.removeprefix("RESULTS "))}


@pytest.mark.parametrize("name", INSTALLED_MODELS)
def test_info_counts_every_registered_model_offline_without_downloads(offline_run: dict, name: str):
    result = offline_run[f"info {name}"]
    assert result["attempts"] == []  # no lookup of a hub host, let alone a download
    assert result["rc"] == 0, result["stderr"][-2000:]
    info = json.loads(result["stdout"])
    assert info["name"] == name and info["num_params"] > 0


def test_download_of_uncached_weights_fails_fast_in_one_line_naming_the_file(offline_run: dict):
    result = offline_run["download clip-vit-b-32:openai"]
    assert result["attempts"] == []  # huggingface_hub is not even asked: it would resolve the hub's host
    assert result["rc"] == 2 and result["stdout"] == ""
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1, result["stderr"]  # no traceback, no retry chatter
    assert "open_clip_model.safetensors" in lines[0] and "VLZOO_OFFLINE=1" in lines[0]
    assert result["seconds"] < 5.0  # it used to wait on connection attempts; now it never tries one


def test_info_names_the_one_encoder_config_it_lacks_in_one_line(offline_run: dict):
    result = offline_run["info offline-probe-unknown-bert"]
    assert result["attempts"] == []
    assert result["rc"] == 2
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1, result["stderr"]
    assert "example-org/uncached-bert" in lines[0] and "config.json" in lines[0] and "offline" in lines[0]


@pytest.mark.parametrize("hub_first", [False, True], ids=["vlzoo-first", "huggingface_hub-first"])
def test_vlzoo_offline_puts_the_hub_libraries_offline_when_vlzoo_core_is_imported(hub_first: bool):
    first = "import huggingface_hub.constants; " if hub_first else ""
    code = (
        f"{first}import os, vlzoo.core, huggingface_hub, transformers.utils.hub as th; "
        "print(os.environ.get('HF_HUB_OFFLINE'), os.environ.get('TRANSFORMERS_OFFLINE'), "
        "huggingface_hub.is_offline_mode(), th.is_offline_mode())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["VLZOO_OFFLINE"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "True", "True"]


def test_info_reads_an_encoder_config_from_the_hub_cache_offline(offline_run: dict):
    result = offline_run["info offline-probe-cached-bert"]
    assert result["attempts"] == []
    assert result["rc"] == 0, result["stderr"][-2000:]
    # The cached 1-layer, 16-wide BERT beside a 1-block ViT-Ti; BERT-base's size would be 110M.
    assert json.loads(result["stdout"])["num_params"] < 2_000_000
