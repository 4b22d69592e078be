"""GeoX's four training stages run end to end (MAE → symbol LM → alignment → instruction tuning), each with
Lightning's Trainer on the core's `ZooModule` and `ImageTextDataModule`, each starting from the weights the
previous stage exported; and the answer accuracy of a trained model (GeoX's top-k protocol).

>>> weights = train_pipeline("geox-tiny", "data/geo-toyworld", "runs/geox", PipelineBudget())
>>> answer_accuracy(create_model("geox-tiny", pretrained=weights), "data/geo-toyworld")["top1"]

Used by the demo, the tests and `benchmarks/geometry_geox_ablation.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vlzoo.core.weights import save
from vlzoo.geometry.geox import STAGES
from vlzoo.geometry.program import choose_answer

__all__ = [
    "PipelineBudget",
    "alignment_recall",
    "answer_accuracy",
    "diagram_reliance",
    "train_pipeline",
    "train_stage",
]


@dataclass
class PipelineBudget:
    """Optimizer steps, batch size and learning rate per stage (a stage with 0 steps is skipped)."""

    steps: dict[str, int] = field(
        default_factory=lambda: {"mae": 60, "symbol": 60, "align": 60, "instruct": 300}
    )
    batch_size: dict[str, int] = field(
        default_factory=lambda: {"mae": 32, "symbol": 32, "align": 16, "instruct": 32}
    )
    lr: dict[str, float] = field(
        default_factory=lambda: {"mae": 1e-3, "symbol": 2e-3, "align": 5e-4, "instruct": 2e-3}
    )
    weight_decay: float = 0.05
    generate: dict[str, int] = field(default_factory=lambda: {"n_train": 400, "n_val": 16, "n_test": 100})
    seed: int = 0


def train_stage(
    model: str,
    stage: str,
    data_dir: str | Path,
    out: str | Path,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.05,
    pretrained: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    generate: Mapping[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Fit one stage for `steps` optimizer steps on geo-toyworld (written under `data_dir` if missing);
    returns the exported weights (`out/<stage>.safetensors`, with the config beside them)."""
    import lightning as L

    from vlzoo.core.train import ImageTextDataModule, ZooModule

    L.seed_everything(seed, workers=True, verbose=False)
    overrides = {**dict(overrides or {}), "stage": stage}
    module = ZooModule(
        model=model,
        model_overrides=overrides,
        pretrained=str(pretrained) if pretrained else None,
        lr=lr,
        weight_decay=weight_decay,
        warmup_steps=max(1, steps // 10),
        min_lr_ratio=0.1,
        export_weights=False,
    )
    data = ImageTextDataModule(
        data="geo-toyworld",
        data_dir=str(data_dir),
        model=model,
        model_overrides=overrides,
        pretrained=str(pretrained) if pretrained else None,
        generate=dict(generate or {}),
        batch_size=batch_size,
        num_workers=0,
        seed=seed,
    )
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(out),
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=data)
    Path(out).mkdir(parents=True, exist_ok=True)
    return save(module.model, Path(out) / f"{stage}.safetensors")


def train_pipeline(
    model: str,
    data_dir: str | Path,
    out: str | Path,
    budget: PipelineBudget | None = None,
    overrides: Mapping[str, Any] | None = None,
    start_from: str | Path | None = None,
) -> Path:
    """Run the stages in order (those with steps in `budget`), each from the previous one's weights (the first
    from `start_from`, else at random); returns the last stage's weights."""
    budget = budget or PipelineBudget()
    weights = Path(start_from) if start_from else None
    for stage in STAGES:
        if budget.steps.get(stage, 0) <= 0:
            continue
        weights = train_stage(
            model,
            stage,
            data_dir,
            out,
            steps=budget.steps[stage],
            batch_size=budget.batch_size[stage],
            lr=budget.lr[stage],
            weight_decay=budget.weight_decay,
            pretrained=weights,
            overrides=overrides,
            generate=budget.generate,
            seed=budget.seed,
        )
    if weights is None:
        raise ValueError("the budget trains no stage")
    return weights


@torch.no_grad()
def answer_accuracy(
    model: torch.nn.Module,
    data_dir: str | Path,
    split: str = "test",
    num_beams: int = 10,
    batch_size: int = 32,
    limit: int | None = None,
) -> dict[str, Any]:
    """GeoX's protocol on a geo-toyworld split: top-1 (the best beam's choice) and top-k (the first beam that
    executes to a choice), overall and on the questions that need the diagram; plus the generated programs."""
    model.eval()
    rows: list[dict[str, Any]] = []
    for batch in _test_loader(model, data_dir, split, batch_size):
        programs = model.generate_programs(batch, num_beams=num_beams)
        for i, beams in enumerate(programs):
            numbers, choices = batch["numbers"][i], batch["choice_values"][i]
            rows.append(
                {
                    "id": batch["id"][i],
                    "answer": int(batch["answer"][i]),
                    "top1": choose_answer(beams[:1], numbers, choices),
                    "topk": choose_answer(beams, numbers, choices),
                    "program": beams[0] if beams else [],
                    "needs_diagram": bool(batch["needs_diagram"][i]),
                }
            )
        if limit is not None and len(rows) >= limit:
            break

    def rate(key: str, subset: list[dict[str, Any]]) -> float:
        return sum(r[key] == r["answer"] for r in subset) / max(1, len(subset))

    diagram = [r for r in rows if r["needs_diagram"]]
    return {
        "n": len(rows),
        "top1": rate("top1", rows),
        "topk": rate("topk", rows),
        "top1_diagram": rate("top1", diagram),
        "top1_text": rate("top1", [r for r in rows if not r["needs_diagram"]]),
        "rows": rows,
    }


def _test_loader(model: torch.nn.Module, data_dir: str | Path, split: str, batch_size: int):
    """Batches of a geo-toyworld split as the datamodule serves them, with the registered model's preprocessing
    (a stage or an ablation changes no transform or tokenizer)."""
    from vlzoo.core.train import ImageTextDataModule

    data = ImageTextDataModule(
        data="geo-toyworld",
        data_dir=str(data_dir),
        model=model.vlzoo_name,
        batch_size=batch_size,
        num_workers=0,
    )
    if split == "test":
        data.setup("test")
        return data.test_dataloader()
    data.setup("fit")
    return data.val_dataloader() if split == "val" else data.train_dataloader()


@torch.no_grad()
def diagram_reliance(
    model: torch.nn.Module, data_dir: str | Path, split: str = "test", batch_size: int = 32
) -> dict[str, float]:
    """Whether an instruction-tuned model reads its diagrams: the program loss (teacher-forced, mean over
    batches) with each problem's own diagram and with the diagrams rolled by one within each batch (another
    problem's figure, same questions). Equal losses: the diagram never reaches the programs."""
    was = model.stage
    model.set_stage("instruct")
    model.eval()
    own, other = [], []
    try:
        for batch in _test_loader(model, data_dir, split, batch_size):
            own.append(float(model(batch)["loss"]))
            other.append(float(model({**batch, "image": batch["image"].roll(1, dims=0)})["loss"]))
    finally:
        model.set_stage(was)
    return {"own": sum(own) / len(own), "shuffled": sum(other) / len(other)}


@torch.no_grad()
def alignment_recall(model: torch.nn.Module, data_dir: str | Path, split: str = "test") -> dict[str, float]:
    """Diagram ↔ formal-description retrieval in GS-Former's ITC space over a whole split (R@1 each way, with
    chance = 1 / n): whether alignment taught the queries what the diagrams show."""
    model.eval()
    images, texts = [], []
    for batch in _test_loader(model, data_dir, split, 64):
        image, text = model.retrieval_features(batch)
        images.append(image)
        texts.append(text)
    sim = torch.cat(images) @ torch.cat(texts).T
    target = torch.arange(len(sim))
    return {
        "n": len(sim),
        "i2t_r1": float((sim.argmax(1) == target).float().mean()),
        "t2i_r1": float((sim.argmax(0) == target).float().mean()),
    }
