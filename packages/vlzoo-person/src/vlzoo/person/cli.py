"""The `vlzoo-person` command: vlzoo's CLI with this domain's defaults and commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vlzoo.core.cli import Command, eval_command
from vlzoo.core.cli import main as core_main
from vlzoo.core.eval import register_eval_task

PROG = "vlzoo-person"
# LightningCLI defaults by dotted key.
DEFAULTS: dict[str, object] = {}

PERSON_EVAL = "person"  # this domain's namespace of evaluation tasks: `eval` offers every task in it


def _configure_tbps(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ap", default="tbps", choices=("tbps", "market1501"), help="AP protocol (one per table)")
    p.add_argument("--queries", type=int, default=5, help="queries drawn with their top-10 in the report")


# Runners by "module:function": building the parser must not import the evaluation code (matplotlib).
register_eval_task(
    "tbps",
    "vlzoo.person.evaluation:evaluate_tbps",
    help="text-based person search: every caption queries the images; Rank-1/5/10, mAP, mINP",
    domain=PERSON_EVAL,
    configure=_configure_tbps,
)


def _configure_face_attributes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-split", default="train", help="CelebA partition the linear probes train on")
    p.add_argument("--attributes", default=None, help="comma-separated attribute names (default: all)")


def _configure_pseudo_text(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attributes", default=None, help="attributes YAML (default: person-toyworld's groups)")
    p.add_argument(
        "--threshold", type=float, default=None, help="override every group's confidence threshold"
    )


register_eval_task(
    "face-attributes",
    "vlzoo.person.evaluation_faces:evaluate_face_attributes",
    help="FLIP's protocol: a linear probe per CelebA attribute on the frozen image encoder (mean accuracy)",
    domain=PERSON_EVAL,
    configure=_configure_face_attributes,
)
register_eval_task(
    "pseudo-text",
    "vlzoo.person.evaluation_faces:evaluate_pseudo_text",
    help="UniPT's pseudo captions: per attribute group, how often the phrase kept is the true value",
    domain=PERSON_EVAL,
    configure=_configure_pseudo_text,
)


def _configure_pseudo_text_command(p: argparse.ArgumentParser) -> None:
    from vlzoo.person.pseudo_text import add_arguments  # imported when the parser is built, not before

    add_arguments(p)


def _run_demo(args: argparse.Namespace) -> int:
    from vlzoo.person.demo import PERSON_DEMO, run_person_demo  # the training stack: only when it runs

    run_person_demo(
        PERSON_DEMO.resized(epochs=args.epochs, n_train=args.n_train, num_workers=args.workers), args.out
    )
    return 0


def _configure_demo(p: argparse.ArgumentParser) -> None:
    out = "vlzoo-person-demo"
    p.add_argument("--out", default=out, help=f"where the data, run and report go (default {out})")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo's)")
    p.add_argument("--n-train", type=int, default=None, help="training identities (default: the demo's)")
    p.add_argument("--workers", type=int, default=None, help="data workers (default: the demo's)")
    p.set_defaults(func=_run_demo)


# The domain's subcommands, added to (or replacing) the core's: `"name": Command(help, configure)`.
COMMANDS: dict[str, Command] = {
    "eval": eval_command(
        domain=PERSON_EVAL,
        help="evaluate a model: text-based person search (tbps) and the other person tasks",
        data_default="person-toyworld",
        data_help="a TBPS annotation (reid_raw.json, ICFG-PEDES.json, data_captions.json, ...), another "
        "task's data, or person-toyworld (generated under --data-dir, default data/person-toyworld)",
        batch_size=64,
        workers=0,
    ),
    "pseudo-text": Command(
        "caption images with UniPT's divide-conquer-combine generator (any CLIP, an attributes YAML)",
        _configure_pseudo_text_command,
    ),
    "demo": Command(
        "train plip-tiny on generated person-toyworld on the CPU and write the TBPS report", _configure_demo
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    import vlzoo.person  # noqa: F401  (registers the models and data kinds before parsing)

    return core_main(argv, prog=PROG, defaults=DEFAULTS, commands=COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
