"""The robotics models, registered with vlzoo's registry when this module is imported (the `vlzoo.models`
entry point), along with the domain's data formats and data kinds:
- the data kind `video-captions` (frame–caption pairs from a folder of videos + captions.csv, SSv2 labels
  JSON or Ego4D/EPIC clip CSVs) and the generated dataset `robot-toyworld`.
"""

from vlzoo.core.data import register_data_kind, register_generated_dataset
from vlzoo.robotics import h2r_clip  # noqa: F401  (registers h2r-clip-*)
from vlzoo.robotics.toyworld import write_robot_toyworld
from vlzoo.robotics.video import build_video_captions

ROBOT_TOYWORLD = "robot-toyworld"

register_data_kind("video-captions", build_video_captions, has_splits=True, options=("frames_per_clip",))
register_generated_dataset(ROBOT_TOYWORLD, write_robot_toyworld, "captions.csv", kind="video-captions")
