"""The `vlzoo-medical` command: vlzoo's CLI with this domain's defaults and its own `eval`.

vlzoo-medical fit -c zoo_configs/medical/radclip-tiny.yaml     (data defaults to med-toyworld)
vlzoo-medical eval all --model radclip-3d-tiny --out runs/eval  (every task the model can run)
vlzoo-medical eval retrieval-3d --model radclip-3d-tiny --data volumes.jsonl --out runs/eval3d
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vlzoo.core.cli import Command
from vlzoo.core.cli import main as core_main

PROG = "vlzoo-medical"
DEFAULTS: dict[str, object] = {"data.data": "med-toyworld", "model.model": "radclip-tiny"}
# `vlzoo.medical.evaluation.TASKS` and "all", spelled out: building the parser must not import the
# evaluation code (matplotlib, seconds) for `vlzoo-medical list`
EVAL_TASKS = ("retrieval", "retrieval-3d", "zeroshot", "itm", "concepts", "all")


def _cmd_eval(args: argparse.Namespace) -> int:
    from vlzoo.medical.evaluation import DEFAULT_DATA_DIR, run_all, run_task

    options = {
        "data": args.data,
        "pretrained": args.pretrained,
        "split": args.split,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "data_dir": args.data_dir or DEFAULT_DATA_DIR,
        "data_kind": args.data_kind,
        "templates": args.template,
    }
    if args.task == "all":
        run_all(args.model, out=args.out, **options)
    else:
        run_task(args.task, args.model, out=args.out, **options)
    return 0


def configure_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "task",
        choices=EVAL_TASKS,
        help="retrieval (2D image-report), retrieval-3d (volume-report), zeroshot (class folders, medical "
        "prompts), itm (image-text matching, PTUnifier), concepts (concept detection, ConceptCLIP), all",
    )
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--pretrained", default=None, help="weights: tag, file, HF directory or hf-hub:")
    p.add_argument(
        "--data",
        default="med-toyworld",
        help="a file of the task's kind (Karpathy JSON, volume-reports / medconcept JSONL, class folder) or "
        "med-toyworld (generated under --data-dir on first use)",
    )
    p.add_argument(
        "--data-dir", default=None, help="where med-toyworld is, or is written (data/med-toyworld)"
    )
    p.add_argument("--data-kind", default=None, help="how to read --data when its suffix doesn't tell")
    p.add_argument("--split", default="test")
    p.add_argument("--template", action="append", default=None, help="zero-shot prompt with {} (repeatable)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None, help="write the report (JSON and plots) here")
    p.set_defaults(func=_cmd_eval)


COMMANDS: dict[str, Command] = {
    "eval": Command(
        "evaluate a model: 2D/3D image-report retrieval, zero-shot, image-text matching, concept detection",
        configure_eval,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    import vlzoo.medical  # noqa: F401  (registers the models, data kinds and decoders before parsing)

    return core_main(argv, prog=PROG, defaults=DEFAULTS, commands=COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
