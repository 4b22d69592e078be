"""The `vlzoo-robotics` command: vlzoo's CLI with this domain's defaults and commands.

vlzoo-robotics augment VIDEO_OR_DIR --robot franka --out OUT [--mode ik|official] [--keypoints DIR]
vlzoo-robotics eval fidelity --model h2r-clip-tiny [--data robot-toyworld | captions.csv] [--robot franka]
vlzoo-robotics eval policy --model h2r-clip-tiny --pretrained runs/h2r-clip-tiny/model.safetensors
vlzoo-robotics fit -c zoo_configs/robotics/h2r-clip-tiny.yaml          (data: robot-toyworld)
vlzoo-robotics demo                          (robot-toyworld → augment → preview strips + fidelity table)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vlzoo.core.cli import Command, eval_command
from vlzoo.core.cli import main as core_main
from vlzoo.core.eval import register_eval_task

PROG = "vlzoo-robotics"
# LightningCLI defaults by dotted key: recipes train on the generated robot-toyworld unless they say otherwise.
DEFAULTS: dict[str, object] = {"data.data": "robot-toyworld"}
ROBOTICS_EVAL = "robotics"


# The commands' arguments are defined here, not in the modules that run them: building the parser (every
# `vlzoo-robotics` call) must not import the evaluation code (matplotlib, pybullet, rich).
def _configure_fidelity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="franka", help="embodiment: franka, kuka, xarm6")
    p.add_argument("--mode", default="ik", choices=("ik", "official"))
    p.add_argument("--keypoints", default=None, help="folder of per-clip keypoints JSON")
    p.add_argument("--max-clips", type=int, default=None, help="score at most this many clips")


register_eval_task(
    "fidelity",
    "vlzoo.robotics.evaluation:evaluate_fidelity",
    help="H2R's CLIP fidelity: frame–caption similarity of original, hand-blacked-out, robot-over-hand and H2R frames",
    domain=ROBOTICS_EVAL,
    configure=_configure_fidelity,
)


register_eval_task(
    "retrieval",
    "vlzoo.robotics.evaluation:evaluate_video_retrieval",
    help="frame↔caption retrieval over video clips (captions CSV of videos: robot-toyworld, augment's output)",
    domain=ROBOTICS_EVAL,
)


def _configure_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demos", type=int, default=60, help="expert demonstrations to clone")
    p.add_argument("--episodes", type=int, default=50, help="seeded evaluation episodes")
    p.add_argument("--train-steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--readout", choices=("tokens", "pooled"), default="tokens",
                   help="patch tokens → goal-conditioned spatial softmax, or the global embedding → MLP")  # fmt: skip
    p.add_argument("--no-proprioception", dest="proprioception", action="store_false",
                   help="don't give the policy the tool's position: it must read it from the image")  # fmt: skip
    p.add_argument("--no-distractors", dest="distractors", action="store_false",
                   help="the goal block alone on the table, no blocks of other colours beside it")  # fmt: skip


register_eval_task(
    "policy",
    "vlzoo.robotics.policy:evaluate_policy",
    help="policy probe: behaviour cloning on the frozen image tower, reach-task success rate (Wilson 95% CI)",
    domain=ROBOTICS_EVAL,
    configure=_configure_policy,
)


def _configure_augment(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data", help="a video, a folder of videos (+ captions.csv), a clip CSV or an SSv2 labels JSON"
    )
    p.add_argument("--out", required=True, help="where videos, shards, previews and the summary go")
    p.add_argument("--robot", default="franka", help="embodiment: franka, kuka, xarm6")
    p.add_argument("--mode", default="ik", choices=("ik", "official"))
    p.add_argument("--keypoints", default=None, help="folder of per-clip keypoints JSON (<clip>.json)")
    p.add_argument("--detector", default=None, choices=("mediapipe",), help="detect hands (the extra)")
    p.add_argument("--inpainter", default="telea")
    p.add_argument("--stride", type=int, default=1, help="take every n-th frame")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--fov", type=float, default=60.0, help="vertical field of view when no camera is given")
    p.add_argument("--smooth", type=int, default=3, help="frames in the temporal smoothing window")
    p.add_argument("--random-light", action="store_true", help="a random light per clip")

    def run(args: argparse.Namespace) -> int:
        from vlzoo.robotics.augment import augment
        from vlzoo.robotics.h2r import H2RConfig

        cfg = H2RConfig(robot=args.robot, mode=args.mode, inpainter=args.inpainter, smooth=args.smooth,
                        random_light=args.random_light)  # fmt: skip
        summary = augment(args.data, args.out, cfg, args.keypoints, args.detector, args.stride,
                          args.max_frames, args.fov)  # fmt: skip
        return 1 if summary["failed"] and not summary["augmented"] else 0

    p.set_defaults(func=run)


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="vlzoo-robotics-demo", help="where the data, videos and report go")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--robot", default="franka")
    p.add_argument("--model", default="h2r-clip-tiny", help="the CLIP that scores fidelity")
    p.add_argument("--pretrained", default=None)

    def run(args: argparse.Namespace) -> int:
        from vlzoo.robotics.demo import run_robotics_demo

        run_robotics_demo(
            args.out, args.clips, args.frames, args.image_size, args.robot, args.model, args.pretrained
        )
        return 0

    p.set_defaults(func=run)


# The domain's subcommands, added to (or replacing) the core's: `"name": Command(help, configure)`.
COMMANDS: dict[str, Command] = {
    "augment": Command(
        "H2R: replace the hands in egocentric videos with a rendered robot", _configure_augment
    ),
    "eval": eval_command(
        ("fidelity", "policy", "retrieval"),
        domain=ROBOTICS_EVAL,
        help="evaluate a model: H2R CLIP fidelity, the policy probe, frame–caption retrieval",
        data_default="robot-toyworld",
        data_help="robot-toyworld (generated under --data-dir), a captions CSV, a folder of videos",
    ),
    "demo": Command(
        "robot-toyworld → H2R augment → preview strips + CLIP fidelity, on the CPU", _configure_demo
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    import vlzoo.robotics  # noqa: F401  (registers the models and data kinds before parsing)

    return core_main(argv, prog=PROG, defaults=DEFAULTS, commands=COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
