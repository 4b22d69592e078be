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
   `--parallel` runs the three in three processes. `--stem patch` (default) is the paper's ViT (linear patch
   embedding); `--stem conv` gives every arm the same ViT with a convolutional stem (`vlzoo.ocr.dptr.conv_stem`,
   not in the paper), whose tokens tell the crops' words apart far sooner (see `--encoder-probe`).

`--lexicon N --seen-words S --text lexicon` sets up DPTR's premise (a text corpus far larger than the
labelled crops): a made-up lexicon of N random lowercase words (3-7 letters; BPE splits them, so a reader
learns characters, not one token per word) is the pre-training text; the train crops spell only its first S
words; the test crops alternate between those (`seen`) and words met only in the pre-training text
(`unseen`), and every accuracy is reported for all test crops and for each half. Nothing trained sees an
image of a text-only word: the tiny CLIP, too, trains on the train crops only.

Measured 2026-11-30 (one seed, under load), `--lexicon 400 --seen-words 80 --text lexicon --stem conv
--n-train 2000 --pretrain-steps 1500 --steps 600 --eval-every 100 --parallel`: pre-training alone reads 94.0%
of the test words from CLIP's memory (seen 97.0, unseen 91.0); word accuracy at steps 200 / 400 / 600,
pre-trained / scratch / frozen decoder: all 2.5 / 0.5 / 0, 9.0 / 14.5 / 0, 8.5 / 22.5 / 0; seen 5 / 1 / 0,
18 / 29 / 0, 17 / 45 / 0; unseen 0 for every arm at every step. The closed 80-word fine-tune turns both
decoders into classifiers of the seen words (97% of unseen crops are read as a seen word, by either), and the
frozen decoder's loss stays at ln 37: the transfer does not show at this scale.

Prints both curves and the final accuracies; writes `<out>/summary.json`.

`--encoder-probe` answers the question before the transfer: how soon can the fine-tuning encoder alone tell
the crops' words apart? A linear word classifier on its flattened tokens is trained with the fine-tune's
steps, batches and learning-rate schedule for the ViT with each stem (`vlzoo.ocr.dptr.STEMS`) and, as a
reference with a convolutional network's locality prior, three conv-BN-ReLU-pool stages on the same 4×16 grid;
it prints their test word-classification accuracy (the most frequent word's share is chance).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from vlzoo.ocr.demo_recognition import RECOGNITION_DEMO, run_recognition_demo


def encoder_probe(args: argparse.Namespace) -> None:
    from pathlib import Path

    from timm.layers import ConvNormAct

    from vlzoo.core import create_model
    from vlzoo.ocr.data.crops import WordCrops, write_ocr_words
    from vlzoo.ocr.demo_recognition import _crops_tensor

    words = Path(args.out) / f"ocr-words-{args.style}-{args.labels}-{args.n_train}-{args.n_test}"
    if not (words / "train" / "labels.txt").is_file():
        write_ocr_words(
            words, n_train=args.n_train, n_test=args.n_test, seed=0, style=args.style, labels=args.labels
        )
    transform = create_model("dptr-parseq-tiny").config.transform(train=False)
    train, test = (WordCrops(words / split / "labels.txt") for split in ("train", "test"))
    vocabulary = {w: i for i, w in enumerate(sorted(set(train.labels) | set(test.labels)))}
    images, test_images = _crops_tensor(train, transform), _crops_tensor(test, transform)
    classes = torch.tensor([vocabulary[w] for w in train.labels])
    test_classes = torch.tensor([vocabulary[w] for w in test.labels])
    chance = 100 * test_classes.bincount().max().item() / len(test_classes)
    print(f"word classification of {len(vocabulary)} words; chance (most frequent test word) {chance:.1f}%")

    def vit(stem: str) -> nn.Module:
        # no pooling, no head: the encoder returns its tokens [B, 64, 64]
        return nn.Sequential(
            create_model("dptr-parseq-tiny", stage="finetune", stem=stem).encoder, nn.Flatten()
        )

    def cnn() -> nn.Module:
        stages = [(3, 16), (16, 32), (32, 64)]
        return nn.Sequential(
            *(nn.Sequential(ConvNormAct(i, o, 3), nn.MaxPool2d(2)) for i, o in stages), nn.Flatten()
        )

    encoders = {"vit, patch stem": lambda: vit("patch"), "vit, conv stem": lambda: vit("conv"), "cnn": cnn}
    for name, build in encoders.items():
        torch.manual_seed(1)
        net = nn.Sequential(build(), nn.LazyLinear(len(vocabulary)))
        net(images[:2])  # materializes the linear layer
        opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
        generator = torch.Generator().manual_seed(1)
        start = time.perf_counter()
        for step in range(1, args.steps + 1):
            idx = torch.randperm(len(images), generator=generator)[: args.batch]
            loss = nn.functional.cross_entropy(net(images[idx]), classes[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            if step % args.eval_every == 0 or step == args.steps:
                net.eval()
                with torch.no_grad():
                    accuracy = 100 * (net(test_images).argmax(1) == test_classes).float().mean().item()
                net.train()
                print(
                    f"  {name} step {step}: loss {loss.item():.3f}, test word classification {accuracy:.1f}%"
                )
        print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)


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
        help="pre-training text: crops (the train crops' labels), generated (fresh labels of that kind) or "
        "lexicon (the --lexicon words)",
    )
    parser.add_argument(
        "--lexicon",
        type=int,
        default=RECOGNITION_DEMO["lexicon"],
        help="DPTR's premise: a made-up lexicon of this many words is the pre-training text (with --text "
        "lexicon); the train crops spell only its first --seen-words (0 = off)",
    )
    parser.add_argument("--seen-words", type=int, default=RECOGNITION_DEMO["seen_words"])
    parser.add_argument("--pretrain-lr", type=float, default=RECOGNITION_DEMO["pretrain_lr"])
    parser.add_argument("--clip-steps", type=int, default=RECOGNITION_DEMO["clip_steps"])
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--parallel", action="store_true", help="the three fine-tunes in three processes")
    parser.add_argument("--batch", type=int, default=RECOGNITION_DEMO["batch"])
    parser.add_argument("--lr", type=float, default=RECOGNITION_DEMO["lr"])
    parser.add_argument(
        "--stem",
        default=RECOGNITION_DEMO["stem"],
        help="the fine-tuning ViT's stem: patch (the paper's) or conv (early convolutions, every arm)",
    )
    parser.add_argument(
        "--fmu-query-std",
        type=float,
        default=RECOGNITION_DEMO["fmu_query_std"],
        help="the FMU queries' initial std (every arm; the official code leaves them uninitialized)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--encoder-probe", action="store_true", help="only the word-classification probe of the encoders"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.encoder_probe:
        return encoder_probe(args)
    start = time.perf_counter()
    settings = {k: v for k, v in vars(args).items() if k in RECOGNITION_DEMO}
    run_recognition_demo(args.out, log=lambda line: print(line, flush=True), **settings)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
