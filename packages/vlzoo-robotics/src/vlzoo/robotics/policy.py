"""The policy probe (H2R's downstream claim in miniature): behaviour cloning on a frozen visual encoder.

Task `reach the <colour> block`: a Franka Panda (pybullet, kinematic, beside the table) and three coloured
4 cm blocks in robot-toyworld's three slots (colours drawn from its four, order random), seen by a fixed
camera in front of and above the table; the goal is one of the colours (a one-hot, as a language goal would
be), and the gripper must get within `success_radius` of a point above that block in `steps` steps of at
most `max_step` metres each. Which slot holds the goal colour is only in the image: a policy that ignores
the image (`run_policy_probe(None, ...)`, the reference) can at best guess a slot. With
`distractors=False` the goal block is alone on the table (the same draws otherwise): the goal is then the
scene's one object, found without looking a colour up, and what is left to read from the image is where
that block and, without proprioception, the robot's own gripper are.

Probe, as visual-pretraining probes commonly do: the encoder is frozen and a small head reads it
(`READOUTS`): `tokens` — its patch tokens (the zoo model's `encode_image(output_tokens=True)`) through a
goal-conditioned spatial-softmax head (per head, an attention map over the token grid whose query comes from
the goal, read out as the expected image coordinates); `pooled` — its global embedding, as R3M's and H2R's
probes feed the frozen representation to an MLP, which rebuilds nothing spatial from the tokens, so what
pre-training put into the embedding decides; a BatchNorm standardizes each embedding dimension first, as
R3M's behaviour-cloning policy does (mjrl's `BatchNormMLP`; a per-sample LayerNorm left the heads
under-fitted: training loss 0.08-0.11 against 0.02-0.03, and fewer successes for random and H2R alike).
Either, with the goal and by default the proprioception (the tool position, as R3M's probes give it;
`proprioception=False` leaves the tool's position to the image), feeds an MLP that outputs the step.
Trained by behaviour cloning (mean squared error) on scripted expert demonstrations, executed with
DART-style noise so the demonstrations also cover states off the expert's path (labels stay the clean
expert step); the success rate is measured over seeded evaluation episodes, never seen in the
demonstrations, with its Wilson 95% interval. `run_oracle_probe` is the ceiling: the
same pooled head fed the true goal point instead of an embedding (measured 50/50 with 60 demonstrations),
so what falls short of it is the encoder's readout, not the task or the controller.

    result = run_policy_probe("h2r-clip-tiny", pretrained="runs/h2r/model.safetensors")
    result["success_rate"], result["ci95"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pybullet as pb
import torch
from PIL import Image
from torch import nn

from vlzoo.core import get_transforms
from vlzoo.core.errors import ConfigError
from vlzoo.core.eval import load_eval_model
from vlzoo.robotics.camera import Camera, look_at
from vlzoo.robotics.render import render_robot
from vlzoo.robotics.retarget import Robot, get_embodiment
from vlzoo.robotics.toyworld import BLOCK, COLOURS, TABLE

__all__ = ["READOUTS", "PooledHead", "ReachTask", "SpatialSoftmaxHead", "expert_demos", "frozen_features",
           "run_oracle_probe", "run_policy_probe", "wilson_interval"]  # fmt: skip

_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # the tool pointing at the table
_SLOTS_X = np.array([-0.10, -0.02, 0.06])  # robot-toyworld's block slots
_PROP_SCALE = 5.0  # tool metres → order-one inputs


@dataclass
class ReachTask:
    """The reach task's world: the robot beside a table with three blocks, and the probe's camera."""

    image_size: int = 128
    steps: int = 10
    max_step: float = 0.05
    success_radius: float = 0.03
    camera_eye: tuple[float, float, float] = (0.0, -0.12, 0.30)
    camera_target: tuple[float, float, float] = (-0.02, 0.16, 0.02)
    fovy: float = 45.0
    distractors: bool = True  # the goal block among two others of other colours, or alone
    colours: tuple[str, ...] = field(default_factory=lambda: tuple(COLOURS))

    def __post_init__(self) -> None:
        self.robot = Robot(get_embodiment("franka"))
        # beside the table, facing across it: the arm comes into view from the right, above the blocks
        self.robot.set_base(np.array([0.45, 0.10, 0.0]), math.pi)
        c = self.robot.client
        table = pb.createVisualShape(
            pb.GEOM_BOX, halfExtents=[0.6, 0.5, 0.01], rgbaColor=TABLE, physicsClientId=c
        )
        pb.createMultiBody(0, -1, table, [0, 0.15, -0.01], physicsClientId=c)
        self.blocks = {}
        for name in self.colours:
            shape = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[BLOCK / 2] * 3,
                                         rgbaColor=(*COLOURS[name], 1.0), physicsClientId=c)  # fmt: skip
            self.blocks[name] = pb.createMultiBody(0, -1, shape, [0, 0, -5], physicsClientId=c)
        self.camera = Camera.from_fov(self.image_size, self.image_size, self.fovy,
                                      look_at(np.array(self.camera_eye), np.array(self.camera_target)))  # fmt: skip
        self.goal_index = 0

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        """A new episode: three blocks of random colours in the slots, a goal colour, the tool at a random
        start above them. Returns the goal point (5 cm above the goal block's centre)."""
        c = self.robot.client
        for body in self.blocks.values():
            pb.resetBasePositionAndOrientation(body, [0, 0, -5], [0, 0, 0, 1], physicsClientId=c)
        names = rng.choice(len(self.colours), size=len(_SLOTS_X), replace=False)
        xyz = np.stack([_SLOTS_X + rng.uniform(-0.01, 0.01, 3), 0.16 + rng.uniform(-0.01, 0.01, 3),
                        np.full(3, BLOCK / 2)], axis=1)  # fmt: skip
        for k, p in zip(names, xyz, strict=True):
            pb.resetBasePositionAndOrientation(self.blocks[self.colours[k]], p.tolist(), [0, 0, 0, 1],
                                               physicsClientId=c)  # fmt: skip
        goal = int(rng.integers(len(_SLOTS_X)))
        self.goal_index = int(names[goal])
        if not self.distractors:  # the same draws either way; only the goal block stays on the table
            for k in names[np.arange(len(_SLOTS_X)) != goal]:
                pb.resetBasePositionAndOrientation(self.blocks[self.colours[k]], [0, 0, -5],
                                                   [0, 0, 0, 1], physicsClientId=c)  # fmt: skip
        self.robot.set_arm(np.asarray(self.robot.embodiment.rest))
        self.robot.set_opening(self.robot.embodiment.max_opening)
        start = np.array([rng.uniform(-0.08, 0.08), rng.uniform(0.06, 0.10), 0.20])
        for _ in range(2):  # from the rest pose, one IK call stops short of a far start
            self.move_to(start)
        return xyz[goal] + np.array([0.0, -0.01, BLOCK / 2 + 0.03])

    def goal_onehot(self) -> np.ndarray:
        onehot = np.zeros(len(self.colours), np.float32)
        onehot[self.goal_index] = 1.0
        return onehot

    def tool(self) -> np.ndarray:
        return self.robot.tool_pose()[:3, 3]

    def move_to(self, position: np.ndarray) -> None:
        self.robot.solve_ik(position, _DOWN, iterations=4)

    def step(self, action: np.ndarray) -> None:
        delta = np.asarray(action, float)
        norm = np.linalg.norm(delta)
        if norm > self.max_step:
            delta = delta * (self.max_step / norm)
        self.move_to(self.tool() + delta)

    def observe(self) -> np.ndarray:
        return render_robot(self.robot, self.camera).rgb  # the robot's world holds the table and blocks too

    def expert(self, goal: np.ndarray) -> np.ndarray:
        """Straight at the goal, at most `max_step`."""
        delta = goal - self.tool()
        n = np.linalg.norm(delta)
        return delta if n <= self.max_step else delta * (self.max_step / n)

    def close(self) -> None:
        self.robot.close()


def expert_demos(
    task: ReachTask, episodes: int, seed: int, noise: float = 0.02, with_goal_points: bool = False
) -> tuple[np.ndarray, ...]:
    """(images [N, H, W, 3], tool positions [N, 3], goals [N, colours], expert steps [N, 3]) over
    `episodes` demonstrations; the executed step carries Gaussian noise of `noise` metres (DART), the label
    is the clean expert step from the state reached. `with_goal_points` adds the true goal points [N, 3]
    (for the oracle's ceiling; the same draws either way)."""
    rng = np.random.default_rng(seed)
    images, tools, goals, actions, points = [], [], [], [], []
    for _ in range(episodes):
        goal = task.reset(rng)
        for _ in range(task.steps):
            images.append(task.observe())
            tools.append(task.tool())
            goals.append(task.goal_onehot())
            points.append(goal)
            action = task.expert(goal)
            actions.append(action)
            task.step(action + rng.normal(0.0, noise, 3) if noise else action)
    out = (np.stack(images), np.stack(tools).astype(np.float32), np.stack(goals),
           np.stack(actions).astype(np.float32))  # fmt: skip
    return (*out, np.stack(points).astype(np.float32)) if with_goal_points else out


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% by default): sound for small n and rates near 0/1."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


class SpatialSoftmaxHead(nn.Module):
    """Goal-conditioned spatial softmax over a frozen encoder's patch tokens, then an MLP to the step.

    Each of `heads` attention maps over the token grid (keys from the tokens, query from the goal) is read
    out as its expected (x, y) in [-1, 1]: image positions, which is what reaching needs. With no tokens
    (`token_dim=0`) it is the image-blind reference policy on the goal and proprioception alone."""

    def __init__(self, token_dim: int, goal_dim: int, proprioception: bool = True, heads: int = 4,
                 key_dim: int = 32, hidden: int = 256, dropout: float = 0.2):  # fmt: skip
        super().__init__()
        self.heads, self.key_dim, self.proprioception = heads, key_dim, proprioception
        self.sees = token_dim > 0
        if self.sees:
            self.norm = nn.LayerNorm(token_dim)
            self.key = nn.Linear(token_dim, heads * key_dim)
            self.query = nn.Linear(goal_dim, heads * key_dim)
        width = 2 * heads * self.sees + goal_dim + 3 * proprioception
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 3),
        )  # fmt: skip

    def keypoints(self, tokens: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """`[B, heads·2]` expected image coordinates of the goal-conditioned attention maps."""
        b, n, _ = tokens.shape
        side = math.isqrt(n)
        axis = torch.linspace(-1.0, 1.0, side)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(n, 2)
        keys = self.key(self.norm(tokens)).view(b, n, self.heads, self.key_dim)
        query = self.query(goal).view(b, 1, self.heads, self.key_dim)
        attn = torch.softmax((keys * query).sum(-1) / math.sqrt(self.key_dim), dim=1)  # [B, N, heads]
        return torch.einsum("bnh,nc->bhc", attn, grid).flatten(1)

    def forward(self, tokens: torch.Tensor | None, goal: torch.Tensor, tool: torch.Tensor) -> torch.Tensor:
        parts = [goal] + ([tool * _PROP_SCALE] if self.proprioception else [])
        if self.sees:
            parts.insert(0, self.keypoints(tokens, goal))
        return self.mlp(torch.cat(parts, dim=1))


class PooledHead(nn.Module):
    """The frozen encoder's global embedding (as R3M's and H2R's probes feed the frozen representation to an
    MLP), with the goal and, optionally, the proprioception, through an MLP to the step. Without
    proprioception the tool's position too must be read from the embedding: what the encoder's
    pre-training put into its pooled vector decides how well (module docstring)."""

    def __init__(self, embed_dim: int, goal_dim: int, proprioception: bool = True, hidden: int = 256,
                 dropout: float = 0.1):  # fmt: skip
        super().__init__()
        self.proprioception = proprioception
        # each feature standardized over the batch (R3M's BC puts a BatchNorm on the embedding): encoders
        # trained to different embedding scales reach the MLP on one scale, and a random encoder's few
        # large dimensions don't drown the rest
        self.norm = nn.BatchNorm1d(embed_dim) if embed_dim else None
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim + goal_dim + 3 * proprioception, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 3),
        )  # fmt: skip

    def forward(self, embedding: torch.Tensor | None, goal: torch.Tensor, tool: torch.Tensor) -> torch.Tensor:
        parts = [goal] + ([tool * _PROP_SCALE] if self.proprioception else [])
        if self.norm is not None:
            parts.insert(0, self.norm(embedding))
        return self.mlp(torch.cat(parts, dim=1))


# how the policy reads the frozen encoder: (feature width, goal width, proprioception) → head
READOUTS: dict[str, type[nn.Module]] = {"tokens": SpatialSoftmaxHead, "pooled": PooledHead}


@torch.no_grad()
def frozen_features(
    net: nn.Module, name: str, images: np.ndarray, readout: str, batch: int = 64
) -> torch.Tensor:
    """The frozen encoder's projected patch tokens `[N, tokens, D]` (`readout="tokens"`) or its global
    embedding `[N, D]` (`"pooled"`, unnormalized)."""
    preprocess = get_transforms(name, train=False)
    out = []
    for i in range(0, len(images), batch):
        x = torch.stack([preprocess(Image.fromarray(im)) for im in images[i : i + batch]])
        pooled, tokens = net.encode_image(x, normalize=False, output_tokens=True)
        out.append(tokens if readout == "tokens" else pooled)
    return torch.cat(out)


def _behaviour_cloning(head: nn.Module, tokens: torch.Tensor | None, goals: torch.Tensor,
                       tools: torch.Tensor, targets: torch.Tensor, steps: int, seed: int) -> float:  # fmt: skip
    """MSE on the expert's steps; the tool position is jittered by 1 cm so that the MLP can't key on the
    exact start position of each of a few dozen demonstrations (it would memorize them)."""
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    head.train()
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(len(targets), (64,), generator=gen)
        tool = tools[idx] + 0.01 * torch.randn(len(idx), 3, generator=gen)
        loss = nn.functional.mse_loss(
            head(None if tokens is None else tokens[idx], goals[idx], tool), targets[idx]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    return float(loss.detach())


def _rollouts(task: ReachTask, head: nn.Module, features: Any, episodes: int, seed: int
              ) -> tuple[int, list[float]]:  # fmt: skip
    """(successes, final distances) of `head` over `episodes` seeded evaluation episodes, never seen in
    the demonstrations; `features(goal_point)` gives the head's view of the current state."""
    rng = np.random.default_rng(10_000 + seed)
    successes, distances = 0, []
    for _ in range(episodes):
        goal_point = task.reset(rng)
        goal = torch.as_tensor(task.goal_onehot())[None]
        for _ in range(task.steps):
            tool = torch.as_tensor(task.tool()[None], dtype=torch.float32)
            with torch.no_grad():
                task.step(head(features(goal_point), goal, tool)[0].numpy() * task.max_step)
        d = float(np.linalg.norm(task.tool() - goal_point))
        distances.append(d)
        successes += d <= task.success_radius
    return successes, distances


def run_oracle_probe(
    task: ReachTask,
    demos: int = 60,
    episodes: int = 50,
    train_steps: int = 1000,
    seed: int = 0,
    demonstrations: tuple[np.ndarray, ...] | None = None,
) -> dict[str, Any]:
    """The probe's ceiling: the same pooled head and behaviour cloning, fed the true goal point (what a
    perfect encoder would read from the image) instead of an embedding, with the tool position. Were it far
    below 1, the task or its controller, not the encoders, would cap every success rate. `demonstrations`
    given are `expert_demos(..., with_goal_points=True)`' output for `seed`."""
    demonstrations = demonstrations or expert_demos(task, demos, seed, with_goal_points=True)
    _, tools, goals, actions, goal_points = demonstrations
    head = PooledHead(3, goals.shape[1], proprioception=True)
    head.norm = nn.Identity()  # metres, scaled like the proprioception, not standardized per sample
    loss = _behaviour_cloning(head, torch.as_tensor(goal_points * _PROP_SCALE), torch.as_tensor(goals),
                              torch.as_tensor(tools), torch.as_tensor(actions) / task.max_step, train_steps,
                              seed)  # fmt: skip

    def features(goal_point: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(goal_point[None] * _PROP_SCALE, dtype=torch.float32)

    successes, distances = _rollouts(task, head, features, episodes, seed)
    return {"model": "oracle", "success_rate": successes / episodes, "successes": successes,
            "ci95": wilson_interval(successes, episodes), "mean_final_distance": float(np.mean(distances)),
            "episodes": episodes, "demos": demos, "train_loss": loss, "seed": seed}  # fmt: skip


def run_policy_probe(
    model: str | None,
    pretrained: str | None = None,
    demos: int = 60,
    episodes: int = 50,
    train_steps: int = 1000,
    seed: int = 0,
    image_size: int = 128,
    task: ReachTask | None = None,
    demonstrations: tuple[np.ndarray, ...] | None = None,
    readout: str = "tokens",
    proprioception: bool = True,
    distractors: bool = True,
) -> dict[str, Any]:
    """Behaviour cloning on `model`'s frozen image tower (weights `pretrained`, or its random
    initialization drawn from `seed` when None); `model=None` is the image-blind reference. Success rate
    over `episodes` seeded evaluation episodes (module docstring). `readout` is a key of `READOUTS`; without
    `proprioception` the policy gets no tool position; without `distractors` the goal block is alone on the
    table (`ReachTask.distractors`). A `task` given is reused (not closed, its own `distractors` holds);
    `demonstrations` given (`expert_demos`' output for `seed`) are cloned instead of rendering them again."""
    if readout not in READOUTS:
        raise ConfigError(f"policy probe: readout must be one of {sorted(READOUTS)}, got {readout!r}")
    torch.manual_seed(seed)
    net, name = load_eval_model(model, pretrained) if model is not None else (None, "blind")
    own = task is None
    task = task or ReachTask(image_size=image_size, distractors=distractors)
    try:
        images, tools, goals, actions = (demonstrations or expert_demos(task, demos, seed))[:4]
        tokens = frozen_features(net, name, images, readout) if net is not None else None
        head = READOUTS[readout](0 if tokens is None else tokens.shape[-1], goals.shape[1], proprioception)
        loss = _behaviour_cloning(head, tokens, torch.as_tensor(goals), torch.as_tensor(tools),
                                  torch.as_tensor(actions) / task.max_step, train_steps, seed)  # fmt: skip

        def features(_goal_point: np.ndarray) -> torch.Tensor | None:
            return frozen_features(net, name, task.observe()[None], readout) if net is not None else None

        successes, distances = _rollouts(task, head, features, episodes, seed)
    finally:
        if own:
            task.close()
    return {
        "model": name,
        "pretrained": pretrained,
        "success_rate": successes / episodes,
        "successes": successes,
        "ci95": wilson_interval(successes, episodes),
        "mean_final_distance": float(np.mean(distances)),
        "episodes": episodes,
        "demos": demos,
        "train_loss": loss,
        "seed": seed,
        "readout": readout,
        "proprioception": proprioception,
        "distractors": task.distractors,
    }


def evaluate_policy(
    model: Any,
    pretrained: str | None = None,
    demos: int = 60,
    episodes: int = 50,
    train_steps: int = 1000,
    seed: int = 0,
    out: str | None = None,
    readout: str = "tokens",
    proprioception: bool = True,
    distractors: bool = True,
    **_: Any,
) -> dict[str, Any]:
    """`vlzoo-robotics eval policy --model NAME [--pretrained W] [--readout pooled] [--no-proprioception]
    [--no-distractors]`:
    the probe's success rate for one encoder."""
    from pathlib import Path

    from vlzoo.core.eval import print_table, write_json

    result = run_policy_probe(model, pretrained, demos, episodes, train_steps, seed, readout=readout,
                              proprioception=proprioception, distractors=distractors)  # fmt: skip
    lo, hi = result["ci95"]
    print_table({"success_rate": result["success_rate"], "ci95_low": lo, "ci95_high": hi,
                 "mean_final_distance_m": result["mean_final_distance"]},
                title=f"policy probe: reach the coloured block ({result['model']}, {episodes} episodes)")  # fmt: skip
    if out:
        write_json(result, Path(out) / "policy.json")
    return result
