"""The `vlzoo-remote-sensing` command: vlzoo's CLI with this domain's defaults and commands.

vlzoo-remote-sensing fit -c zoo_configs/remote_sensing/priorclip_closed-tiny.yaml   (data: rs-toyworld)
vlzoo-remote-sensing eval retrieval --model NAME [--data rs-toyworld | rsitmd.json] [--out DIR]
vlzoo-remote-sensing eval zeroshot --model NAME --data UCMerced_LandUse/Images
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vlzoo.core.cli import Command
from vlzoo.core.cli import main as core_main
from vlzoo.remote_sensing.translate import add_arguments as configure_translate

PROG = "vlzoo-remote-sensing"
# LightningCLI defaults by dotted key: recipes train on the generated rs-toyworld unless they say otherwise.
DEFAULTS: dict[str, object] = {"data.data": "rs-toyworld"}


def _cmd_eval(args: argparse.Namespace) -> int:
    from vlzoo.core.evaluate import evaluate_linear_probe
    from vlzoo.remote_sensing.evaluation import evaluate_rs_retrieval, evaluate_rs_zeroshot

    common = {
        "model": args.model,
        "data": args.data,
        "pretrained": args.pretrained,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "out": args.out,
    }
    located = {"split": args.split, "data_kind": args.data_kind, "data_dir": args.data_dir}
    if args.task == "retrieval":
        evaluate_rs_retrieval(**common, **located, languages=args.languages)
    elif args.task == "zeroshot":
        evaluate_rs_zeroshot(**common, **located, templates=args.template)
    else:
        if args.train_data is None:
            from vlzoo.core.errors import ConfigError

            raise ConfigError("eval linear-probe needs --train-data (a scene folder)")
        evaluate_linear_probe(train_data=args.train_data, **common)
    return 0


def configure_eval(p: argparse.ArgumentParser) -> None:
    p.description = (
        "retrieval: the RSICD/RSITMD protocol (test split, every caption; I→T and T→I R@1/5/10 and mR); "
        "zeroshot: scene classification with remote-sensing prompts; linear-probe: as vlzoo's."
    )
    p.add_argument("task", choices=["retrieval", "zeroshot", "linear-probe"])
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--pretrained", default=None, help="weights: tag, file, HF directory or hf-hub:")
    p.add_argument(
        "--data",
        default="rs-toyworld",
        help="Karpathy JSON (RSICD, RSITMD, ...), a file of another data kind, a scene folder "
        "(zeroshot, linear-probe) or rs-toyworld (generated under --data-dir)",
    )
    p.add_argument("--data-kind", default=None, help="how to read --data when its suffix doesn't tell")
    p.add_argument("--data-dir", default=None, help="where a generated dataset lives (default data/<name>)")
    p.add_argument("--split", default="test", help="split of a Karpathy JSON")
    p.add_argument("--languages", default=None, help="caption languages of a multilingual file, e.g. en,pt")
    p.add_argument("--train-data", default=None, help="linear-probe: training scene folder")
    p.add_argument("--template", action="append", default=None, help="zero-shot prompt with {} (repeatable)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None, help="write the report (JSON, table, plots) here")
    p.set_defaults(func=_cmd_eval)


# The domain's subcommands, added to (or replacing) the core's. Other remote-sensing commands register here:
# add an entry `"name": Command(help, configure)` below.
COMMANDS: dict[str, Command] = {
    "eval": Command(
        "evaluate a model: RSICD/RSITMD retrieval, zero-shot scene classification", configure_eval
    ),
    "translate": Command(
        "machine-translate a Karpathy JSON's captions (RS-M-CLIP's data)", configure_translate
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    import vlzoo.remote_sensing  # noqa: F401  (registers the models, data kinds and decoders before parsing)

    return core_main(argv, prog=PROG, defaults=DEFAULTS, commands=COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
