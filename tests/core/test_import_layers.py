"""The core's public surface and its layers: lazy subpackages, curated `__all__`s, imports that point down."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import vlzoo.core as vz

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = (
    "vlzoo.core",
    "vlzoo.core.data",
    "vlzoo.core.distributed",
    "vlzoo.core.eval",
    "vlzoo.core.losses",
    "vlzoo.core.models",
    "vlzoo.core.towers",
    "vlzoo.core.train",
    "vlzoo.core.weights",
)


def _fresh_python(code: str) -> dict:
    """Run `code` in a new interpreter (nothing imported yet) and return the JSON it prints."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_vlzoo_core_is_light_and_subpackages_load_on_first_use():
    seen = _fresh_python(
        "import json, sys\n"
        "import vlzoo.core as vz\n"
        "heavy = ['torch', 'lightning', 'matplotlib', 'vlzoo.core.registry', 'vlzoo.core.train']\n"
        "before = [m for m in heavy if m in sys.modules]\n"
        "towers = vz.towers.__name__\n"
        "after_towers = [m for m in ('torch', 'lightning') if m in sys.modules]\n"
        "print(json.dumps({'before': before, 'towers': towers, 'after_towers': after_towers}))\n"
    )
    assert seen["before"] == []  # errors only: no torch, no Lightning, no registry
    assert seen["towers"] == "vlzoo.core.towers"
    assert seen["after_towers"] == ["torch"]  # a subpackage brings what it needs, and no more


def test_every_public_subpackage_is_an_attribute_of_vlzoo_core():
    for name in ("data", "distributed", "eval", "losses", "models", "towers", "train", "weights"):
        assert getattr(vz, name) is importlib.import_module(f"vlzoo.core.{name}")
        assert name in dir(vz)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        vz.nope  # noqa: B018


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_name_in_a_public_all_exists(module):
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == [], f"{module}.__all__ names what it does not define: {missing}"
    assert len(set(mod.__all__)) == len(mod.__all__)


@pytest.mark.parametrize(
    "package",
    [m for m in PUBLIC_MODULES if m != "vlzoo.core.distributed"],  # distributed: a module, not a package
)
def test_no_public_name_shadows_a_submodule(package):
    """`from vlzoo.core.weights import convert` must not be a function on one day and a module on another."""
    pkg = importlib.import_module(package)
    for sub in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{package}.{sub.name}")
        assert getattr(pkg, sub.name) is module, f"{package}.{sub.name} is shadowed by a public name"


def test_what_domains_import_from_core_submodules_is_public():
    """The names domain packages took from internal modules, now on the curated surface."""
    expected = {
        "vlzoo.core.data": "Sample Record CaptionMode load_record read_csv_rows read_jsonl read_karpathy "
        "build_transform image_transform get_generated_dataset get_data_kind register_image_decoder",
        "vlzoo.core.towers": "VisionTower VisionTowerConfig TextTower TextTowerConfig ClipTokenizer "
        "HFTokenizer TokenizedText build_tokenizer OPENAI_CLIP_MEAN",
        "vlzoo.core.weights": "WeightSpec PretrainedSource cache_dir cache_path download is_offline save "
        "load_weights load_state_dict save_state_dict read_metadata register_converter from_open_clip",
        "vlzoo.core.distributed": "all_gather_features get_rank get_world_size is_distributed",
        "vlzoo.core": "create_model resolve_config register_model get_tokenizer get_transforms "
        "apply_overrides get_model_config get_pretrained_spec WeightSpec",
    }
    for module, names in expected.items():
        public = set(importlib.import_module(module).__all__)
        assert set(names.split()) - public == set(), module
    assert (
        vz.WeightSpec is vz.weights.WeightSpec is importlib.import_module("vlzoo.core.weights.hub").WeightSpec
    )


# ------------------------------------------------------------------------------------------- layers


def _layers_contract() -> dict:
    """The layers contract of `vlzoo.core` as pyproject.toml states it (what `lint-imports` checks)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c.get("containers") == ["vlzoo.core"]]
    return contract


def _violations(graph) -> set[tuple[str, str]]:
    """(importer, imported) of every import that goes up the core's layers or across independent siblings."""
    grimp = pytest.importorskip("grimp")
    contract = _layers_contract()
    layers = [grimp.Layer(*(tail.strip() for tail in line.split("|"))) for line in contract["layers"]]
    found = graph.find_illegal_dependencies_for_layers(layers=layers, containers=set(contract["containers"]))
    return {
        (head, tail) for dep in found for route in dep.routes for head in route.heads for tail in route.tails
    }


@pytest.fixture
def graph():
    grimp = pytest.importorskip("grimp")
    return grimp.build_graph("vlzoo", cache_dir=None)  # function-level imports included


def test_the_core_imports_point_down_its_layers_and_every_module_has_a_layer(graph):
    assert _violations(graph) == set()
    declared = {tail.strip() for line in _layers_contract()["layers"] for tail in line.split("|")}
    children = {m.rsplit(".", 1)[1] for m in graph.find_children("vlzoo.core")}
    assert children == declared


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("vlzoo.core.weights.checkpoint", "vlzoo.core.registry"),  # the cycle the layers removed
        ("vlzoo.core.data.kinds", "vlzoo.core.registry"),  # discovery lives in plugins, below both
        ("vlzoo.core.towers.text", "vlzoo.core.losses"),  # siblings of one layer are independent
        ("vlzoo.core.registry", "vlzoo.core.train"),
    ],
)
def test_a_planted_upward_import_breaks_the_contract(graph, importer, imported):
    graph.add_import(importer=importer, imported=imported)
    assert (importer, imported) in _violations(graph)
