"""The `vlzoo-ocr` command: vlzoo's CLI with this domain's defaults and commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vlzoo.core.cli import Command, eval_command
from vlzoo.core.cli import main as core_main
from vlzoo.core.eval import register_eval_task
from vlzoo.ocr.commands_detection import (
    OCR_EVAL,
    configure_demo,
    configure_export_mmocr,
    configure_fit_mmocr,
    configure_render,
    configure_render_glyphs,
)
from vlzoo.ocr.data.lmdb import configure_lmdb_command
from vlzoo.ocr.dptr import configure_orp_command


# Arguments here and the runner by "module:function", as detection: the runner (rich, matplotlib) is
# imported when the task runs, not whenever the parser is built.
def _configure_recognition_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--charset", default=None, help="evaluation charset: 36 (default), 94 or a file")
    p.add_argument(
        "--max-length", type=int, default=25, help="labels longer than this are left out (PARSeq: 25)"
    )
    p.add_argument("--parallel", dest="ar", action="store_false", default=None, help="NAR decoding")
    p.add_argument("--refine-iters", type=int, default=None, help="cloze refinements (default the model's)")
    p.add_argument("--figure-crops", type=int, default=24, help="crops drawn in crops.png")


register_eval_task(
    "recognition",
    "vlzoo.ocr.evaluation_recognition:evaluate_recognition",
    help="word accuracy and 1-NED per STR benchmark (LMDB folders, labels files) and combined",
    domain=OCR_EVAL,
    configure=_configure_recognition_eval,
)

PROG = "vlzoo-ocr"
# LightningCLI defaults by dotted key.
DEFAULTS: dict[str, object] = {}

# The domain's subcommands, added to (or replacing) the core's: `"name": Command(help, configure)`.
COMMANDS: dict[str, Command] = {
    "lmdb": Command("create or inspect a scene-text recognition LMDB", configure_lmdb_command),
    "orp-bank": Command("CLIP image features of text-free images for DPTR's ORP", configure_orp_command),
    "eval": eval_command(
        domain=OCR_EVAL,
        help="evaluate a model: scene-text detection (ICDAR 2015 protocol), recognition (accuracy, 1-NED)",
        data_default="ocr-toyworld",
        data_help="a detection dataset (index JSON, images/ + gt/ folder) or ocr-toyworld",
        batch_size=16,
        workers=0,
    ),
    "render": Command("write ocr-toyworld: scene images with ICDAR-style ground truth", configure_render),
    "render-glyphs": Command("write ODM glyph labels for a detection dataset", configure_render_glyphs),
    "export-mmocr": Command("an ODM/DBNet backbone in MMOCR's CLIPResNet key layout", configure_export_mmocr),
    "fit-mmocr": Command("MMOCR's DBNet from an ODM backbone ([mmocr] extra)", configure_fit_mmocr),
    "demo": Command("ocr-toyworld → tiny ODM pre-train → DBNet fine-tune → detection report", configure_demo),
}


def main(argv: Sequence[str] | None = None) -> int:
    import vlzoo.ocr  # noqa: F401  (registers the models and data kinds before parsing)

    return core_main(argv, prog=PROG, defaults=DEFAULTS, commands=COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
