"""The recipes of zoo_configs/ run as users run them: through their domain's console script (LightningCLI
with the domain's defaults), with a test's changes given as command-line overrides.

    run = fit_recipe("priorclip-closed-tiny", {"trainer.max_epochs": 5, "data.data_dir": str(data_dir)})
    run.metrics["text_to_image_R@10"], run.module.model, run.steps[-1]["train/loss"]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

ZOO = Path(__file__).resolve().parents[2] / "zoo_configs"
# zoo_configs/<folder>/ → the console script users run its recipes with
SCRIPTS = {
    "core": "vlzoo",
    "geometry": "vlzoo-geometry",
    "medical": "vlzoo-medical",
    "ocr": "vlzoo-ocr",
    "person": "vlzoo-person",
    "remote_sensing": "vlzoo-remote-sensing",
    "robotics": "vlzoo-robotics",
}
# What a test run leaves out of a recipe: logs, checkpoints, progress output and the validation passes
# (a learning test evaluates once, on the test split, at the end).
QUIET: dict[str, Any] = {
    "trainer.logger": False,
    "trainer.enable_checkpointing": False,
    "trainer.enable_progress_bar": False,
    "trainer.enable_model_summary": False,
    "trainer.num_sanity_val_steps": 0,
    "trainer.limit_val_batches": 0,
}
# The med-toyworld the medical learning tests share (the 2D, 3D and concept files of one writer).
MED_TOYWORLD = {"n_train": 600, "n_val": 20, "n_test": 100, "seed": 0}


def all_recipes() -> list[Path]:
    return sorted(ZOO.glob("*/*.yaml"))


def recipe_path(recipe: str | Path) -> Path:
    """A recipe by path or by file name without its folder (`"radclip-tiny"`, `"radclip-tiny.yaml"`)."""
    path = Path(recipe)
    if path.is_file():
        return path
    name = path.name if path.suffix == ".yaml" else f"{path.name}.yaml"
    found = list(ZOO.glob(f"*/{name}"))
    if len(found) != 1:
        raise FileNotFoundError(f"{recipe}: {len(found)} recipes of that name under {ZOO}")
    return found[0]


def load_recipe(recipe: str | Path) -> dict[str, Any]:
    return yaml.safe_load(recipe_path(recipe).read_text())


def script_name(recipe: str | Path) -> str:
    return SCRIPTS[recipe_path(recipe).parent.name]


def console_main(recipe: str | Path) -> Callable[[list[str]], int]:
    """The `main` of the console script a user runs this recipe with, found as pip installed it."""
    (entry,) = entry_points(group="console_scripts", name=script_name(recipe))
    return entry.load()


def cli_args(overrides: Mapping[str, Any]) -> list[str]:
    """`{"data.batch_size": 4, "data.generate": {...}}` → `["--data.batch_size", "4", "--data.generate",
    '{...}']`: JSON for mappings, lists, booleans and null, which jsonargparse reads back as typed."""
    args: list[str] = []
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return args


def generated(tmp_path_factory: Any, dataset: str, **generate: Any) -> Path:
    """The folder of generated dataset `dataset` written with `generate`, once per session and arguments."""
    from vlzoo.core.data import ensure_generated

    key = hashlib.sha1(json.dumps(generate, sort_keys=True).encode()).hexdigest()[:8]
    root = tmp_path_factory.getbasetemp() / f"{dataset}-{key}"
    ensure_generated(dataset, root, generate)
    return root


class RecordSteps(L.Callback):
    """What a learning test inspects after the run: the model's state when `fit` started and the `train/`
    scalars logged after each training step. A recipe run gets it through `--trainer.callbacks+=`."""

    def __init__(self) -> None:
        self.start_state: dict[str, torch.Tensor] = {}
        self.steps: list[dict[str, float]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self.steps.append({k: float(v) for k, v in metrics.items() if k.startswith("train/")})


@dataclass
class RecipeRun:
    module: Any  # the trained `ZooModule`
    trainer: L.Trainer
    datamodule: Any
    metrics: dict[str, float] | None  # test-split retrieval metrics (unprefixed), None without `test`
    start_state: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: list[dict[str, float]] = field(default_factory=list)


def fit_recipe(
    recipe: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    model_overrides: Mapping[str, Any] | None = None,
    test: bool = True,
    quiet: bool = True,
) -> RecipeRun:
    """`<script> fit --config RECIPE --key value ...` in this process, then (with `test`) the test split
    on the trained module. `model_overrides` are merged into the recipe's own (a command-line dict would
    replace them); `quiet` adds `QUIET` under `overrides`. The model computes on one thread: the data
    workers use the other core of a small machine, and a tiny model's many small ops lose more to
    synchronizing two threads than they gain."""
    path = recipe_path(recipe)
    options = {**(QUIET if quiet else {}), **dict(overrides or {})}
    if model_overrides:
        own = load_recipe(path)["model"].get("model_overrides") or {}
        options["model.model_overrides"] = {**own, **model_overrides}
    args = ["fit", "--config", str(path), *cli_args(options)]
    args += ["--trainer.callbacks+=helpers.recipes.RecordSteps"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli = _run_cli(path, args)
        module, trainer = cli.model, cli.trainer
        metrics = None
        if test:
            trainer.test(module, cli.datamodule, verbose=False)
            metrics = module.last_retrieval_metrics["test"]
    finally:
        torch.set_num_threads(threads)
    record = next(c for c in trainer.callbacks if isinstance(c, RecordSteps))
    return RecipeRun(module, trainer, cli.datamodule, metrics, record.start_state, record.steps)


def _run_cli(path: Path, args: list[str]) -> Any:
    """The console script's LightningCLI, kept for its trainer and module: `run_lightning_cli` with the
    program name and defaults its `main` passes (the domain's `PROG` and `DEFAULTS`)."""
    from vlzoo.core.lightning_cli import run_lightning_cli

    cli_module = import_module(console_main(path).__module__)
    prog = getattr(cli_module, "PROG", "vlzoo")
    return run_lightning_cli(args, prog=prog, defaults=dict(getattr(cli_module, "DEFAULTS", {})))
