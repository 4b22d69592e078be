"""Rendering the robot with pybullet's CPU TinyRenderer from the video's camera.

The camera is the frame's: the same intrinsics (fovy = 2·atan(H / 2f), as H2R's official code sets its
renderer) and pose, so a point of the robot lands on the pixel `Camera.project` gives. Light: ambient plus
one directional light, by default along the viewing direction (the official code's ambient 0.5 + a
directional light along the view); `Light.random(rng)` draws one per clip as the official
light-randomized variant does (TinyRenderer has one light, so its two random lights become one of random
direction and strength).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as pb

from vlzoo.robotics.camera import Camera
from vlzoo.robotics.retarget import Robot

__all__ = ["Light", "RobotRender", "minimal_render", "render_robot"]


@dataclass(frozen=True)
class Light:
    """TinyRenderer's light: `direction` towards the light in the camera frame (None: from the camera)."""

    direction: tuple[float, float, float] | None = None
    ambient: float = 0.5
    diffuse: float = 0.6
    specular: float = 0.1
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @classmethod
    def random(cls, rng: np.random.Generator) -> Light:
        d = rng.normal(size=3)
        d[2] = -abs(d[2])  # from the camera's side of the scene
        return cls(tuple(d / np.linalg.norm(d)), float(rng.uniform(0.05, 0.5)), float(rng.uniform(0.5, 1.0)),
                   0.1, tuple(rng.uniform(0.6, 1.0, 3)))  # fmt: skip

    def world_direction(self, camera: Camera) -> list[float]:
        d = np.array([0.0, 0.0, -1.0] if self.direction is None else self.direction)  # towards the camera
        return (camera.cam_to_world[:3, :3] @ d).tolist()


@dataclass
class RobotRender:
    rgb: np.ndarray  # [H, W, 3] uint8
    mask: np.ndarray  # [H, W] bool, the robot's pixels
    depth: np.ndarray  # [H, W] metres along the optical axis (far where empty)


def _linear_depth(buffer: np.ndarray, camera: Camera) -> np.ndarray:
    n, f = camera.near, camera.far
    return f * n / (f - (f - n) * buffer)


def render_robot(robot: Robot, camera: Camera, light: Light = Light()) -> RobotRender:
    """The robot alone (its world holds nothing else) from `camera`: colour, mask and depth."""
    view, proj = camera.pybullet_matrices()
    _, _, rgba, depth, seg = pb.getCameraImage(
        camera.width, camera.height, view, proj,
        renderer=pb.ER_TINY_RENDERER, shadow=0,
        lightDirection=light.world_direction(camera), lightColor=list(light.colour),
        lightAmbientCoeff=light.ambient, lightDiffuseCoeff=light.diffuse, lightSpecularCoeff=light.specular,
        physicsClientId=robot.client,
    )  # fmt: skip
    shape = (camera.height, camera.width)
    rgb = np.asarray(rgba, np.uint8).reshape(*shape, 4)[..., :3].copy()
    seg = np.asarray(seg).reshape(shape)
    return RobotRender(
        rgb, seg == robot.body, _linear_depth(np.asarray(depth, np.float32).reshape(shape), camera)
    )


def minimal_render(robot: Robot, camera: Camera) -> np.ndarray:
    """pybullet's own render of the same scene with its defaults (no light settings, no mask or depth
    decoding): the reference `benchmarks/robotics_augment.py` times `render_robot` against."""
    view, proj = camera.pybullet_matrices()
    return pb.getCameraImage(camera.width, camera.height, view, proj, renderer=pb.ER_TINY_RENDERER,
                             physicsClientId=robot.client)[2]  # fmt: skip
