"""The toyworld demo with plain batches vs hard-negative batches (each image beside its distractor), and with
NegCLIP's hard-negative captions, same spec, seed and epochs: text→image R@1/R@5, Winoground's pair scores
and seconds for each.

Issue goal: the default demo (hard-negative batches), within its few-minute budget, at text→image R@1 >= 75 %
and group score >= 50 %, with the plain-batch run's figures beside it.

    python benchmarks/hard_negatives.py                          # plain vs the default demo (hard batches)
    python benchmarks/hard_negatives.py --modes plain negclip hard hard+negclip
    python benchmarks/hard_negatives.py --epochs 30 --modes hard

Modes change only the batches (`data.group_batches`) and the loss (`NegClipLoss` over each image's
distractor captions); everything else is `TOYWORLD_DEMO`'s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from vlzoo.core.demo import TOYWORLD_DEMO, DemoSpec, run_demo

HARD_BATCHES = {"group_batches": {"key": "pair", "per_group": 2}}
NEGCLIP = {"loss": {"name": "negclip"}}
MODES = {  # name -> (data arguments, ZooModule arguments added to the demo's)
    "plain": ({}, {}),
    "hard": (HARD_BATCHES, {}),
    "negclip": ({}, NEGCLIP),
    "hard+negclip": (HARD_BATCHES, NEGCLIP),
}


def spec_for(mode: str, epochs: int, n_train: int) -> DemoSpec:
    data, module = MODES[mode]
    spec = TOYWORLD_DEMO.resized(epochs=epochs, n_train=n_train)
    return replace(spec, data=data, module={**spec.module, **module})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=TOYWORLD_DEMO.epochs)
    parser.add_argument("--n-train", type=int, default=TOYWORLD_DEMO.generate["n_train"])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["plain", "hard"])
    args = parser.parse_args()
    default = next(
        m for m, (data, module) in MODES.items() if data == dict(TOYWORLD_DEMO.data) and not module
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            out = Path(tmp) / mode.replace("+", "_")
            result = run_demo(spec_for(mode, args.epochs, args.n_train), out, console=Console(quiet=True))
            pairs = json.loads((out / "metrics.json").read_text())["pair_scores"]
            val = float(result.trainer.callback_metrics.get("val/text_to_image_R@1", float("nan")))
            rows.append((mode, result.metrics, pairs, val, result.seconds))
    print(
        f"toyworld demo, {args.epochs} epochs, {args.n_train} training images; the default demo is {default!r}"
    )
    print("| batches / loss | R@1 | R@5 | text | image | group | val R@1 | s |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, m, p, val, seconds in rows:
        scores = " | ".join(f"{p[k]:.1f}" for k in ("text_score", "image_score", "group_score"))
        r1, r5 = m["text_to_image_R@1"], m["text_to_image_R@5"]
        print(f"| {mode} | {r1:.1f} | {r5:.1f} | {scores} | {val:.1f} | {seconds:.0f} |")
    print("test split (val R@1: the validation split, what settings were chosen on)")
    print("chance: R@1 0.5, text 25.0, image 25.0, group 16.7; goal: R@1 >= 75, group >= 50")


if __name__ == "__main__":
    main()
