"""PLIP's pretext tasks vs plain CLIP training on person-toyworld, same model (plip-tiny), data, seed, batches
(8 identities × 4 images) and epochs, in one run: text-based person search on the test identities.

- plip: colorization + attribute prediction + identity contrast (the paper's pre-training);
- plip-no-colorization: attribute prediction + identity contrast (the two tasks the issue compares);
- identity: identity contrast alone (every image of a person a positive);
- clip: CLIP's InfoNCE on the batch's pairs only (other images of a person count as negatives).

Issue goal: PLIP's identity contrast and attribute prediction measurably beat plain CLIP on the same budget.

    python benchmarks/person_plip_ablation.py                  # the demo's settings
    python benchmarks/person_plip_ablation.py --epochs 10 --modes plip clip
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from vlzoo.person.demo import PERSON_DEMO, run_person_demo

MODES = {
    "plip": ["colorization", "attribute_prediction", "identity_contrast"],
    "plip-no-colorization": ["attribute_prediction", "identity_contrast"],
    "identity": ["identity_contrast"],
    "clip": ["pair_contrast"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=PERSON_DEMO.epochs)
    parser.add_argument("--n-train", type=int, default=PERSON_DEMO.generate["n_train"])
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=sorted(MODES))
    parser.add_argument("--workers", type=int, default=PERSON_DEMO.num_workers)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            spec = PERSON_DEMO.resized(epochs=args.epochs, n_train=args.n_train, num_workers=args.workers)
            spec = replace(spec, model_overrides={"tasks": MODES[mode]})
            result = run_person_demo(spec, Path(tmp) / mode, console=Console(quiet=True))
            rows.append((mode, result.metrics, result.baselines, result.seconds))
    print(f"person-toyworld, plip-tiny, {args.epochs} epochs, {args.n_train} training identities × 4 images")
    print("| training | Rank-1 | Rank-5 | Rank-10 | mAP | mINP | s |")
    print("|---|---|---|---|---|---|---|")
    for mode, m, _, seconds in rows:
        cells = " | ".join(f"{m[k]:.1f}" for k in ("R@1", "R@5", "R@10", "mAP", "mINP"))
        print(f"| {mode} ({' + '.join(MODES[mode])}) | {cells} | {seconds:.0f} |")
    baselines = rows[0][2]
    print(
        f"chance Rank-1 {baselines['chance_R@1']:.1f}, colours-only Rank-1 {baselines['colours_only_R@1']:.1f}"
    )


if __name__ == "__main__":
    main()
