"""vlzoo.robotics: H2R human-to-robot video augmentation, robot-centric pre-training and a policy probe.

>>> from vlzoo.robotics import H2RPipeline, H2RConfig, JsonKeypoints, read_video, write_robot_toyworld
>>> csv = write_robot_toyworld("data/robot-toyworld")              # MP4s, captions.csv, keypoints JSON
>>> with H2RPipeline(H2RConfig(robot="franka", mode="ik")) as h2r:
...     result = h2r.process(frames, JsonKeypoints("clip.json"), camera)
"""

from vlzoo.robotics import models  # noqa: F401  (registers the models and data kinds)
from vlzoo.robotics.augment import augment
from vlzoo.robotics.camera import Camera
from vlzoo.robotics.h2r import ClipResult, H2RConfig, H2RPipeline
from vlzoo.robotics.keypoints import (
    GroundTruthKeypoints,
    HandKeypoints,
    HandKeypointSource,
    JsonKeypoints,
    MediaPipeHands,
    lift_to_3d,
)
from vlzoo.robotics.retarget import EMBODIMENTS, Embodiment, Robot, get_embodiment, register_embodiment
from vlzoo.robotics.toyworld import render_clip, write_robot_toyworld
from vlzoo.robotics.video import list_clips, read_video, write_video

__version__ = "0.1.0"

__all__ = [
    "EMBODIMENTS",
    "Camera",
    "ClipResult",
    "Embodiment",
    "GroundTruthKeypoints",
    "H2RConfig",
    "H2RPipeline",
    "HandKeypointSource",
    "HandKeypoints",
    "JsonKeypoints",
    "MediaPipeHands",
    "Robot",
    "augment",
    "get_embodiment",
    "lift_to_3d",
    "list_clips",
    "read_video",
    "register_embodiment",
    "render_clip",
    "write_robot_toyworld",
    "write_video",
]
