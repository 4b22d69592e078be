"""`vlzoo-robotics demo`: robot-toyworld → H2R augment → preview strips + CLIP fidelity table, on the CPU.

The fidelity table's numbers mean something with real CLIP weights (`--model clip-vit-b-16 --pretrained
openai` where they are cached); with the default untrained `h2r-clip-tiny` it shows the pipeline end to
end, and the table is a smoke test, not a measurement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlzoo.core.data import ensure_generated
from vlzoo.robotics.augment import augment
from vlzoo.robotics.evaluation import evaluate_fidelity
from vlzoo.robotics.h2r import H2RConfig

__all__ = ["run_robotics_demo"]


def run_robotics_demo(
    out: str | Path = "vlzoo-robotics-demo",
    clips: int = 4,
    frames: int = 12,
    image_size: int = 160,
    robot: str = "franka",
    model: str = "h2r-clip-tiny",
    pretrained: str | None = None,
) -> dict[str, Any]:
    out = Path(out)
    data = ensure_generated(
        "robot-toyworld", out / "data",
        {"n_train": 0, "n_val": 0, "n_test": clips, "frames": frames, "image_size": image_size, "seed": 0},
    )  # fmt: skip
    summary = augment(data, out / "h2r", H2RConfig(robot=robot))
    report = evaluate_fidelity(model, pretrained, data=str(data), split="test", robot=robot, out=str(out))
    (out / "demo.json").write_text(json.dumps({"augment": summary, "fidelity": report["fidelity"]}, indent=2))
    print(f"preview strips (original | hand removed | H2R): {out / 'h2r' / 'preview'}")
    return {"augment": summary, "fidelity": report}
