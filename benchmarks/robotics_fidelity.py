"""H2R's CLIP fidelity with a trained CLIP: the frame–caption similarity of original frames, the naive
baselines (hand blacked out; robot pasted over the hand) and H2R frames, on held-out robot-toyworld clips.

    python benchmarks/robotics_fidelity.py [--clips 16] [--out runs/robotics-fidelity]

The CLIPs that score are `h2r-clip-tiny` trained (frame–caption InfoNCE) on robot-toyworld's human clips
and on their H2R augmentation — the encoders `benchmarks/robotics_policy_probe.py` pre-trains (reused from
its `--probe-run` folder when there, else trained here the same way). The clips scored are a fresh
robot-toyworld (seed 1: clips neither CLIP saw). The paper scores with a web-scale CLIP; with a CLIP that
learned its captions from human frames, fidelity says how much of the caption's content (the block's
colour, the action) a frame still shows to a model of human videos.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from robotics_policy_probe import MODEL, pretrain_clip

from vlzoo.core.data import ensure_generated
from vlzoo.robotics.augment import augment
from vlzoo.robotics.evaluation import VARIANTS, evaluate_fidelity
from vlzoo.robotics.h2r import H2RConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/robotics-fidelity")
    p.add_argument("--probe-run", default="runs/robotics-policy-probe", help="where the probe's encoders are")
    p.add_argument("--clips", type=int, default=16, help="held-out clips scored")
    p.add_argument("--train-clips", type=int, default=48)
    p.add_argument("--epochs", type=int, default=15)
    args = p.parse_args()
    t0 = time.perf_counter()
    out, run = Path(args.out), Path(args.probe_run)
    weights = {}
    for name in ("human", "h2r"):
        if not (run / f"encoder-{name}" / "model.safetensors").is_file():
            sizes = {"n_train": args.train_clips, "n_val": 4, "n_test": 0, "frames": 12, "image_size": 128}
            human = ensure_generated("robot-toyworld", run / "human", sizes)
            if name == "h2r":
                augment(human, run / "h2r", H2RConfig(robot="franka"), progress=False)
        captions = run / "human" / "captions.csv" if name == "human" else run / "h2r" / "captions.csv"
        weights[name] = pretrain_clip(captions, run / f"encoder-{name}", args.epochs, seed=0)
    test = ensure_generated("robot-toyworld", out / "test",
                            {"n_train": 0, "n_val": 0, "n_test": args.clips, "frames": 12, "image_size": 128,
                             "seed": 1})  # fmt: skip
    rows = {}
    for name, w in weights.items():
        report = evaluate_fidelity(MODEL, str(w), data=str(test), split="test", out=str(out / name))
        rows[name] = report["fidelity"]
    print(
        f"\nCLIP fidelity on {args.clips} held-out clips (mean frame–caption cosine; higher = closer to the text)"
    )
    print(f"{'scoring CLIP trained on':<24}" + "".join(f"{v:>18}" for v in VARIANTS))
    for name, fid in rows.items():
        print(f"{name + ' clips':<24}" + "".join(f"{fid[v]:>18.4f}" for v in VARIANTS))
    (out / "fidelity.json").write_text(json.dumps(rows, indent=2))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
