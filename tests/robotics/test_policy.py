"""The policy probe: the task, its expert, the interval, and behaviour cloning that reads the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlzoo.core.errors import ConfigError
from vlzoo.robotics.policy import (
    READOUTS,
    ReachTask,
    expert_demos,
    run_oracle_probe,
    run_policy_probe,
    wilson_interval,
)


@pytest.fixture(scope="module")
def task():
    t = ReachTask()
    yield t
    t.close()


def test_expert_reaches_every_goal_and_the_goal_block_is_in_view(task):
    rng = np.random.default_rng(3)
    goals = set()
    for _ in range(6):
        goal = task.reset(rng)
        goals.add(int(np.argmin(np.abs(np.array([-0.10, -0.02, 0.06]) - goal[0]))))  # the goal's slot
        u, v = task.camera.project(goal - np.array([0.0, -0.01, 0.05]))  # the goal block's centre
        assert 8 < u < task.image_size - 8 and 8 < v < task.image_size - 8
        start = np.linalg.norm(task.tool() - goal)
        for _ in range(task.steps):
            task.step(task.expert(goal))
        assert start > 3 * task.success_radius and np.linalg.norm(task.tool() - goal) <= task.success_radius
    assert len(goals) >= 2  # the goal colour sits in different slots: only the image says which
    images, tools, goals_onehot, actions = expert_demos(task, 2, seed=0)
    n = 2 * task.steps
    assert images.shape == (n, 128, 128, 3) and tools.shape == actions.shape == (n, 3)
    assert goals_onehot.shape == (n, 4) and (goals_onehot.sum(1) == 1).all()
    assert np.linalg.norm(actions, axis=1).max() <= task.max_step + 1e-9


def test_wilson_interval_by_hand():
    # 0 of 10: centre = (z²/2n)/(1+z²/n) = 0.19208/1.38416, half the same → (0, 0.2775)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.27754, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    # 5 of 10: centre 0.5; half = 1.96·sqrt(0.025 + 0.0096040)/1.38416 = 0.26341
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(2 * 0.26341, abs=1e-4)


@pytest.mark.parametrize("readout", sorted(READOUTS))
def test_without_proprioception_the_head_never_sees_the_tool(readout):
    """Without proprioception the step depends on the image features and the goal only: moving the tool
    changes nothing; with it, the same head input with another tool position gives another step."""
    torch.manual_seed(0)
    feats = torch.randn(5, 16, 8) if readout == "tokens" else torch.randn(5, 8)
    goal = torch.eye(4)[[0, 1, 2, 3, 0]]
    tool, moved = torch.zeros(5, 3), torch.full((5, 3), 0.1)
    blind_to_tool = READOUTS[readout](8, 4, False).eval()
    assert torch.equal(blind_to_tool(feats, goal, tool), blind_to_tool(feats, goal, moved))
    told = READOUTS[readout](8, 4, True).eval()
    assert not torch.allclose(told(feats, goal, tool), told(feats, goal, moved))
    with pytest.raises(ConfigError, match="readout"):
        run_policy_probe(None, readout="patches")


@pytest.mark.slow
def test_behaviour_cloning_reads_the_goal_block_from_the_image(task):
    """On a frozen random encoder the cloned policy reaches the goal colour's block far more often than the
    image-blind policy (goal + proprioception only), which can only guess the slot."""
    demos = expert_demos(task, 40, seed=0)
    kw = {"demos": 40, "episodes": 20, "train_steps": 1000, "seed": 0, "task": task, "demonstrations": demos}
    seeing = run_policy_probe("h2r-clip-tiny", None, **kw)
    blind = run_policy_probe(None, None, **kw)
    assert seeing["successes"] >= blind["successes"] + 5, (seeing["successes"], blind["successes"])
    assert seeing["mean_final_distance"] < 0.7 * blind["mean_final_distance"]


@pytest.mark.slow
def test_the_probe_s_ceiling_is_near_one(task):
    """Fed the true goal point, the same pooled head and behaviour cloning reach nearly every goal: the
    task and its controller don't cap the encoders' success rates (which stay far below)."""
    demos = expert_demos(task, 20, seed=1, with_goal_points=True)
    first = expert_demos(task, 1, seed=1)  # the goal points change none of the draws
    assert all(np.array_equal(a, b[: task.steps]) for a, b in zip(first, demos[:4], strict=True))
    assert np.allclose(demos[4][: task.steps], demos[4][0]) and demos[4].shape == (20 * task.steps, 3)
    result = run_oracle_probe(task, 20, episodes=10, train_steps=1000, seed=1, demonstrations=demos)
    assert result["successes"] >= 9, result
    assert result["mean_final_distance"] < 0.5 * task.success_radius
