"""Every recipe of zoo_configs/ through the console script its users run (`vlzoo`, `vlzoo-medical`,
`vlzoo-ocr`, ..., found as pip installed them): `--print_config` for each, and `fit` for one batch
(`--trainer.fast_dev_run 1`) for each tiny one, on small generated data. Full-size recipes only print their
config: fitting them would download their weights."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from helpers.recipes import SCRIPTS, all_recipes, cli_args, console_main, load_recipe

import vlzoo.core as vz
from vlzoo.core.weights import save

# In-process runs give LightningCLI its arguments while pytest's are in sys.argv: intended here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
    pytest.mark.usefixtures("one_thread"),
]

RECIPES = all_recipes()
TINY = [path for path in RECIPES if "tiny" in path.stem]
SMALL = {"n_train": 8, "n_val": 4, "n_test": 4}
# A recipe that starts from an earlier stage's exported weights: (model override, the earlier model).
EARLIER_STAGE = {
    "radclip-3d-tiny": ("image_encoder_weights", "radclip-tiny"),
    "dbnet-tiny": ("backbone_init", "odm-tiny"),
}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_every_domain_has_recipes_and_tiny_ones():
    # every zoo_configs/<domain>/ folder has a console script and at least one tiny recipe
    assert {path.parent.name for path in TINY} == set(SCRIPTS)
    assert len(RECIPES) > len(TINY)


@pytest.mark.parametrize("recipe", RECIPES, ids=_id)
def test_recipe_prints_its_config_through_its_console_script(recipe, capsys):
    own = load_recipe(recipe)
    with pytest.raises(SystemExit) as stopped:  # LightningCLI exits once the config is printed
        console_main(recipe)(["fit", "--config", str(recipe), "--print_config"])
    assert stopped.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    model = printed["model"]["model"]
    assert model == own["model"]["model"] and model in vz.list_models()
    for section in ("trainer", "data"):  # the recipe's own settings, read and kept
        for key, value in own[section].items():
            if isinstance(value, (int, float, str)):
                assert printed[section][key] == value, (section, key)
    # one naming convention: <registered model>[-<stage or variant>].yaml
    assert recipe.stem == model or recipe.stem.startswith(f"{model}-"), (recipe.name, model)


@pytest.fixture(scope="session")
def recipe_data_root(tmp_path_factory) -> Path:
    """Where the small generated datasets go, one folder per recipe data_dir (the medical recipes share one)."""
    return tmp_path_factory.mktemp("recipe-data")


def _small_data(own: dict, root: Path) -> dict[str, object]:
    data = own["data"]
    return {
        "data.data_dir": str(root / Path(data["data_dir"]).name),
        "data.generate": {**(data.get("generate") or {}), **SMALL},
        "data.batch_size": 4,
        "data.num_workers": 0,
    }


def _earlier_stage(own: dict, tmp_path: Path) -> dict[str, object]:
    """The recipe's model overrides with an earlier stage's weights (a freshly built model, saved)."""
    if own["model"]["model"] not in EARLIER_STAGE:
        return {}
    key, earlier = EARLIER_STAGE[own["model"]["model"]]
    weights = save(vz.create_model(earlier), tmp_path / earlier / "model.safetensors")
    return {"model.model_overrides": {**own["model"]["model_overrides"], key: str(weights)}}


def _summary_losses(caplog) -> dict[str, float]:
    """The losses the run's closing summary reports (`vlzoo fit done · ... · train/loss 4.16, ...`)."""
    (summary,) = [r.getMessage() for r in caplog.records if "vlzoo fit done" in r.getMessage()]
    return {k: float(v) for k, v in re.findall(r"(\S+loss) (\S+?)(?:,|$| ·)", summary)}


def _config_field(config: object, dotted: str) -> object:
    """A model config's field by its override key (`vision.pool` reads `config.vision.pool`)."""
    for name in dotted.split("."):
        config = getattr(config, name)
    return config


def _as_yaml(value: object) -> object:
    """A config value as YAML writes it: tuples become lists, so `(256, 128)` equals a recipe's `[256, 128]`."""
    if isinstance(value, (tuple, list)):
        return [_as_yaml(v) for v in value]
    return value


@pytest.mark.parametrize("recipe", TINY, ids=_id)
def test_tiny_recipe_fits_a_batch_through_its_console_script(recipe, recipe_data_root, tmp_path, caplog):
    own = load_recipe(recipe)
    run = tmp_path / "run"
    overrides = {
        "trainer.fast_dev_run": 1,
        "trainer.default_root_dir": str(run),
        "trainer.enable_progress_bar": False,
        **_small_data(own, recipe_data_root),
        **_earlier_stage(own, tmp_path),
    }
    with caplog.at_level(logging.INFO):
        code = console_main(recipe)(["fit", "--config", str(recipe), *cli_args(overrides)])
    assert code == 0

    losses = _summary_losses(caplog)
    assert "train/loss" in losses and all(math.isfinite(v) for v in losses.values()), losses
    # the run exported the model it trained: its config is the recipe's, and it computes finite features
    model = vz.create_model(own["model"]["model"], pretrained=str(run / "model.safetensors")).eval()
    for key, value in (own["model"].get("model_overrides") or {}).items():
        if key not in dict(EARLIER_STAGE.values()):
            assert _as_yaml(_config_field(model.config, key)) == value, key
    if not hasattr(model, "encode_text"):  # a detector (dbnet-*) reads no text
        return
    tokens = vz.get_tokenizer(own["model"]["model"])(["a caption"])
    with torch.no_grad():
        assert torch.isfinite(model.encode_text(tokens)).all()
