"""FLIP's downstream protocol on face-toyworld: linear probes per attribute on the frozen image encoder of
flip-tiny, before and after ITC (momentum-distilled, BLIP's) + ITM pretraining on face-toyworld's captions,
against two baselines: the majority class (always answering an attribute's most frequent training value)
and the same probes on the untrained encoder (what pretraining adds).

Pretraining goes through the core's `ZooModule` and Lightning's Trainer on the CPU; the probes are
`vlzoo-person eval face-attributes` (the core's `linear_probe`, one per attribute: train split → test split,
its L2 strength chosen on a held-out part of the training split, never on the test split).

    python benchmarks/person_flip_probe.py                     # 480 training faces, 20 epochs (300 steps)
    python benchmarks/person_flip_probe.py --no-distill        # plain ITC: the ablation
    python benchmarks/person_flip_probe.py --momentum 0.9      # a faster momentum encoder
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from vlzoo.core import create_model
from vlzoo.person.evaluation_faces import evaluate_face_attributes


def main() -> None:
    import lightning as L

    from vlzoo.core.train import ImageTextDataModule, ZooModule

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-train", type=int, default=480)
    parser.add_argument("--n-test", type=int, default=160)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-distill", action="store_true", help="plain ITC (no momentum distillation)")
    parser.add_argument("--momentum", type=float, default=None, help="of the momentum encoders (flip-tiny's)")
    parser.add_argument("--out", default=None, help="where the data and reports go (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.out or tempfile.mkdtemp(prefix="person-flip-probe-"))
    data_dir = root / "face-toyworld"
    generate = {"n_train": args.n_train, "n_val": 16, "n_test": args.n_test, "seed": 0}

    overrides = {"momentum_distill": not args.no_distill}
    if args.momentum is not None:
        overrides["momentum"] = args.momentum
    torch.manual_seed(0)
    before = evaluate_face_attributes(
        create_model("flip-tiny", **overrides),
        data="face-toyworld",
        data_dir=data_dir,
        generate=generate,
        workers=0,
    )
    L.seed_everything(0)
    start = time.perf_counter()
    data = ImageTextDataModule(
        "face-toyworld",
        model="flip-tiny",
        batch_size=32,
        num_workers=0,
        data_dir=str(data_dir),
        generate=generate,
    )
    module = ZooModule(
        "flip-tiny",
        model_overrides=overrides,
        lr=args.lr,
        warmup_steps=10,
        weight_decay=0.05,
        min_lr_ratio=0.5,
        export_weights=False,
    )
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=args.epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=root / "run",
    )  # fmt: skip
    trainer.fit(module, data)
    seconds = time.perf_counter() - start
    after = evaluate_face_attributes(
        module.model, data="face-toyworld", data_dir=data_dir, out=root / "report", workers=0
    )
    final = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    print(json.dumps({
        "model_overrides": overrides,
        "train_steps": trainer.global_step,
        "train_seconds": round(seconds, 1),
        "final_train_metrics": final,
        "majority_baseline_mean_accuracy": round(after["mean_majority_baseline"], 2),
        "untrained_probe_mean_accuracy": round(before["mean_accuracy"], 2),
        "pretrained_probe_mean_accuracy": round(after["mean_accuracy"], 2),
        "gain_over_majority": round(after["mean_accuracy"] - after["mean_majority_baseline"], 2),
        "gain_over_untrained": round(after["mean_accuracy"] - before["mean_accuracy"], 2),
        "per_attribute [pretrained, untrained, majority]": {
            a: [round(r["accuracy"], 1), round(before["attributes"][a]["accuracy"], 1),
                round(r["majority_baseline"], 1)] for a, r in after["attributes"].items()},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
