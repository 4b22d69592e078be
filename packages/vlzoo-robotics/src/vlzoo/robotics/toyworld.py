"""robot-toyworld: seeded egocentric clips of a human hand acting on coloured blocks, rendered with pybullet.

Why it exists: every step of the H2R pipeline (keypoints, retargeting, rendering, hand removal,
compositing) needs videos whose truth is known, and the pre-training recipes and tests need a dataset
that ships with the code. A clip is a table, two or three coloured 4 cm blocks and a skin-coloured right
hand built of capsules over the 21 MANO/mediapipe joints (no forearm: the hand floats, so the hand is
exactly what its keypoints outline). The hand reaches for, pushes, picks up or places a block along a
scripted trajectory (blocks move kinematically with it), seen from a head-mounted camera; it enters from
below the frame, so the first frames of a clip may have no hand (recorded as such).

Written as real files:
    out/videos/<clip>.mp4           H.264, `fps` frames per second
    out/keypoints/<clip>.json       per frame: 2D pixels, 3D camera frame (metres), grip aperture; the camera
    out/captions.csv                video, caption, split, action, colour, clip_id (data kind `video-captions`)
`write_robot_toyworld(out, ...)` writes them (identical arguments, identical files);
`render_clip(seed, index, ...)` gives one clip in memory with its hand segmentation masks.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlzoo.core.errors import ConfigError
from vlzoo.robotics.camera import Camera, look_at
from vlzoo.robotics.keypoints import BONES, HandKeypoints, grasp_point, write_keypoints_json
from vlzoo.robotics.video import write_video

__all__ = [
    "ACTIONS",
    "COLOURS",
    "TOY_CAMERA_EYE",
    "TOY_CAMERA_TARGET",
    "ToyClip",
    "hand_keypoints_world",
    "render_clip",
    "toy_camera",
    "write_robot_toyworld",
]

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.10, 0.65, 0.20),
    "blue": (0.12, 0.25, 0.85),
    "yellow": (0.92, 0.80, 0.10),
}
SKIN = (0.87, 0.66, 0.53, 1.0)
TABLE = (0.55, 0.42, 0.30, 1.0)
BLOCK = 0.04  # block side, metres
ACTIONS = ("reach", "push", "pick", "place")
TEMPLATES = {
    "reach": ("reach for the {c} block", "move the hand to the {c} block"),
    "push": ("push the {c} block to the {d}", "slide the {c} block {d}"),
    "pick": ("pick up the {c} block", "lift the {c} block off the table"),
    "place": ("put the {c} block down on the {d}", "place the {c} block to the {d}"),
}
DIRECTIONS = {"left": np.array([-1.0, 0.0, 0.0]), "right": np.array([1.0, 0.0, 0.0])}
TOY_CAMERA_EYE = np.array([0.0, -0.14, 0.38])
TOY_CAMERA_TARGET = np.array([0.0, 0.15, 0.0])
FOVY = 60.0
FINGER_RADIUS = 0.009
PALM_RADIUS = 0.013

# The hand in its own frame (x wrist → fingers, y towards the thumb, z out of the back of the hand).
_MCP = {"index": (0.085, 0.022), "middle": (0.088, 0.0), "ring": (0.082, -0.019), "pinky": (0.072, -0.036)}
_PHALANGES = {
    "index": (0.039, 0.024, 0.021),
    "middle": (0.043, 0.027, 0.022),
    "ring": (0.040, 0.026, 0.021),
    "pinky": (0.031, 0.019, 0.019),
}
_THUMB_CMC = np.array([0.025, 0.020, -0.012])
# Bones of the palm are thicker than fingers; the extra ones across the knuckles fill the palm in.
_PALM_BONES = {(0, 1), (0, 5), (0, 9), (0, 13), (0, 17), (5, 9), (9, 13), (13, 17), (1, 5)}
_THUMB_DIR = np.array([0.0, 0.94, -0.34])  # from the index tip towards the thumb tip


def toy_camera(size: tuple[int, int] = (128, 128)) -> Camera:
    """robot-toyworld's head-mounted camera at `size` (height, width)."""
    h, w = size
    return Camera.from_fov(w, h, FOVY, look_at(TOY_CAMERA_EYE, TOY_CAMERA_TARGET))


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _hand_local(curl: float, aperture: float) -> np.ndarray:
    """`[21, 3]` keypoints in the hand frame for finger curl in [0, 1] and a thumb–index tip gap (m)."""
    pts = np.zeros((21, 3))
    flex = {"index": (0.35 + 0.35 * curl, 0.30 + 0.30 * curl, 0.20 + 0.20 * curl)}
    for finger in ("middle", "ring", "pinky"):  # the other fingers fold further, out of the pinch's way
        flex[finger] = (0.45 + 0.9 * curl, 0.5 + 0.8 * curl, 0.3 + 0.5 * curl)
    for k, finger in enumerate(("index", "middle", "ring", "pinky")):
        base = 5 + 4 * k
        pos = np.array([*_MCP[finger], 0.0])
        pts[base] = pos
        angle = 0.0
        for j, length in enumerate(_PHALANGES[finger]):
            angle += flex[finger][j]
            pos = pos + length * np.array([math.cos(angle), 0.0, -math.sin(angle)])
            pts[base + 1 + j] = pos
    tip = pts[8] + aperture * _THUMB_DIR
    pts[1] = _THUMB_CMC
    bow = np.array([0.0, 0.008, -0.006])
    pts[2] = _THUMB_CMC + 0.42 * (tip - _THUMB_CMC) + bow
    pts[3] = _THUMB_CMC + 0.74 * (tip - _THUMB_CMC) + 0.6 * bow
    pts[4] = tip
    return pts


# A right hand, palm down, fingers forward (+y), thumb to the left: hand x → world +y, hand y → world -x.
_HAND_TO_WORLD = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def hand_rotation(yaw: float, pitch: float) -> np.ndarray:
    """Hand frame → world: palm down, fingers tilted `pitch` below the horizon, turned `yaw` about z."""
    return _rot("z", yaw) @ _HAND_TO_WORLD @ _rot("y", pitch)


def hand_keypoints_world(
    grasp: np.ndarray, yaw: float, pitch: float, curl: float, aperture: float
) -> np.ndarray:
    """`[21, 3]` world keypoints of the hand whose pinch point (thumb–index midpoint) is at `grasp`."""
    local = _hand_local(curl, aperture)
    rot = hand_rotation(yaw, pitch)
    return (local - grasp_point(local)) @ rot.T + np.asarray(grasp)


# ------------------------------------------------------------------------------------ trajectories


@dataclass
class _Script:
    """A clip's plan: per frame the pinch point, aperture and curl; the target block's positions."""

    grasp: np.ndarray  # [T, 3]
    aperture: np.ndarray  # [T]
    curl: np.ndarray  # [T]
    block: np.ndarray  # [T, 3] the target block's centre


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _path(points: list[np.ndarray], t: np.ndarray, knots: list[float]) -> np.ndarray:
    """Piecewise eased motion through `points` reached at fractions `knots` of the clip."""
    out = np.empty((len(t), 3))
    for i, ti in enumerate(t):
        k = max(0, min(len(knots) - 2, int(np.searchsorted(knots, ti, side="right")) - 1))
        s = _smoothstep(np.array((ti - knots[k]) / max(knots[k + 1] - knots[k], 1e-9)))
        out[i] = points[k] + float(s) * (points[k + 1] - points[k])
    return out


def _script(
    action: str, block: np.ndarray, direction: np.ndarray, n: int, rng: np.random.Generator
) -> _Script:
    t = np.linspace(0.0, 1.0, n)
    start = np.array([rng.uniform(-0.02, 0.08), -0.12, 0.12])  # below the frame, near the body
    half = BLOCK / 2
    ap_open = rng.uniform(0.07, 0.09)
    hold = BLOCK + 0.004  # fingertips on the block's faces
    blocks = np.repeat(block[None], n, axis=0)
    if action == "reach":
        hover = block + np.array([0.0, -0.01, half + 0.03])
        grasp = _path([start, hover, hover], t, [0.0, 0.75, 1.0])
        aperture = np.full(n, ap_open)
        curl = np.full(n, 0.2)
    elif action == "push":
        behind = block - 0.06 * direction
        pushed = block + 0.10 * direction
        grasp = _path([start, behind, pushed - 0.06 * direction], t, [0.0, 0.45, 1.0])
        moved = np.clip((t - 0.45) / 0.55, 0.0, 1.0)
        blocks = block + _smoothstep(moved)[:, None] * (pushed - block)
        aperture = np.full(n, 0.02)
        curl = np.full(n, 0.7)
    elif action == "pick":
        lifted = block + np.array([0.0, 0.0, 0.07])
        grasp = _path([start, block, block, lifted], t, [0.0, 0.45, 0.6, 1.0])
        aperture = np.interp(t, [0.0, 0.45, 0.6, 1.0], [ap_open, ap_open, hold, hold])
        curl = np.interp(t, [0.0, 0.45, 0.6, 1.0], [0.2, 0.2, 0.6, 0.6])
        blocks = np.where((t >= 0.6)[:, None], grasp, block)
    elif action == "place":
        held = block + np.array([0.0, 0.0, 0.10])
        target = block + 0.12 * direction
        grasp = _path(
            [start, held, target + np.array([0.0, 0.0, 0.10]), target, target], t, [0.0, 0.3, 0.6, 0.85, 1.0]
        )
        aperture = np.interp(t, [0.0, 0.85, 1.0], [hold, hold, ap_open])
        curl = np.interp(t, [0.0, 0.85, 1.0], [0.6, 0.6, 0.2])
        blocks = np.where(
            (t >= 0.3)[:, None] & (t <= 0.85)[:, None], grasp, np.where((t > 0.85)[:, None], target, block)
        )
        before = t < 0.3  # carried in from below: it travels with the hand from the start
        blocks[before] = grasp[before]
    else:
        raise ConfigError(f"robot-toyworld: unknown action {action!r}; the actions are {ACTIONS}")
    return _Script(grasp, aperture, curl, blocks)


# ---------------------------------------------------------------------------------------- rendering


class _Scene:
    """A pybullet DIRECT world holding the table, the blocks and the hand's capsules."""

    def __init__(self, colours: list[str], block_xyz: list[np.ndarray]):
        # imported here: registering the generated dataset (every `vlzoo list`) must not load pybullet,
        # which also prints its build time on import
        import pybullet as pb

        self.pb = pb
        self.client = pb.connect(pb.DIRECT)
        c = self.client
        table = pb.createVisualShape(
            pb.GEOM_BOX, halfExtents=[0.6, 0.5, 0.01], rgbaColor=TABLE, physicsClientId=c
        )
        pb.createMultiBody(0, -1, table, [0, 0.15, -0.01], physicsClientId=c)
        self.blocks = []
        for name, xyz in zip(colours, block_xyz, strict=True):
            shape = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[BLOCK / 2] * 3,
                                         rgbaColor=(*COLOURS[name], 1.0), physicsClientId=c)  # fmt: skip
            self.blocks.append(pb.createMultiBody(0, -1, shape, xyz.tolist(), physicsClientId=c))
        self.hand_ids: list[int] = []
        self._bones = [*BONES, (5, 9), (9, 13), (13, 17), (0, 17), (0, 9), (0, 13), (1, 5)]
        placeholder = pb.createVisualShape(pb.GEOM_SPHERE, radius=1e-3, rgbaColor=SKIN, physicsClientId=c)
        self.hand_ids = [
            pb.createMultiBody(0, -1, placeholder, [0, 0, -5], physicsClientId=c) for _ in self._bones
        ]
        self._shapes: dict[tuple[int, int], int] = {}

    def pose_hand(self, world_pts: np.ndarray) -> None:
        """Capsules between keypoints: pybullet capsules lie along their z axis, so each is turned onto its
        bone and (a capsule's length being fixed at creation) rebuilt when its bone length changes."""
        pb = self.pb
        c = self.client
        for k, (a, b) in enumerate(self._bones):
            p, q = world_pts[a], world_pts[b]
            d = q - p
            length = float(np.linalg.norm(d))
            key = (k, round(length * 1000))
            if key not in self._shapes:
                radius = PALM_RADIUS if (a, b) in _PALM_BONES else FINGER_RADIUS
                self._shapes[key] = pb.createVisualShape(
                    pb.GEOM_CAPSULE,
                    radius=radius,
                    length=max(length, 1e-4),
                    rgbaColor=SKIN,
                    physicsClientId=c,
                )
            pb.removeBody(self.hand_ids[k], physicsClientId=c)
            self.hand_ids[k] = pb.createMultiBody(0, -1, self._shapes[key], ((p + q) / 2).tolist(),
                                                  _quat_z_to(d), physicsClientId=c)  # fmt: skip

    def hide_hand(self) -> None:
        pb = self.pb
        for body in self.hand_ids:
            pb.resetBasePositionAndOrientation(body, [0, 0, -5], [0, 0, 0, 1], physicsClientId=self.client)

    def move_block(self, i: int, xyz: np.ndarray) -> None:
        pb = self.pb
        pb.resetBasePositionAndOrientation(
            self.blocks[i], xyz.tolist(), [0, 0, 0, 1], physicsClientId=self.client
        )

    def render(self, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """(RGB `[H, W, 3]` uint8, hand mask `[H, W]` bool)."""
        pb = self.pb
        view, proj = camera.pybullet_matrices()
        _, _, rgba, _, seg = pb.getCameraImage(
            camera.width, camera.height, view, proj, renderer=pb.ER_TINY_RENDERER,
            lightDirection=[0.3, -0.6, 1.0], shadow=0, physicsClientId=self.client,
        )  # fmt: skip
        rgb = np.asarray(rgba, np.uint8).reshape(camera.height, camera.width, 4)[..., :3]
        seg = np.asarray(seg).reshape(camera.height, camera.width)
        return rgb.copy(), np.isin(seg, self.hand_ids)

    def close(self) -> None:
        pb = self.pb
        pb.disconnect(self.client)


def _quat_z_to(d: np.ndarray) -> list[float]:
    """The quaternion (x, y, z, w) turning +z onto direction `d`."""
    d = d / max(np.linalg.norm(d), 1e-12)
    axis = np.cross([0.0, 0.0, 1.0], d)
    s, c = np.linalg.norm(axis), float(d[2])
    if s < 1e-9:
        return [0.0, 0.0, 0.0, 1.0] if c > 0 else [1.0, 0.0, 0.0, 0.0]
    axis /= s
    half = math.atan2(s, c) / 2
    return [*(axis * math.sin(half)).tolist(), math.cos(half)]


@dataclass
class ToyClip:
    """One clip in memory: frames, hand masks, keypoints (None where the hand is out of view), camera."""

    clip_id: str
    caption: str
    action: str
    colour: str
    frames: np.ndarray  # [T, H, W, 3] uint8
    hand_masks: np.ndarray  # [T, H, W] bool
    keypoints: list[HandKeypoints | None]
    camera: Camera
    block_positions: np.ndarray  # [T, 3] the target block, world frame


def render_clip(seed: int, index: int, frames: int = 12, size: tuple[int, int] = (128, 128)) -> ToyClip:
    """Clip `index` of seed `seed`: the action cycles through `ACTIONS` with the index."""
    rng = np.random.default_rng([seed, index])
    action = ACTIONS[index % len(ACTIONS)]
    names = list(rng.choice(list(COLOURS), size=int(rng.integers(2, 4)), replace=False))
    xs = rng.permutation(np.array([-0.10, -0.02, 0.06]))[: len(names)] + rng.uniform(-0.01, 0.01, len(names))
    ys = rng.uniform(0.12, 0.20, len(names))
    blocks = [np.array([x, y, BLOCK / 2]) for x, y in zip(xs, ys, strict=True)]
    target = int(rng.integers(len(names)))
    direction_name = "left" if blocks[target][0] > -0.02 else "right"  # towards the middle: stays in view
    script = _script(action, blocks[target], DIRECTIONS[direction_name], frames, rng)
    yaw, pitch = rng.uniform(-0.25, 0.25), rng.uniform(0.45, 0.65)
    caption = str(rng.choice(TEMPLATES[action])).format(c=names[target], d=direction_name)
    camera = toy_camera(size)
    scene = _Scene(names, blocks)
    out_frames, masks, kps = [], [], []
    try:
        for i in range(frames):
            world = hand_keypoints_world(script.grasp[i], yaw, pitch, script.curl[i], script.aperture[i])
            scene.pose_hand(world)
            scene.move_block(target, script.block[i])
            rgb, mask = scene.render(camera)
            out_frames.append(rgb)
            masks.append(mask)
            cam_pts = camera.world_to_camera(world)
            px = camera.project_camera(cam_pts)
            inside = (px[:, 0] >= 0) & (px[:, 0] <= size[1] - 1) & (px[:, 1] >= 0) & (px[:, 1] <= size[0] - 1)
            # a hand with fewer than all its keypoints in view counts as absent: no detector gives it whole
            kps.append(HandKeypoints(px, 1.0, cam_pts) if inside.all() else None)
    finally:
        scene.close()
    return ToyClip(f"clip_{index:04d}", caption, action, names[target], np.stack(out_frames), np.stack(masks),
                   kps, camera, script.block[:, :])  # fmt: skip


def write_robot_toyworld(
    out_dir: str | os.PathLike,
    n_train: int = 16,
    n_val: int = 4,
    n_test: int = 4,
    frames: int = 12,
    image_size: int = 128,
    fps: float = 10.0,
    seed: int = 0,
) -> Path:
    """Write robot-toyworld (module docstring) under `out_dir`; returns `out_dir/captions.csv`."""
    if image_size < 32 or image_size % 2:
        raise ConfigError(f"robot-toyworld: image_size must be an even number ≥ 32, got {image_size}")
    if frames < 4:
        raise ConfigError(f"robot-toyworld: frames must be ≥ 4, got {frames}")
    root = Path(out_dir)
    rows = []
    index = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for _ in range(n):
            clip = render_clip(seed, index, frames, (image_size, image_size))
            name = f"{clip.clip_id}.mp4"
            write_video(root / "videos" / name, clip.frames, fps)
            write_keypoints_json(
                root / "keypoints" / f"{clip.clip_id}.json", name, clip.camera, clip.keypoints
            )
            rows.append({"video": f"videos/{name}", "caption": clip.caption, "split": split,
                         "action": clip.action, "colour": clip.colour, "id": clip.clip_id,
                         "keypoints": f"keypoints/{clip.clip_id}.json"})  # fmt: skip
            index += 1
    path = root / "captions.csv"
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)  # last: its presence says the dataset is complete
    return path
