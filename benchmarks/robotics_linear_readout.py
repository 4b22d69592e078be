"""What a frozen encoder's features say about the probe's robot scene: linear (ridge) readouts, per encoder.

The cheap proxy for the policy probe (`benchmarks/robotics_policy_probe.py`): before any rollout, how well
can a linear map read, from frozen features of held-out robot frames of the reach task,
- the tool's (end effector's) position — what a policy without proprioception must take from pixels, and
- the goal point (5 cm above the goal-coloured block; one linear map per goal colour, as a goal-conditioned
  head would read it), and the expert's step (goal − tool, clipped).
Features: `pooled` (the global embedding, as R3M's/H2R's probes use it) and `tokens` (the projected patch
tokens, flattened: every position kept). Each feature is standardized on the training frames (as a
BatchNorm in front of R3M's policy MLP does), the ridge penalty is picked on the last fifth of the
training episodes, then refit on all of them; R² on test frames from other seeds' episodes. Random encoders
are drawn from three initialization seeds.

    python benchmarks/robotics_linear_readout.py [--out runs/robotics-policy-probe] [--train-episodes 60]

Encoders are the ones `benchmarks/robotics_policy_probe.py` pre-trained into `--out` (run it first).

Measured 2026-11-30 (encoders of the 48-clip runs: clip 15, tcn 60, mae 40 epochs; 600 train frames of the
three-block task, 300 test frames; test R², tool x / y / z; random: the three draws agree within 0.05):
- pooled: random mae 0.82 / 0.09-0.15 / 0.41-0.53, random clip 0.80-0.85 / 0.01-0.12 / 0.38-0.46,
  human / h2r clip 0.75 / 0.05 / 0.38 and 0.74 / 0.06 / 0.38, human / h2r tcn 0.52 / 0.03 / 0.35 and
  0.48 / 0.01 / 0.34, **human mae 0.73 / 0.09 / 0.45, h2r mae 0.89 / 0.22 / 0.59**.
- tokens: every encoder 0.91-0.95 / 0.14-0.29 / 0.58-0.67; h2r mae highest (0.95 / 0.29 / 0.67).
- goal x (one map per goal colour): pooled h2r mae 0.51, random 0.08-0.37, human mae 0.28; the goal's
  slot is a lookup (which slot holds the colour) a linear map reads poorly from any encoder.
So the MAE pre-trained on H2R frames is the one encoder whose global embedding says more than a random
one's about where the robot's gripper is; the human-frame MAE says less. This chose the policy probe of
`benchmarks/robotics_policy_probe.py`'s headline: pooled embedding, no proprioception (the gripper read
from pixels), and the goal block alone (its docstring).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vlzoo.core.eval import load_eval_model
from vlzoo.robotics.policy import ReachTask, expert_demos, frozen_features

ALPHAS = np.logspace(-2, 5, 15)


def _ridge_fit(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Dual-form ridge (features may outnumber frames): weights `[D, T]`."""
    k = x @ x.T
    dual = torch.linalg.solve(k + alpha * torch.eye(len(x), dtype=x.dtype), y)
    return x.T @ dual


def _f64(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float64)


def _r2(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 1 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def _ridge_predict(xtr, ytr, xte, val_from: int) -> torch.Tensor:
    """Ridge predictions for `xte`: features standardized on the training rows, the penalty picked on training
    rows `val_from:` (fitted on the rows before), then refitted on all training rows."""
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    ym = ytr.mean(0)
    best, best_alpha = -np.inf, ALPHAS[0]
    for alpha in ALPHAS:
        w = _ridge_fit(xtr[:val_from], ytr[:val_from] - ym, alpha)
        score = float(_r2(xtr[val_from:] @ w + ym, ytr[val_from:]).mean())
        if score > best:
            best, best_alpha = score, alpha
    return xte @ _ridge_fit(xtr, ytr - ym, best_alpha) + ym


def ridge_r2(xtr, ytr, xte, yte, val_from: int) -> np.ndarray:
    """Test R² per target column, the penalty picked on training rows `val_from:`."""
    return _r2(_ridge_predict(xtr, ytr, xte, val_from), yte).numpy()


def goal_r2(xtr, gtr, ytr, xte, gte, yte, val_from: int) -> np.ndarray:
    """R² of the goal point, one ridge per goal colour (the goal-conditioned readout), pooled over colours."""
    preds, truths = [], []
    for c in range(gtr.shape[1]):
        tr, te = gtr[:, c] > 0, gte[:, c] > 0
        if tr.sum() < 10 or te.sum() == 0:
            continue
        preds.append(_ridge_predict(xtr[tr], ytr[tr], xte[te], int(tr[:val_from].sum())))
        truths.append(yte[te])
    return _r2(torch.cat(preds), torch.cat(truths)).numpy()


def encoders(out: Path) -> dict[str, tuple[str, str | None, int]]:
    found: dict[str, tuple[str, str | None, int]] = {}
    for s in (0, 1, 2):
        found[f"random mae/{s}"] = ("h2r-mae-tiny", None, s)
    for s in (0, 1, 2):
        found[f"random clip/{s}"] = ("h2r-clip-tiny", None, s)
    for objective, folder, model in (("clip", "", "h2r-clip-tiny"), ("tcn", "-tcn", "h2r-clip-tiny"),
                                      ("mae", "-mae", "h2r-mae-tiny")):  # fmt: skip
        for data in ("human", "h2r"):
            weights = out / f"encoder-{data}{folder}" / "model.safetensors"
            if weights.is_file():
                found[f"{data} {objective}"] = (model, str(weights), 0)
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/robotics-policy-probe")
    p.add_argument("--train-episodes", type=int, default=60)
    p.add_argument("--test-episodes", type=int, default=30)
    p.add_argument("--readouts", nargs="+", default=["pooled", "tokens"])
    args = p.parse_args()
    t0 = time.perf_counter()
    task = ReachTask()
    try:
        tr = expert_demos(task, args.train_episodes, seed=0, with_goal_points=True)
        te = expert_demos(task, args.test_episodes, seed=7, with_goal_points=True)
    finally:
        task.close()
    val_from = int(0.8 * args.train_episodes) * task.steps
    tool_tr, tool_te = _f64(tr[1]), _f64(te[1])
    g_tr, g_te = torch.as_tensor(tr[2]), torch.as_tensor(te[2])
    pt_tr, pt_te = _f64(tr[4]), _f64(te[4])
    act_tr, act_te = _f64(tr[3]), _f64(te[3])
    print(f"frames: {len(tool_tr)} train, {len(tool_te)} test ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"{'encoder':>16} {'readout':>7} | tool x   y   z | goal x   y | step x   y   z")
    for name, (model, weights, seed) in encoders(Path(args.out)).items():
        torch.manual_seed(seed)
        net, cfg_name = load_eval_model(model, weights)
        for readout in args.readouts:
            ftr = frozen_features(net, cfg_name, tr[0], readout).flatten(1).double()
            fte = frozen_features(net, cfg_name, te[0], readout).flatten(1).double()
            tool = ridge_r2(ftr, tool_tr, fte, tool_te, val_from)
            goal = goal_r2(ftr, g_tr, pt_tr, fte, g_te, pt_te, val_from)
            step = goal_r2(ftr, g_tr, act_tr, fte, g_te, act_te, val_from)
            print(f"{name:>16} {readout:>7} | {tool[0]:.2f} {tool[1]:.2f} {tool[2]:.2f} | "
                  f"{goal[0]:.2f} {goal[1]:.2f} | {step[0]:.2f} {step[1]:.2f} {step[2]:.2f}", flush=True)  # fmt: skip
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
