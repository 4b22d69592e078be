"""The `vlzoo-remote-sensing` command: vlzoo's CLI with this domain's defaults and commands.

vlzoo-remote-sensing fit -c zoo_configs/remote_sensing/priorclip-closed-tiny.yaml   (data: rs-toyworld)
vlzoo-remote-sensing eval retrieval --model NAME [--data rs-toyworld | rsitmd.json] [--out DIR]
vlzoo-remote-sensing eval zeroshot --model NAME --data UCMerced_LandUse/Images
vlzoo-remote-sensing demo                                     (rs-toyworld → priorclip-closed-tiny → report)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vlzoo.core.cli import Command, demo_command, eval_command
from vlzoo.core.cli import main as core_main
from vlzoo.core.eval import register_eval_task
from vlzoo.remote_sensing.translate import add_arguments as configure_translate

PROG = "vlzoo-remote-sensing"
# LightningCLI defaults by dotted key: recipes train on the generated rs-toyworld unless they say otherwise.
DEFAULTS: dict[str, object] = {"data.data": "rs-toyworld"}


RS_EVAL = "remote-sensing"  # this domain's namespace of evaluation tasks


def _configure_retrieval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--languages", default=None, help="caption languages of a multilingual file, e.g. en,pt")
    p.add_argument(
        "--map-scenes", type=int, default=3, help="scenes drawn at their coordinates in the report"
    )


# Runners by "module:function": building the parser must not import the evaluation code (matplotlib).
register_eval_task(
    "retrieval",
    "vlzoo.remote_sensing.evaluation:evaluate_rs_retrieval",
    help="the RSICD/RSITMD protocol: test split, every caption; I→T and T→I R@1/5/10 and mR",
    domain=RS_EVAL,
    configure=_configure_retrieval,
)
register_eval_task(
    "zeroshot",
    "vlzoo.remote_sensing.evaluation:evaluate_rs_zeroshot",
    help="zero-shot scene classification with remote-sensing prompts",
    domain=RS_EVAL,
)


# The domain's subcommands, added to (or replacing) the core's. Other remote-sensing commands register here:
# add an entry `"name": Command(help, configure)` below.
COMMANDS: dict[str, Command] = {
    "eval": eval_command(
        ("retrieval", "zeroshot", "linear-probe"),  # linear-probe: the core's, on scene folders
        domain=RS_EVAL,
        help="evaluate a model: RSICD/RSITMD retrieval, zero-shot scene classification, linear probe",
        data_default="rs-toyworld",
        data_help="Karpathy JSON (RSICD, RSITMD, ...), a file of another data kind, a scene folder "
        "(zeroshot, linear-probe) or rs-toyworld (generated under --data-dir, default data/rs-toyworld)",
    ),
    "translate": Command(
        "machine-translate a Karpathy JSON's captions (RS-M-CLIP's data)", configure_translate
    ),
    "demo": demo_command(
        "vlzoo.remote_sensing.demo:REMOTE_SENSING_DEMO",
        "train priorclip-closed-tiny on generated rs-toyworld GeoTIFFs on the CPU and report",
        out="vlzoo-remote-sensing-demo",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    import vlzoo.remote_sensing  # noqa: F401  (registers the models, data kinds and decoders before parsing)

    return core_main(argv, prog=PROG, defaults=DEFAULTS, commands=COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
