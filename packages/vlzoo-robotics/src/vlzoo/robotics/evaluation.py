"""`vlzoo-robotics eval fidelity`: H2R's CLIP fidelity metric.

Per clip, the CLIP image–text similarity (cosine of normalized features) between each frame and the
clip's action caption, averaged over the frames where a hand was found, for four versions of the frames:
the original, the naive baselines (the hand blacked out; the robot pasted over the hand without removing
it) and H2R (hand removed, robot composited). Reported per clip and averaged over clips. Any vlzoo CLIP
(`--model`, `--pretrained`) scores them. The official repository ships no code for this metric; this
follows the paper's description (the similarity of the frame with its action text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlzoo.core import get_tokenizer, get_transforms
from vlzoo.core.data import ensure_generated, get_generated_dataset
from vlzoo.core.errors import DataError
from vlzoo.core.eval import encode_texts, evaluate_retrieval, load_eval_model, print_table, write_json
from vlzoo.robotics.augment import clip_source
from vlzoo.robotics.camera import Camera
from vlzoo.robotics.h2r import H2RConfig, H2RPipeline
from vlzoo.robotics.video import list_clips, read_video

__all__ = [
    "VARIANTS",
    "evaluate_fidelity",
    "evaluate_video_retrieval",
    "fidelity_scores",
]

VARIANTS = ("original", "hand_blacked_out", "robot_over_hand", "h2r")


@torch.no_grad()
def fidelity_scores(
    net: torch.nn.Module, name: str, variants: dict[str, np.ndarray], caption: str
) -> dict[str, float]:
    """Mean frame–caption cosine similarity of each variant's frames (`[T, H, W, 3]` uint8)."""
    preprocess = get_transforms(name, train=False)
    text = encode_texts(net, get_tokenizer(name), [caption])[0]
    out = {}
    for key, frames in variants.items():
        images = torch.stack([preprocess(Image.fromarray(f)) for f in frames])
        feats = net.encode_image(images, normalize=True)
        out[key] = float((feats @ text).mean())
    return out


def evaluate_fidelity(
    model: Any,
    pretrained: str | None = None,
    data: str = "robot-toyworld",
    data_dir: str | None = None,
    split: str = "test",
    robot: str = "franka",
    mode: str = "ik",
    keypoints: str | None = None,
    max_clips: int | None = None,
    out: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """The fidelity table of the module docstring; `data` is a generated dataset name or any layout
    `list_clips` reads (with keypoints from its `keypoints` column or `keypoints`)."""
    if get_generated_dataset(data) is not None:
        data = str(ensure_generated(data, data_dir or f"data/{data}"))
    clips = [c for c in list_clips(data) if c.split == split] or list_clips(data)
    clips = clips[:max_clips] if max_clips else clips
    net, name = load_eval_model(model, pretrained)
    per_clip: list[dict[str, Any]] = []
    skipped: list[str] = []
    with H2RPipeline(H2RConfig(robot=robot, mode=mode)) as pipeline:
        for clip in clips:
            try:
                frames, _ = read_video(clip.video, start=clip.start, end=clip.end)
                h, w = frames.shape[1:3]
                source, camera = clip_source(clip, keypoints, None, Camera.from_fov(w, h, 60.0))
                result = pipeline.process(frames, source, camera)
            except DataError as err:
                skipped.append(f"{clip.video}: {err}")
                continue
            ok = np.array([s == "ok" for s in result.status])
            if not ok.any():
                skipped.append(f"{clip.video}: no frame with a hand")
                continue
            variants = {
                "original": result.original[ok],
                "hand_blacked_out": result.hand_blacked_out()[ok],
                "robot_over_hand": result.robot_over_hand()[ok],
                "h2r": result.frames[ok],
            }
            per_clip.append({"clip": clip.clip_id, "caption": clip.caption,
                             **fidelity_scores(net, name, variants, clip.caption)})  # fmt: skip
    if not per_clip:
        raise DataError(f"{data}: no clip could be scored ({'; '.join(skipped[:3])})")
    mean = {k: float(np.mean([c[k] for c in per_clip])) for k in VARIANTS}
    report = {"model": name, "robot": robot, "mode": mode, "clips": len(per_clip), "fidelity": mean,
              "per_clip": per_clip, "skipped": skipped}  # fmt: skip
    print_table(mean, title=f"CLIP fidelity: frame–caption similarity ({name}, {len(per_clip)} clips)")
    if out:
        write_json(report, Path(out) / "fidelity.json")
    return report


def evaluate_video_retrieval(
    model: Any,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 128,
    workers: int = 2,
    out: str | None = None,
    data_kind: str | None = None,
    data_dir: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """The core's frame↔caption retrieval, reading a captions CSV of videos (robot-toyworld's, augment's)
    as `video-captions` unless told otherwise (by its suffix the core would read a CSV of image pairs)."""
    return evaluate_retrieval(model, data=data, pretrained=pretrained, split=split, batch_size=batch_size,
                              workers=workers, out=out, data_kind=data_kind or "video-captions",
                              data_dir=data_dir)  # fmt: skip
