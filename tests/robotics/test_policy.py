"""The policy probe: the task, its expert, the interval, and behaviour cloning that learns to reach."""

from __future__ import annotations

import numpy as np
import pytest

from vlzoo.robotics.policy import ReachTask, expert_demos, run_policy_probe, wilson_interval


def test_expert_reaches_every_goal():
    task = ReachTask(image_size=64)
    try:
        rng = np.random.default_rng(3)
        for _ in range(5):
            goal = task.reset(rng)
            start = np.linalg.norm(task.tool() - goal)
            for _ in range(task.steps):
                task.step(task.expert(goal))
            assert start > task.success_radius and np.linalg.norm(task.tool() - goal) <= task.success_radius
        images, tools, actions = expert_demos(task, 2, seed=0)
        assert images.shape == (2 * task.steps, 64, 64, 3) and tools.shape == actions.shape == (
            2 * task.steps,
            3,
        )
        assert np.linalg.norm(actions, axis=1).max() <= task.max_step + 1e-9
    finally:
        task.close()


def test_wilson_interval_by_hand():
    # 0 of 10: centre = (z²/2n)/(1+z²/n) = 0.19208/1.38416, half the same → (0, 0.2775)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.27754, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    # 5 of 10: centre 0.5; half = 1.96·sqrt(0.025 + 0.0096040)/1.38416 = 0.26341
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(2 * 0.26341, abs=1e-4)


@pytest.mark.slow
def test_behaviour_cloning_moves_towards_the_goal():
    """Even on a random frozen encoder the cloned policy ends far closer to the goal than where it starts
    (the image shows the gripper and the block; the MLP learns the expert's steps from them)."""
    task = ReachTask(image_size=96)
    try:
        rng = np.random.default_rng(10_000)  # the probe's evaluation episodes of seed 0
        start = np.mean([np.linalg.norm(task.start - task.reset(rng)) for _ in range(6)])
    finally:
        task.close()
    result = run_policy_probe("h2r-clip-tiny", None, demos=12, episodes=6, train_steps=600, seed=0)
    assert result["mean_final_distance"] < 0.6 * start
