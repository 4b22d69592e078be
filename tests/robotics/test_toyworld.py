"""robot-toyworld writes real MP4s that read back, with keypoints that match what was rendered."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from vlzoo.core.errors import DataError
from vlzoo.robotics.keypoints import GroundTruthKeypoints, read_keypoints_json
from vlzoo.robotics.video import VideoFrames, list_clips, read_video, write_video

from .conftest import FRAMES, SIZE


def test_mp4s_read_back_with_their_ground_truth(toy_root, push_clip):
    rows = list(csv.DictReader((toy_root / "captions.csv").open()))
    assert [r["split"] for r in rows] == ["train", "train", "test"]
    assert [r["action"] for r in rows] == ["reach", "push", "pick"]
    frames, fps = read_video(toy_root / rows[1]["video"])
    assert frames.shape == (FRAMES, SIZE, SIZE, 3) and fps == pytest.approx(10.0)
    # H.264 at crf 18 keeps the rendered pixels closely (the same clip rendered again in memory)
    assert np.abs(frames.astype(int) - push_clip.frames.astype(int)).mean() < 4.0
    assert rows[1]["caption"] == push_clip.caption and "push" in push_clip.caption

    source = GroundTruthKeypoints(toy_root / rows[1]["keypoints"])
    camera = source.camera
    for i, truth in enumerate(push_clip.keypoints):
        got = source(frames[i], i)
        assert (got is None) == (truth is None)
        if got is None:
            continue
        np.testing.assert_allclose(got.points_3d, truth.points_3d, atol=1e-5)
        # the 2D keypoints are the 3D ones through the stored intrinsics
        np.testing.assert_allclose(camera.project_camera(got.points_3d), got.points_2d, atol=0.01)


def test_keypoints_lie_on_the_rendered_hand(push_clip):
    """The keypoints' projection and pybullet's render agree: every keypoint falls on or beside hand pixels."""
    for kp, mask in zip(push_clip.keypoints, push_clip.hand_masks, strict=True):
        if kp is None:
            continue
        ys, xs = np.nonzero(mask)
        hand = np.stack([xs, ys], 1)
        nearest = np.min(np.linalg.norm(kp.points_2d[:, None] - hand[None], axis=-1), axis=1)
        assert nearest.max() < 2.0


def test_frames_without_a_whole_hand_are_marked(push_clip):
    hands = [k is not None for k in push_clip.keypoints]
    assert not hands[0] and any(hands)  # enters from below the frame
    assert push_clip.hand_masks[hands].sum(axis=(1, 2)).min() > 50


def test_video_frames_source_pairs_frames_with_captions(toy_root):
    source = VideoFrames(toy_root / "captions.csv", "train", frames_per_clip=3, captions="first")
    assert len(source) == 6
    sample = source[4]
    assert sample["clip_id"] == "clip_0001" and sample["frame"] == 4  # frames 0, 4, 7 of 8
    assert sample["image"].shape == (SIZE, SIZE, 3) and "push" in sample["text"]


def test_bad_videos_are_data_errors_naming_the_file(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match=r"junk\.mp4"):
        read_video(junk)
    with pytest.raises(DataError, match=r"missing\.mp4"):
        read_video(tmp_path / "missing.mp4")
    video = write_video(tmp_path / "ok.mp4", np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="no frames"):
        read_video(video, start=100.0)
    with pytest.raises(DataError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((3, 31, 32, 3), np.uint8))


def test_dataset_layouts(tmp_path):
    (tmp_path / "20bn-something-something-v2").mkdir()
    (tmp_path / "train.json").write_text(
        '[{"id": "42", "label": "pushing cup from left to right", "template": "Pushing [something] from left '
        'to right", "placeholders": ["cup"]}]'
    )
    (clip,) = list_clips(tmp_path / "train.json")
    assert clip.video == tmp_path / "20bn-something-something-v2" / "42.webm"
    assert clip.caption == "pushing cup from left to right" and clip.extra["placeholders"] == ["cup"]

    (tmp_path / "epic.csv").write_text(
        "narration_id,video_id,start_timestamp,stop_timestamp,narration\n"
        "P01_01_0,P01_01,00:00:01.50,00:01:02.00,open door\n"
    )
    (clip,) = list_clips(tmp_path / "epic.csv")
    assert (clip.start, clip.end, clip.caption, clip.clip_id) == (1.5, 62.0, "open door", "P01_01_0")

    (tmp_path / "bad.csv").write_text("video,start\nx.mp4,abc\n")
    with pytest.raises(DataError, match=r"bad.csv line 2"):
        list_clips(tmp_path / "bad.csv")


def test_keypoints_json_errors_name_file_and_entry(tmp_path):
    path = tmp_path / "kp.json"
    path.write_text('{"frames": [{"frame": 0, "keypoints_2d": [[0, 0]]}]}')
    with pytest.raises(DataError, match=r"kp.json frame entry 0: keypoints_2d must be 21×2"):
        read_keypoints_json(path)


def test_discovering_the_models_loads_no_pybullet():
    # `vlzoo list` imports every domain's models; pybullet would print its build time on each call
    code = "import sys, vlzoo.core as vz; vz.list_models(); print('pybullet' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "False"
    assert "pybullet" not in out.stderr
