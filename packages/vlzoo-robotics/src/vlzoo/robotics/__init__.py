"""vlzoo.robotics: H2R human-to-robot video augmentation, robot-centric pre-training and a policy probe.

>>> from vlzoo.robotics import H2RPipeline, H2RConfig, JsonKeypoints, read_video, write_robot_toyworld
>>> csv = write_robot_toyworld("data/robot-toyworld")              # MP4s, captions.csv, keypoints JSON
>>> with H2RPipeline(H2RConfig(robot="franka", mode="ik")) as h2r:
...     result = h2r.process(frames, JsonKeypoints("clip.json"), camera)
"""

from vlzoo.robotics import models  # noqa: F401  (registers the models and data kinds)
from vlzoo.robotics.camera import Camera
from vlzoo.robotics.keypoints import (
    GroundTruthKeypoints,
    HandKeypoints,
    HandKeypointSource,
    JsonKeypoints,
    MediaPipeHands,
    lift_to_3d,
)
from vlzoo.robotics.toyworld import render_clip, write_robot_toyworld
from vlzoo.robotics.video import list_clips, read_video, write_video

__version__ = "0.1.0"

# The H2R pipeline loads pybullet (which prints its build time on import): imported when asked for, not
# whenever the registry discovers this package (every `vlzoo list`). The `augment` command's function is
# `vlzoo.robotics.augment.augment` (a package attribute of that name would be shadowed by the submodule).
_LAZY = {
    "ClipResult": "vlzoo.robotics.h2r",
    "H2RConfig": "vlzoo.robotics.h2r",
    "H2RPipeline": "vlzoo.robotics.h2r",
    "EMBODIMENTS": "vlzoo.robotics.retarget",
    "Embodiment": "vlzoo.robotics.retarget",
    "Robot": "vlzoo.robotics.retarget",
    "get_embodiment": "vlzoo.robotics.retarget",
    "register_embodiment": "vlzoo.robotics.retarget",
    "TimeContrastiveModule": "vlzoo.robotics.r3m",
    "VideoTriplets": "vlzoo.robotics.r3m",
    "MaskedAutoencoderModule": "vlzoo.robotics.mae",
    "ClipImages": "vlzoo.robotics.mae",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'vlzoo.robotics' has no attribute {name!r}")


__all__ = [
    "EMBODIMENTS",
    "Camera",
    "ClipImages",
    "ClipResult",
    "Embodiment",
    "GroundTruthKeypoints",
    "H2RConfig",
    "H2RPipeline",
    "HandKeypointSource",
    "HandKeypoints",
    "JsonKeypoints",
    "MaskedAutoencoderModule",
    "MediaPipeHands",
    "Robot",
    "TimeContrastiveModule",
    "VideoTriplets",
    "get_embodiment",
    "lift_to_3d",
    "list_clips",
    "read_video",
    "register_embodiment",
    "render_clip",
    "write_robot_toyworld",
    "write_video",
]
