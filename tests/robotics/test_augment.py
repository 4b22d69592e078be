"""augment end to end on toy clips: videos, shards, previews, resume, counted skips; fidelity; the CLI."""

from __future__ import annotations

import csv
import json
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from vlzoo.robotics.augment import augment
from vlzoo.robotics.cli import main
from vlzoo.robotics.evaluation import VARIANTS, evaluate_fidelity
from vlzoo.robotics.h2r import H2RConfig
from vlzoo.robotics.keypoints import read_keypoints_json
from vlzoo.robotics.video import VideoFrames, read_video

from .conftest import FRAMES, SIZE


@pytest.fixture(scope="module")
def augmented(toy_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("h2r")
    summary = augment(toy_root, out, H2RConfig(robot="franka"), progress=False)
    return out, summary


def test_augment_writes_videos_shards_previews(toy_root, augmented):
    out, summary = augmented
    assert summary["augmented"] == 3 and not summary["failed"]
    truth = [read_keypoints_json(toy_root / "keypoints" / f"clip_000{i}.json")[1] for i in range(3)]
    no_hand = sum(kp is None for frames in truth for kp in frames.values())
    assert no_hand > 0 and summary["frames"]["no_hand"] == no_hand  # counted, not dropped
    assert sum(summary["frames"].values()) == 3 * FRAMES

    frames, _ = read_video(out / "videos" / "clip_0001.mp4")
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    with tarfile.open(out / "shards" / "clip_0001-000000.tar") as tar:
        names = tar.getnames()
        metas = [json.loads(tar.extractfile(n).read()) for n in names if n.endswith(".json")]
        texts = [tar.extractfile(n).read().decode() for n in names if n.endswith(".txt")]
    assert len(metas) == FRAMES and all("push" in t for t in texts)
    ok = [m for m in metas if m["status"] == "ok"]
    assert ok and all(len(m["joints"]) == 7 and len(m["keypoints_2d"]) == 21 for m in ok)
    assert all(m["joints"] is None for m in metas if m["status"] == "no_hand")
    # OUT is itself a frame–caption dataset of the H2R videos
    h2r = VideoFrames(out / "captions.csv", "test", frames_per_clip=2, captions="first")
    assert len(h2r) == 2 and "pick" in h2r[0]["text"] and h2r[0]["image"].shape == (SIZE, SIZE, 3)
    strip = np.asarray(Image.open(out / "preview" / "clip_0001.png"))
    assert strip.shape[0] == 3 * SIZE and strip.shape[1] % SIZE == 0  # original | hand removed | H2R


def test_augment_resumes_per_video_and_counts_unreadable_ones(toy_root, augmented, tmp_path):
    out, _ = augmented
    before = (out / "videos" / "clip_0000.mp4").stat().st_mtime_ns
    summary = augment(toy_root, out, H2RConfig(robot="franka"), progress=False)
    assert summary["resumed"] == 3 and summary["augmented"] == 0
    assert (out / "videos" / "clip_0000.mp4").stat().st_mtime_ns == before

    data = tmp_path / "data"
    shutil.copytree(toy_root, data)
    (data / "videos" / "clip_0002.mp4").write_bytes(b"broken")
    rows = list(csv.DictReader((data / "captions.csv").open()))
    logged: list[str] = []
    summary = augment(data, tmp_path / "out", H2RConfig(robot="xarm6"), progress=False, log=logged.append)
    assert summary["augmented"] == 2 and len(summary["failed"]) == 1
    assert "clip_0002.mp4" in summary["failed"][0]["video"] and any(
        "clip_0002.mp4" in line for line in logged
    )
    assert len(rows) == 3


def test_fidelity_reports_the_four_versions(toy_root, tmp_path):
    report = evaluate_fidelity(
        "h2r-clip-tiny", data=str(toy_root / "captions.csv"), split="test", out=str(tmp_path)
    )
    assert report["clips"] == 1 and set(report["fidelity"]) == set(VARIANTS)
    scores = report["per_clip"][0]
    assert all(-1.0 <= scores[v] <= 1.0 for v in VARIANTS)
    # the versions are different images: an untrained CLIP still scores them differently
    assert len({round(scores[v], 6) for v in VARIANTS}) == 4
    assert json.loads((tmp_path / "fidelity.json").read_text())["clips"] == 1


def test_augment_command(toy_root, tmp_path):
    code = main(["augment", str(toy_root), "--out", str(tmp_path), "--robot", "kuka", "--mode", "official",
                 "--max-frames", "4"])  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["robot"] == "kuka" and summary["config"]["mode"] == "official"
    assert read_video(tmp_path / "videos" / "clip_0001.mp4")[0].shape[0] == 4


def test_mediapipe_detector_runs_on_a_toy_frame(push_clip):
    pytest.importorskip("mediapipe")
    from vlzoo.robotics.keypoints import MediaPipeHands

    detector = MediaPipeHands(push_clip.camera, static_image_mode=True)
    results = [detector(f, i) for i, f in enumerate(push_clip.frames)]
    # a capsule hand may or may not pass for a hand; whatever it finds is 21 finite points in the image
    for kp in results:
        if kp is not None:
            assert kp.points_2d.shape == (21, 2) and np.isfinite(kp.points_3d).all()


def test_demo_command(tmp_path):
    code = main(["demo", "--out", str(tmp_path), "--clips", "2", "--frames", "8", "--image-size", "96"])
    assert code == 0
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert demo["augment"]["augmented"] == 2 and set(demo["fidelity"]) == set(VARIANTS)
    assert len(list((tmp_path / "h2r" / "preview").glob("*.png"))) == 2


def test_frame_caption_retrieval_reads_videos(toy_root):
    from vlzoo.robotics.evaluation import evaluate_video_retrieval

    metrics = evaluate_video_retrieval("h2r-clip-tiny", data=str(toy_root / "captions.csv"), split="train",
                                       workers=0)  # fmt: skip
    assert metrics["images"] == 8 and metrics["skipped"] == 0  # 2 clips × 4 frames, one caption each
    assert 0.0 <= metrics["mean_recall"] <= 100.0
