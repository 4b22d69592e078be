"""The policy probe comparison: an encoder pre-trained on H2R-augmented clips vs the same encoder
pre-trained on the original human clips vs a random encoder, same architecture and budget; and the
image-blind reference (goal + proprioception only: it can only guess which slot holds the goal colour).

    python benchmarks/robotics_policy_probe.py [--clips 48] [--epochs 15] [--seeds 0 1 2] [--episodes 50]

1. robot-toyworld (human-hand clips), 2. `augment` with the Franka (the H2R clips, a `video-captions`
dataset), 3. `h2r-clip-tiny` pre-trained on each with the same epochs and seed (frame–caption InfoNCE),
4. `run_policy_probe` (frozen patch tokens → goal-conditioned spatial softmax + MLP, behaviour cloning on
the reach-the-coloured-block task) for each encoder and seed, on the same demonstrations per seed;
success rates with Wilson 95% intervals over all episodes of all seeds, and per seed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L

from vlzoo.core.data import ensure_generated
from vlzoo.core.train import ImageTextDataModule, ZooModule
from vlzoo.core.weights import save
from vlzoo.robotics.augment import augment
from vlzoo.robotics.h2r import H2RConfig
from vlzoo.robotics.policy import ReachTask, expert_demos, run_policy_probe, wilson_interval

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
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--demos", type=int, default=60)
    p.add_argument("--train-steps", type=int, default=1000)
    args = p.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    sizes = {"n_train": args.clips, "n_val": 4, "n_test": 0, "frames": 12, "image_size": 128}
    human = ensure_generated("robot-toyworld", out / "human", sizes)
    augment(human, out / "h2r", H2RConfig(robot="franka"), progress=False)
    encoders: dict[str, tuple[str | None, str | None]] = {
        "blind (no image)": (None, None),
        "random": (MODEL, None),
    }
    for name, captions in (("human", human), ("h2r", out / "h2r" / "captions.csv")):
        encoders[name] = (MODEL, str(pretrain(captions, out / f"encoder-{name}", args.epochs, seed=0)))
    print(f"data + pre-training: {time.perf_counter() - t0:.0f} s", flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in encoders}
    task = ReachTask()
    try:
        for seed in args.seeds:
            demos = expert_demos(task, args.demos, seed)
            for name, (model, weights) in encoders.items():
                r = run_policy_probe(model, weights, args.demos, args.episodes, args.train_steps, seed, task=task,
                                     demonstrations=demos)  # fmt: skip
                runs[name].append(r)
                print(f"seed {seed} {name:>16}: {r['successes']}/{r['episodes']}, mean final distance "
                      f"{r['mean_final_distance']:.3f} m ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    finally:
        task.close()
    rows = {}
    print(
        f"\nreach the coloured block: {args.demos} demonstrations, {args.episodes} episodes × seeds {args.seeds}"
    )
    for name, rs in runs.items():
        wins, n = sum(r["successes"] for r in rs), sum(r["episodes"] for r in rs)
        lo, hi = wilson_interval(wins, n)
        per_seed = [r["successes"] / r["episodes"] for r in rs]
        dist = sum(r["mean_final_distance"] for r in rs) / len(rs)
        rows[name] = {
            "success_rate": wins / n,
            "ci95": (lo, hi),
            "per_seed": per_seed,
            "mean_final_distance": dist,
        }
        print(f"{name:>16}: success {wins}/{n} = {wins / n:.2f} (95% CI {lo:.2f}-{hi:.2f}), per seed "
              f"{[round(s, 2) for s in per_seed]}, mean final distance {dist:.3f} m")  # fmt: skip
    (out / "policy_probe.json").write_text(json.dumps(rows, indent=2))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
