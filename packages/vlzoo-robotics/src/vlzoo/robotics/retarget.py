"""Retargeting a human hand to a robot: embodiments, the pybullet robot, and H2R's two modes.

- `official` (what H2R's released code does): the arm stays in a fixed pose, and the *camera* moves so
  that it sees the robot's hand as the video's camera sees the human hand. The hand frame (origin wrist,
  x = norm(kp9 − kp0), y = norm(x × (kp13 − kp0)), z = norm(x × y)) is matched to the same construction on
  three links of the robot's hand, the camera's position is carried over, and it looks at the end
  effector with z up (as the official code's look-at). The render is then scaled by the ratio of the
  wrist → tip pixel lengths and shifted so the robot's tip lands on the hand's (`official_paste`). The
  official code leaves gripper joints at zero; here the opening follows the thumb–index distance, and a
  parallel gripper's tip is its grasp point, matched to the thumb–index midpoint (its LEAP hand's tip is
  the index fingertip). Known limit, seen on robot-toyworld: an egocentric camera sits behind the hand,
  along the forearm, so on an arm whose flange is in line with its parallel gripper the carried-over camera
  looks down the forearm (the pipeline then leaves out the links between camera and hand) and the wrist →
  tip length it scales by is strongly foreshortened; `ik` is the default and the better mode for grippers.
- `ik` (vlzoo's extension): the arm moves with the hand. The tool pose comes from the keypoints (grasp
  point between the thumb and index tips; approach axis wrist → middle knuckle, the back-of-hand normal
  fixing the roll), the joint angles from pybullet's inverse kinematics, refined until forward
  kinematics meets the target; the base is placed once per clip where the arm reaches every pose.

Embodiments are data (`Embodiment`): the Franka Panda (the paper's), the Kuka iiwa with its gripper and
the xArm6 with its gripper ship in `pybullet_data`; `register_embodiment` adds another (UR5 + Robotiq, a
LEAP hand) from the path of its URDF.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pybullet as pb
import pybullet_data

from vlzoo.core.errors import ConfigError, DataError

__all__ = [
    "EMBODIMENTS",
    "Embodiment",
    "IKResult",
    "Robot",
    "get_embodiment",
    "gripper_opening",
    "hand_frame",
    "place_base",
    "register_embodiment",
    "rotation_from_quat",
    "tool_pose_from_keypoints",
]


@dataclass(frozen=True)
class Embodiment:
    """A robot arm with a gripper.

    Args:
        urdf: a URDF/SDF file, absolute or relative to `pybullet_data`.
        arm_joints: the arm's revolute joints, base to flange.
        ee_link: the link the tool is fixed to.
        tcp_xyz, tcp_rpy: the tool frame in `ee_link`'s frame: origin at the grasp point between the
            fingers, z the approach direction, y the axis the fingers close along.
        fingers: (joint, value when closed, value when fully open) for each gripper joint.
        max_opening: the distance between the fingers fully open (metres).
        rest: the arm's joint angles in the fixed pose of the `official` mode and the start of IK.
        hand_links: (origin, x-towards, y-plane) links of the robot's hand for the `official` mode's frame.
    """

    name: str
    urdf: str
    arm_joints: tuple[str, ...]
    ee_link: str
    tcp_xyz: tuple[float, float, float]
    tcp_rpy: tuple[float, float, float]
    fingers: tuple[tuple[str, float, float], ...]
    max_opening: float
    rest: tuple[float, ...]
    hand_links: tuple[str, str, str]
    base_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def path(self) -> Path:
        p = Path(self.urdf)
        return p if p.is_absolute() else Path(pybullet_data.getDataPath()) / p


EMBODIMENTS: dict[str, Embodiment] = {}


def register_embodiment(embodiment: Embodiment) -> Embodiment:
    if embodiment.name in EMBODIMENTS:
        raise ConfigError(f"embodiment {embodiment.name!r} is registered already")
    EMBODIMENTS[embodiment.name] = embodiment
    return embodiment


def get_embodiment(name: str | Embodiment) -> Embodiment:
    if isinstance(name, Embodiment):
        return name
    if name not in EMBODIMENTS:
        raise ConfigError(f"unknown robot {name!r}; the robots are {sorted(EMBODIMENTS)}")
    return EMBODIMENTS[name]


register_embodiment(
    Embodiment(
        name="franka",
        urdf="franka_panda/panda.urdf",
        arm_joints=tuple(f"panda_joint{i}" for i in range(1, 8)),
        ee_link="panda_hand",
        tcp_xyz=(0.0, 0.0, 0.105),  # panda_grasptarget
        tcp_rpy=(0.0, 0.0, 0.0),
        fingers=(("panda_finger_joint1", 0.0, 0.04), ("panda_finger_joint2", 0.0, 0.04)),
        max_opening=0.08,
        rest=(0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785),
        hand_links=("panda_hand", "panda_grasptarget", "panda_leftfinger"),
    )
)
register_embodiment(
    Embodiment(
        name="kuka",
        urdf="kuka_iiwa/kuka_with_gripper2.sdf",
        arm_joints=tuple(f"J{i}" for i in range(7)),
        ee_link="base_link",
        tcp_xyz=(0.0, 0.02, 0.20),
        tcp_rpy=(0.0, 0.0, math.pi / 2),  # its fingers close along the link's x axis
        fingers=(("base_left_finger_joint", 0.0, -0.3), ("base_right_finger_joint", 0.0, 0.3)),
        max_opening=0.10,
        rest=(0.0, 0.4, 0.0, -1.4, 0.0, 1.2, 0.0),
        hand_links=("base_link", "left_finger_tip", "left_finger"),
    )
)
register_embodiment(
    Embodiment(
        name="xarm6",
        urdf="xarm/xarm6_with_gripper.urdf",
        arm_joints=tuple(f"joint{i}" for i in range(1, 7)),
        ee_link="xarm_gripper_base_link",
        tcp_xyz=(0.0, 0.0, 0.155),
        tcp_rpy=(0.0, 0.0, 0.0),
        # one drive joint and its mimics: 0 is open, 0.85 closed
        fingers=tuple(
            (j, 0.85, 0.0)
            for j in (
                "drive_joint",
                "left_finger_joint",
                "left_inner_knuckle_joint",
                "right_outer_knuckle_joint",
                "right_finger_joint",
                "right_inner_knuckle_joint",
            )
        ),
        max_opening=0.085,
        rest=(0.0, -0.4, -0.6, 0.0, 1.0, 0.0),
        hand_links=("xarm_gripper_base_link", "left_finger", "left_outer_knuckle"),
    )
)


# ------------------------------------------------------------------------------------------ geometry


def rotation_from_quat(q: tuple[float, ...]) -> np.ndarray:
    return np.asarray(pb.getMatrixFromQuaternion(q), float).reshape(3, 3)


def _quat_from_rotation(rot: np.ndarray) -> list[float]:
    """(x, y, z, w) of a rotation matrix (Shepperd's method, stable for every angle)."""
    m = rot
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    return [float(v) for v in q]


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    if n < 1e-9:
        raise DataError("degenerate hand keypoints: two joints that define the hand's frame coincide")
    return v / n


def hand_frame(origin: np.ndarray, towards: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """H2R's hand frame as a 4×4 pose: x = norm(towards − origin), y = norm(x × (plane − origin)),
    z = norm(x × y)."""
    x = _unit(towards - origin)
    y = _unit(np.cross(x, plane - origin))
    z = _unit(np.cross(x, y))
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], axis=1)
    pose[:3, 3] = origin
    return pose


def tool_pose_from_keypoints(points_3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(grasp point `[3]`, tool rotation `[3, 3]`) of a hand's `[21, 3]` keypoints (any one frame): z the
    approach (wrist → middle knuckle), x the back-of-hand normal of a right hand made orthogonal to it,
    y = z × x the axis the thumb and index close along."""
    grasp = (points_3d[4] + points_3d[8]) / 2.0
    z = _unit(points_3d[9] - points_3d[0])
    normal = np.cross(points_3d[5] - points_3d[0], points_3d[17] - points_3d[0])
    x = _unit(normal - normal.dot(z) * z)
    y = np.cross(z, x)
    return grasp, np.stack([x, y, z], axis=1)


def gripper_opening(points_3d: np.ndarray, max_opening: float) -> float:
    """The finger gap matching the thumb–index tip distance, within the gripper's range."""
    return float(np.clip(np.linalg.norm(points_3d[4] - points_3d[8]), 0.0, max_opening))


# -------------------------------------------------------------------------------------------- robot


@dataclass
class IKResult:
    joints: np.ndarray
    position_error: float  # metres between the solved tool point and the target
    angle_error: float  # radians between the solved tool rotation and the target

    def reachable(self, tolerance: float = 0.01) -> bool:
        return self.position_error <= tolerance


@dataclass
class Robot:
    """An embodiment loaded into its own pybullet DIRECT world (which `render` draws)."""

    embodiment: Embodiment
    client: int = field(init=False)
    body: int = field(init=False)

    def __post_init__(self) -> None:
        emb = self.embodiment
        path = emb.path()
        self.client = pb.connect(pb.DIRECT)
        try:
            if not path.is_file():
                raise ConfigError(f"robot {emb.name!r}: no URDF/SDF at {path}")
            if path.suffix.lower() == ".sdf":
                bodies = pb.loadSDF(str(path), physicsClientId=self.client)
                self.body = bodies[0] if bodies else -1
            else:
                self.body = pb.loadURDF(str(path), useFixedBase=True, physicsClientId=self.client)
        except pb.error as err:
            pb.disconnect(self.client)
            raise ConfigError(f"robot {emb.name!r}: pybullet could not load {path} ({err})") from err
        if self.body < 0:
            pb.disconnect(self.client)
            raise ConfigError(f"robot {emb.name!r}: pybullet could not load {path}")
        n = pb.getNumJoints(self.body, physicsClientId=self.client)
        infos = [pb.getJointInfo(self.body, j, physicsClientId=self.client) for j in range(n)]
        self.joint_index = {i[1].decode(): i[0] for i in infos}
        self.link_index = {i[12].decode(): i[0] for i in infos}
        self.movable = [i[0] for i in infos if i[2] != pb.JOINT_FIXED]
        missing = [j for j in (*emb.arm_joints, *(f[0] for f in emb.fingers)) if j not in self.joint_index]
        missing += [link for link in (emb.ee_link, *emb.hand_links) if link not in self.link_index]
        if missing:
            pb.disconnect(self.client)
            raise ConfigError(f"robot {emb.name!r}: {path} has no joints/links {missing}")
        self.arm = [self.joint_index[j] for j in emb.arm_joints]
        self.ee = self.link_index[emb.ee_link]
        self.lower = np.array([infos[j][8] for j in self.arm])
        self.upper = np.array([infos[j][9] for j in self.arm])
        tcp_rot = rotation_from_quat(pb.getQuaternionFromEuler(emb.tcp_rpy))
        self.ee_to_tool = np.eye(4)
        self.ee_to_tool[:3, :3], self.ee_to_tool[:3, 3] = tcp_rot, emb.tcp_xyz
        self.set_arm(np.asarray(emb.rest))
        self.set_opening(emb.max_opening)

    # -------------------------------------------------------------------------------------- state

    def set_base(self, position: np.ndarray, yaw: float) -> None:
        pos = np.asarray(position, float) + self.embodiment.base_offset
        pb.resetBasePositionAndOrientation(self.body, pos.tolist(), pb.getQuaternionFromEuler([0, 0, yaw]),
                                           physicsClientId=self.client)  # fmt: skip

    def set_arm(self, joints: np.ndarray) -> None:
        for j, q in zip(self.arm, joints, strict=True):
            pb.resetJointState(self.body, j, float(q), physicsClientId=self.client)

    def arm_joints(self) -> np.ndarray:
        return np.array([pb.getJointState(self.body, j, physicsClientId=self.client)[0] for j in self.arm])

    def set_opening(self, opening: float) -> None:
        """Open the gripper to a finger gap of `opening` metres (joints interpolated linearly)."""
        frac = float(np.clip(opening / self.embodiment.max_opening, 0.0, 1.0))
        for name, closed, open_ in self.embodiment.fingers:
            value = closed + frac * (open_ - closed)
            pb.resetJointState(self.body, self.joint_index[name], value, physicsClientId=self.client)

    def link_pose(self, link: int | str) -> np.ndarray:
        idx = self.link_index[link] if isinstance(link, str) else link
        state = pb.getLinkState(self.body, idx, computeForwardKinematics=True, physicsClientId=self.client)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rotation_from_quat(state[5]), state[4]
        return pose

    def tool_pose(self) -> np.ndarray:
        """Forward kinematics: the tool frame (grasp point) in the world, 4×4."""
        return self.link_pose(self.ee) @ self.ee_to_tool

    # --------------------------------------------------------------------------------------- IK

    def solve_ik(self, position: np.ndarray, rotation: np.ndarray, iterations: int = 8) -> IKResult:
        """Joint angles putting the tool at (`position`, `rotation`), starting from the current joints.
        pybullet's damped-least-squares IK is re-run from its own answer until forward kinematics meets
        the target (one call stops short on a long reach); the arm is left at the answer."""
        target = np.eye(4)
        target[:3, :3], target[:3, 3] = rotation, position
        ee_target = target @ np.linalg.inv(self.ee_to_tool)
        orn = _quat_from_rotation(ee_target[:3, :3])
        rest = list(self.embodiment.rest)
        best: IKResult | None = None
        for _ in range(iterations):
            sol = pb.calculateInverseKinematics(
                self.body, self.ee, ee_target[:3, 3].tolist(), orn,
                lowerLimits=self.lower.tolist(), upperLimits=self.upper.tolist(),
                jointRanges=(self.upper - self.lower).tolist(), restPoses=rest,
                maxNumIterations=200, residualThreshold=1e-6, physicsClientId=self.client,
            )  # fmt: skip
            by_joint = dict(zip(self.movable, sol, strict=False))
            q = np.clip([by_joint[j] for j in self.arm], self.lower, self.upper)
            self.set_arm(q)
            result = self._error(q, target)
            if best is None or result.position_error < best.position_error:
                best = result
            if result.position_error < 1e-3 and result.angle_error < 0.02:
                break
        assert best is not None
        self.set_arm(best.joints)
        return best

    def _error(self, q: np.ndarray, target: np.ndarray) -> IKResult:
        got = self.tool_pose()
        pos_err = float(np.linalg.norm(got[:3, 3] - target[:3, 3]))
        cos = (np.trace(got[:3, :3].T @ target[:3, :3]) - 1.0) / 2.0
        return IKResult(np.asarray(q, float), pos_err, float(math.acos(np.clip(cos, -1.0, 1.0))))

    def close(self) -> None:
        if pb.isConnected(self.client):
            pb.disconnect(self.client)

    def __enter__(self) -> Robot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def place_base(
    robot: Robot,
    positions: np.ndarray,
    rotations: np.ndarray,
    camera_position: np.ndarray,
    table_z: float | None = None,
    tolerance: float = 0.01,
    samples: int = 6,
) -> tuple[np.ndarray, float, float]:
    """Where to put the base for a whole clip: (position, yaw, worst residual). Candidates stand on the
    table (`table_z`, default 5 cm under the lowest grasp point) around the trajectory or below its edge,
    the first tried being on the camera's side and low (a hand's approach points away from the camera, so
    the arm comes from where the human arm does), then the sides, then across;
    the first from which IK reaches `samples` poses spread over the clip within `tolerance` wins, else the
    one with the smallest worst residual."""
    positions = np.asarray(positions, float)
    centre = positions.mean(axis=0)
    z = positions[:, 2].min() - 0.05 if table_z is None else table_z
    towards_cam = camera_position[:2] - centre[:2]
    towards_cam = towards_cam / max(np.linalg.norm(towards_cam), 1e-9)
    side = np.array([towards_cam[1], -towards_cam[0]])  # to the camera's right, seen from the camera
    # (horizontal offset, height below the table): the hand's approach points away from the camera, so the
    # arm comes from the camera's side, low, as a human arm does; then across and from the sides
    candidates = [
        (0.5 * towards_cam + 0.15 * side, 0.3),
        (0.45 * towards_cam - 0.15 * side, 0.3),
        (0.55 * side, 0.0),
        (-0.55 * side, 0.0),
        (-0.55 * towards_cam, 0.0),
    ]
    picks = np.unique(np.linspace(0, len(positions) - 1, min(samples, len(positions))).round().astype(int))
    best = (np.zeros(3), 0.0, float("inf"))
    for off, below in candidates:
        base = np.array([centre[0] + off[0], centre[1] + off[1], z - below])
        yaw = math.atan2(centre[1] - base[1], centre[0] - base[0])
        robot.set_base(base, yaw)
        robot.set_arm(np.asarray(robot.embodiment.rest))
        worst = max(robot.solve_ik(positions[i], rotations[i]).position_error for i in picks)
        if worst < best[2]:
            best = (base, yaw, worst)
        if worst <= tolerance:
            break
    robot.set_base(best[0], best[1])
    robot.set_arm(np.asarray(robot.embodiment.rest))
    return best


def load_robot(name: str | Embodiment | os.PathLike) -> Robot:
    """A robot by embodiment name (or an `Embodiment`)."""
    return Robot(get_embodiment(name))  # type: ignore[arg-type]
