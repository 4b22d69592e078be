"""The toyworld demo with plain batches vs hard-negative batches (each image beside its distractor), same
spec, seed and epochs, in one run: text→image R@1/R@5, Winoground's pair scores and seconds for each.

Issue goal: the default demo, within its few-minute budget, at text→image R@1 >= 75 % and group score >= 50 %.

    python benchmarks/hard_negatives.py                    # the default demo's 12 epochs
    python benchmarks/hard_negatives.py --epochs 30 --modes hard
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from vlzoo.core.demo import TOYWORLD_DEMO, run_demo

MODES = {"plain": {}, "hard": {"group_batches": {"key": "pair", "per_group": 2}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=TOYWORLD_DEMO.epochs)
    parser.add_argument("--n-train", type=int, default=TOYWORLD_DEMO.generate["n_train"])
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["plain", "hard"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            spec = replace(TOYWORLD_DEMO.resized(epochs=args.epochs, n_train=args.n_train), data=MODES[mode])
            result = run_demo(spec, Path(tmp) / mode, console=Console(quiet=True))
            pairs = json.loads((Path(tmp) / mode / "metrics.json").read_text())["pair_scores"]
            rows.append((mode, result.metrics, pairs, result.seconds))
    print(f"toyworld demo, {args.epochs} epochs, {args.n_train} training images")
    print("| batches | R@1 | R@5 | text | image | group | s |")
    print("|---|---|---|---|---|---|---|")
    for mode, m, p, seconds in rows:
        scores = " | ".join(f"{p[k]:.1f}" for k in ("text_score", "image_score", "group_score"))
        r1, r5 = m["text_to_image_R@1"], m["text_to_image_R@5"]
        print(f"| {mode} | {r1:.1f} | {r5:.1f} | {scores} | {seconds:.0f} |")
    print("chance: R@1 0.5, text 25.0, image 25.0, group 16.7; goal: R@1 >= 75, group >= 50")


if __name__ == "__main__":
    main()
