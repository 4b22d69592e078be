"""`vlzoo-robotics augment VIDEO_OR_DIR --robot franka --out OUT`: H2R over a video dataset.

Writes, per clip (`clip_id` from the dataset's layout, see `video.list_clips`):
    OUT/videos/<clip>.mp4           the H2R video
    OUT/shards/<clip>-000000.tar    webdataset shards, one sample per frame: the H2R frame (.png), the
                                    caption (.txt) and .json with clip, frame, status, keypoints_2d,
                                    keypoints_3d, joints, gripper opening (the core's `write_shards`)
    OUT/preview/<clip>.png          a strip: original | hand removed | H2R (rows) over a few frames
    OUT/captions.csv                video, caption, split, id of every augmented clip: OUT is a dataset of
                                    data kind `video-captions` (pre-train on H2R frames)
    OUT/done/<clip>.json            what the clip gave (frame counts, seconds per stage): its presence is
                                    what makes a rerun skip the clip (resumable per video)
and OUT/summary.json over the run. A clip whose video can't be read is reported and counted, never
stopping the run; frames without a hand or with an unreachable pose are kept unaugmented and counted.

Keypoints come from, in order: a `keypoints` column of the captions CSV (robot-toyworld's ground
truth), `--keypoints DIR/<clip>.json` (any detector's output), or `--detector mediapipe` (the extra).
The camera is the keypoints file's, else a centred one of `--fov` degrees vertical field of view (an
assumption, as the video's metadata rarely says the focal length).
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlzoo.core.data import write_shards
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.robotics.camera import Camera
from vlzoo.robotics.h2r import STAGES, ClipResult, H2RConfig, H2RPipeline
from vlzoo.robotics.keypoints import HandKeypointSource, JsonKeypoints, MediaPipeHands
from vlzoo.robotics.video import Clip, list_clips, read_video, write_video

__all__ = ["augment", "clip_source", "preview_strip"]

DEFAULT_FOV = 60.0


def clip_source(
    clip: Clip, keypoints_dir: str | os.PathLike | None, detector: str | None, camera: Camera
) -> tuple[HandKeypointSource, Camera]:
    """The keypoint source of `clip` and the camera to render with (module docstring for the order)."""
    if clip.extra.get("keypoints"):
        source = JsonKeypoints(clip.extra["keypoints"], min_confidence=0.0)
        return source, _fit(source.camera, camera)
    if keypoints_dir is not None:
        for name in (clip.clip_id, clip.video.stem):
            path = Path(keypoints_dir) / f"{name}.json"
            if path.is_file():
                source = JsonKeypoints(path)
                return source, _fit(source.camera, camera)
        raise DataError(f"{clip.video}: no keypoints file {clip.clip_id}.json in {keypoints_dir}")
    if detector == "mediapipe":
        return MediaPipeHands(camera), camera
    raise ConfigError(f"{clip.video}: no keypoints: give --keypoints DIR or --detector mediapipe")


def _fit(named: Camera | None, fallback: Camera) -> Camera:
    if named is None:
        return fallback
    if (named.width, named.height) != (fallback.width, fallback.height):
        return named.resized(fallback.width, fallback.height)
    return named


class _Strided:
    """Frame i of the sampled frames is frame `i * stride` of the video the keypoints index."""

    def __init__(self, source: HandKeypointSource, stride: int):
        self.source, self.stride = source, stride

    def __call__(self, frame: np.ndarray, index: int) -> Any:
        return self.source(frame, index * self.stride)


def preview_strip(result: ClipResult, columns: int = 6) -> np.ndarray:
    """Rows original | hand removed | H2R, over `columns` frames spread over the clip (hand frames first)."""
    ok = [i for i, s in enumerate(result.status) if s == "ok"] or list(range(len(result.status)))
    picks = [ok[round(j)] for j in np.linspace(0, len(ok) - 1, min(columns, len(ok)))]
    rows = [
        np.concatenate([v[i] for i in picks], axis=1)
        for v in (result.original, result.inpainted, result.frames)
    ]
    return np.concatenate(rows, axis=0)


def _samples(clip: Clip, result: ClipResult, stride: int) -> list[dict[str, Any]]:
    out = []
    for i, frame in enumerate(result.frames):
        kp = result.keypoints[i]
        out.append(
            {
                "id": f"{clip.clip_id}#{i * stride}",
                "image": frame,
                "text": clip.caption,
                "clip_id": clip.clip_id,
                "frame": i * stride,
                "status": result.status[i],
                "keypoints_2d": None if kp is None else np.round(kp.points_2d, 2).tolist(),
                "keypoints_3d": None
                if kp is None or kp.points_3d is None
                else np.round(kp.points_3d, 5).tolist(),
                "joints": None
                if np.isnan(result.joints[i]).any()
                else np.round(result.joints[i], 5).tolist(),
                "gripper_opening": None
                if np.isnan(result.openings[i])
                else round(float(result.openings[i]), 5),
            }
        )
    return out


def _write_captions(out: Path, clips: list[Clip]) -> None:
    """OUT/captions.csv over the clips augmented by this run or an earlier one, in the dataset's order."""
    rows = []
    for clip in clips:
        marker = out / "done" / f"{clip.clip_id}.json"
        if marker.is_file():
            record = json.loads(marker.read_text())
            rows.append({"video": f"videos/{clip.clip_id}.mp4", "caption": record["caption"],
                         "split": record.get("split", "train"), "id": clip.clip_id})  # fmt: skip
    tmp = out / "captions.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "caption", "split", "id"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "captions.csv")


def augment(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: H2RConfig | None = None,
    keypoints: str | os.PathLike | None = None,
    detector: str | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    fov: float = DEFAULT_FOV,
    fps: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Augment every clip of `data` into `out` (module docstring); returns the run's summary."""
    config = config or H2RConfig()
    out = Path(out)
    clips = list_clips(data)
    counts: Counter[str] = Counter()
    seconds = dict.fromkeys(STAGES, 0.0)
    failed: list[dict[str, str]] = []
    done = resumed = 0
    t_start = time.perf_counter()
    from rich.progress import Progress  # here: importing the package (every `vlzoo list`) stays light

    with H2RPipeline(config) as pipeline, Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("H2R", total=len(clips))
        for clip in clips:
            marker = out / "done" / f"{clip.clip_id}.json"
            if marker.is_file():
                resumed += 1
                counts.update(json.loads(marker.read_text())["counts"])
                bar.advance(task)
                continue
            try:
                frames, video_fps = read_video(clip.video, stride, max_frames, clip.start, clip.end)
                h, w = frames.shape[1:3]
                source, camera = clip_source(clip, keypoints, detector, Camera.from_fov(w, h, fov))
                result = pipeline.process(frames, _Strided(source, stride), camera)
            except DataError as err:
                failed.append({"clip": clip.clip_id, "video": str(clip.video), "error": str(err)})
                log(f"skipped {clip.video}: {err}")
                bar.advance(task)
                continue
            even = result.frames[:, : h - h % 2, : w - w % 2]
            write_video(out / "videos" / f"{clip.clip_id}.mp4", even, fps or video_fps / stride)
            write_shards(
                _samples(clip, result, stride), out / "shards" / f"{clip.clip_id}-%06d.tar", resume=False
            )
            (out / "preview").mkdir(parents=True, exist_ok=True)
            Image.fromarray(preview_strip(result)).save(out / "preview" / f"{clip.clip_id}.png")
            marker.parent.mkdir(parents=True, exist_ok=True)
            record = {
                "clip": clip.clip_id,
                "caption": clip.caption,
                "split": clip.split,
                "counts": result.counts,
                "seconds": result.seconds,
                "frames": len(result.frames),
            }
            marker.write_text(json.dumps(record))
            counts.update(result.counts)
            for k, v in result.seconds.items():
                seconds[k] += v
            done += 1
            bar.advance(task)
    summary = {
        "clips": len(clips),
        "augmented": done,
        "resumed": resumed,
        "failed": failed,
        "frames": dict(counts),
        "seconds": {**seconds, "total": time.perf_counter() - t_start},
        "config": asdict(config),
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_captions(out, clips)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log(
        f"H2R: {done} clips augmented, {resumed} kept from an earlier run, {len(failed)} unreadable; frames: "
        f"{counts.get('ok', 0)} augmented, {counts.get('no_hand', 0)} without a hand, "
        f"{counts.get('unreachable', 0)} unreachable (kept as they were)"
    )
    return summary
