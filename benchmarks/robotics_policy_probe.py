"""The policy probe comparison: an encoder pre-trained on H2R-augmented clips vs the same encoder
pre-trained on the original human clips vs a random encoder, same architecture and budget; and the
image-blind reference (goal + proprioception only: it can only guess which slot holds the goal colour).

    python benchmarks/robotics_policy_probe.py [--clips 48] [--epochs 15] [--tcn-epochs 60]
        [--mae-epochs 40] [--mae-raw-pixels] [--objectives clip tcn mae] [--readout tokens|pooled]
        [--no-proprioception] [--no-distractors] [--no-oracle] [--seeds 0 1 2] [--episodes 50] [--demos 60]
        [--pretrain-seed 0] [--table-only]

The headline probe (why this one, below):

    python benchmarks/robotics_policy_probe.py --objectives clip tcn mae --readout pooled \
        --no-proprioception --no-distractors

Why this probe. What H2R pre-training can give that a random encoder lacks is familiarity with the
robot's appearance: features that say where the robot's gripper is. The earlier probes didn't ask for it:
with the tool position given (proprioception) and the goal one of three coloured blocks, the policy only
needs "which patch has the goal colour", which a random ViT's tokens keep in place, so random led. So the
policy here gets no proprioception (the gripper must be read from pixels, the point of a visual
representation for manipulation) and reads the frozen global embedding (R3M's and H2R's protocol: the
embedding, BatchNorm, MLP), with the goal block alone on the table (`--no-distractors`): the goal is the
scene's one object, not a colour lookup, which no pooled embedding solved for any encoder (`--readout
pooled` with distractors: below). The cheap proxy chose it before any rollout:
`benchmarks/robotics_linear_readout.py` finds the H2R-frame MAE's global embedding the one that reads the
gripper's position better than a random one's (R² tool x 0.89 against 0.80-0.85).

1. robot-toyworld (human-hand clips), 2. `augment` with the Franka (the H2R clips, a `video-captions`
dataset), 3. `h2r-clip-tiny` pre-trained on each with the same objective, epochs and seed: `clip`
(frame–caption InfoNCE, `--epochs`) and/or `tcn` (R3M's time-contrastive loss, `vlzoo.robotics.r3m`,
`--tcn-epochs`) and/or `mae` (`h2r-mae-tiny`, the same ViT with MAE's conventions, masked-autoencoder
pre-training, `vlzoo.robotics.mae`, `--mae-epochs`; beside a random `h2r-mae-tiny`), 4. `run_policy_probe`
(frozen encoder → `--readout` head + MLP, behaviour cloning on the reach-the-coloured-block task, with or
without the tool position) for each encoder and seed, on the same demonstrations per seed; success rates with
Wilson 95% intervals over all episodes of all seeds, and per seed; success-rate differences (H2R − human,
pre-trained − random) with a Wald 95% interval, which counts episodes as independent (they share a seed's
demonstrations and head): read it as optimistic. Encoders pre-trained by an earlier run with the same `--out`
are reused. The oracle row (unless `--no-oracle`) is the probe's ceiling: the same pooled head fed the true
goal point (`run_oracle_probe`).

Measured 2026-11-29 (48 clips, clip 15 epochs, tcn 60 epochs, seeds 0-2 × 50 episodes):
- default (`tokens`, with the tool position, 60 demos): blind 0.28, random 0.67, human clip 0.68, h2r clip
  0.67, human tcn 0.49, h2r tcn 0.63; h2r tcn − human tcn +0.14 (+0.03 to +0.25), ahead in every seed,
  but no pre-trained encoder beats random: the spatial-softmax head finds coloured blocks in random patches.
- `--readout pooled --no-proprioception` (the tool's position only in the global embedding): near the
  floor for every encoder — 60 demos: blind 0.01, random 0.04, human/h2r clip 0.07/0.09, human/h2r tcn
  0.05/0.06 (intervals overlap); 200 demos: 0.11 to 0.14 for all, the blind policy included.
So H2R > human holds for R3M's objective in the default probe; H2R > random is not shown.

Measured 2026-11-30 (same data; MAE 40 epochs, 75% masking, normalized-pixel target; under load):
- `--objectives mae` (default probe): oracle 1.00 (150/150: the task and controller cap nothing), blind
  0.28, random mae 0.77 (0.70-0.83), human mae 0.57 (0.49-0.65), h2r mae 0.67 (0.59-0.74); h2r − human
  +0.09 (-0.02 to +0.20), h2r − random -0.11 (-0.21 to -0.01). The random ViT with the sine-cosine table
  keeps each patch's colour at its place, which is all the spatial-softmax head needs; pre-training mixes
  context into the tokens and makes the goal colour's attention map less sharp.
- `--objectives mae --no-proprioception --no-oracle` (tokens, the tool only in the image): blind 0.02,
  random mae 0.31 (0.24-0.38), human mae 0.29 (0.23-0.37), h2r mae 0.31 (0.24-0.39): a tie.
- `--objectives clip mae --readout pooled --no-oracle --seeds 0` (R3M's protocol: global embedding +
  tool position; one seed): blind 0.26, random 0.28, human/h2r clip 0.30/0.26, random mae 0.30,
  human/h2r mae 0.24/0.28: no global embedding tells the policy which slot holds the goal colour.
H2R > random is still not shown; with MAE, H2R ≥ human (+0.09 and +0.02, intervals over 0 both times).
(The `pooled` figures above predate the pooled head's BatchNorm; it had a per-sample LayerNorm then.)

Measured 2026-11-30, later (same encoders; pooled head with BatchNorm, 1000 steps; seeds 0-2 × 50
episodes, 60 demos; under load, which changes seconds, not figures):
- headline (`--objectives clip tcn mae --readout pooled --no-proprioception --no-distractors`):
  oracle 1.00 (0.98-1.00), blind 0.01 (0.00-0.04), random (clip architecture) 0.34 (0.27-0.42), random mae
  0.24 (0.18-0.31), human / h2r clip 0.26 / 0.16, human / h2r tcn 0.07 / 0.03, **human mae 0.17
  (0.12-0.24), h2r mae 0.54 (0.46-0.62)**, per seed 0.56 / 0.60 / 0.46 against random mae 0.26 / 0.26 /
  0.20 and human mae 0.10 / 0.22 / 0.20. h2r mae − random mae **+0.30 (+0.19 to +0.41)**, − random (the
  stronger random encoder) +0.20 (+0.09 to +0.31), − human mae **+0.37 (+0.27 to +0.47)**, ahead of both
  in every seed. Pre-trained again with another seed (`--objectives mae --readout pooled
  --no-proprioception --no-distractors --pretrain-seed 1`; the probe's draws are the same, and random mae
  and blind reproduce exactly): human mae 0.27 (0.20-0.34), h2r mae 0.51 (0.43-0.59), per seed 0.56 /
  0.52 / 0.46; h2r − random mae +0.27 (+0.17 to +0.38), h2r − human +0.25 (+0.14 to +0.35).
  `--pretrain-seed 2`: human mae 0.10 (0.06-0.16), h2r mae 0.45 (0.38-0.53), per seed 0.42 / 0.50 / 0.44;
  h2r − random mae +0.21 (+0.11 to +0.32), h2r − human +0.35 (+0.26 to +0.45). Over the three
  pre-training seeds h2r mae is 0.54 / 0.51 / 0.45 against 0.24 for random mae and 0.34 for the
  stronger random encoder (clip architecture, not re-run: it has no pre-training), human mae 0.10-0.27.
  Not for CLIP or R3M's objective: h2r clip − random −0.18, h2r tcn − random −0.31, and
  h2r below human for both; their linear readouts of the gripper were no better than random's either.
- the same with the three blocks (`--objectives mae --readout pooled --no-proprioception`): blind 0.01,
  random mae 0.16 (0.11-0.23), human mae 0.19 (0.14-0.26), h2r mae 0.19 (0.14-0.26): a tie; reading the
  goal colour's slot from the global embedding is what fails there, for every encoder.
- R3M's protocol with the tool position (`--objectives mae --readout pooled --no-oracle`, three blocks):
  blind 0.28 (0.21-0.36), random mae 0.29 (0.22-0.36), human mae 0.35 (0.28-0.43), h2r mae 0.41
  (0.33-0.49); h2r − random +0.12 (+0.01 to +0.23), h2r − human +0.05 (-0.06 to +0.16). With the
  BatchNorm the global embedding now finds the goal's slot a little (the LayerNorm head: 0.24-0.30, all
  at the blind policy's level), the H2R MAE most, but the ordering over human is within noise.
- head checks (`h2r-mae-tiny`, no distractors, no proprioception, an exploratory script, seed 0, 30
  episodes): a per-sample LayerNorm in place of the BatchNorm, random 2 / h2r 8 (BatchNorm: 12 / 22);
  3000 steps in place of 1000, random 8 / h2r 13 (training loss 0.012 / 0.010 against 0.017 / 0.025:
  more steps over-fit both). So the head is not under-trained at 1000 steps with the BatchNorm.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from vlzoo.core.data import ensure_generated
from vlzoo.core.train import ImageTextDataModule, ZooModule
from vlzoo.core.weights import save
from vlzoo.robotics.augment import augment
from vlzoo.robotics.h2r import H2RConfig
from vlzoo.robotics.mae import ClipImages, MaskedAutoencoderModule
from vlzoo.robotics.policy import ReachTask, expert_demos, run_oracle_probe, run_policy_probe, wilson_interval
from vlzoo.robotics.r3m import TimeContrastiveModule, VideoTriplets

MODEL = "h2r-clip-tiny"
MAE_MODEL = "h2r-mae-tiny"  # the same ViT with MAE's conventions (sine-cosine table, mean-pooled tokens)


def _trainer(epochs: int) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                     limit_val_batches=0, num_sanity_val_steps=0, enable_progress_bar=False,
                     enable_model_summary=False)  # fmt: skip


def pretrain_clip(captions: Path, out: Path, epochs: int, seed: int) -> Path:
    if (out / "model.safetensors").is_file():  # pre-trained by an earlier run with these settings
        return out / "model.safetensors"
    L.seed_everything(seed, verbose=False)
    data = ImageTextDataModule(data=str(captions), data_kind="video-captions", model=MODEL, batch_size=32,
                               num_workers=0, data_options={"frames_per_clip": 6}, seed=seed)  # fmt: skip
    module = ZooModule(model=MODEL, lr=2e-3, weight_decay=0.05, warmup_steps=10, min_lr_ratio=0.05,
                       export_weights=False)  # fmt: skip
    _trainer(epochs).fit(module, data)
    return save(module.model, out / "model.safetensors")


def pretrain_tcn(captions: Path, out: Path, epochs: int, seed: int) -> Path:
    """R3M's time-contrastive objective with the official weights (tcn 1, l1/l2 1e-5, 3 negatives)."""
    if (out / "model.safetensors").is_file():
        return out / "model.safetensors"
    L.seed_everything(seed, verbose=False)
    triplets = VideoTriplets(captions, MODEL, split="train", seed=seed)
    module = TimeContrastiveModule(MODEL, lr=1e-3)
    _trainer(epochs).fit(module, DataLoader(triplets, batch_size=16, shuffle=True, drop_last=True))
    return save(module.model, out / "model.safetensors")


def pretrain_mae(captions: Path, out: Path, epochs: int, seed: int, norm_pix_loss: bool = True) -> Path:
    """MAE's objective (`vlzoo.robotics.mae`: 75% masking, official optimizer settings) on every frame."""
    if (out / "model.safetensors").is_file():
        return out / "model.safetensors"
    L.seed_everything(seed, verbose=False)
    module = MaskedAutoencoderModule(MAE_MODEL, lr=1e-3, norm_pix_loss=norm_pix_loss)
    frames = ClipImages(captions, MAE_MODEL, split="train")
    _trainer(epochs).fit(module, DataLoader(frames, batch_size=64, shuffle=True, drop_last=True))
    return save(module.model, out / "model.safetensors")


def differences(rows: dict[str, dict], episodes: int) -> dict[str, tuple[float, float, float]]:
    """Success-rate differences (H2R − human per objective, each pre-trained encoder − its own
    architecture's random encoder, then − the other random encoder) with the Wald 95% interval of a
    difference of two proportions over `episodes` episodes each."""
    pairs = [(f"h2r {o}", f"human {o}") for o in ("clip", "tcn", "mae")]
    trained = [name for name in rows if name.startswith(("h2r", "human"))]
    pairs += [(name, "random mae" if name.endswith("mae") else "random") for name in trained]
    pairs += [(name, "random" if name.endswith("mae") else "random mae") for name in trained]
    out = {}
    for a, b in pairs:
        if a in rows and b in rows:
            p, q = rows[a]["success_rate"], rows[b]["success_rate"]
            half = 1.96 * math.sqrt((p * (1 - p) + q * (1 - q)) / episodes)
            out[f"{a} − {b}"] = (p - q, p - q - half, p - q + half)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/robotics-policy-probe")
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--demos", type=int, default=60)
    p.add_argument("--train-steps", type=int, default=1000)
    p.add_argument("--tcn-epochs", type=int, default=60)
    p.add_argument("--mae-epochs", type=int, default=40)
    p.add_argument(
        "--mae-raw-pixels",
        dest="norm_pix_loss",
        action="store_false",
        help="MAE's target: raw pixels instead of per-patch normalized ones",
    )
    p.add_argument("--objectives", nargs="+", choices=("clip", "tcn", "mae"), default=["clip", "tcn"])
    p.add_argument("--no-oracle", dest="oracle", action="store_false")
    p.add_argument("--readout", choices=("tokens", "pooled"), default="tokens")
    p.add_argument("--no-proprioception", dest="proprioception", action="store_false")
    p.add_argument("--no-distractors", dest="distractors", action="store_false",
                   help="the goal block alone on the table (`ReachTask.distractors`)")  # fmt: skip
    p.add_argument("--pretrain-seed", type=int, default=0, help="the pre-training runs' seed")
    p.add_argument("--table-only", action="store_true",
                   help="re-print the table an earlier run with these settings saved, without running")  # fmt: skip
    args = p.parse_args()
    out = Path(args.out)
    if args.table_only:
        rows = json.loads(table_path(args).read_text())
        print_table(rows, args.episodes * len(args.seeds))
        return
    t0 = time.perf_counter()
    sizes = {"n_train": args.clips, "n_val": 4, "n_test": 0, "frames": 12, "image_size": 128}
    human = ensure_generated("robot-toyworld", out / "human", sizes)
    augment(human, out / "h2r", H2RConfig(robot="franka"), progress=False)
    encoders: dict[str, tuple[str | None, str | None]] = {"blind (no image)": (None, None)}
    if {"clip", "tcn"} & set(args.objectives):  # each objective's encoders beside a random one of their model
        encoders["random"] = (MODEL, None)
    if "mae" in args.objectives:
        encoders["random mae"] = (MAE_MODEL, None)
    for objective in args.objectives:
        for name, captions in (("human", human), ("h2r", out / "h2r" / "captions.csv")):
            # the CLIP encoders keep the folder names of the runs before `tcn` existed, so they are reused
            folder = out / (f"encoder-{name}" if objective == "clip" else f"encoder-{name}-{objective}")
            if args.pretrain_seed:  # seed 0 keeps the folder names of the runs before this option
                folder = folder.with_name(f"{folder.name}-seed{args.pretrain_seed}")
            if objective == "clip":
                weights = pretrain_clip(captions, folder, args.epochs, seed=args.pretrain_seed)
            elif objective == "tcn":
                weights = pretrain_tcn(captions, folder, args.tcn_epochs, seed=args.pretrain_seed)
            else:
                folder = folder.with_name(folder.name + ("" if args.norm_pix_loss else "-raw"))
                weights = pretrain_mae(
                    captions, folder, args.mae_epochs, args.pretrain_seed, args.norm_pix_loss
                )
            encoders[f"{name} {objective}"] = (MAE_MODEL if objective == "mae" else MODEL, str(weights))
    print(f"data + pre-training: {time.perf_counter() - t0:.0f} s", flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in encoders}
    task = ReachTask(distractors=args.distractors)
    try:
        for seed in args.seeds:
            with_points = expert_demos(task, args.demos, seed, with_goal_points=True)
            demos = with_points[:4]
            if args.oracle:  # the ceiling: the true goal point in place of an embedding
                r = run_oracle_probe(task, args.demos, args.episodes, args.train_steps, seed, with_points)
                runs.setdefault("oracle (goal point)", []).append(r)
                print(
                    f"seed {seed} {'oracle (goal point)':>16}: {r['successes']}/{r['episodes']}", flush=True
                )
            for name, (model, weights) in encoders.items():
                r = run_policy_probe(model, weights, args.demos, args.episodes, args.train_steps, seed, task=task,
                                     demonstrations=demos, readout=args.readout,
                                     proprioception=args.proprioception)  # fmt: skip
                runs[name].append(r)
                print(f"seed {seed} {name:>16}: {r['successes']}/{r['episodes']}, mean final distance "
                      f"{r['mean_final_distance']:.3f} m ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    finally:
        task.close()
    rows: dict[str, dict] = {}
    print(f"\nreach the coloured block: {args.demos} demonstrations, {args.episodes} episodes × seeds "
          f"{args.seeds}, readout {args.readout}, proprioception {args.proprioception}, distractors "
          f"{args.distractors}")  # fmt: skip
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
    print_table(rows, args.episodes * len(args.seeds))
    table_path(args).write_text(json.dumps(rows, indent=2))
    print(f"total {time.perf_counter() - t0:.0f} s")


def table_path(args: argparse.Namespace) -> Path:
    blind_tool = "" if args.proprioception else "-no-proprioception"
    alone = "" if args.distractors else "-no-distractors"
    pretrained = f"-pretrain-seed{args.pretrain_seed}" if args.pretrain_seed else ""
    return (
        Path(args.out) / f"policy_probe-{args.readout}{blind_tool}{alone}{pretrained}-{args.demos}demos.json"
    )


def print_table(rows: dict[str, dict], episodes: int) -> None:
    """Each encoder's success rate over all `episodes` (all seeds), then the differences."""
    for name, row in rows.items():
        (lo, hi), per_seed = row["ci95"], row["per_seed"]
        print(f"{name:>16}: success {round(row['success_rate'] * episodes)}/{episodes} = "
              f"{row['success_rate']:.2f} (95% CI {lo:.2f}-{hi:.2f}), per seed "
              f"{[round(s, 2) for s in per_seed]}, mean final distance {row['mean_final_distance']:.3f} m")  # fmt: skip
    for pair, (d, lo, hi) in differences(rows, episodes).items():
        print(f"{pair:>26}: {d:+.2f} (95% CI {lo:+.2f} to {hi:+.2f})")


if __name__ == "__main__":
    main()
