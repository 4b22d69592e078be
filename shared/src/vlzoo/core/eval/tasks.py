"""The evaluation tasks behind `vlzoo eval <task>` and `vlzoo-<domain> eval <task>`.

A task is a runner with the common keyword signature of `vlzoo.core.eval.runners`, registered under a
name in a namespace: `"core"` for the core's tasks, the domain's name for a domain's. A domain
specializes a core task by registering the same name in its own namespace, with a runner that resolves
the domain's data and passes its defaults (prompt templates, a batch size) to the core runner;
`get_eval_task(name, domain)` looks in the domain's namespace, then in the core's.

Runners are named by "module:function" strings, imported when the task runs: building a command's parser
then imports no evaluation code (matplotlib and the report code take seconds, `vlzoo list` should not).

>>> register_eval_task("retrieval-3d", "vlzoo.medical.evaluation:evaluate_volume_retrieval",
...                    help="volume-report retrieval", domain="medical",
...                    applies=lambda net: hasattr(net, "encode_volume"))
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlzoo.core.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "EvalTask",
    "add_eval_arguments",
    "applicable_eval_tasks",
    "eval_options",
    "eval_tasks",
    "get_eval_task",
    "register_eval_task",
    "run_eval_tasks",
]

Runner = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class EvalTask:
    """A registered evaluation task. `runner` is a callable or "module:function"; `configure(parser)` adds
    the task's own flags (their `dest`s are the runner's keywords); `applies(model) -> bool`, given a model
    built on the meta device, says whether `eval all` runs the task for it."""

    name: str
    runner: str | Runner
    help: str
    domain: str = "core"
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    applies: Callable[[nn.Module], bool] | None = None

    @property
    def owner(self) -> str:
        """The module that defines the runner: a second registration by another module is refused."""
        return self.runner.split(":")[0] if isinstance(self.runner, str) else self.runner.__module__

    def load(self) -> Runner:
        if not isinstance(self.runner, str):
            return self.runner
        module, _, function = self.runner.partition(":")
        return getattr(importlib.import_module(module), function)

    def run(
        self, model: str | nn.Module, *, max_skip_rate: float | None = None, **options: Any
    ) -> dict[str, Any]:
        """Runs the task. An option the runner does not take is dropped when it is None (a flag left
        unset) and refused otherwise: a setting the task cannot honour is an error, not a no-op.

        Every task runs in a skip scope (`vlzoo.core.eval.skips`): the samples its loaders skip are
        counted, listed in its report and returned metrics, and stop it above `max_skip_rate` (default
        1%), whether or not its runner was written with `@evaluation_runner`."""
        # imported here, like the runner: building a command's parser imports no data code
        from vlzoo.core.eval.skips import skip_scope, with_skips

        runner = self.load()
        parameters = inspect.signature(runner).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            refused = sorted(k for k, v in options.items() if k not in parameters and v is not None)
            if refused:
                raise ConfigError(f"eval task {self.name!r} does not take {', '.join(refused)}")
            options = {k: v for k, v in options.items() if k in parameters}
        with skip_scope(max_skip_rate):
            return with_skips(runner(model, **options))


_TASKS: dict[str, dict[str, EvalTask]] = {}


def register_eval_task(
    name: str,
    runner: str | Runner,
    *,
    help: str,
    domain: str = "core",
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
    applies: Callable[[nn.Module], bool] | None = None,
) -> EvalTask:
    """Register task `name` in `domain`'s namespace (see the module docstring). The same name registered
    again by the same module replaces the task (a reloaded module); by another module, it is refused."""
    task = EvalTask(name, runner, help, domain, configure, applies)
    previous = _TASKS.get(domain, {}).get(name)
    if previous is not None and previous.owner != task.owner:
        raise ConfigError(
            f"eval task {name!r} ({domain}) is registered twice: by {previous.owner} and by {task.owner}"
        )
    _TASKS.setdefault(domain, {})[name] = task
    return task


def eval_tasks(domain: str = "core") -> dict[str, EvalTask]:
    """The tasks registered in `domain`'s namespace, in registration order."""
    return dict(_TASKS.get(domain, {}))


def get_eval_task(name: str, domain: str = "core") -> EvalTask:
    """Task `name` of `domain`'s namespace, else of the core's."""
    for space in dict.fromkeys((domain, "core")):
        if name in _TASKS.get(space, {}):
            return _TASKS[space][name]
    known = sorted({*_TASKS.get(domain, {}), *_TASKS.get("core", {})})
    raise ConfigError(f"unknown evaluation task {name!r}; the tasks are {known}")


def applicable_eval_tasks(model: str, tasks: Iterable[EvalTask]) -> list[EvalTask]:
    """The `tasks` whose `applies` accepts `model`, built on the meta device (no weights are made)."""
    # Imported here, not above: building a command's parser reads this registry and must not load torch.
    import torch

    from vlzoo.core.registry import create_model

    with torch.device("meta"):
        net = create_model(model)
    return [task for task in tasks if task.applies is not None and task.applies(net)]


def run_eval_tasks(
    model: str, tasks: Iterable[EvalTask], *, out: str | Path | None = None, **options: Any
) -> dict[str, dict[str, Any]]:
    """Every task of `tasks` that applies to `model`, each with `options`; reports under `out/<task>` and a
    summary of them all in `out/metrics.json`."""
    # imported here, not above: the report code pulls in matplotlib, and this module is imported whenever
    # a command's parser is built
    from vlzoo.core.eval.report import write_json

    results = {
        task.name: task.run(model, out=None if out is None else Path(out) / task.name, **options)
        for task in applicable_eval_tasks(model, tasks)
    }
    if out is not None:
        write_json(results, Path(out) / "metrics.json")
    return results


def add_eval_arguments(
    parser: argparse.ArgumentParser,
    *,
    data_default: str | None = None,
    data_help: str = "a file of any data kind, a class folder (classification) or a generated dataset",
    batch_size: int = 128,
    workers: int = 2,
) -> argparse.ArgumentParser:
    """The flags every evaluation task takes; their `dest`s are the runners' keywords (`--template` is
    `templates`). `--data` is required unless the domain gives `data_default`."""
    parser.add_argument("--model", required=True, help="registered model name")
    parser.add_argument("--pretrained", default=None, help="weights: tag, file, HF directory or hf-hub:")
    parser.add_argument("--data", required=data_default is None, default=data_default, help=data_help)
    parser.add_argument("--data-kind", default=None, help="how to read --data when its suffix doesn't tell")
    parser.add_argument("--data-dir", default=None, help="where a generated dataset is, or is written")
    parser.add_argument("--split", default="test", help="split of a file that holds several")
    parser.add_argument(
        "--template", dest="templates", action="append", default=None, help="prompt with {} (repeatable)"
    )
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--workers", type=int, default=workers, help="data loading processes")
    parser.add_argument("--out", default=None, help="write the report (JSON and plots) here")
    parser.add_argument(
        "--max-skip-rate",
        type=float,
        default=None,
        help="fail when more than this fraction of the samples is unreadable (default 0.01 = 1%%); "
        "below it, the report lists the skipped files",
    )
    return parser


def eval_options(args: argparse.Namespace) -> dict[str, Any]:
    """The runner keywords of parsed eval arguments: every flag but the command's own bookkeeping."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "task", "func", "model")}


def _configure_linear_probe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-data", default=None, help="the class folder the probe is trained on")


_CORE = "vlzoo.core.eval.runners"
register_eval_task(
    "retrieval",
    f"{_CORE}:evaluate_retrieval",
    help="image↔text retrieval (Karpathy JSON, CSV/JSONL, any data kind)",
)
register_eval_task(
    "zeroshot", f"{_CORE}:evaluate_zeroshot", help="zero-shot classification of a class folder with prompts"
)
register_eval_task(
    "linear-probe",
    f"{_CORE}:evaluate_linear_probe",
    help="logistic regression on frozen image features",
    configure=_configure_linear_probe,
)
