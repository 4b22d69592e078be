"""UniPT's pseudo-text generator from a CLIP trained on person-toyworld: per attribute group, how often the
phrase kept names the image's true value, against chance (one over the group's candidates).

A tiny CLIP (2-block ViT built for H×W 64×32 through the core's `image_size=(64, 32)`, the pedestrian
transform, a 2-layer CLIP text transformer) is trained with the core's InfoNCE on person-toyworld's training
identities through Lightning, then the generator (`person_toyworld_spec`, threshold 0: every group kept)
captions the test identities' images and `vlzoo-person eval pseudo-text` scores them. The untrained CLIP is
scored too, as a floor.

Why family batches: person-toyworld's identities come in families of near neighbours that differ in one or
two parts, or wear the same colours on other parts (module docstring of its generator). In batches of
unrelated people, "which colours are present" tells the captions apart, and a CLIP trained so names a
colour for the shoes or the trousers that the person wears elsewhere (below chance on those groups). The
training batches here are the core's grouped batches, 16 families × 4 of their members
(`data.group_batches: {key: family, per_group: 4}`), so the contrast has to bind each colour to its part.
One image per identity keeps two images of one person out of a batch (they would be false negatives).

    python benchmarks/person_pseudo_text.py                   # 400 train identities, 450 steps
    python benchmarks/person_pseudo_text.py --steps 150 --n-train 160

Measured (450 steps): the colour groups are named well above chance (upper garment 59 %, lower garment 37 %,
chance 12.5 %), the shape groups (gender, hair length, garment types) near chance, hair colour below it
(no family member differs from another in hair colour, so nothing binds it to the head); 900 steps overfit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vlzoo.core import CLIPConfig, TextTowerConfig, VisionTowerConfig, create_model, register_model
from vlzoo.person.data import pedestrian_transform
from vlzoo.person.evaluation_faces import evaluate_pseudo_text

MODEL = "person-pseudo-text-clip"


@dataclass
class PedestrianCLIPConfig(CLIPConfig):
    """The core's CLIP fed as pedestrians are: H×W 64×32, aspect kept (the `transform` hook)."""

    def transform(self, train: bool, albumentations=None):
        return pedestrian_transform(self.vision.image_size, self.vision.mean, self.vision.std, train)


@register_model(MODEL)
def person_pseudo_text_clip() -> PedestrianCLIPConfig:
    return PedestrianCLIPConfig(
        embed_dim=64,
        vision=VisionTowerConfig(
            timm_model="vit_base_patch16_clip_224",
            timm_kwargs={"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4},
            image_size=(64, 32),  # an 8 × 4 patch grid
        ),
        text=TextTowerConfig(kind="clip", context_length=64, width=64, heads=4, layers=2),
    )


def main() -> None:
    import lightning as L

    from vlzoo.core.train import ImageTextDataModule, ZooModule

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--n-train", type=int, default=400, help="training identities (one image each)")
    parser.add_argument("--n-test", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", default=None, help="where to keep the data and reports (default: a temp dir)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.out or tempfile.mkdtemp(prefix="person-pseudo-text-"))
    data_dir = root / "person-toyworld"
    generate = {"n_train": args.n_train, "n_val": 8, "n_test": args.n_test, "images_per_id": 1, "seed": 0}

    untrained = create_model(MODEL)
    floor = evaluate_pseudo_text(
        untrained, data="person-toyworld", data_dir=data_dir, generate=generate, workers=0
    )

    L.seed_everything(0)
    start = time.perf_counter()
    data = ImageTextDataModule(
        "person-toyworld",
        model=MODEL,
        batch_size=64,
        num_workers=0,
        data_dir=str(data_dir),
        generate=generate,
        group_batches={"key": "family", "per_group": 4},
    )
    module = ZooModule(
        MODEL, lr=3e-3, warmup_steps=10, weight_decay=0.05, min_lr_ratio=0.5, export_weights=False
    )
    trainer = L.Trainer(
        accelerator="cpu", max_steps=args.steps, max_epochs=-1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=root / "run",
    )  # fmt: skip
    trainer.fit(module, data)
    seconds = time.perf_counter() - start
    net = module.model.eval()
    trained = evaluate_pseudo_text(
        net, data="person-toyworld", data_dir=data_dir, out=root / "report", workers=0
    )
    summary = {
        "train_steps": trainer.global_step,
        "train_seconds": round(seconds, 1),
        "untrained_mean_accuracy": round(floor["mean_accuracy"], 2),
        "trained_mean_accuracy": round(trained["mean_accuracy"], 2),
        "mean_chance": round(trained["mean_chance"], 2),
        "ratio_to_chance": round(trained["mean_accuracy"] / trained["mean_chance"], 2),
        "groups": {
            g: {k: round(v[k], 2) for k in ("accuracy", "chance")} for g, v in trained["groups"].items()
        },
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
