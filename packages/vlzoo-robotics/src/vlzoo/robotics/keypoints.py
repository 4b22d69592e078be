"""Hand keypoints: 21 joints in the MANO / mediapipe order, 2D in pixels and 3D in the camera frame.

Sources implement `HandKeypointSource`: `source(frame, index) -> HandKeypoints | None` (None: no hand in
that frame). Here:
- `JsonKeypoints`: a per-video keypoints JSON written by any detector (HaMeR, a dataset's annotations)
  or by robot-toyworld, whose files are the ground truth (`GroundTruthKeypoints` = the toy's own file,
  refused when it lacks 3D);
- `MediaPipeHands`: mediapipe's legacy hand solution (the `mediapipe` extra; imported when built).

A source with 2D keypoints but no camera-frame 3D gets it from `lift_to_3d`: `cv2.solvePnP` of the 2D
points against metric hand-relative landmarks (mediapipe's world landmarks, or the palm of a canonical
hand when a detector gives none) with the camera intrinsics.

The keypoints JSON (`write_keypoints_json`):
    {"video": "clip.mp4", "camera": {"width", "height", "fx", "fy", "cx", "cy", "cam_to_world"},
     "frames": [{"frame": 0, "hand": true, "confidence": 1.0, "handedness": "right",
                 "keypoints_2d": [[u, v] × 21], "keypoints_3d": [[x, y, z] × 21] (optional, metres),
                 "hand_relative_3d": [[x, y, z] × 21] (optional)}, ...]}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.robotics.camera import Camera

__all__ = [
    "BONES",
    "CANONICAL_HAND",
    "FINGERS",
    "JOINT_NAMES",
    "NUM_KEYPOINTS",
    "PALM",
    "GroundTruthKeypoints",
    "HandKeypointSource",
    "HandKeypoints",
    "JsonKeypoints",
    "MediaPipeHands",
    "grasp_point",
    "lift_to_3d",
    "read_keypoints_json",
    "write_keypoints_json",
]

NUM_KEYPOINTS = 21
JOINT_NAMES = (
    "wrist",
    *(f"thumb_{j}" for j in ("cmc", "mcp", "ip", "tip")),
    *(f"{f}_{j}" for f in ("index", "middle", "ring", "pinky") for j in ("mcp", "pip", "dip", "tip")),
)
# Each finger's four keypoints, base to tip.
FINGERS = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "pinky": (17, 18, 19, 20),
}
BONES = tuple((0 if k == 0 else f[k - 1], f[k]) for f in FINGERS.values() for k in range(4))
PALM = (0, 1, 5, 9, 13, 17)  # the keypoints that stay rigid while the fingers move

# A right hand, flat, in metres, in a hand frame: x wrist → middle knuckle, y towards the thumb, z out of
# the back of the hand. Its palm is what `lift_to_3d` matches when a detector gives no 3D landmarks.
CANONICAL_HAND = np.array(
    [
        [0.000, 0.000, 0.000],
        [0.025, 0.020, -0.012], [0.052, 0.045, -0.020], [0.075, 0.060, -0.022], [0.095, 0.070, -0.022],
        [0.085, 0.022, 0.0], [0.124, 0.024, 0.0], [0.148, 0.025, 0.0], [0.169, 0.026, 0.0],
        [0.088, 0.000, 0.0], [0.131, 0.000, 0.0], [0.158, 0.000, 0.0], [0.180, 0.000, 0.0],
        [0.082, -0.019, 0.0], [0.122, -0.021, 0.0], [0.148, -0.022, 0.0], [0.169, -0.023, 0.0],
        [0.072, -0.036, 0.0], [0.103, -0.040, 0.0], [0.122, -0.042, 0.0], [0.141, -0.044, 0.0],
    ]
)  # fmt: skip


@dataclass
class HandKeypoints:
    """One hand in one frame: `points_2d` `[21, 2]` pixels; `points_3d` `[21, 3]` metres in the camera
    frame (None until lifted); `hand_relative_3d` metric landmarks in any hand-attached frame."""

    points_2d: np.ndarray
    confidence: float = 1.0
    points_3d: np.ndarray | None = None
    hand_relative_3d: np.ndarray | None = None
    handedness: str = "right"


@runtime_checkable
class HandKeypointSource(Protocol):
    """Finds the hand of frame `index` of a video (`frame`: `[H, W, 3]` uint8 RGB); None when none."""

    def __call__(self, frame: np.ndarray, index: int) -> HandKeypoints | None: ...


def grasp_point(points: np.ndarray) -> np.ndarray:
    """Where a pinch holds things: midway between the thumb tip and the index tip (2D or 3D)."""
    return (points[..., 4, :] + points[..., 8, :]) / 2.0


# ---------------------------------------------------------------------------------------- lifting


def lift_to_3d(keypoints: HandKeypoints, camera: Camera) -> HandKeypoints:
    """`keypoints` with `points_3d` (camera frame) from its 2D points and metric hand-relative landmarks by
    `cv2.solvePnP` (all 21 landmarks when given, else the canonical hand's palm: the fingers bend, the palm
    does not). Returned unchanged when it already has 3D."""
    if keypoints.points_3d is not None:
        return keypoints
    if keypoints.hand_relative_3d is not None:
        idx = np.arange(NUM_KEYPOINTS)
        obj = np.asarray(keypoints.hand_relative_3d, np.float64)
    else:
        idx = np.asarray(PALM)
        obj = CANONICAL_HAND.copy()
        if keypoints.handedness == "left":
            obj[:, 1] *= -1  # a left hand is the mirror image
    img = np.asarray(keypoints.points_2d, np.float64)[idx]
    ok, rvec, tvec = cv2.solvePnP(obj[idx], img, camera.K, None, flags=cv2.SOLVEPNP_SQPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(
            obj[idx], img, camera.K, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
        )
    if not ok:
        raise DataError("solvePnP found no hand pose for these keypoints")
    rot, _ = cv2.Rodrigues(rvec)
    pts = obj @ rot.T + tvec.reshape(1, 3)
    return HandKeypoints(keypoints.points_2d, keypoints.confidence, pts, keypoints.hand_relative_3d,
                         keypoints.handedness)  # fmt: skip


# ------------------------------------------------------------------------------------------- files


def write_keypoints_json(
    path: str | os.PathLike, video: str, camera: Camera, frames: list[HandKeypoints | None]
) -> Path:
    """The keypoints file of one video (the format in the module docstring); None frames have no hand."""
    rows: list[dict[str, Any]] = []
    for i, kp in enumerate(frames):
        if kp is None:
            rows.append({"frame": i, "hand": False})
            continue
        row: dict[str, Any] = {
            "frame": i,
            "hand": True,
            "confidence": float(kp.confidence),
            "handedness": kp.handedness,
            "keypoints_2d": np.round(kp.points_2d, 3).tolist(),
        }
        if kp.points_3d is not None:
            row["keypoints_3d"] = np.round(kp.points_3d, 6).tolist()
        if kp.hand_relative_3d is not None:
            row["hand_relative_3d"] = np.round(kp.hand_relative_3d, 6).tolist()
        rows.append(row)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"video": video, "camera": camera.to_dict(), "frames": rows}))
    return path


def _points(row: dict[str, Any], key: str, dims: int, where: str) -> np.ndarray | None:
    if key not in row:
        return None
    arr = np.asarray(row[key], dtype=np.float64)
    if arr.shape != (NUM_KEYPOINTS, dims) or not np.isfinite(arr).all():
        raise DataError(
            f"{where}: {key} must be {NUM_KEYPOINTS}×{dims} finite numbers, got shape {arr.shape}"
        )
    return arr


def read_keypoints_json(path: str | os.PathLike) -> tuple[Camera | None, dict[int, HandKeypoints | None]]:
    """(the camera it names, or None; frame index → keypoints or None) of a keypoints JSON."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable keypoints JSON ({err})") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list):
        raise DataError(f"{path}: a keypoints JSON needs a 'frames' list")
    camera = Camera.from_dict(doc["camera"]) if isinstance(doc.get("camera"), dict) else None
    out: dict[int, HandKeypoints | None] = {}
    for n, row in enumerate(doc["frames"]):
        where = f"{path} frame entry {n}"
        if not isinstance(row, dict) or not isinstance(row.get("frame"), int):
            raise DataError(f"{where}: needs an integer 'frame'")
        if not row.get("hand", True) or "keypoints_2d" not in row:
            out[row["frame"]] = None
            continue
        pts2 = _points(row, "keypoints_2d", 2, where)
        out[row["frame"]] = HandKeypoints(
            points_2d=pts2,  # type: ignore[arg-type]
            confidence=float(row.get("confidence", 1.0)),
            points_3d=_points(row, "keypoints_3d", 3, where),
            hand_relative_3d=_points(row, "hand_relative_3d", 3, where),
            handedness=str(row.get("handedness", "right")),
        )
    return camera, out


class JsonKeypoints:
    """Keypoints read from a per-video keypoints JSON; frames it doesn't list, or lists below
    `min_confidence`, have no hand."""

    def __init__(self, path: str | os.PathLike, min_confidence: float = 0.45):
        self.path = Path(path)
        self.camera, self.frames = read_keypoints_json(self.path)
        self.min_confidence = min_confidence

    def __call__(self, frame: np.ndarray, index: int) -> HandKeypoints | None:
        kp = self.frames.get(index)
        if kp is None or kp.confidence < self.min_confidence:
            return None
        return kp


class GroundTruthKeypoints(JsonKeypoints):
    """robot-toyworld's ground truth: its keypoints JSON, which has camera-frame 3D for every hand frame."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path, min_confidence=0.0)
        missing = [i for i, kp in self.frames.items() if kp is not None and kp.points_3d is None]
        if missing:
            raise DataError(f"{self.path}: ground truth lacks keypoints_3d in frames {missing[:5]}")


class MediaPipeHands:
    """mediapipe's legacy hand solution (palm detector + landmark model shipped in its wheel): 2D pixels
    from its normalized landmarks, hand-relative metric 3D from its world landmarks (x, y, z as mediapipe
    gives them: metres around the hand's centre), lifted to the camera frame by `lift_to_3d`.

    Needs the `mediapipe` extra (`pip install vlzoo-robotics[mediapipe]`, which pins numpy < 2)."""

    def __init__(self, camera: Camera, min_confidence: float = 0.45, static_image_mode: bool = False):
        try:
            import mediapipe as mp
        except ImportError as err:
            raise ConfigError(
                "the mediapipe hand detector needs the extra: pip install 'vlzoo-robotics[mediapipe]'"
            ) from err
        self.camera = camera
        self._hands = mp.solutions.hands.Hands(
            static_image_mode=static_image_mode,
            max_num_hands=1,
            min_detection_confidence=min_confidence,
        )

    def __call__(self, frame: np.ndarray, index: int) -> HandKeypoints | None:
        result = self._hands.process(np.ascontiguousarray(frame))
        if not result.multi_hand_landmarks:
            return None
        h, w = frame.shape[:2]
        lm = result.multi_hand_landmarks[0].landmark
        pts2 = np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in lm])  # normalized edges → pixel centres
        world = result.multi_hand_world_landmarks[0].landmark
        rel = np.array([[p.x, p.y, p.z] for p in world])
        cls = result.multi_handedness[0].classification[0]
        # mediapipe labels hands as if the image were mirrored (a selfie camera); a video isn't, so swap
        handedness = "left" if cls.label.lower() == "right" else "right"
        kp = HandKeypoints(pts2, float(cls.score), None, rel, handedness)
        return lift_to_3d(kp, self.camera)
