"""GeoX's tiny pipeline on geo-toyworld against the 25% choice baseline, a text-only model and the plain
Q-Former ablation (no samplers, no vote generator), each with the same data and the same training budget,
in one run.

- GeoX: MAE → symbol LM → GS-Former alignment → instruction tuning (`geox-tiny`).
- plain Q-Former: the same four stages, GS-Former without its vote generator and samplers.
- text-only: the same instruction tuning of the same decoder on the question alone (`use_diagram=False`);
  its visual stages are skipped, since nothing it computes reads them.
Reported: top-1 (best beam) and top-k (first beam that executes to a choice) on the test problems, overall,
on the questions only the diagram answers (their values are written on the figure) and on the others.

    python benchmarks/geometry_geox_ablation.py                      # 1000 problems, 100/100/100/300 steps
    python benchmarks/geometry_geox_ablation.py --steps 20 20 20 100 --n-train 400
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import vlzoo.core as vz
from vlzoo.geometry.pipeline import PipelineBudget, answer_accuracy, train_pipeline

VARIANTS = {
    "GeoX (GS-Former)": {},
    "plain Q-Former": {"gsformer": {"vote_generator": False, "sampler_layers": []}},
    "text-only": {"use_diagram": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", nargs=4, type=int, default=[100, 100, 100, 300], metavar="N")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="keep data and runs here (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = dict(zip(("mae", "symbol", "align", "instruct"), args.steps, strict=True))
    generate = {"n_train": args.n_train, "n_val": 8, "n_test": args.n_test, "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        rows = []
        for name, overrides in VARIANTS.items():
            budget = PipelineBudget(
                steps=steps if overrides.get("use_diagram", True) else {"instruct": steps["instruct"]},
                generate=generate,
                seed=args.seed,
            )
            start = time.perf_counter()
            folder = root / "runs" / name.split()[0].lower()
            weights = train_pipeline("geox-tiny", root / "data", folder, budget, overrides=overrides)
            seconds = time.perf_counter() - start
            result = answer_accuracy(
                vz.create_model("geox-tiny", pretrained=weights), root / "data", num_beams=args.beams
            )
            rows.append((name, result, seconds))
            print(f"  {name}: trained in {seconds:.0f} s", flush=True)
    print(
        f"\ngeo-toyworld test: {rows[0][1]['n']} problems, {args.n_train} training problems, steps per stage "
        f"(mae, symbol, align, instruct) {args.steps}, {args.beams} beams, seed {args.seed}"
    )
    print(
        f"{'model':<20} {'top-1':>7} {f'top-{args.beams}':>7} {'top-1 diagram-only':>19} {'top-1 text':>11}"
    )
    print(f"{'choice baseline':<20} {0.25:>7.1%} {0.25:>7.1%} {0.25:>19.1%} {0.25:>11.1%}")
    for name, r, _ in rows:
        print(
            f"{name:<20} {r['top1']:>7.1%} {r['topk']:>7.1%} {r['top1_diagram']:>19.1%} {r['top1_text']:>11.1%}"
        )


if __name__ == "__main__":
    main()
