"""The `vlzoo-medical` command: vlzoo's CLI with this domain's defaults and its own `eval`.

vlzoo-medical fit -c zoo_configs/medical/radclip-tiny.yaml     (data defaults to med-toyworld)
vlzoo-medical eval all --model radclip-3d-tiny --out runs/eval  (every task the model can run)
vlzoo-medical eval retrieval-3d --model radclip-3d-tiny --data volumes.jsonl --out runs/eval3d
vlzoo-medical demo                                             (med-toyworld → radclip-tiny → report)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from torch import nn

from vlzoo.core.cli import Command, demo_command, eval_command
from vlzoo.core.cli import main as core_main
from vlzoo.core.eval import register_eval_task

PROG = "vlzoo-medical"
DEFAULTS: dict[str, object] = {"data.data": "med-toyworld", "model.model": "radclip-tiny"}
MEDICAL_EVAL = "medical"  # this domain's namespace of evaluation tasks


def _can(method: str, volume: bool = False) -> Callable[[nn.Module], bool]:
    """`applies` of a task: the model has `method` (and is a volume model, or not, as `volume` says)."""
    return lambda net: (
        callable(getattr(net, method, None)) and volume == callable(getattr(net, "encode_volume", None))
    )


# The tasks of `vlzoo-medical eval`, by "module:function": building the parser must not import the
# evaluation code (matplotlib, seconds) for `vlzoo-medical list`.
_EVAL = "vlzoo.medical.evaluation"
register_eval_task(
    "retrieval",
    f"{_EVAL}:evaluate_med_retrieval",
    help="2D image-report retrieval",
    domain=MEDICAL_EVAL,
    applies=_can("encode_image"),
)
register_eval_task(
    "retrieval-3d",
    f"{_EVAL}:evaluate_volume_retrieval",
    help="volume-report retrieval (RadCLIP-3D)",
    domain=MEDICAL_EVAL,
    applies=_can("encode_volume", volume=True),
    configure=lambda p: p.add_argument("--n-attention", type=int, default=4, help="volumes in the plot"),
)
register_eval_task(
    "zeroshot",
    f"{_EVAL}:evaluate_med_zeroshot",
    help="zero-shot classification of class folders with radiology prompts",
    domain=MEDICAL_EVAL,
    applies=_can("encode_image"),
)
register_eval_task(
    "itm",
    f"{_EVAL}:evaluate_itm",
    help="image-text matching accuracy (PTUnifier)",
    domain=MEDICAL_EVAL,
    applies=_can("itm_scores"),
)
register_eval_task(
    "concepts",
    f"{_EVAL}:evaluate_concepts",
    help="concept detection AUROC and concept maps (ConceptCLIP)",
    domain=MEDICAL_EVAL,
    applies=_can("concept_similarity_map"),
    configure=lambda p: p.add_argument("--n-maps", type=int, default=4, help="images in the concept plot"),
)

COMMANDS: dict[str, Command] = {
    "eval": eval_command(
        domain=MEDICAL_EVAL,
        help="evaluate a model: 2D/3D image-report retrieval, zero-shot, image-text matching, concept detection",
        data_default="med-toyworld",
        data_help="a file of the task's kind (Karpathy JSON, volume-reports / medconcept JSONL, class folder) "
        "or med-toyworld (generated under --data-dir, default data/med-toyworld, on first use)",
        batch_size=64,
    ),
    "demo": demo_command(
        "vlzoo.medical.demo:MEDICAL_DEMO",
        "train radclip-tiny on generated med-toyworld slices and reports on the CPU and report",
        out="vlzoo-medical-demo",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    import vlzoo.medical  # noqa: F401  (registers the models, data kinds and decoders before parsing)

    return core_main(argv, prog=PROG, defaults=DEFAULTS, commands=COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
