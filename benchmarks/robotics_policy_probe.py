"""The policy probe comparison: an encoder pre-trained on H2R-augmented clips vs the same encoder
pre-trained on the original human clips vs a random encoder, same architecture and budget.

    python benchmarks/robotics_policy_probe.py [--clips 48] [--epochs 15] [--seeds 0 1 2] [--episodes 20]

1. robot-toyworld (human-hand clips), 2. `augment` with the Franka (the H2R clips, a `video-captions`
dataset), 3. `h2r-clip-tiny` pre-trained on each with the same epochs and seed (frame–caption InfoNCE),
4. `run_policy_probe` (frozen image tower + MLP, behaviour cloning on the reach task) for the three
encoders and each seed; success rates with Wilson 95% intervals over all episodes of all seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch

from vlzoo.core.data import ensure_generated
from vlzoo.core.train import ImageTextDataModule, ZooModule
from vlzoo.core.weights import save
from vlzoo.robotics.augment import augment
from vlzoo.robotics.h2r import H2RConfig
from vlzoo.robotics.policy import run_policy_probe, wilson_interval

MODEL = "h2r-clip-tiny"


def pretrain(captions: Path, out: Path, epochs: int, seed: int) -> Path:
    if (out / "model.safetensors").is_file():  # pre-trained by an earlier run with these settings
        return out / "model.safetensors"
    L.seed_everything(seed, verbose=False)
    data = ImageTextDataModule(data=str(captions), data_kind="video-captions", model=MODEL, batch_size=32,
                               num_workers=0, data_options={"frames_per_clip": 6}, seed=seed)  # fmt: skip
    module = ZooModule(model=MODEL, lr=2e-3, weight_decay=0.05, warmup_steps=10, min_lr_ratio=0.05,
                       export_weights=False)  # fmt: skip
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        limit_val_batches=0, num_sanity_val_steps=0, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    trainer.fit(module, data)
    return save(module.model, out / "model.safetensors")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/robotics-policy-probe")
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--demos", type=int, default=40)
    args = p.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    out = Path(args.out)
    t0 = time.perf_counter()
    sizes = {"n_train": args.clips, "n_val": 4, "n_test": 0, "frames": 12, "image_size": 128}
    human = ensure_generated("robot-toyworld", out / "human", sizes)
    augment(human, out / "h2r", H2RConfig(robot="franka"), progress=False)
    weights = {"random": None}
    for name, captions in (("human", human), ("h2r", out / "h2r" / "captions.csv")):
        weights[name] = str(pretrain(captions, out / f"encoder-{name}", args.epochs, seed=0))
    print(f"data + pre-training: {time.perf_counter() - t0:.0f} s")
    rows = {}
    for name, pretrained in weights.items():
        runs = [run_policy_probe(MODEL, pretrained, args.demos, args.episodes, seed=s) for s in args.seeds]
        wins = sum(round(r["success_rate"] * r["episodes"]) for r in runs)
        n = sum(r["episodes"] for r in runs)
        rows[name] = {"success_rate": wins / n, "ci95": wilson_interval(wins, n),
                      "per_seed": [r["success_rate"] for r in runs],
                      "mean_final_distance": sum(r["mean_final_distance"] for r in runs) / len(runs)}  # fmt: skip
        lo, hi = rows[name]["ci95"]
        print(f"{name:>7}: success {wins}/{n} = {wins / n:.2f} (95% CI {lo:.2f}-{hi:.2f}), per seed "
              f"{rows[name]['per_seed']}, mean final distance {rows[name]['mean_final_distance']:.3f} m")  # fmt: skip
    (out / "policy_probe.json").write_text(json.dumps(rows, indent=2))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
