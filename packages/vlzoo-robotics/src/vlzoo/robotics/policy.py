"""The policy probe (H2R's downstream claim in miniature): behaviour cloning on a frozen visual encoder.

Task `reach`: a Franka Panda (pybullet, kinematic) and one coloured block on a table, seen from
a fixed camera behind the table; the gripper must get within `success_radius` of a point 3 cm above the
block in `steps` steps of at most `max_step` metres each. The scripted expert steps straight at it.

Probe: the encoder is frozen; an MLP maps [image features, tool position] to the step and is trained by
behaviour cloning (mean squared error) on the expert's demonstrations; the success rate is measured over
seeded evaluation episodes and reported with its Wilson 95% interval. Encoders compared on the same
budget: the image tower of a zoo CLIP with given weights (pre-trained on H2R frames or on the original
human clips) and the same architecture at random initialization.

    result = run_policy_probe("h2r-clip-tiny", pretrained="runs/h2r/model.safetensors")
    result["success_rate"], result["ci95"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybullet as pb
import torch
from PIL import Image
from torch import nn

from vlzoo.core import get_transforms
from vlzoo.core.eval import load_eval_model
from vlzoo.robotics.camera import Camera, look_at
from vlzoo.robotics.render import render_robot
from vlzoo.robotics.retarget import Robot, get_embodiment
from vlzoo.robotics.toyworld import BLOCK, COLOURS, TABLE

__all__ = ["ReachTask", "expert_demos", "run_policy_probe", "wilson_interval"]

_EYE, _TARGET = np.array([0.0, -0.35, 0.50]), np.array([0.0, 0.15, 0.0])
_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # the tool pointing at the table


@dataclass
class ReachTask:
    """The reach task's world: the robot, a table and one block, rendered from the toy camera."""

    image_size: int = 96
    steps: int = 8
    max_step: float = 0.05
    success_radius: float = 0.03

    def __post_init__(self) -> None:
        self.robot = Robot(get_embodiment("franka"))
        self.robot.set_base(np.array([0.0, 0.62, 0.0]), -math.pi / 2)  # across the table, facing the camera
        c = self.robot.client
        table = pb.createVisualShape(
            pb.GEOM_BOX, halfExtents=[0.6, 0.5, 0.01], rgbaColor=TABLE, physicsClientId=c
        )
        pb.createMultiBody(0, -1, table, [0, 0.15, -0.01], physicsClientId=c)
        self.blocks = {}
        for name, rgb in COLOURS.items():
            shape = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[BLOCK / 2] * 3, rgbaColor=(*rgb, 1.0),
                                         physicsClientId=c)  # fmt: skip
            self.blocks[name] = pb.createMultiBody(0, -1, shape, [0, 0, -5], physicsClientId=c)
        # a fixed camera behind and above the table (robot-toyworld's is too close for a whole arm)
        self.camera = Camera.from_fov(self.image_size, self.image_size, 50.0, look_at(_EYE, _TARGET))
        self.start = np.array([0.0, 0.12, 0.20])

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        """A new episode: a block of a random colour at a random place; the tool at the start. Returns the
        goal (3 cm above the block)."""
        for body in self.blocks.values():
            pb.resetBasePositionAndOrientation(
                body, [0, 0, -5], [0, 0, 0, 1], physicsClientId=self.robot.client
            )
        name = list(self.blocks)[int(rng.integers(len(self.blocks)))]
        block = np.array([rng.uniform(-0.12, 0.12), rng.uniform(0.05, 0.22), BLOCK / 2])
        pb.resetBasePositionAndOrientation(self.blocks[name], block.tolist(), [0, 0, 0, 1],
                                           physicsClientId=self.robot.client)  # fmt: skip
        self.robot.set_arm(np.asarray(self.robot.embodiment.rest))
        self.robot.set_opening(0.06)
        self.move_to(self.start)
        return block + np.array([0.0, 0.0, 0.03])

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
        return render_robot(self.robot, self.camera).rgb  # the robot's world holds the table and block too

    def expert(self, goal: np.ndarray) -> np.ndarray:
        return goal - self.tool()

    def close(self) -> None:
        self.robot.close()


def expert_demos(task: ReachTask, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images [N, H, W, 3], tool positions [N, 3], expert steps [N, 3]) over `episodes` demonstrations."""
    rng = np.random.default_rng(seed)
    images, tools, actions = [], [], []
    for _ in range(episodes):
        goal = task.reset(rng)
        for _ in range(task.steps):
            images.append(task.observe())
            tools.append(task.tool())
            action = task.expert(goal)
            n = np.linalg.norm(action)
            actions.append(action if n <= task.max_step else action * task.max_step / n)
            task.step(action)
    return np.stack(images), np.stack(tools), np.stack(actions)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% by default): sound for small n and rates near 0/1."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@torch.no_grad()
def _features(net: nn.Module, name: str, images: np.ndarray, batch: int = 64) -> torch.Tensor:
    preprocess = get_transforms(name, train=False)
    out = []
    for i in range(0, len(images), batch):
        x = torch.stack([preprocess(Image.fromarray(im)) for im in images[i : i + batch]])
        out.append(net.encode_image(x, normalize=True))
    return torch.cat(out)


def _mlp(in_dim: int, hidden: int = 256) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 3))  # fmt: skip


def run_policy_probe(
    model: str,
    pretrained: str | None = None,
    demos: int = 40,
    episodes: int = 30,
    train_steps: int = 1500,
    seed: int = 0,
    image_size: int = 96,
) -> dict[str, Any]:
    """Behaviour cloning on `model`'s frozen image tower (weights `pretrained`, or random when None):
    success rate over `episodes` seeded evaluation episodes (module docstring)."""
    torch.manual_seed(seed)
    net, name = load_eval_model(model, pretrained)
    task = ReachTask(image_size=image_size)
    try:
        images, tools, actions = expert_demos(task, demos, seed)
        feats = _features(net, name, images)
        # raw unit-norm features: standardizing them per dimension (they differ by ~1e-4 between frames of
        # the tiny encoders) was tried and overfits 40 demonstrations (success 15% → 3%)
        x = torch.cat([feats, torch.as_tensor(tools, dtype=torch.float32) * 5.0], dim=1)
        y = torch.as_tensor(actions, dtype=torch.float32) / task.max_step
        policy = _mlp(x.shape[1])
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(train_steps):
            idx = torch.randint(len(x), (64,), generator=gen)
            loss = nn.functional.mse_loss(policy(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        policy.eval()
        rng = np.random.default_rng(10_000 + seed)  # evaluation episodes never seen in the demonstrations
        successes, distances = 0, []
        for _ in range(episodes):
            goal = task.reset(rng)
            for _ in range(task.steps):
                f = _features(net, name, task.observe()[None])
                obs = torch.cat([f, torch.as_tensor(task.tool()[None], dtype=torch.float32) * 5.0], dim=1)
                with torch.no_grad():
                    task.step(policy(obs)[0].numpy() * task.max_step)
            d = float(np.linalg.norm(task.tool() - goal))
            distances.append(d)
            successes += d <= task.success_radius
    finally:
        task.close()
    return {
        "model": name,
        "pretrained": pretrained,
        "success_rate": successes / episodes,
        "ci95": wilson_interval(successes, episodes),
        "mean_final_distance": float(np.mean(distances)),
        "episodes": episodes,
        "demos": demos,
        "train_loss": float(loss.detach()),
        "seed": seed,
    }


def evaluate_policy(
    model: Any,
    pretrained: str | None = None,
    demos: int = 40,
    episodes: int = 30,
    train_steps: int = 1500,
    seed: int = 0,
    out: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """`vlzoo-robotics eval policy --model NAME [--pretrained W]`: the probe's success rate for one encoder."""
    from pathlib import Path

    from vlzoo.core.eval import print_table, write_json

    result = run_policy_probe(model, pretrained, demos, episodes, train_steps, seed)
    lo, hi = result["ci95"]
    print_table({"success_rate": result["success_rate"], "ci95_low": lo, "ci95_high": hi,
                 "mean_final_distance_m": result["mean_final_distance"]},
                title=f"policy probe: reach ({result['model']}, {episodes} episodes)")  # fmt: skip
    if out:
        write_json(result, Path(out) / "policy.json")
    return result
