"""DPTR's transfer on the CPU: a decoder pre-trained on text only vs the same model from scratch.

    python benchmarks/ocr_dptr_transfer.py [--out runs/dptr-transfer] [--steps 1000] [--n-train 2000] ...

The stages of `vlzoo.ocr.demo_recognition.run_recognition_demo`, with larger settings than the demo's:
1. ocr-words crops (rendered with vlzoo.ocr.render, `--style clean` by default: four fonts, lowercase,
   legible colours, mild warps; `--labels` vocabulary|random|mixed: ocr-toyworld's words, random lowercase
   strings or both) and a tiny CLIP (clip-vit-tiny) trained contrastively on the train crops and their
   prompts `a photo of a '<word>'`; its crop -> prompt retrieval accuracy against chance is printed.
2. An ORP bank: that CLIP's image tokens of 100 text-free backgrounds.
3. Text-only pre-training of dptr-parseq-tiny's decoder (CLIP text memory + ORP) on the train labels, or
   with `--text generated` on fresh labels of the crops' kind every batch; its accuracy when reading the
   pseudo-visual memory of the test labels.
4. Three fine-tunes on the train crops with the same steps, batches and learning rate, word accuracy on
   the test crops every `--eval-every` steps: (a) ViT + FMU + the pre-trained decoder, (b) the same model
   from scratch, (c) ViT + FMU under the frozen pre-trained decoder (the transfer alone). The ViT starts
   fresh in every run, as OpenOCR's configs/rec/dptr/dptr_parseq_finetune.yml (no pretrained encoder);
   `--parallel` runs the three in three processes.

Prints both curves and the final accuracies; writes `<out>/summary.json`.
"""

from __future__ import annotations

import argparse
import time

import torch

from vlzoo.ocr.demo_recognition import RECOGNITION_DEMO, run_recognition_demo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/dptr-transfer")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--style", default=RECOGNITION_DEMO["style"], help="ocr-words crop style")
    parser.add_argument(
        "--labels", default=RECOGNITION_DEMO["labels"], help="what the crops spell: vocabulary|random|mixed"
    )
    parser.add_argument(
        "--text",
        default=RECOGNITION_DEMO["text"],
        help="pre-training text: crops (the train crops' labels) or generated (fresh labels of that kind)",
    )
    parser.add_argument("--pretrain-lr", type=float, default=RECOGNITION_DEMO["pretrain_lr"])
    parser.add_argument("--clip-steps", type=int, default=RECOGNITION_DEMO["clip_steps"])
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--parallel", action="store_true", help="the three fine-tunes in three processes")
    parser.add_argument("--batch", type=int, default=RECOGNITION_DEMO["batch"])
    parser.add_argument("--lr", type=float, default=RECOGNITION_DEMO["lr"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    settings = {k: v for k, v in vars(args).items() if k in RECOGNITION_DEMO}
    run_recognition_demo(args.out, log=lambda line: print(line, flush=True), **settings)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
