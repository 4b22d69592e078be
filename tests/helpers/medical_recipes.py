"""The tiny medical recipes as `vlzoo-medical fit` reads them, trained on one shared med-toyworld."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ZOO = Path(__file__).resolve().parents[2] / "zoo_configs" / "medical"
TOYWORLD = {"n_train": 600, "n_val": 20, "n_test": 100, "seed": 0}


def med_toyworld_for_recipes(tmp_path_factory: Any) -> Path:
    """med-toyworld for the recipe tests, written once per session (the 2D, 3D and concept files at once)."""
    from vlzoo.medical.data import write_med_toyworld

    root = tmp_path_factory.getbasetemp() / "med-toyworld-recipes"
    if not (root / "med-toyworld-2d.json").is_file():  # written last by the writer
        write_med_toyworld(root, **TOYWORLD)
    return root


def fit_recipe(recipe: str, data_dir: Path, run_dir: Path, test: bool = True, **model_overrides) -> tuple:
    """Train (and with `test`, test) a recipe of zoo_configs/medical on `data_dir`; returns the test
    retrieval metrics (None without `test`) and the trained module."""
    import lightning as L
    import yaml

    from vlzoo.core.train import ContrastiveModule, ImageTextDataModule

    spec = yaml.safe_load((ZOO / recipe).read_text())
    model_args = dict(spec["model"])
    model_args["model_overrides"] = {**(model_args.get("model_overrides") or {}), **model_overrides}
    data_args = {**spec["data"], "data_dir": str(data_dir)}
    data_args.update(model=model_args["model"], model_overrides=model_args["model_overrides"])
    L.seed_everything(spec["seed_everything"], verbose=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the recipe's data workers use the other core
    try:
        trainer = L.Trainer(
            accelerator="cpu",
            max_epochs=spec["trainer"]["max_epochs"],
            gradient_clip_val=spec["trainer"].get("gradient_clip_val"),
            default_root_dir=run_dir,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        module, data = ContrastiveModule(**model_args), ImageTextDataModule(**data_args)
        trainer.fit(module, data)
        if test:
            trainer.test(module, data, verbose=False)
    finally:
        torch.set_num_threads(threads)
    return (module.last_retrieval_metrics["test"] if test else None), module
