"""The `vlzoo` command.

    vlzoo list [PATTERN] [--pretrained]        registered models (or NAME:TAG weights)
    vlzoo info NAME                            config, parameter count, pretrained tags
    vlzoo download NAME[:TAG]                  fetch and verify weights into the cache
    vlzoo fit|validate|test -c recipe.yaml     train / evaluate with LightningCLI
    vlzoo eval retrieval|zeroshot|linear-probe evaluate a model on files
    vlzoo shards SOURCE PATTERN                write webdataset shards from any source
    vlzoo demo                                 toyworld → train a tiny CLIP on the CPU → report

Domain packages call `main(prog="vlzoo-<domain>", defaults=..., commands=...)` for their own command:
`defaults` are LightningCLI defaults by dotted key, `commands` add subcommands or replace core ones; their
`eval` is `eval_command(domain=...)` over the evaluation tasks they register (`vlzoo.core.eval.tasks`).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlzoo.core.errors import VlzooError
from vlzoo.core.eval.tasks import (
    EvalTask,
    add_eval_arguments,
    eval_options,
    eval_tasks,
    get_eval_task,
    run_eval_tasks,
)

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


@dataclass(frozen=True)
class Command:
    """A subcommand: `configure(parser)` adds its arguments and `parser.set_defaults(func=run)`, with
    `run(args) -> exit code`."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]


def _cmd_list(args: argparse.Namespace) -> int:
    from vlzoo.core.registry import list_models

    names = list_models(args.pattern, pretrained=args.pretrained)
    print("\n".join(names) if names else f"no model matches {args.pattern!r}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    from vlzoo.core.registry import model_info

    print(json.dumps(model_info(args.name), indent=2, default=str))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from vlzoo.core.registry import get_pretrained_spec, model_entry, split_model_name
    from vlzoo.core.weights.hub import download

    name, tag = split_model_name(args.name)
    entry = model_entry(name)
    tag = tag or entry.default_tag or next(iter(entry.pretrained), None)
    if tag is None:
        raise VlzooError(f"model {name!r} has no pretrained weights to download")
    cache = Path(args.cache_dir) if args.cache_dir else None
    path = download(get_pretrained_spec(name, tag), cache_dir=cache, progress=not args.quiet)
    print(path)
    return 0


def _cmd_shards(args: argparse.Namespace) -> int:
    from vlzoo.core.data import CsvPairs, ImageFolderClasses, JsonlPairs, KarpathySplits, write_shards
    from vlzoo.core.train.datamodule import data_kind

    source_path = Path(args.source)
    if source_path.is_dir():
        source = ImageFolderClasses(source_path)
    else:
        kind = data_kind(args.source)
        # only the keys given: each format has its own defaults (CSV filepath/title, JSONL image/text)
        keys = {k: v for k, v in (("img_key", args.img_key), ("caption_key", args.caption_key)) if v}
        readers: dict[str, Callable[[], Any]] = {
            "csv": lambda: CsvPairs(source_path, **keys),
            "tsv": lambda: CsvPairs(source_path, sep="\t", **keys),
            "jsonl": lambda: JsonlPairs(source_path, **keys),
            "karpathy": lambda: KarpathySplits(source_path, split=args.split, captions="all"),
        }
        if kind not in readers:
            raise VlzooError(f"{args.source}: cannot write shards from {kind} data")
        source = readers[kind]()
    paths = write_shards(
        source,
        args.pattern,
        max_size_bytes=int(args.max_size),
        max_count=args.max_count,
        resume=not args.overwrite,
        log=print,
    )
    print(f"wrote {len(paths)} shards: {paths[0]} ... {paths[-1]}" if paths else "no samples written")
    return 0


def demo_command(spec: str, help: str, out: str) -> Command:
    """`<prog> demo`: runs the `DemoSpec` at `spec` ("module:NAME", imported only when the demo runs, so
    that building the parser stays light) into `out`, its sizes adjustable from the command line."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        from vlzoo.core.demo import run_demo

        module, _, name = spec.partition(":")
        demo = getattr(importlib.import_module(module), name)
        run_demo(demo.resized(args.epochs, args.n_train, args.workers), args.out)
        return 0

    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default=out, help=f"where the data, run and report go (default {out})")
        p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo's)")
        p.add_argument("--n-train", type=int, default=None, help="training images (default: the demo's)")
        p.add_argument("--workers", type=int, default=None, help="data workers (default: the demo's)")
        p.set_defaults(func=run)

    return Command(help, configure)


def build_parser(
    prog: str = "vlzoo", commands: Mapping[str, Command] | None = None
) -> argparse.ArgumentParser:
    """The parser of `prog`: the core subcommands, with `commands` added (a same-named one replaces the
    core's)."""
    commands = dict(commands or {})
    parser = argparse.ArgumentParser(
        prog=prog,
        description="vlzoo: domain vision-language models. "
        f"Training: {prog} fit|validate|test -c RECIPE.yaml (see {prog} fit --help).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in {**CORE_COMMANDS, **commands}.items():
        command.configure(sub.add_parser(name, help=command.help))
    return parser


def _configure_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'clip-*'")
    p.add_argument("--pretrained", action="store_true", help="list name:tag for every pretrained weight")
    p.set_defaults(func=_cmd_list)


def _configure_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.set_defaults(func=_cmd_info)


def _configure_download(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="NAME or NAME:TAG")
    p.add_argument("--cache-dir", default=None, help="cache directory (default $VLZOO_HOME/weights)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_download)


def _configure_shards(p: argparse.ArgumentParser) -> None:
    p.add_argument("source")
    p.add_argument("pattern", help="printf-style shard path, e.g. shards/train-%%06d.tar")
    p.add_argument("--split", default="train", help="split of a Karpathy JSON")
    p.add_argument("--img-key", default=None, help="image column/key (default: CSV filepath, JSONL image)")
    p.add_argument("--caption-key", default=None, help="caption column/key (default: CSV title, JSONL text)")
    p.add_argument("--max-size", type=float, default=1e9, help="bytes per shard at most")
    p.add_argument("--max-count", type=int, default=10_000, help="samples per shard at most")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write every shard again (default: keep the complete shards of an earlier run and continue)",
    )
    p.set_defaults(func=_cmd_shards)


def _run_eval_task(task: EvalTask, args: argparse.Namespace) -> int:
    task.run(args.model, **eval_options(args))
    return 0


def _run_eval_all(tasks: Sequence[EvalTask], args: argparse.Namespace) -> int:
    options = eval_options(args)
    run_eval_tasks(args.model, tasks, out=options.pop("out"), **options)
    return 0


def eval_command(
    tasks: Sequence[str] | None = None,
    *,
    domain: str = "core",
    help: str = "evaluate a model: retrieval, zero-shot or linear-probe classification",
    **arguments: Any,
) -> Command:
    """`<prog> eval <task>`: one subcommand per task of `tasks` (names looked up in `domain`'s namespace,
    then the core's; default: every task of `domain`), each with the common flags of
    `add_eval_arguments(**arguments)` and the task's own; plus `all` (every task that applies to the
    model) when some task says which models it applies to. A domain's `cli.py` names its tasks and its
    defaults here, and nothing else."""

    def configure(p: argparse.ArgumentParser) -> None:
        chosen = [get_eval_task(name, domain) for name in (tasks or eval_tasks(domain))]
        sub = p.add_subparsers(dest="task", required=True, metavar="TASK")
        for task in chosen:
            task_parser = sub.add_parser(task.name, help=task.help, description=task.help)
            add_eval_arguments(task_parser, **arguments)
            if task.configure is not None:
                task.configure(task_parser)
            task_parser.set_defaults(func=functools.partial(_run_eval_task, task))
        choosable = [task for task in chosen if task.applies is not None]
        if choosable:
            every = (
                "every task the model can run; reports under --out/<task> and a summary --out/metrics.json"
            )
            add_eval_arguments(sub.add_parser("all", help=every, description=every), **arguments)
            sub.choices["all"].set_defaults(func=functools.partial(_run_eval_all, choosable))

    return Command(help, configure)


CORE_COMMANDS: dict[str, Command] = {
    "list": Command("list registered models (or their pretrained tags)", _configure_list),
    "info": Command("config, parameter count and pretrained tags of a model", _configure_info),
    "download": Command(
        "download (and verify) a model's pretrained weights into the cache", _configure_download
    ),
    "shards": Command(
        "write webdataset tar shards from a CSV/TSV/JSONL/Karpathy JSON/folder", _configure_shards
    ),
    "eval": eval_command(),
    "demo": demo_command(
        "vlzoo.core.demo:TOYWORLD_DEMO",
        "train a tiny CLIP on generated toyworld data on the CPU and report",
        out="vlzoo-demo",
    ),
}


def main(
    argv: Sequence[str] | None = None,
    prog: str = "vlzoo",
    defaults: Mapping[str, Any] | None = None,
    commands: Mapping[str, Command] | None = None,
) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list and args_list[0] in LIGHTNING_SUBCOMMANDS:
            from vlzoo.core.lightning_cli import run_lightning_cli

            run_lightning_cli(args_list, prog=prog, defaults=dict(defaults or {}))
            return 0
        args = build_parser(prog, commands).parse_args(args_list)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except VlzooError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
