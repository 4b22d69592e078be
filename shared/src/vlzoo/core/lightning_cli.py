"""`vlzoo fit|validate|test -c recipe.yaml`: LightningCLI over `ZooModule` and `ImageTextDataModule`.

Domain packages reuse `run_lightning_cli` with their own defaults (`vlzoo-medical fit ...`).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from vlzoo.core.errors import ConfigError
from vlzoo.core.train import ExportWeights, ImageTextDataModule, ZooModule
from vlzoo.core.train.callbacks import SkippedSamplesMonitor, run_dir
from vlzoo.core.train.checkpointing import (
    AtomicCheckpointIO,
    check_checkpoint,
    newest_loadable_checkpoint,
    remove_stale_temporaries,
)

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
        parser.link_arguments("model.pretrained", "data.pretrained")
        parser.add_argument(
            "--checkpoint_every", type=int, default=200, help="save last.ckpt every this many optimizer steps"
        )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        root = Path(config.get("default_root_dir") or DEFAULT_ROOT)
        config["default_root_dir"] = str(root)
        if config.get("logger") in (None, True):
            # The same version for both loggers, so that one run is one folder; the CSV logger first, as it
            # warns about a non-empty folder that TensorBoard's event file would otherwise have started.
            tensorboard = TensorBoardLogger(root, name="")
            config["logger"] = [CSVLogger(root, name="", version=tensorboard.version), tensorboard]
        present = [*(config.get("callbacks") or []), *callbacks]
        if config.get("enable_checkpointing", True) is not False and not any(
            isinstance(c, ModelCheckpoint) for c in present
        ):
            every = self.config[self.subcommand].get("checkpoint_every", 200)
            callbacks.append(
                # No version counter: a resumed run overwrites `last.ckpt` (atomically) instead of starting
                # a `last-v1.ckpt` beside a stale or broken one.
                ModelCheckpoint(
                    dirpath=root / "checkpoints",
                    save_last=True,
                    every_n_train_steps=every,
                    enable_version_counter=False,
                )
            )
        if config.get("logger") and not any(isinstance(c, LearningRateMonitor) for c in present):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            config["plugins"] = [*plugins, AtomicCheckpointIO()]
        return super()._instantiate_trainer(config, callbacks)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # Every unknown key of the recipe and the overrides at once, with suggestions, and argument errors
        # as one line: jsonargparse stops at the first and prints an 85-line usage before it.
        argv = list(sys.argv[1:] if args is None else args)
        if argv and argv[0] in SUBCOMMANDS and not {"-h", "--help"} & set(argv):
            check_recipe_keys(parser._subcommands_action._name_parser_map[argv[0]], argv[1:], argv[0])
        parsers = [parser, *parser._subcommands_action._name_parser_map.values()]
        exits = [p.exit_on_error for p in parsers]
        for p in parsers:
            p.exit_on_error = False
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise ConfigError(" ".join(str(err).split()) or repr(err)) from None
        finally:
            for p, exit_on_error in zip(parsers, exits):
                p.exit_on_error = exit_on_error

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the hyperparameters of a given checkpoint file while parsing: a broken one must be
        # named before that, not end in an anonymous unpickling or zip error.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            check_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if kwargs.get("ckpt_path") == "last" and subcommand == "fit":
            kwargs["ckpt_path"] = str(self._resume_checkpoint())
        return kwargs

    def _resume_checkpoint(self) -> Path:
        """`--ckpt_path last`: the newest checkpoint of the run folder that loads, never a silent fresh start
        (Lightning's own `last` starts from step 0 when `last.ckpt` is missing)."""
        callback = self.trainer.checkpoint_callback
        directory = Path(callback.dirpath) if callback is not None and callback.dirpath else None
        if directory is None:
            directory = Path(self.trainer.default_root_dir) / "checkpoints"
        remove_stale_temporaries(directory)
        path, rejected = newest_loadable_checkpoint(directory)
        skipped = "".join(f"; skipped {p.name} ({why})" for p, why in rejected)
        rank_zero_info(f"vlzoo: resuming from {path}{skipped}")
        return path

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
        monitor = next((c for c in trainer.callbacks if isinstance(c, SkippedSamplesMonitor)), None)
        if monitor is not None and stage == "fit":
            parts.append(monitor.summary())
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if "R@1" in k or k.endswith("loss")
        }
        if metrics:
            parts.append(", ".join(f"{k} {v:.3g}" for k, v in sorted(metrics.items())))
        rank_zero_info(" · ".join(parts))


def check_recipe_keys(parser: LightningArgumentParser, argv: list[str], subcommand: str = "fit") -> None:
    """Raise one `ConfigError` naming every key of the `--config` files and `--key value` overrides in
    `argv` that the subcommand's `parser` does not take, each with its closest known key."""
    defaults = parser.get_defaults()
    leaves = set(defaults.keys())
    known = leaves | set(defaults.keys(branches=True))
    given: list[str] = []
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            given += _recipe_keys(argv[i + 1], known, leaves)
        elif arg.startswith("--config="):
            given += _recipe_keys(arg.split("=", 1)[1], known, leaves)
        elif arg.startswith("--") and not arg.startswith("--print_config"):
            given.append(arg[2:].split("=", 1)[0].rstrip("+"))
    unknown = [k for k in dict.fromkeys(given) if not _is_known(k, known, leaves)]
    if unknown:
        listed = "; ".join(_with_suggestion(k, sorted(known)) for k in unknown)
        raise ConfigError(f"{subcommand}: unknown key{'s' if len(unknown) > 1 else ''}: {listed}")


def _is_known(key: str, known: set[str], leaves: set[str]) -> bool:
    # A dict-valued setting (model_overrides, data.generate, ...) checks its own keys later.
    return key in known or any(key.startswith(leaf + ".") for leaf in leaves)


def _recipe_keys(path: str, known: set[str], leaves: set[str]) -> list[str]:
    try:
        recipe = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return []  # jsonargparse reports an unreadable recipe itself
    keys: list[str] = []

    def walk(tree: Any, prefix: str) -> None:
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if name in leaves or not (isinstance(value, dict) and name in known):
                keys.append(name)
            else:
                walk(value, name + ".")

    if isinstance(recipe, dict):
        walk(recipe, "")
    return keys


def _with_suggestion(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"{key!r} (did you mean {close[0]}?)" if close else repr(key)


def run_lightning_cli(
    args: list[str], prog: str = "vlzoo", defaults: dict[str, Any] | None = None
) -> VlzooCLI:
    """Parse `args` (starting with a subcommand) and run it. `defaults` are a domain's own defaults, by
    dotted key (`{"model.model": "radclip-vit-b-16"}`); a recipe or the command line overrides them."""
    cli_class = type("DomainCLI", (VlzooCLI,), {"defaults": dict(defaults or {})}) if defaults else VlzooCLI
    return cli_class(
        ZooModule,
        ImageTextDataModule,
        # The console script's own argv given back as `args` would only earn LightningCLI's warning about
        # giving both.
        args=None if list(args) == sys.argv[1:] else args,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": prog},
    )
