"""Videos and the layouts of egocentric video datasets.

- `read_video(path, stride, max_frames, start, end)`: RGB frames `[T, H, W, 3]` uint8 and the frame rate,
  through PyAV (FFmpeg: MP4, WebM, ...); an unreadable or zero-frame video is a `DataError` naming it.
- `write_video(path, frames, fps)`: H.264 MP4 (yuv420p, so any player opens it).
- `list_clips(path)`: the clips of a dataset, whatever its layout:
  - Something-Something-v2: a labels JSON (`[{"id", "label", "template", "placeholders"}]`) beside a folder
    of `<id>.webm` (`--data labels/train.json`; videos in `../20bn-something-something-v2/` or beside it);
  - Ego4D/EPIC-style clip CSVs: columns `video` (or `video_id`), `start`, `end` (seconds, or
    `start_timestamp`/`stop_timestamp` as `HH:MM:SS.ff`), `narration` (or `caption`);
  - a folder of videos with `captions.csv` (`video`, `caption`[, `split`]) — robot-toyworld's layout;
  - a single video file (caption from its name).
- `VideoFrames`: a frame-caption source over `list_clips` for pre-training (data kind `video-captions`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vlzoo.core.data import ImageTextSource, Record, load_record
from vlzoo.core.errors import DataError

__all__ = [
    "VIDEO_EXTENSIONS",
    "Clip",
    "VideoFrames",
    "build_video_captions",
    "list_clips",
    "read_video",
    "split_frames",
    "video_frame_count",
    "write_video",
]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov")


@dataclass
class Clip:
    """One clip: a video file, the caption of what happens, and optionally its time window (seconds)."""

    video: Path
    caption: str
    clip_id: str
    start: float | None = None
    end: float | None = None
    split: str = "train"
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ reading


def _decoded(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else float("nan")
                yield t, frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError) as err:  # PyAV's errors derive from both
        raise DataError(f"{path}: unreadable video ({err})") from err


def read_video(
    path: str | os.PathLike,
    stride: int = 1,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> tuple[np.ndarray, float]:
    """(frames `[T, H, W, 3]` uint8 RGB, frames per second): every `stride`-th frame of the window
    [`start`, `end`) seconds, at most `max_frames`. A missing, unreadable or empty video (or window) is a
    `DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such video")
    if stride < 1:
        raise DataError(f"{path}: frame stride must be ≥ 1, got {stride}")
    fps = _fps(path)
    frames: list[np.ndarray] = []
    n = 0
    for t, image in _decoded(path):
        if start is not None and t < start:
            continue
        if end is not None and t >= end:
            break
        if n % stride == 0:
            frames.append(image)
            if max_frames is not None and len(frames) >= max_frames:
                break
        n += 1
    if not frames:
        window = "" if start is None and end is None else f" in [{start}, {end}) s"
        raise DataError(f"{path}: the video has no frames{window}")
    return np.stack(frames), fps


def _fps(path: Path) -> float:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            rate = container.streams.video[0].average_rate
    except (av.error.FFmpegError, OSError) as err:
        raise DataError(f"{path}: unreadable video ({err})") from err
    return float(rate) if rate else 30.0


def video_frame_count(path: str | os.PathLike) -> int:
    """The number of frames, from the container's header when it says, else by decoding."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            frames = container.streams.video[0].frames if container.streams.video else 0
    except (av.error.FFmpegError, OSError) as err:
        raise DataError(f"{path}: unreadable video ({err})") from err
    return int(frames) if frames else sum(1 for _ in _decoded(path))


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 10.0, crf: int = 18) -> Path:
    """Frames `[T, H, W, 3]` uint8 RGB → an H.264 MP4 (even width and height, as yuv420p needs)."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise DataError(f"{path}: write_video needs frames [T, H, W, 3], got {frames.shape}")
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise DataError(f"{path}: H.264 in yuv420p needs an even width and height, got {w}×{h}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf)}
        for image in frames.astype(np.uint8):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)  # atomic: a killed run leaves no half video under the real name
    return path


# ------------------------------------------------------------------------------------------ layouts


def _seconds(value: str, where: str) -> float:
    """Seconds from `12.5` or `HH:MM:SS.ff` (EPIC-KITCHENS timestamps)."""
    try:
        if ":" in value:
            parts = [float(p) for p in value.split(":")]
            return sum(p * 60**i for i, p in enumerate(reversed(parts)))
        return float(value)
    except ValueError as err:
        raise DataError(f"{where}: {value!r} is not a time") from err


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: unreadable CSV ({err})") from err


def _find_video(root: Path, name: str) -> Path:
    candidate = root / name
    if candidate.suffix.lower() in VIDEO_EXTENSIONS:
        return candidate
    for ext in VIDEO_EXTENSIONS:
        if (root / f"{name}{ext}").is_file():
            return root / f"{name}{ext}"
    return root / f"{name}.mp4"  # reported missing when read


def _captions_csv(path: Path) -> list[Clip]:
    rows = _read_csv(path)
    clips = []
    for line, row in enumerate(rows, start=2):
        where = f"{path} line {line}"
        video = row.get("video") or row.get("video_id") or row.get("filepath")
        caption = row.get("caption") or row.get("narration") or row.get("label")
        if not video or caption is None:
            raise DataError(f"{where}: needs columns video and caption (or narration), got {sorted(row)}")
        start = row.get("start") or row.get("start_timestamp")
        end = row.get("end") or row.get("stop_timestamp")
        clip_id = row.get("id") or row.get("narration_id") or f"{Path(video).stem}_{line - 2}"
        known = {"video", "video_id", "filepath", "caption", "narration", "label", "start", "end",
                 "start_timestamp", "stop_timestamp", "id", "narration_id", "split"}  # fmt: skip
        extra = {k: v for k, v in row.items() if k not in known}
        if extra.get("keypoints"):  # a per-video keypoints file, relative to the CSV like the video
            extra["keypoints"] = str(path.parent / extra["keypoints"])
        clips.append(
            Clip(
                video=_find_video(path.parent, video),
                caption=caption.strip(),
                clip_id=clip_id,
                start=_seconds(start, where) if start else None,
                end=_seconds(end, where) if end else None,
                split=(row.get("split") or "train").strip(),
                extra=extra,
            )
        )
    return clips


def _ssv2(path: Path) -> list[Clip]:
    try:
        items = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable labels JSON ({err})") from err
    if not isinstance(items, list):
        raise DataError(f"{path}: a Something-Something-v2 labels JSON is a list of objects")
    roots = [path.parent / "20bn-something-something-v2", path.parent.parent / "20bn-something-something-v2"]
    root = next((r for r in roots if r.is_dir()), path.parent)
    split = "validation" if "validation" in path.stem else path.stem.split("-")[0]
    clips = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item or "label" not in item:
            raise DataError(f"{path} item {n}: needs 'id' and 'label'")
        extra = {"template": item.get("template", ""), "placeholders": item.get("placeholders", [])}
        clips.append(Clip(root / f"{item['id']}.webm", str(item["label"]), str(item["id"]), split=split,
                          extra=extra))  # fmt: skip
    return clips


def list_clips(path: str | os.PathLike) -> list[Clip]:
    """The clips of a dataset in any layout of the module docstring."""
    path = Path(path)
    if path.is_dir():
        if (path / "captions.csv").is_file():
            return _captions_csv(path / "captions.csv")
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            raise DataError(f"{path}: no captions.csv and no videos ({', '.join(VIDEO_EXTENSIONS)})")
        return [Clip(v, v.stem.replace("_", " "), v.stem) for v in videos]
    if path.suffix.lower() == ".csv":
        return _captions_csv(path)
    if path.suffix.lower() == ".json":
        return _ssv2(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return [Clip(path, path.stem.replace("_", " "), path.stem)]
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    raise DataError(f"{path}: not a video, a captions CSV, a labels JSON or a folder of videos")


# ---------------------------------------------------------------------------- frame-caption source


class _FrameDecoder:
    """Reads frame `index` of a clip (picklable, for DataLoader workers)."""

    def __init__(self, clip: Clip, index: int):
        self.clip, self.index = clip, index

    def __call__(self, path: Any, name: Any) -> np.ndarray:
        frames, _ = read_video(self.clip.video, start=self.clip.start, end=self.clip.end,
                               max_frames=self.index + 1)  # fmt: skip
        if len(frames) <= self.index:
            raise DataError(f"{self.clip.video}: has {len(frames)} frames, frame {self.index} asked")
        return frames[self.index]


class VideoFrames(ImageTextSource):
    """Frame–caption pairs of a split of clips: `frames_per_clip` frames spread evenly over each clip (the
    frame count read from the container), each paired with its clip's caption; samples carry `clip_id`
    and `frame`. An unreadable video becomes skipped samples, counted as any source's."""

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        frames_per_clip: int = 4,
        captions: str = "random",
    ):
        clips = [c for c in list_clips(path) if c.split == split] or (
            list_clips(path) if split == "train" else []
        )
        self._decoders: dict[Any, _FrameDecoder] = {}
        records = []
        for clip in clips:
            try:
                count = video_frame_count(clip.video) if clip.start is None else frames_per_clip
            except DataError:
                count = frames_per_clip  # read (and skipped, counted) when the sample is asked for
            picks = np.unique(np.linspace(0, max(count - 1, 0), frames_per_clip).round().astype(int))
            for i in picks:
                sid = f"{clip.clip_id}#{int(i)}"
                self._decoders[sid] = _FrameDecoder(clip, int(i))
                records.append(Record(clip.video, [clip.caption], sid, {"clip_id": clip.clip_id,
                                                                      "frame": int(i)}))  # fmt: skip
        super().__init__(records, captions, path)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec_index, cap_index = self._index[index]
        rec = self.records[rec_index]
        return load_record(rec, self.captions, cap_index, decode=self._decoders[rec.sample_id])  # type: ignore[arg-type]


def split_frames(path: str | os.PathLike, split: str) -> tuple[list[Clip], list[np.ndarray]]:
    """The clips of `split` (any layout `list_clips` reads) and each one's decoded frames `[T, H, W, 3]`;
    a split with no clips is a `DataError` naming the dataset."""
    clips = [c for c in list_clips(path) if c.split == split]
    if not clips:
        raise DataError(f"{path}: no clips in split {split!r}")
    return clips, [read_video(c.video, start=c.start, end=c.end)[0] for c in clips]


def build_video_captions(path: str, split: str, captions: str, options: Mapping[str, Any]) -> VideoFrames:
    """The `video-captions` data kind: `data_options: {frames_per_clip: 4}`."""
    return VideoFrames(path, split, int(options.get("frames_per_clip") or 4), captions)
