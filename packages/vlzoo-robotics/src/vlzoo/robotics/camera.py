"""A pinhole camera: intrinsics, pose in the world, projection, and the matching pybullet matrices.

Conventions (one place, so every module agrees):
- camera frame: OpenCV's, x right, y down, z forward (what `cv2.solvePnP` and hand detectors use);
- pixels: OpenCV's, the centre of pixel (row r, column c) is (u, v) = (c, r); so an image whose optical
  axis hits its centre has (cx, cy) = ((W - 1) / 2, (H - 1) / 2);
- world frame: z up (pybullet's), metres.

pybullet renders with an OpenGL projection of vertical field of view fovy = 2·atan(H / 2f) (as H2R's
official code sets its renderer's camera) and a principal point at the image centre, so a camera with
fx = fy and a centred principal point renders exactly; `pybullet_matrices` refuses any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlzoo.core.errors import ConfigError

__all__ = ["Camera", "look_at"]

# OpenCV camera axes → OpenGL camera axes (y up, looking along -z).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0])


_Z_UP = np.array([0.0, 0.0, 1.0])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = _Z_UP) -> np.ndarray:
    """The 4×4 camera-to-world pose (OpenCV axes) of a camera at `eye` looking at `target`."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along `up`: any sideways axis will do
        x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], axis=1)
    pose[:3, 3] = eye
    return pose


@dataclass
class Camera:
    """Intrinsics in pixels and the camera-to-world pose `cam_to_world` (4×4, OpenCV camera axes)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    cam_to_world: np.ndarray = field(default_factory=lambda: np.eye(4))
    near: float = 0.02
    far: float = 5.0

    @classmethod
    def from_fov(
        cls, width: int, height: int, fovy_deg: float, cam_to_world: np.ndarray | None = None
    ) -> Camera:
        """A centred camera of vertical field of view `fovy_deg` (the assumption when a video gives no
        focal length: f = H / (2·tan(fovy / 2)))."""
        f = height / (2.0 * math.tan(math.radians(fovy_deg) / 2.0))
        pose = np.eye(4) if cam_to_world is None else np.asarray(cam_to_world, float)
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0, pose)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Camera:
        pose = np.asarray(d.get("cam_to_world", np.eye(4)), float).reshape(4, 4)
        return cls(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]), float(d["cx"]),
                   float(d["cy"]), pose)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "cam_to_world": np.round(self.cam_to_world, 9).tolist(),
        }

    @property
    def K(self) -> np.ndarray:  # noqa: N802  (the usual name of the intrinsic matrix)
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def fovy_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.height / (2.0 * self.fy)))

    def resized(self, width: int, height: int) -> Camera:
        """The same camera at another resolution (the sensor scaled, the field of view kept)."""
        sx, sy = width / self.width, height / self.height
        return Camera(width, height, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                      (self.cy + 0.5) * sy - 0.5, self.cam_to_world.copy(), self.near, self.far)  # fmt: skip

    # ------------------------------------------------------------------------------------ transforms

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """`[..., 3]` world points → camera frame."""
        rot, t = self.cam_to_world[:3, :3], self.cam_to_world[:3, 3]
        return (np.asarray(points, float) - t) @ rot

    def camera_to_world(self, points: np.ndarray) -> np.ndarray:
        rot, t = self.cam_to_world[:3, :3], self.cam_to_world[:3, 3]
        return np.asarray(points, float) @ rot.T + t

    def project_camera(self, points: np.ndarray) -> np.ndarray:
        """`[..., 3]` camera-frame points → `[..., 2]` pixels (u, v)."""
        p = np.asarray(points, float)
        z = np.maximum(p[..., 2:3], 1e-9)
        return np.concatenate(
            [self.fx * p[..., 0:1] / z + self.cx, self.fy * p[..., 1:2] / z + self.cy], axis=-1
        )

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """`[..., 3]` world points → `[..., 2]` pixels."""
        return self.project_camera(self.world_to_camera(points_world))

    # ------------------------------------------------------------------------------------- pybullet

    def pybullet_matrices(self) -> tuple[list[float], list[float]]:
        """(view matrix, projection matrix) for `pybullet.getCameraImage`, column-major as it takes them."""
        if not math.isclose(self.fx, self.fy, rel_tol=1e-6):
            raise ConfigError(f"pybullet renders square pixels only: fx={self.fx} ≠ fy={self.fy}")
        if abs(self.cx - (self.width - 1) / 2) > 0.5 or abs(self.cy - (self.height - 1) / 2) > 0.5:
            raise ConfigError(
                f"pybullet renders a centred principal point only: ({self.cx}, {self.cy}) for "
                f"{self.width}×{self.height}; crop or pad the frame to centre it"
            )
        world_to_cam = np.linalg.inv(self.cam_to_world)
        view = np.eye(4)
        view[:3, :] = _CV_TO_GL @ world_to_cam[:3, :]
        aspect = self.width / self.height
        t = 1.0 / math.tan(math.radians(self.fovy_deg) / 2.0)
        n, f = self.near, self.far
        proj = np.array(
            [
                [t / aspect, 0, 0, 0],
                [0, t, 0, 0],
                [0, 0, (f + n) / (n - f), 2 * f * n / (n - f)],
                [0, 0, -1, 0],
            ]
        )
        return view.T.reshape(-1).tolist(), proj.T.reshape(-1).tolist()
