"""ODM transfer on ocr-toyworld, on the CPU: hmean (ICDAR 2015 protocol) of DBNet fine-tuned from an
ODM-pre-trained tiny backbone vs the same DBNet from a randomly initialized backbone, with the same
fine-tuning budget (steps, batch, learning rate, seed), beside the trivial whole-image detector; and the
pre-training's cost.

Pre-training reads its own ocr-toyworld (seed 1, `--pretrain-images`: the stand-in for SynthText); the
fine-tuning set is smaller and another seed (0, `--finetune-images`), tested on its test split, as ODM
pre-trains on SynthText and fine-tunes on ICDAR 2015.

    OMP_NUM_THREADS=1 python benchmarks/ocr_odm_transfer.py
    OMP_NUM_THREADS=1 python benchmarks/ocr_odm_transfer.py --pretrain-steps 600 --finetune-steps 300
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import torch

from vlzoo.core.weights import save
from vlzoo.ocr.data import read_detection_records, write_ocr_toyworld
from vlzoo.ocr.metrics_detection import detection_metrics
from vlzoo.ocr.training import fit, score_detector, whole_image_detector


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--max-words", type=int, default=3)
    p.add_argument("--pretrain-images", type=int, default=400)
    p.add_argument("--finetune-images", type=int, default=64)
    p.add_argument("--test-images", type=int, default=64)
    p.add_argument("--pretrain-steps", type=int, default=300)
    p.add_argument("--finetune-steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="keep data and weights here (default: a temporary folder)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    root = Path(args.out or tempfile.mkdtemp(prefix="ocr-odm-transfer-"))
    size = {"image_size": args.image_size, "max_words": args.max_words}
    pre = write_ocr_toyworld(
        root / "pretrain", n_train=args.pretrain_images, n_val=0, n_test=0, seed=1, **size
    )
    fine = write_ocr_toyworld(
        root / "finetune", n_train=args.finetune_images, n_val=0, n_test=args.test_images, seed=0, **size
    )
    overrides = {"image_size": args.image_size}
    budget = {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}

    start = time.perf_counter()
    odm = fit("odm-tiny", pre, steps=args.pretrain_steps, model_overrides=overrides, **budget)
    pretrain_s = time.perf_counter() - start
    odm_path = save(odm, root / "odm-tiny.safetensors", name="odm-tiny")

    results = {}
    for label, init in (("ODM-pretrained backbone", str(odm_path)), ("random backbone", None)):
        start = time.perf_counter()
        model = fit(
            "dbnet-tiny",
            fine,
            steps=args.finetune_steps,
            model_overrides={**overrides, "backbone_init": init},
            **budget,
        )
        results[label] = {**score_detector(model, fine), "finetune_seconds": time.perf_counter() - start}
    test = read_detection_records(fine, "test")
    truth = [[(i.polygon, i.text) for i in r.instances] for r in test]
    sizes = [cv2.imread(str(r.image_path)).shape[:2] for r in test]
    results["whole-image detector"] = detection_metrics(whole_image_detector(truth, sizes), truth)

    print(
        f"ocr-toyworld {args.image_size}², fine-tune {args.finetune_images} images × {args.finetune_steps} steps "
        f"(batch {args.batch_size}, lr {args.lr}), test {args.test_images} images"
    )
    print(
        f"ODM pre-training: {args.pretrain_steps} steps on {args.pretrain_images} images, {pretrain_s:.0f} s"
    )
    print(f"{'detector':<26} {'precision':>9} {'recall':>7} {'hmean':>6}")
    for label, m in results.items():
        print(f"{label:<26} {100 * m['precision']:9.1f} {100 * m['recall']:7.1f} {100 * m['hmean']:6.1f}")
    summary = {"args": vars(args), "pretrain_seconds": pretrain_s, "results": results}
    (root / "transfer.json").write_text(json.dumps(summary, indent=2))
    print(f"details: {root / 'transfer.json'}")


if __name__ == "__main__":
    main()
