"""H2R ("H2R: A Human-to-Robot Data Augmentation for Robot Pre-training from Videos"): per frame of an
egocentric human video, detect the hand, retarget it to a robot, render the robot from the video's
camera, remove the hand and paste the robot in its place.

    pipeline = H2RPipeline(H2RConfig(robot="franka", mode="ik"))
    result = pipeline.process(frames, JsonKeypoints("clip.json"), camera)
    result.frames            # [T, H, W, 3] H2R frames; result.counts: no-hand and unreachable frames

Per clip:
1. detect: the `HandKeypointSource` of each frame; 3D lifted by solvePnP where the source gives only 2D;
2. smooth: the camera-frame 3D keypoints over a centred window of frames that have a hand (so the arm
   does not jitter with the detector), and the IK joint angles likewise;
3. retarget (`retarget.py`): `ik` — the base placed once for the clip, the tool at each frame's grasp
   pose; `official` — the arm fixed, the camera moved to see the robot's hand as the video sees the hand;
   the gripper opening from the thumb–index distance in both;
4. render (`render.py`) and remove (`inpaint.py`); 5. composite: the robot where its mask is, the
   inpainted frame elsewhere.
Frames without a hand, and `ik` frames whose pose the arm can't reach (position residual above
`ik_tolerance`), stay as they were and are counted: nothing is dropped and nothing crashes a clip.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np
import pybullet as pb

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.robotics.camera import Camera, look_at
from vlzoo.robotics.inpaint import get_inpainter, hand_mask, thickness_px
from vlzoo.robotics.keypoints import HandKeypoints, HandKeypointSource, lift_to_3d
from vlzoo.robotics.render import Light, RobotRender, render_robot
from vlzoo.robotics.retarget import (
    Robot,
    get_embodiment,
    gripper_opening,
    hand_frame,
    place_base,
    tool_pose_from_keypoints,
)

__all__ = ["MODES", "ClipResult", "H2RConfig", "H2RPipeline", "official_paste", "smooth_series"]

MODES = ("ik", "official")
STAGES = ("detect", "ik", "render", "inpaint", "composite")


@dataclass
class H2RConfig:
    robot: str = "franka"
    mode: str = "ik"
    inpainter: str = "telea"
    dilation: float = 0.3  # hand mask: hull dilated by this × the hand's size in pixels
    smooth: int = 3  # frames in the centred moving average of keypoints and joints (1: none)
    ik_tolerance: float = 0.01  # metres: a pose the arm misses by more is flagged unreachable
    random_light: bool = False  # one random light per clip (the official light-randomized variant)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"H2R mode must be one of {MODES}, got {self.mode!r}")
        if self.smooth < 1:
            raise ConfigError(f"smooth must be ≥ 1 frame, got {self.smooth}")


@dataclass
class ClipResult:
    """Everything one clip gave: the H2R frames and what the baselines and shards need."""

    frames: np.ndarray  # [T, H, W, 3] H2R
    original: np.ndarray
    inpainted: np.ndarray
    hand_masks: np.ndarray  # [T, H, W] bool (False where no hand)
    robot_rgb: np.ndarray
    robot_masks: np.ndarray
    joints: np.ndarray  # [T, n_arm] (nan where not augmented)
    openings: np.ndarray  # [T] metres (nan where not augmented)
    keypoints: list[HandKeypoints | None]
    status: list[str]  # "ok", "no_hand" or "unreachable" per frame
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(self.status)
        return {k: c.get(k, 0) for k in ("ok", "no_hand", "unreachable")}

    def hand_blacked_out(self) -> np.ndarray:
        """The naive baseline that blacks the hand out."""
        return np.where(self.hand_masks[..., None], 0, self.original).astype(np.uint8)

    def robot_over_hand(self) -> np.ndarray:
        """The naive baseline that pastes the robot without removing the hand."""
        return np.where(self.robot_masks[..., None], self.robot_rgb, self.original).astype(np.uint8)


def smooth_series(values: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` frames along axis 0, counting only `valid` frames (invalid
    ones keep their values and contribute nothing)."""
    if window <= 1 or not valid.any():
        return values.copy()
    flat = values.reshape(len(values), -1).astype(float)
    w = valid.astype(float)[:, None]
    kernel = np.ones(window)
    pad = window // 2
    num = np.apply_along_axis(lambda c: np.convolve(np.pad(c, (pad, window - 1 - pad)), kernel, "valid"), 0,
                              np.where(w > 0, flat, 0.0))  # fmt: skip
    den = np.convolve(np.pad(w[:, 0], (pad, window - 1 - pad)), kernel, "valid")[:, None]
    out = np.where((w > 0) & (den > 0), num / np.maximum(den, 1e-12), flat)
    return out.reshape(values.shape)


def official_paste(
    render: RobotRender, root_px: np.ndarray, tip_px: np.ndarray, hand_root: np.ndarray, hand_tip: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The official code's 2D fit: scale the render by |hand root → tip| / |robot root → tip| (clipped to
    [0.01, 9.99]) and shift it so the robot's tip lands on the hand's. Returns (rgb, mask) at frame size."""
    robot_len = float(np.linalg.norm(tip_px - root_px))
    scale = float(np.clip(np.linalg.norm(hand_tip - hand_root) / max(robot_len, 1e-6), 0.01, 9.99))
    shift = hand_tip - scale * tip_px
    m = np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])
    h, w = render.mask.shape
    rgb = cv2.warpAffine(render.rgb, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(render.mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
    return rgb, mask


class H2RPipeline:
    """The per-frame H2R pipeline for one robot (its pybullet world lives as long as the pipeline)."""

    def __init__(self, config: H2RConfig | None = None):
        self.config = config or H2RConfig()
        self.robot = Robot(get_embodiment(self.config.robot))
        self.inpaint = get_inpainter(self.config.inpainter)

    def close(self) -> None:
        self.robot.close()

    def __enter__(self) -> H2RPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------- stages

    def detect(
        self, frames: np.ndarray, source: HandKeypointSource, camera: Camera
    ) -> list[HandKeypoints | None]:
        """The hand of each frame (None where none), with camera-frame 3D."""
        out: list[HandKeypoints | None] = []
        for i, frame in enumerate(frames):
            kp = source(frame, i)
            if kp is not None:
                try:
                    kp = lift_to_3d(kp, camera)
                except DataError:
                    kp = None  # counted as a frame without a hand
            out.append(kp)
        return out

    def smooth(self, kps: list[HandKeypoints | None]) -> list[HandKeypoints | None]:
        """The 3D keypoints averaged over the centred window (for retargeting; the mask uses the detected)."""
        valid = np.array([k is not None for k in kps])
        if not valid.any() or self.config.smooth <= 1:
            return list(kps)
        pts = np.stack([k.points_3d if k is not None else np.zeros((21, 3)) for k in kps])
        smooth = smooth_series(pts, valid, self.config.smooth)
        return [
            None
            if k is None
            else HandKeypoints(k.points_2d, k.confidence, smooth[i], k.hand_relative_3d, k.handedness)
            for i, k in enumerate(kps)
        ]

    def process(self, frames: np.ndarray, source: HandKeypointSource, camera: Camera) -> ClipResult:
        cfg = self.config
        frames = np.asarray(frames, np.uint8)
        t_len, h, w = frames.shape[:3]
        if (camera.width, camera.height) != (w, h):
            raise DataError(f"the camera is {camera.width}×{camera.height} but the frames are {w}×{h}")
        seconds = dict.fromkeys(STAGES, 0.0)
        t0 = time.perf_counter()
        detected = self.detect(frames, source, camera)
        kps = self.smooth(detected)
        seconds["detect"] = time.perf_counter() - t0
        status = ["ok" if k is not None else "no_hand" for k in kps]
        n_arm = len(self.robot.arm)
        joints = np.full((t_len, n_arm), np.nan)
        openings = np.full(t_len, np.nan)
        robot_rgb = np.zeros_like(frames)
        robot_masks = np.zeros((t_len, h, w), bool)
        light = Light.random(np.random.default_rng(cfg.seed)) if cfg.random_light else Light()
        valid = [i for i, k in enumerate(kps) if k is not None]
        for i in valid:
            openings[i] = gripper_opening(kps[i].points_3d, self.robot.embodiment.max_opening)  # type: ignore[union-attr]
        if cfg.mode == "ik" and valid:
            t0 = time.perf_counter()
            self._solve_clip(kps, valid, camera, joints, status)
            seconds["ik"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in valid:
            if status[i] != "ok":
                continue
            self.robot.set_opening(float(openings[i]))
            if cfg.mode == "ik":
                self.robot.set_arm(joints[i])
                r = render_robot(self.robot, camera, light)
                robot_rgb[i], robot_masks[i] = r.rgb, r.mask
            else:
                joints[i] = np.asarray(self.robot.embodiment.rest)
                robot_rgb[i], robot_masks[i] = self._official_frame(kps[i], camera, light)  # type: ignore[arg-type]
        seconds["render"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        hand_masks = np.zeros((t_len, h, w), bool)
        inpainted = frames.copy()
        for i in valid:
            kp = detected[i]
            depth_radius = None if kp.points_3d is None else thickness_px(kp.points_3d, camera.fx)  # type: ignore[union-attr]
            hand_masks[i] = hand_mask(kp.points_2d, (h, w), cfg.dilation, radius_px=depth_radius)  # type: ignore[union-attr]
            if status[i] == "ok":
                inpainted[i] = self.inpaint(frames[i], hand_masks[i])
        seconds["inpaint"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = np.where(robot_masks[..., None], robot_rgb, inpainted).astype(np.uint8)
        seconds["composite"] = time.perf_counter() - t0
        return ClipResult(out, frames, inpainted, hand_masks, robot_rgb, robot_masks, joints, openings, detected,
                          status, seconds)  # fmt: skip

    # ------------------------------------------------------------------------------------ ik mode

    def _solve_clip(self, kps: list[HandKeypoints | None], valid: list[int], camera: Camera,
                    joints: np.ndarray, status: list[str]) -> None:  # fmt: skip
        """Place the base once for the clip, then IK frame by frame (each from the last answer), then
        smooth the joint angles over the reachable frames."""
        poses = [tool_pose_from_keypoints(camera.camera_to_world(kps[i].points_3d)) for i in valid]  # type: ignore[union-attr]
        positions = np.stack([p for p, _ in poses])
        rotations = np.stack([r for _, r in poses])
        place_base(
            self.robot, positions, rotations, camera.cam_to_world[:3, 3], tolerance=self.config.ik_tolerance
        )
        for n, i in enumerate(valid):
            result = self.robot.solve_ik(positions[n], rotations[n])
            joints[i] = result.joints
            if not result.reachable(self.config.ik_tolerance):
                status[i] = "unreachable"
        ok = np.array([s == "ok" for s in status])
        joints[:] = smooth_series(np.nan_to_num(joints), ok, self.config.smooth)
        joints[~ok] = np.nan

    # ------------------------------------------------------------------------------ official mode

    def _hide_links_before(self, camera: np.ndarray, ee: np.ndarray) -> None:
        """Don't draw the base and arm links nearer the camera than the end effector. (A deviation from the
        official code, which draws the whole UR5: with a parallel gripper in line with the forearm, the
        egocentric camera carried over from the human hand sits behind the forearm, which would fill the
        frame.) TinyRenderer skips fully transparent links; the others get their own colours back."""
        robot = self.robot
        if not hasattr(self, "_colours"):
            shapes = pb.getVisualShapeData(robot.body, physicsClientId=robot.client)
            self._colours = {s[1]: s[7] for s in shapes}
        reach = np.linalg.norm(ee - camera)
        for link, colour in self._colours.items():
            if link == robot.ee or link not in [-1, *robot.arm]:
                continue
            origin = (
                robot.link_pose(link)[:3, 3]
                if link >= 0
                else np.asarray(pb.getBasePositionAndOrientation(robot.body, physicsClientId=robot.client)[0])
            )
            hidden = np.linalg.norm(origin - camera) < reach
            rgba = [*colour[:3], 0.0] if hidden else list(colour)
            pb.changeVisualShape(robot.body, link, rgbaColor=rgba, physicsClientId=robot.client)

    def _official_frame(
        self, kp: HandKeypoints, camera: Camera, light: Light
    ) -> tuple[np.ndarray, np.ndarray]:
        robot = self.robot
        robot.set_base(np.zeros(3), 0.0)
        robot.set_arm(np.asarray(robot.embodiment.rest))
        pts = kp.points_3d
        hand_in_cam = hand_frame(pts[0], pts[9], pts[13])
        links = [robot.link_pose(name)[:3, 3] for name in robot.embodiment.hand_links]
        robot_hand = hand_frame(links[0], links[1], links[2])
        cam_pos = (robot_hand @ np.linalg.inv(hand_in_cam))[:3, 3]
        ee = robot.link_pose(robot.ee)[:3, 3]
        self._hide_links_before(cam_pos, ee)
        view = Camera(camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy,
                      look_at(cam_pos, ee), camera.near, camera.far)  # fmt: skip
        render = render_robot(robot, view, light)
        root_px, tip_px = view.project(np.stack([ee, robot.tool_pose()[:3, 3]]))
        hand_tip = (kp.points_2d[4] + kp.points_2d[8]) / 2.0
        return official_paste(render, root_px, tip_px, kp.points_2d[0], hand_tip)
