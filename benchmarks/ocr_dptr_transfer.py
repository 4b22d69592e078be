"""DPTR's transfer on the CPU: a decoder pre-trained on text only vs the same model from scratch.

    python benchmarks/ocr_dptr_transfer.py [--out runs/dptr-transfer] [--steps 1000] [--n-train 2000] ...
    python benchmarks/ocr_dptr_transfer.py --encoder clip --clip-model word-clip-tiny --seeds 1 2 ...

The headline (stop 27; the last section below has the history): with the stage-1 CLIP's image tower as
every arm's encoder, and that CLIP a `word-clip-tiny` (conv stem), the decoder pre-trained on text only
reads 12.0 / 19.5 / 17.0% of the test crops after a 100-step fine-tune against 2.5 / 3.5 / 6.5% for the same
model from scratch (seeds 1 / 2 / 3; the command and both curves under `--clip-model word-clip-tiny` below).

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
   fresh in every run, as OpenOCR's configs/rec/dptr/dptr_parseq_finetune.yml (its Encoder is a plain ViT
   and its Global.pretrained_model is empty: no pretrained encoder); with `--encoder clip` every arm's
   encoder starts instead from stage 1's CLIP image tower (see below); `--parallel` runs the three in
   three processes. `--stem patch` (default) is the paper's ViT (linear patch
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

`--encoder clip --clip-crops N` is DPTR's premise on both sides: the tiny CLIP is trained on its own
image-text data (N other renders of the train crops' words, never the crops the recognizer fine-tunes on:
trained on those, it learns them by heart, crop -> prompt retrieval 86% on them and 8% on test crops of
the same words), and every fine-tuning arm's encoder starts from its image tower (the crop squashed to its
64x64 square; its projected class and patch tokens, as the ORP bank's, into the FMU). The arms then share
the encoder's start, steps, batches and learning rate; only the decoder's text-only pre-training differs.
The official fine-tuning starts its ViT fresh: this arm departs from it in the encoder's start only.
Measured 2026-11-30 (one run, under load, 1267 s), `--out runs/dptr-own --lexicon 200 --seen-words 40
--text lexicon --n-train 1000 --clip-crops 5000 --clip-steps 1000 --pretrain-steps 600 --steps 300
--eval-every 50 --encoder clip`: the CLIP retrieves a crop's word among 40 for 28.6% of its own crops
(chance 2.5%); text-only pre-training reads 59.0% of the test words from its memory (seen 78.0, unseen
40.0); word accuracy (%) at steps 50 / 100 / 150 / 200 / 250 / 300 (chance 2.5):
- all: pre-trained 4.5 / 5.5 / 8.5 / 8.5 / 12.5 / 12.0; scratch 0.5 / 4.5 / 5.0 / 4.0 / 3.0 / 6.0;
  frozen pre-trained decoder 1.0 / 1.5 / 2.5 / 1.5 / 1.5 / 1.5;
- seen: pre-trained 9 / 11 / 17 / 17 / 25 / 24; scratch 1 / 9 / 10 / 8 / 6 / 12; frozen 1 / 3 / 5 / 3 / 3 / 3;
- unseen: 0 for every arm at every step (the frozen arm 1.0 at step 50).
A second draw of the fine-tunes' start and batches (scratch script, the same stages, seed 2; all %):
pre-trained 3.5 / 6.5 / 5.5 / 10.0 / 10.5 / 9.0, scratch 0 / 1.5 / 4.5 / 4.5 / 6.5 / 7.5; seed 1 there:
pre-trained 4.0 / 8.0 / 8.0 / 8.5 / 8.5 / 10.5, scratch 0 / 1.0 / 3.0 / 3.5 / 5.0 / 5.0. So with the same
CLIP-started encoder the decoder pre-trained on text alone reads about twice the test crops of the same
model from scratch at 300 steps, and leads from step 50 in every run; its training loss is lower
throughout (0.47-0.53 against 0.67-0.76 at step 300). Absolute accuracies stay low: the tiny CLIP's image
tower, the shared encoder, tells test crops apart poorly (it retrieves 9% of the test crops' words among
the 106 test words). Also measured (scratch scripts, the same setting):
- The CLIP trained on the fine-tuning crops themselves (`--clip-crops 0`, `--clip-steps 300`, text-only
  89.5%; benchmark run `--encoder clip` without `--clip-crops`): all % at 50-300, pre-trained
  1.0 / 3.0 / 5.0 / 5.0 / 6.0 / 6.0, scratch 2.0 / 3.5 / 4.0 / 3.0 / 5.5 / 4.0, frozen 0-0.5; the
  pre-trained arm fits the train crops faster (training word accuracy 16 against 2.5% at step 100) but
  the CLIP's features of test crops generalize little; with that CLIP at 1000 steps (retrieval 86% on its
  crops, 8% on test crops of the same words) pre-trained 5.5% at step 300 (with batched
  augmentation and the encoder at a quarter of the learning rate).
- LP-FT (fresh conv-stem ViT + FMU under the frozen pre-trained decoder for 100 steps, then all): 0 / 3.5 /
  4.0 at steps 100 / 200 / 300, below plain fine-tuning from the pre-trained decoder (2.5 / 9.5 / 11.5).
- The frozen pre-trained decoder reading the CLIP's image tokens directly, with no FMU: 0%.
- Smaller settings (8 seen words of 40, 160-300 crops, CLIP 120-400 steps on 300-1000 own renders, 40 test
  crops): pre-trained 5.0 against scratch 0.0 after 40 steps, 17.5 against 7.5 after 100; the gap is 2-4
  test crops there, and stages 1-3 alone take ~90 s under load: no unit test asserts it yet.

`--clip-model word-clip-tiny` (stop 27) makes that CLIP stronger: `clip-vit-tiny` with a convolutional stem
(`vlzoo.ocr.dptr.word_clip_tiny`; the core's `VisionTowerConfig.stem="conv"`, 32 channels), everything else
as above. Crop -> prompt retrieval on held-out renders (scratch script, /tmp; 5000 own renders of the 40
seen words, 1000 steps, the same optimizer; test crops of seen words among the 40 seen words' prompts, and
all 200 test crops among the 106 test words' prompts), at steps 250 / 500 / 750 / 1000:
- linear stem (`clip-vit-tiny`, batch 64, the old setting): 13 / - / - / - and 5 / - / - / - (its own
  run: all test crops 9% at 1000);
- linear stem, batches of 40 distinct words: 10 / 11 / - / - and 4.5 / 4.5 / - / -;
- linear stem, 32x128 input (4x16 patches) instead of the squashed square, distinct batches: 6 / 8 and 2 / 3;
- **conv stem, batch 64 (what `train_word_clip` does)**: 18 / 25 / 45 / 48 and 8.5 / 9.0 / 17.5 / 19.0;
- conv stem, distinct batches of 40: 19 / 34 / 42 / 47 and 7.0 / 15.0 / 15.5 / 21.5;
- conv stem, 32x128 input, distinct batches: 12 / 22 and 5 / 6 (stopped);
- conv stem at lr 3e-3: stuck at ln 40 (chance) to step 750.
So the stem, not the input shape or the batch sampler, is the lever: the CLIP's image tower keeps the
squashed square input, and its sampler (random batches) is unchanged. Then the transfer, measured
2026-11-30 under load (2-core machine at load 8-12):
`OMP_NUM_THREADS=1 python benchmarks/ocr_dptr_transfer.py --out runs/dptr-wc --lexicon 200 --seen-words 40
--text lexicon --n-train 1000 --clip-crops 5000 --clip-steps 1000 --pretrain-steps 600 --steps 300
--eval-every 50 --encoder clip --clip-model word-clip-tiny --seeds 1 2 --jobs 2` (~31 min): the CLIP
retrieves 66.0% of its own crops' words among 40 (was 28.6) and **25.0% of the test crops' words among the
106 test words** (was 9); text-only pre-training reads **99.0%** of the test words from its memory (seen 100,
unseen 98; was 59). Word accuracy on all test crops (%, chance 2.5), seeds 1 / 2, at steps
50 / 100 / 150 / 200 / 250 / 300:
- pre-trained: 6.5 / 17.0 / 21.0 / 32.0 / 34.5 / 32.5 and 7.5 / 17.5 / 23.0 / 31.0 / 33.0 / 32.5;
- scratch: 0.5 / 7.5 / 21.5 / 27.5 / 33.5 / 32.0 and 0.0 / 7.5 / 13.0 / 28.0 / 32.5 / 32.5;
- frozen pre-trained decoder: 0.0 / 1.5 / 2.0 / 8.0 / 9.5 / 12.5 and 0.5 / 1.0 / 10.0 / 12.5 / 14.0 / 13.0;
- seen words are twice these (every hit is a seen word); unseen 0 for every arm (the frozen arm 1.0 once).
The pre-trained decoder is 50-100 steps ahead (17.0 / 17.5 against 7.5 / 7.5 at step 100: 2.3x, +9.5 and
+10 points) and scratch catches up by step 250; absolute accuracy is about three times last stop's (32.5
against 12.0 at step 300), and the frozen decoder, reading only what ViT + FMU make of the crops, now reads
12.5-13% (was 1.5). The short fine-tune itself (the same stages, reused under `--out`; `--steps 100
--eval-every 25`, so the one-cycle schedule ends at step 100), seeds 1 / 2, at steps 25 / 50 / 75 / 100:
- pre-trained: 0.5 / 6.5 / 13.5 / **12.0** and 1.5 / 12.0 / 17.5 / **19.5**;
- scratch: 0.0 / 0.0 / 2.0 / **2.5** and 0.0 / 0.5 / 1.5 / **3.5**;
- frozen pre-trained decoder: 0.0 / 0.0 / 0.0 / 0.5 and 0.0 / 0.0 / 0.5 / 1.0;
- seed 3 (`--seeds 3`, the same command otherwise): pre-trained 2.0 / 11.0 / 14.0 / **17.0**, scratch
  0.0 / 1.5 / 5.5 / **6.5**, frozen 0.0 / 0.0 / 0.0 / 1.5.
After 100 steps the pre-trained decoder reads 4.8x / 5.6x / 2.6x the test crops that scratch does (+9.5 /
+16 / +10.5 points). Still open: no arm reads a word met only in the pre-training text (the fine-tune sees 40 words and
the encoder learns them, not characters), and the frozen arm's transfer alone is small.
`tests/ocr/test_dptr.py::test_text_only_pretraining_beats_scratch_through_images` asserts the same at test
scale (8 seen words of a 40-word lexicon, 60 steps; seeds 1 / 2 of its setting: seen test crops read
45 / 50% against 15 / 10%).

Prints both curves and the final accuracies; writes `<out>/summary.json` (`--seeds`: `<out>/seeds.json`).

`--decoder-probe` asks why the frozen-decoder arm reads nothing: is the pre-trained decoder reachable at
all? After stages 1-3 it gives every distinct test word its own learnable memory (the FMU's output shape,
no image, no encoder; `vlzoo.ocr.demo_recognition.memory_table_probe`) and trains only those memories
under the frozen pre-trained decoder, under a frozen random decoder, and, with the decoder trained too,
from a random decoder (`--probe-seeds`: the memories' start, the batches and the random decoder).
Measured 2026-11-30 (under load), word accuracy read back (%) at steps 0 / 25 / 50 / 75 / 100:
- `--decoder-probe --lexicon 200 --seen-words 40 --text lexicon --n-train 1000 --clip-steps 300
  --pretrain-steps 600 --probe-seeds 0 1 2` (text-only accuracy 89.5%: seen 97.0, unseen 82.0; 106 test
  words), seeds 0 / 1 / 2: frozen pre-trained decoder 0 / 29 / 59 / 85 / 94, 1 / 28 / 61 / 87 / 94,
  1 / 32 / 59 / 82 / 93; frozen random decoder 0 at every step in every seed; random decoder trained with
  the memories 0 / 0 / 5 / 41 / 76, 0 / 0 / 5 / 55 / 66, 0 / 1 / 17 / 48 / 92.
- `--decoder-probe --lexicon 400 --seen-words 80 --text lexicon --stem conv --n-train 2000
  --pretrain-steps 1500` (last stop's transfer setting; text-only 94.0%: seen 97.0, unseen 91.0; 145 test
  words), seed 0: frozen pre-trained 0 / 8 / 37 / 66 / 80; frozen random 0 throughout; random trained
  0 / 0 / 2 / 17 / 41.
So the frozen decoder is reachable, and a decoder pre-trained on text alone reads a learned memory far
sooner than a random decoder learns to: that is the transfer, shown at the decoder. The fine-tune's
frozen arm is no dead path either (scratch scripts, `--lexicon 200 --seen-words 40` setting): its loss
starts at 6.2, above ln 37 = 3.61 (an FMU memory is off the decoder's training manifold, where it is
confidently wrong), and falls to 3.1-3.4 in 100-200 steps, with gradient norms 6.1 at the ViT's patch
embedding, 3.7 at the FMU's attention, 0.25 at its queries; the loaded decoder scores the same loss on
CLIP's memory as in the pre-training model (0.0582). But it reads no crop: the image path (ViT + FMU)
learns slowly at this scale, and with images in the way the pre-trained decoder has not yet beaten
scratch (scratch script, same setting, conv stem, seen test words at steps 100 / 200 / 300: pre-trained
5 / 19 / 23%, scratch 0 / 27 / 37%, pre-trained with the decoder's learning rate at 0.1x 0 / 1 / 4%).

`--open-crops N --open-pool P` tests DPTR's low-data premise: after stages 1-3 (reused under `--out`), the
fine-tunes train on a second crop set, N crops each spelling a random word of the lexicon's first P
(`open_vocabulary_labels`: a few crops per word, so a reader must learn characters, not word codes); the
test crops alternate between words of those crops (`seen`) and the lexicon's other words, met only in the
pre-training text (`unseen`). Measured 2026-11-30 (under load), from the `--lexicon 400 --seen-words 80`
pre-training above (94.0% text-only; the same `--out` reuses it), word accuracy all / seen / unseen (%):
- `--out runs/dptr-transfer --lexicon 400 --seen-words 80 --text lexicon --stem conv --n-train 2000
  --pretrain-steps 1500 --steps 1000 --eval-every 200 --open-crops 1500 --open-pool 300` (298 distinct
  words; 736 s), at steps 200 / 400 / 600 / 800 / 1000: pre-trained 0 / 0 / 0, 1.0 / 2.0 / 0,
  2.5 / 5.0 / 0, 3.5 / 7.0 / 0, 2.0 / 4.0 / 0; scratch 0 / 0 / 0, 0.5 / 1.0 / 0, 9.0 / 18.0 / 0,
  11.0 / 22.0 / 0, 11.0 / 22.0 / 0 (final training loss 0.685 against 0.433).
- Exploratory, a scratch script with the same crops, init and schedule (its own batch order), 600 steps,
  at steps 200 / 400 / 600: pre-trained 0 / 0 / 0, 1.0 / 2.0 / 0, 0.5 / 1.0 / 0; scratch 0 / 0 / 0,
  2.0 / 4.0 / 0, 4.0 / 8.0 / 0. With the FMU queries at std 1.0 (`--fmu-query-std 1`, attention that
  differs across ViT tokens from the start): pre-trained 0.5 / 1.0 / 0, 1.5 / 3.0 / 0, 2.5 / 5.0 / 0;
  scratch 0 / 0 / 0, 1.5 / 3.0 / 0, 2.5 / 5.0 / 0.
- With 300 crops of 191 words (same script), the pre-trained arm's training loss fell to 0.19 by step 400
  while it read 0.0% of the test crops: ViT + FMU memorize the crops rather than learn to read.
Neither arm reads one unseen word: at this scale the image path (a fresh tiny ViT + FMU) has not learnt
characters from 1500 crops in 1000 steps, so the decoder's text-only knowledge of the other words has
nothing to transfer onto; and on seen words the pre-trained decoder again trails scratch (as in the
closed-vocabulary runs above), so the premise alone does not make the transfer show on the CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
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


def decoder_probe(args: argparse.Namespace) -> None:
    from pathlib import Path

    from vlzoo.core import create_model
    from vlzoo.ocr.demo_recognition import memory_table_probe, pretrain_stages

    settings = {**RECOGNITION_DEMO, **{k: v for k, v in vars(args).items() if k in RECOGNITION_DEMO}}
    stages = pretrain_stages(Path(args.out), settings, log=lambda line: print(line, flush=True))
    words = sorted(set(stages["test_labels"]))
    print(f"a learnable memory per word, {len(words)} test words, word accuracy read back (%) by step:")
    for seed in args.probe_seeds:  # the memories' start and batches, and the random decoder's weights
        torch.manual_seed(seed)
        random = create_model("dptr-parseq-tiny", stage="pretrain")  # a fresh decoder: the reference
        decoders = {
            "pre-trained decoder, frozen": (stages["model"], False),
            "random decoder, frozen": (random, False),
            "random decoder, trained": (random, True),
        }
        for name, (model, train) in decoders.items():
            start = time.perf_counter()
            curve = memory_table_probe(
                model,
                words,
                args.probe_steps,
                args.probe_lr,
                args.batch,
                train,
                settings["fmu_query_std"],
                seed=seed,
            )
            read = " ".join(f"{step}:{accuracy:.0f}" for step, accuracy in curve)
            print(f"  seed {seed}, {name:<28} {read}  ({time.perf_counter() - start:.0f} s)", flush=True)


def open_vocabulary_labels(
    lexicon: list[str], pool: int, n_train: int, n_test: int, seed: int = 7
) -> dict[str, list[str]]:
    """Few crops, many words: each train crop spells a random word of `lexicon[:pool]` (most of them a few
    crops each); test crop i spells a word of the train crops when i is even, else one of `lexicon[pool:]`,
    met only in the pre-training text."""
    rng = np.random.default_rng(seed)
    train = [lexicon[j] for j in rng.integers(pool, size=n_train)]
    spelled = sorted(set(train))
    test = [
        spelled[int(rng.integers(len(spelled)))]
        if i % 2 == 0
        else lexicon[pool + int(rng.integers(len(lexicon) - pool))]
        for i in range(n_test)
    ]
    return {"train": train, "test": test}


def open_vocabulary(args: argparse.Namespace) -> None:
    """Stages 1-3 as set (the pre-training reused under `--out`), then the fine-tunes on a second crop set:
    `--open-crops` crops of random words of the lexicon's first `--open-pool` (DPTR's low-data premise)."""
    from pathlib import Path

    from vlzoo.ocr.data.crops import write_ocr_words
    from vlzoo.ocr.demo_recognition import arm_overrides, finetune_arms, pretrain_stages

    settings = {**RECOGNITION_DEMO, **{k: v for k, v in vars(args).items() if k in RECOGNITION_DEMO}}
    out = Path(args.out)
    stages = pretrain_stages(out, settings, log=lambda line: print(line, flush=True))
    words = out / f"open-vocabulary-{args.open_crops}-{args.open_pool}"
    labels = open_vocabulary_labels(stages["lexicon"], args.open_pool, args.open_crops, args.n_test)
    if not (words / "test" / "labels.txt").is_file():
        write_ocr_words(words, seed=0, style=settings["style"], label_lists=labels)
    print(f"fine-tuning on {args.open_crops} crops of {len(set(labels['train']))} distinct words", flush=True)
    overrides = arm_overrides(stages["pretrained"], stages["clip"], settings["encoder"])
    jobs = [(arm, overrides[arm], str(words), settings, str(out / words.name)) for arm in args.arms]
    results = finetune_arms(jobs, 2)
    for arm, (curve, seconds) in zip(args.arms, results):
        read = "; ".join(
            f"{step}: " + " / ".join(f"{acc[g]:.1f}" for g in ("all", "seen", "unseen"))
            for step, acc in curve
        )
        print(f"  {arm} (all / seen / unseen %, {seconds:.0f} s) {read}", flush=True)


def seeded_runs(args: argparse.Namespace) -> None:
    """Stages 1-3 once (reused under `--out`), then every arm of `--arms` fine-tuned from each of `--seeds`
    (the encoder's and FMU's fresh parts and the batches; the same in every arm of a seed), `--jobs` runs at
    once; prints each seed's curves (all / seen / unseen %) and writes `<out>/seeds.json`."""
    import json
    from pathlib import Path

    from vlzoo.ocr.demo_recognition import arm_overrides, finetune_arms, pretrain_stages

    settings = {**RECOGNITION_DEMO, **{k: v for k, v in vars(args).items() if k in RECOGNITION_DEMO}}
    out = Path(args.out)
    stages = pretrain_stages(out, settings, log=lambda line: print(line, flush=True))
    overrides = arm_overrides(stages["pretrained"], stages["clip"], settings["encoder"])
    runs = [(seed, arm) for seed in args.seeds for arm in args.arms]
    jobs = [
        (arm, overrides[arm], str(stages["words"]), {**settings, "seed": seed}, str(out / f"seed{seed}"))
        for seed, arm in runs
    ]
    results = finetune_arms(jobs, args.jobs)
    curves = {f"seed{seed}/{arm}": curve for (seed, arm), (curve, _) in zip(runs, results)}
    read = ", ".join(f"{k} {v:.1f}%" for k, v in stages["text_only"].items())
    print(f"text-only pre-training, reading CLIP's memory of the test labels: {read}")
    for seed in args.seeds:
        print(f"\nseed {seed}: word accuracy (%) all / seen / unseen by fine-tuning step")
        print(f"{'step':>6} " + " ".join(f"{arm:>20}" for arm in args.arms))
        for i, (step, _) in enumerate(curves[f"seed{seed}/{args.arms[0]}"]):
            cells = (curves[f"seed{seed}/{arm}"][i][1] for arm in args.arms)
            row = " ".join(
                f"{' / '.join(f'{c[g]:.1f}' for g in ('all', 'seen', 'unseen')):>20}" for c in cells
            )
            print(f"{step:>6} {row}")
    summary = {"settings": settings, "text_only": stages["text_only"], "curves": curves}
    (out / "seeds.json").write_text(json.dumps(summary, indent=1))


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
    parser.add_argument(
        "--clip-crops",
        type=int,
        default=RECOGNITION_DEMO["clip_crops"],
        help="the CLIP trains on this many other renders of the train crops' words (0: on the train crops)",
    )
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
        "--encoder",
        default=RECOGNITION_DEMO["encoder"],
        help="the fine-tuning encoder of every arm: vit (fresh, the official fine-tuning) or clip (stage 1's "
        "CLIP image tower)",
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
    parser.add_argument(
        "--decoder-probe",
        action="store_true",
        help="only stages 1-3 and the memory-table probe: can a learned memory reach the frozen decoder?",
    )
    parser.add_argument("--probe-steps", type=int, default=100)
    parser.add_argument("--probe-lr", type=float, default=1e-2)
    parser.add_argument("--probe-seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--open-crops",
        type=int,
        default=0,
        help="after stages 1-3, fine-tune on this many crops of random lexicon words instead (0 = off)",
    )
    parser.add_argument(
        "--open-pool", type=int, default=300, help="the first words of the lexicon they spell"
    )
    parser.add_argument(
        "--arms", nargs="+", default=None, help="for --open-crops (default pretrained, scratch) and --seeds"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="stages 1-3 once, then every arm fine-tuned from each of these seeds (--jobs at once)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="fine-tunes at once with --seeds")
    parser.add_argument(
        "--clip-model",
        default=RECOGNITION_DEMO["clip_model"],
        help="the stage-1 CLIP: clip-vit-tiny (linear patch stem) or word-clip-tiny (conv stem)",
    )
    parser.add_argument("--clip-lr", type=float, default=RECOGNITION_DEMO["clip_lr"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.encoder_probe:
        return encoder_probe(args)
    if args.decoder_probe:
        return decoder_probe(args)
    if args.open_crops:
        args.arms = args.arms or ["pretrained", "scratch"]
        return open_vocabulary(args)
    if args.seeds:
        args.arms = args.arms or ["pretrained", "scratch", "frozen-decoder"]
        return seeded_runs(args)
    start = time.perf_counter()
    settings = {k: v for k, v in vars(args).items() if k in RECOGNITION_DEMO}
    run_recognition_demo(args.out, log=lambda line: print(line, flush=True), **settings)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
