"""robot-toyworld fixtures, written once per session (small: few frames, 128 px)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlzoo.robotics.toyworld import ToyClip, render_clip, write_robot_toyworld

SIZE = 128
FRAMES = 8


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """robot-toyworld on disk: 2 train clips (reach, push) and 1 test clip (pick)."""
    root = tmp_path_factory.mktemp("robot-toyworld")
    write_robot_toyworld(root, n_train=2, n_val=0, n_test=1, frames=FRAMES, image_size=SIZE, seed=0)
    return root


@pytest.fixture(scope="session")
def push_clip() -> ToyClip:
    """The push clip (index 1) in memory, with its hand segmentation: the ground truth."""
    return render_clip(0, 1, FRAMES, (SIZE, SIZE))
