"""H2R `augment` throughput per stage (detect, IK, render, inpaint, composite) at 224×224 and 480×640, and
the robot render against pybullet's own minimal TinyRenderer call in the same run; then the retargeting's
accuracy on robot-toyworld's ground truth per robot: forward kinematics of the solved joints vs the target
grasp point (mm), the tool's orientation error (degrees), and the solved grasp point projected by the
camera vs the hand's 2D grasp point (px).

    python benchmarks/robotics_augment.py [--frames 12] [--robot franka]

Frames come from robot-toyworld (ground-truth keypoints, so "detect" is reading them and lifting to 3D).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vlzoo.robotics.h2r import STAGES, H2RConfig, H2RPipeline
from vlzoo.robotics.keypoints import grasp_point
from vlzoo.robotics.render import minimal_render, render_robot
from vlzoo.robotics.retarget import Robot, get_embodiment, place_base, tool_pose_from_keypoints
from vlzoo.robotics.toyworld import render_clip


def run(size: tuple[int, int], frames: int, robot: str) -> dict[str, float]:
    clip = render_clip(0, 1, frames, size)
    source = lambda frame, i: clip.keypoints[i]  # noqa: E731
    with H2RPipeline(H2RConfig(robot=robot)) as pipeline:
        result = pipeline.process(clip.frames, source, clip.camera)
        n_ok = result.counts["ok"]
        fps = {stage: n_ok / max(result.seconds[stage], 1e-9) for stage in STAGES}
        # render vs pybullet's own minimal render, same robot pose and camera, same run
        reps = 5
        t0 = time.perf_counter()
        for _ in range(reps):
            render_robot(pipeline.robot, clip.camera)
        ours = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            minimal_render(pipeline.robot, clip.camera)
        ref = (time.perf_counter() - t0) / reps
    total = sum(result.seconds.values())
    return {**fps, "all": n_ok / total, "render_ms": ours * 1e3, "minimal_render_ms": ref * 1e3,
            "render_ratio": ours / ref, "frames_ok": n_ok}  # fmt: skip


def accuracy(robot: str, clips: int = 8, frames: int = 8, size: int = 224) -> dict[str, float]:
    """Worst and median errors of IK + projection over the hand frames of `clips` toy clips."""
    pos, ang, px = [], [], []
    with Robot(get_embodiment(robot)) as arm:
        for index in range(clips):
            clip = render_clip(0, index, frames, (size, size))
            cam = clip.camera
            hands = [k for k in clip.keypoints if k is not None]
            if not hands:
                continue
            poses = [tool_pose_from_keypoints(cam.camera_to_world(k.points_3d)) for k in hands]
            targets = np.stack([p for p, _ in poses])
            rotations = np.stack([r for _, r in poses])
            place_base(arm, targets, rotations, cam.cam_to_world[:3, 3])
            for k, target, rot in zip(hands, targets, rotations, strict=True):
                result = arm.solve_ik(target, rot)
                tool = arm.tool_pose()[:3, 3]
                pos.append(np.linalg.norm(tool - target) * 1e3)
                ang.append(np.degrees(result.angle_error))
                px.append(np.linalg.norm(cam.project(tool) - grasp_point(k.points_2d)))
    return {"frames": len(pos), "pos_mm_max": max(pos), "pos_mm_median": float(np.median(pos)),
            "deg_max": max(ang), "deg_median": float(np.median(ang)), "px_max": max(px)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--robot", default="franka")
    args = p.parse_args()
    print(f"H2R augment, {args.robot}, frames/s per stage (frames with a hand), robot-toyworld push clip")
    header = ["size", *STAGES, "all", "render ms", "minimal ms", "ratio"]
    print(" | ".join(header))
    for h, w in ((224, 224), (480, 640)):
        r = run((h, w), args.frames, args.robot)
        cells = [f"{h}x{w}", *(f"{r[s]:.1f}" for s in STAGES), f"{r['all']:.1f}", f"{r['render_ms']:.1f}",
                 f"{r['minimal_render_ms']:.1f}", f"{r['render_ratio']:.2f}"]  # fmt: skip
        print(" | ".join(cells))
    print("\nretargeting accuracy on robot-toyworld ground truth (224×224, 8 clips × 8 frames)")
    print("robot | frames | FK error mm (median / max) | orientation deg (median / max) | grasp point px max")
    for robot in ("franka", "kuka", "xarm6"):
        a = accuracy(robot)
        print(f"{robot} | {a['frames']} | {a['pos_mm_median']:.2f} / {a['pos_mm_max']:.2f} | "
              f"{a['deg_median']:.2f} / {a['deg_max']:.2f} | {a['px_max']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
