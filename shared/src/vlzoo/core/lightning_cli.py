"""`vlzoo fit|validate|test -c recipe.yaml`: LightningCLI over `ContrastiveModule` and `ImageTextDataModule`.

Domain packages reuse `run_lightning_cli` with their own defaults (`vlzoo-medical fit ...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from vlzoo.core.train import ContrastiveModule, ExportWeights, ImageTextDataModule
from vlzoo.core.train.callbacks import run_dir

SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULT_ROOT = "runs"


class VlzooCLI(LightningCLI):
    """LightningCLI whose data module follows the model (same preprocessing and tokenizer), with a run
    directory holding TensorBoard and CSV logs, step checkpoints (`last.ckpt` for `--ckpt_path last`)
    and the exported weights."""

    defaults: dict[str, Any] = {}  # noqa: RUF012 - set per domain by run_lightning_cli, read-only here

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        if self.defaults:
            parser.set_defaults(self.defaults)
        parser.link_arguments("model.model", "data.model")
        parser.link_arguments("model.model_overrides", "data.model_overrides")
        parser.add_argument(
            "--checkpoint_every", type=int, default=200, help="save last.ckpt every this many optimizer steps"
        )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        root = Path(config.get("default_root_dir") or DEFAULT_ROOT)
        config["default_root_dir"] = str(root)
        if config.get("logger") in (None, True):
            # The same version for both loggers, so that one run is one folder.
            tensorboard = TensorBoardLogger(root, name="")
            config["logger"] = [tensorboard, CSVLogger(root, name="", version=tensorboard.version)]
        present = [*(config.get("callbacks") or []), *callbacks]
        if config.get("enable_checkpointing", True) is not False and not any(
            isinstance(c, ModelCheckpoint) for c in present
        ):
            every = self.config[self.subcommand].get("checkpoint_every", 200)
            callbacks.append(
                ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_train_steps=every)
            )
        if config.get("logger") and not any(isinstance(c, LearningRateMonitor) for c in present):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        return super()._instantiate_trainer(config, callbacks)

    def after_fit(self) -> None:
        self._summary("fit")

    def after_test(self) -> None:
        self._summary("test")

    def _summary(self, stage: str) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        parts = [f"vlzoo {stage} done"]
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(
            trainer.checkpoint_callback, "best_model_path", ""
        )
        if checkpoint:
            parts.append(f"checkpoint {checkpoint}")
        export = next((c for c in trainer.callbacks if isinstance(c, ExportWeights)), None)
        if export is not None and export.path is not None:
            parts.append(f"weights {export.path}")
        parts.append(f"logs {run_dir(trainer)}")
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if "R@1" in k or k.endswith("loss")
        }
        if metrics:
            parts.append(", ".join(f"{k} {v:.3g}" for k, v in sorted(metrics.items())))
        rank_zero_info(" · ".join(parts))


def run_lightning_cli(
    args: list[str], prog: str = "vlzoo", defaults: dict[str, Any] | None = None
) -> VlzooCLI:
    """Parse `args` (starting with a subcommand) and run it. `defaults` are a domain's own defaults, by
    dotted key (`{"model.model": "radclip-vit-b-16"}`); a recipe or the command line overrides them."""
    cli_class = type("DomainCLI", (VlzooCLI,), {"defaults": dict(defaults or {})}) if defaults else VlzooCLI
    return cli_class(
        ContrastiveModule,
        ImageTextDataModule,
        args=args,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": prog},
    )
