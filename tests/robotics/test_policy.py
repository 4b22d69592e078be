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


def test_without_distractors_only_the_goal_block_is_on_the_table(task):
    """Same draws as with distractors (same goal point, tool start and goal colour), but the two other
    blocks are gone from the image: only the goal colour's pixels remain among the block colours."""
    from vlzoo.robotics.toyworld import COLOURS

    def block_pixels(image: np.ndarray) -> dict[str, int]:
        rgb = image.astype(float) / 255
        return {name: int((np.abs(rgb - np.array(c)).max(-1) < 0.2).sum()) for name, c in COLOURS.items()}

    try:
        for seed in range(3):
            task.distractors = True
            goal_full, tool_full = task.reset(np.random.default_rng(seed)), task.tool()
            goal_colour = task.colours[task.goal_index]
            seen_full = block_pixels(task.observe())
            task.distractors = False
            goal_alone = task.reset(np.random.default_rng(seed))
            assert np.allclose(goal_full, goal_alone) and np.allclose(tool_full, task.tool())
            assert task.colours[task.goal_index] == goal_colour
            seen_alone = block_pixels(task.observe())
            assert sum(n > 20 for n in seen_full.values()) == 3, seen_full
            assert seen_alone[goal_colour] > 20
            assert all(n == 0 for name, n in seen_alone.items() if name != goal_colour), seen_alone
    finally:
        task.distractors = True


def test_the_pooled_head_standardizes_each_embedding_dimension():
    """The pooled head's BatchNorm (as R3M's behaviour cloning puts on the embedding): rescaling and shifting
    each dimension on its own leaves the step unchanged in training mode, so one encoder's few large
    dimensions don't drown the rest. A per-sample LayerNorm would not be invariant to this."""
    torch.manual_seed(0)
    head = READOUTS["pooled"](6, 4, False, dropout=0.0).train()
    emb, goal, tool = torch.randn(32, 6), torch.eye(4)[torch.randint(4, (32,))], torch.zeros(32, 3)
    scale, shift = torch.tensor([1000.0, 0.2, 1.0, 5.0, 0.3, 40.0]), torch.arange(6.0) * 3
    assert torch.allclose(head(emb, goal, tool), head(emb * scale + shift, goal, tool), atol=1e-3)
    before = head(emb, goal, tool)
    emb2 = emb.clone()
    emb2[0, 0] += 3.0  # one sample's value moves within its dimension: the step must follow
    assert not torch.allclose(head(emb2, goal, tool)[0], before[0])
