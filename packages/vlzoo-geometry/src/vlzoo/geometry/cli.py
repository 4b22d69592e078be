"""The `vlzoo-geometry` command: vlzoo's CLI with this domain's defaults and commands.

vlzoo-geometry solve DIAGRAM.png "question" --choices 5 8 10 12 --model geox-tiny [--pretrained F]
vlzoo-geometry solve DIAGRAM.png "question" --choices 5 8 10 12 --program "gougu_add N_0 N_1"
vlzoo-geometry render --out figures --n 12           # geo-toyworld diagrams with their problems
vlzoo-geometry eval geoqa --model geox-tiny          # top-1 / top-10 on geo-toyworld, with baselines
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from vlzoo.core.cli import Command, eval_command
from vlzoo.core.cli import main as core_main
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import register_eval_task
from vlzoo.geometry.demo import geox_demo_command

PROG = "vlzoo-geometry"
# LightningCLI defaults by dotted key: recipes train on the generated geo-toyworld unless they say otherwise.
DEFAULTS: dict[str, object] = {"data.data": "geo-toyworld"}

GEO_EVAL = "geometry"  # this domain's namespace of evaluation tasks
_NUMBER = re.compile(r"(?<![A-Za-z_])\d+(?:\.\d+)?")


def extract_numbers(question: str) -> list[float]:
    """The numbers a question states, in order (GeoQA's N_0, N_1, ...)."""
    return [float(m) for m in _NUMBER.findall(question)]


def _configure_geoqa(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-beams", type=int, default=10, help="programs per problem (top-1 and top-k)")
    parser.add_argument("--train-data", default=None, help="the problems the text-only baseline learns from")
    parser.add_argument("--train-split", default="train", help="their split, in a file that holds several")
    parser.add_argument(
        "--predictions",
        default=None,
        help="a JSONL of beams generated elsewhere (question_id, text), scored too",
    )


register_eval_task(
    "geoqa",
    "vlzoo.geometry.evaluation:evaluate_geoqa",
    help="GeoQA/UniGeo protocol: beam programs executed, top-1/top-10 accuracy per problem type, "
    "with choice-prior and text-only baselines (--model none: baselines only)",
    domain=GEO_EVAL,
    configure=_configure_geoqa,
)
register_eval_task(
    "pgps",
    "vlzoo.geometry.evaluation:evaluate_pgps",
    help="Geometry3K/PGPS9K protocol: beam programs run as PGPS programs, completion and choice accuracy",
    domain=GEO_EVAL,
    configure=lambda p: p.add_argument("--num-beams", type=int, default=10),
)


# ------------------------------------------------------------------------------------------- solve


def _solve(args: argparse.Namespace) -> int:
    from vlzoo.geometry.program import choose_answer, format_trace

    choices = [str(c) for c in args.choices]
    try:
        values = [float(c) for c in choices]
    except ValueError:
        raise ConfigError(f"solve: --choices must be numbers, got {choices}") from None
    numbers = args.numbers if args.numbers is not None else extract_numbers(args.question)
    if args.program is not None:
        beams = [args.program.split()]
    elif args.model is not None:
        beams = _model_beams(args, numbers, choices, values)
    else:
        raise ConfigError("solve: give --model NAME (generate the program) or --program 'TOKENS'")
    chosen = choose_answer(beams, numbers, values)
    best = next((b for b in beams if choose_answer([b], numbers, values) is not None), beams[0])
    print(f"question: {args.question}")
    if args.program is None:  # a model's beams, best first
        print("beams:\n" + "\n".join(f"  {i}: {' '.join(b)}" for i, b in enumerate(beams)))
    try:
        print(format_trace(best, numbers))
    except DataError as err:  # shown, then the verdict below
        print(f"program: {' '.join(best)}\n  does not execute: {err}")
    if chosen is None:
        print("answer: none (no program reaches a choice)")
        return 1
    print(f"answer: {'ABCDEFGH'[chosen]}. {choices[chosen]}")
    return 0


def _model_beams(args: argparse.Namespace, numbers: list[float], choices: list[str], values: list[float]):
    import torch

    from vlzoo.core import get_transforms
    from vlzoo.core.data import SAMPLE_ERRORS, ImageTextCollator, decode_image
    from vlzoo.core.eval import load_eval_model

    net, name = load_eval_model(args.model, args.pretrained)
    if not callable(getattr(net, "generate_programs", None)):
        raise ConfigError(f"solve: model {name!r} has no generate_programs(batch, num_beams)")
    try:
        image = decode_image(args.diagram, args.diagram)
    except SAMPLE_ERRORS as err:
        raise DataError(f"{args.diagram}: unreadable diagram ({type(err).__name__}: {err})") from None
    sample = {
        "id": "solve",
        "image": image,
        "question": args.question,
        "text": args.question,
        "numbers": numbers,
        "choices": choices,
        "choice_values": values,
    }
    batch = ImageTextCollator(get_transforms(net, train=False), None, captions="first")([sample])
    with torch.no_grad():
        return [list(map(str, b)) for b in net.generate_programs(batch, args.num_beams)[0]]


def _configure_solve(p: argparse.ArgumentParser) -> None:
    p.add_argument("diagram", help="the diagram (PNG, JPEG)")
    p.add_argument("question", help="the problem text")
    p.add_argument("--choices", nargs="+", required=True, help="the choices' values")
    p.add_argument(
        "--numbers", nargs="*", type=float, default=None, help="N_0, N_1, ... (default: the question's)"
    )
    p.add_argument("--model", default=None, help="registered model that generates the program")
    p.add_argument("--pretrained", default=None, help="its weights")
    p.add_argument("--num-beams", type=int, default=10)
    p.add_argument("--program", default=None, help="run this program instead of a model's: 'g_add N_0 N_1'")
    p.set_defaults(func=_solve)


# ------------------------------------------------------------------------------------------ render


def _render(args: argparse.Namespace) -> int:
    import json

    from vlzoo.geometry.data import write_geo_toyworld

    path = write_geo_toyworld(
        args.out, n_train=args.n, n_val=0, n_test=0, image_size=args.image_size, seed=args.seed
    )
    records = json.loads(path.read_text())["train"]
    for record in records:
        answer = record["choices"][record["label"]]
        print(f"{record['image']}: {record['subject']}  [{' '.join(record['manual_program'])}] → {answer}")
    sheet = _contact_sheet(
        [path.parent / r["image"] for r in records[:24]], path.parent / "contact_sheet.png"
    )
    print(
        f"wrote {args.n} diagrams and their problems under {args.out} ({path.name}; the first 24 in {sheet.name})"
    )
    return 0


def _contact_sheet(images: Sequence, out):
    from PIL import Image

    tiles = [Image.open(p).convert("RGB") for p in images]
    cols = min(6, max(1, len(tiles)))
    side = tiles[0].width if tiles else 1
    sheet = Image.new("RGB", (cols * side, max(1, -(-len(tiles) // cols)) * side), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * side, (i // cols) * side))
    sheet.save(out)
    return out


def _configure_render(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="geo-toyworld-figures", help="folder for the PNGs and the JSON")
    p.add_argument("--n", type=int, default=12, help="problems to draw")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_render)


# The domain's subcommands, added to (or replacing) the core's: `"name": Command(help, configure)`.
COMMANDS: dict[str, Command] = {
    "solve": Command("solve a geometry problem: program, step-by-step execution, answer", _configure_solve),
    "render": Command("draw geo-toyworld diagrams with their problems and programs", _configure_render),
    "demo": geox_demo_command(),
    "eval": eval_command(
        ("geoqa", "pgps"),
        domain=GEO_EVAL,
        help="evaluate a model: GeoQA/UniGeo top-1/top-10 accuracy with baselines, Geometry3K/PGPS9K accuracy",
        data_default="geo-toyworld",
        data_help="a GeoQA/UniGeo JSON export (data kind geoqa), geo-toyworld.json, or geo-toyworld "
        "(generated under --data-dir, default data/geo-toyworld)",
        batch_size=16,
        workers=0,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    import vlzoo.geometry  # noqa: F401  (registers the models and data kinds before parsing)

    return core_main(argv, prog=PROG, defaults=DEFAULTS, commands=COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
