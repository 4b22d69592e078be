"""The evaluation layer's glue: the task registry and `eval_command`, the runners' shared helpers, and the
promise that discovering the domains imports no plotting code."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from rich.console import Console

import vlzoo.core as vz
from vlzoo.core.cli import eval_command, main
from vlzoo.core.errors import ConfigError
from vlzoo.core.eval import (
    GalleryImages,
    encode_retrieval_set,
    get_eval_task,
    load_eval_model,
    register_eval_task,
    report_metrics,
    save_figure,
)
from vlzoo.core.eval import tasks as tasks_module

DOMAIN = "test-domain"
CALLS: list[tuple[str, dict]] = []


def echo_runner(
    model,
    *,
    data,
    pretrained=None,
    split="test",
    batch_size=128,
    workers=2,
    out=None,
    data_kind=None,
    data_dir=None,
    shout=1,
):
    """A runner with the common signature and one option of its own, recording what it was given."""
    options = {k: v for k, v in locals().items() if k != "model"}
    CALLS.append((model, options))
    return {"accuracy": 10.0 * shout}


@pytest.fixture
def registry(monkeypatch):
    """The task registry as it is, restored after the test."""
    monkeypatch.setattr(tasks_module, "_TASKS", {k: dict(v) for k, v in tasks_module._TASKS.items()})
    CALLS.clear()


def _domain_main(argv, **arguments):
    commands = {"eval": eval_command(domain=DOMAIN, **arguments)}
    return main(argv, prog="vlzoo-test", commands=commands)


def test_a_domain_task_gets_the_common_flags_and_its_own(registry, capsys):
    register_eval_task(
        "echo",
        echo_runner,
        help="echo the options",
        domain=DOMAIN,
        configure=lambda p: p.add_argument("--shout", type=int, default=1),
    )
    argv = ["eval", "echo", "--model", "clip-vit-tiny", "--data-dir", "d", "--split", "val", "--shout", "3"]
    assert _domain_main(argv, data_default="toy-data", batch_size=64) == 0
    assert CALLS == [
        (
            "clip-vit-tiny",
            {
                "data": "toy-data",
                "pretrained": None,
                "split": "val",
                "batch_size": 64,
                "workers": 2,
                "out": None,
                "data_kind": None,
                "data_dir": "d",
                "shout": 3,
            },
        )
    ]
    # --template is a common flag, but this runner takes no templates: set, it is refused, not ignored
    assert _domain_main([*argv, "--data", "x", "--template", "a {}"]) == 2
    assert "'echo' does not take templates" in capsys.readouterr().err
    # the core's tasks are the fallback of a domain's namespace
    assert get_eval_task("linear-probe", DOMAIN) is get_eval_task("linear-probe")
    with pytest.raises(ConfigError, match="unknown evaluation task 'nope'"):
        get_eval_task("nope", DOMAIN)


def test_a_duplicate_task_is_refused_naming_both_owners(registry):
    with pytest.raises(ConfigError, match=r"by vlzoo\.core\.eval\.runners and by \S*test_eval_tasks"):
        register_eval_task("retrieval", echo_runner, help="a second retrieval")
    # the same owner registering again (a reloaded module) replaces its task; another namespace is free
    register_eval_task("echo", echo_runner, help="one", domain=DOMAIN)
    assert register_eval_task("echo", echo_runner, help="two", domain=DOMAIN).help == "two"
    assert register_eval_task("retrieval", echo_runner, help="mine", domain=DOMAIN).domain == DOMAIN


def test_eval_all_runs_the_tasks_that_apply_and_writes_a_summary(registry, tmp_path):
    register_eval_task("echo", echo_runner, help="applies", domain=DOMAIN, applies=lambda net: True)
    no_volume = register_eval_task(
        "volume-echo", echo_runner, help="a volume task", domain=DOMAIN, applies=lambda net: False
    )
    assert no_volume.applies is not None
    out = tmp_path / "all"
    argv = ["eval", "all", "--model", "clip-vit-tiny", "--data", "x", "--out", str(out)]
    assert _domain_main(argv) == 0
    assert json.loads((out / "metrics.json").read_text()) == {"echo": {"accuracy": 10.0}}
    assert [options["out"] for _, options in CALLS] == [out / "echo"]


def test_load_eval_model_takes_a_name_or_a_built_model():
    net, name = load_eval_model("clip-vit-tiny")
    assert name == "clip-vit-tiny" and not net.training
    built = vz.create_model("clip-vit-tiny").train()
    assert load_eval_model(built) == (built, "clip-vit-tiny") and not built.training
    with pytest.raises(ConfigError, match="pretrained='x' given with a built clip-vit-tiny"):
        load_eval_model(built, pretrained="x")
    with pytest.raises(ConfigError, match=r"must come from vlzoo\.create_model"):
        load_eval_model(torch.nn.Linear(2, 2))


class _Source(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.records = [SimpleNamespace(image_path=p) for p in paths]

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        return {"image": f"decoded {index}"}


def test_gallery_images_decode_lazily_and_only_a_complete_gallery_is_shown():
    source = _Source(["a.tif", "b.tif"])
    assert list(GalleryImages(source)) == ["decoded 0", "decoded 1"]
    shown = GalleryImages(source, display=lambda path: f"composite of {path}")
    assert shown[1] == "composite of b.tif"
    encoded = SimpleNamespace(skipped=0, image_features=torch.zeros(2, 4))
    assert GalleryImages.of(source, encoded) is not None
    # one sample skipped: gallery index i is no longer encoded image i, so no plot may show it
    assert GalleryImages.of(source, SimpleNamespace(skipped=1, image_features=torch.zeros(1, 4))) is None


def test_report_prints_without_out_and_writes_with_it(tmp_path):
    printed = io.StringIO()
    assert report_metrics({"top1": 50.0}, "title", console=Console(file=printed)) == {}
    assert "top1" in printed.getvalue() and not list(tmp_path.iterdir())
    paths = report_metrics({"top1": 50.0}, "title", tmp_path / "r", console=Console(file=io.StringIO()))
    assert json.loads(paths["json"].read_text()) == {"top1": 50.0}
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1])
    path = save_figure(fig, tmp_path / "deep" / "plot.png")
    with Image.open(path) as image:  # 100 dpi, cropped to the drawing
        assert image.format == "PNG" and 150 < image.size[0] <= 200


class _Encoder(torch.nn.Module):
    def encode_image(self, images):
        return images.flatten(1)

    def encode_text(self, texts):
        return texts


def test_encoded_retrieval_set_counts_skipped_samples_and_reindexes_captions():
    first = {
        "image": torch.eye(2),
        "text": torch.eye(2)[[0, 0, 1]],
        "text_to_image": torch.tensor([0, 0, 1]),
        "captions": ["a", "a2", "b"],
        "skipped": [3],
    }
    empty = {"image": torch.zeros(0, 2), "text": torch.zeros(0, 2), "skipped": [4, 5]}
    last = {"image": torch.tensor([[0.6, 0.8]]), "text": torch.tensor([[0.6, 0.8]]), "captions": ["c"]}
    batches = [first, empty, last]
    encoded = encode_retrieval_set(_Encoder(), batches)
    assert encoded.text_to_image.tolist() == [0, 0, 1, 2] and encoded.captions == ["a", "a2", "b", "c"]
    metrics = encoded.metrics()
    assert (metrics["images"], metrics["captions"], metrics["skipped"]) == (3, 4, 3)
    # "c" finds its own image (index 2 of the gallery) first: its owner was shifted past the first batch
    assert metrics["text_to_image_R@1"] == 100.0


def test_discovering_the_domains_and_building_their_parsers_imports_no_plotting():
    # `list_models()` imports every installed domain; their commands' parsers name the eval tasks by
    # "module:function", so neither may pull in matplotlib or rich (seconds on every `vlzoo list`)
    code = """
import importlib.util, sys
import vlzoo.core as vz
from vlzoo.core.cli import build_parser
vz.list_models()
build_parser()
for domain in ("vlzoo.medical", "vlzoo.remote_sensing", "vlzoo.person", "vlzoo.ocr", "vlzoo.robotics",
               "vlzoo.geometry"):
    if importlib.util.find_spec(domain) is not None:  # the core's own test env has no domain
        build_parser(domain, importlib.import_module(domain + ".cli").COMMANDS)
print(sorted({m.split(".")[0] for m in sys.modules} & {"matplotlib", "rich"}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "[]"
