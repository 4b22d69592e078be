"""GeoX's tiny pipeline on geo-toyworld against the 25% choice baseline, a text-only model and the plain
Q-Former ablation (no samplers, no vote generator), each with the same data and the same training budget,
in one run.

- GeoX: MAE → symbol LM → GS-Former alignment → instruction tuning (`geox-tiny`).
- plain Q-Former: the same four stages, GS-Former without its vote generator and samplers.
- text-only: the same instruction tuning of the same decoder on the question alone (`use_diagram=False`);
  its visual stages are skipped, since nothing it computes reads them.
Reported: top-1 (best beam) and top-k (first beam that executes to a choice) on the test problems, overall,
on the questions only the diagram answers (their values are written on the figure) and on the others; and
two probes of whether the diagram gets through at all: the alignment stage's diagram ↔ formal-description
R@1 on the test pairs (chance 1/n) and the program loss with each problem's own diagram against another
problem's (equal: the model does not read its diagram).

    python benchmarks/geometry_geox_ablation.py                      # 1000 problems, 100/100/100/300 steps
    python benchmarks/geometry_geox_ablation.py --steps 20 20 20 100 --n-train 400 --workers 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

import vlzoo.core as vz
from vlzoo.geometry.data import write_geo_toyworld
from vlzoo.geometry.pipeline import (
    PipelineBudget,
    alignment_recall,
    answer_accuracy,
    diagram_reliance,
    train_pipeline,
)

VARIANTS = {
    "GeoX (GS-Former)": {},
    "plain Q-Former": {"gsformer": {"vote_generator": False, "sampler_layers": []}},
    "text-only": {"use_diagram": False},
}


def run_variant(name: str, overrides: dict, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Train one variant through its stages and measure it (in its own process when --workers > 1)."""
    torch.set_num_threads(1)
    steps = dict(zip(("mae", "symbol", "align", "instruct"), args.steps, strict=True))
    visual = overrides.get("use_diagram", True)
    budget = PipelineBudget(
        steps=steps if visual else {"instruct": steps["instruct"]},
        generate={"n_train": args.n_train, "n_val": 8, "n_test": args.n_test, "seed": args.seed},
        seed=args.seed,
    )
    start = time.perf_counter()
    folder = root / "runs" / name.split()[0].lower()
    weights = train_pipeline("geox-tiny", root / "data", folder, budget, overrides=overrides)
    seconds = time.perf_counter() - start
    model = vz.create_model("geox-tiny", pretrained=weights)
    result = answer_accuracy(model, root / "data", num_beams=args.beams)
    result.pop("rows")
    result["loss"] = diagram_reliance(model, root / "data")
    aligned = folder / "align.safetensors"
    result["recall"] = (
        alignment_recall(vz.create_model("geox-tiny", pretrained=aligned, stage="align"), root / "data")
        if visual and aligned.is_file()
        else None
    )
    result["seconds"] = seconds
    print(f"  {name}: trained in {seconds:.0f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", nargs=4, type=int, default=[100, 100, 100, 300], metavar="N")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=1, help="variants trained side by side (one thread each)"
    )
    parser.add_argument("--out", default=None, help="keep data and runs here (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        if not (root / "data" / "geo-toyworld.json").is_file():  # written once, before the workers read it
            write_geo_toyworld(
                root / "data", n_train=args.n_train, n_val=8, n_test=args.n_test, seed=args.seed
            )
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
                jobs = {n: pool.submit(run_variant, n, o, args, root) for n, o in VARIANTS.items()}
                rows = [(n, job.result()) for n, job in jobs.items()]
        else:
            rows = [(n, run_variant(n, o, args, root)) for n, o in VARIANTS.items()]
    print(
        f"\ngeo-toyworld test: {rows[0][1]['n']} problems, {args.n_train} training problems, steps per stage "
        f"(mae, symbol, align, instruct) {args.steps}, {args.beams} beams, seed {args.seed}"
    )
    k = f"top-{args.beams}"
    print(
        f"{'model':<20} {'top-1':>7} {k:>7} {'top-1 diagram-only':>19} {'top-1 text':>11}"
        f" {'loss own/other diagram':>23} {'align R@1 i2t/t2i':>18}"
    )
    print(f"{'choice baseline':<20} {0.25:>7.1%} {0.25:>7.1%} {0.25:>19.1%} {0.25:>11.1%}")
    for name, r in rows:
        recall = r["recall"]
        probe = f"{recall['i2t_r1']:.2f}/{recall['t2i_r1']:.2f} (n={recall['n']})" if recall else "-"
        print(
            f"{name:<20} {r['top1']:>7.1%} {r['topk']:>7.1%} {r['top1_diagram']:>19.1%} {r['top1_text']:>11.1%}"
            f" {r['loss']['own']:>11.4f}/{r['loss']['shuffled']:<11.4f} {probe:>18}"
        )


if __name__ == "__main__":
    main()
