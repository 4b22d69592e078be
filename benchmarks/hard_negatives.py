"""The toyworld demo with plain batches vs hard-negative batches (each image beside its distractor), and with
NegCLIP's hard-negative captions, same spec, seed and epochs: text→image R@1/R@5, Winoground's pair scores
(overall and by what tells an image from its distractor: a shape, a shape swap, a size, the relation) and
seconds for each.

Issue goal: the default demo (hard-negative batches), within its few-minute budget, at text→image R@1 >= 75 %
and group score >= 50 %, with the plain-batch run's figures beside it.

    python benchmarks/hard_negatives.py --jobs 2                 # plain vs the default demo, side by side
    python benchmarks/hard_negatives.py --modes plain negclip hard hard+negclip
    python benchmarks/hard_negatives.py --epochs 30 --modes hard
    python benchmarks/hard_negatives.py --modes hard --seeds 0 1 --jobs 2 --module '{"tower_lr": {"logit_scale": 2e-2}}'
    python benchmarks/hard_negatives.py --modes plain \
        --model-overrides '{"vision": {"pool": "max", "pos_embed_init": "sincos"}}'
    python benchmarks/hard_negatives.py --modes hard plain --seeds 0 1 --batch-size 64 --jobs 4
    python benchmarks/hard_negatives.py --modes hard --module '{"lr": 3e-3}' --probe
    python benchmarks/hard_negatives.py --modes hard hard+swaps --jobs 2 \
        --model-overrides '{"vision": {"pool": "max", "pos_embed_init": "sincos"}}'
    python benchmarks/hard_negatives.py --text-capacity

`--probe` fits linear probes for the relation's direction ("A above B" vs "A below B", same colours, random
shapes, sizes and places) on the image embedding and on the mean patch token, before and after training:
whether the image tower can tell the relation pairs apart at all, whatever the text tower learns.

`--text-capacity` trains only the demo's text tower, alone, with a linear head and direct labels, to tell which
of a caption's two colours is the upper (or left) one: the relation's XOR of word order and direction word,
which no bag of words reads (chance 50 %). It answers whether the text tower *can* learn what the relation
pairs need in the demo's number of steps; every run also prints the trained text tower's cosine between each
test caption and its direction-flipped / object-swapped edit (`toyworld.caption_swaps`), ~0.97 untrained.

Measured (stop 24, one seed, a loaded 2-core machine), `--text-capacity` with the demo's text tower, held-out
accuracy at steps 100 / 200 / 300 / 400 (chance 50 %):

    lr 2e-3 (the demo's)   50.6 / 47.8 / 73.5 / 86.4
    --module '{"lr": 1e-3}'   50.4 / 44.8 / 44.7 / 88.4
    --module '{"lr": 5e-3}'   49.4 / 49.4 / 50.6 / 50.6

So the tower can bind word order to the direction word, but only after a plateau of 200-300 steps even from
direct labels, and not at all at 5e-3: the demo's ~414 contrastive steps, whose relation signal is far weaker,
end before it. Every contrastive arm tried so far leaves the caption / direction-flipped caption cosine at
0.999-1.000 (`hard+swaps` included, in an exploratory scratch run on the validation split).

The default demo's towers (stop 24): sine-cosine start for the ViT's position table and a 2-layer, 128-wide
text tower (were: timm's position init, 4 layers × 64; the `--text-capacity` figures above are the old tower's;
1 and 2 layers × 128 hit the same plateau: 50.6 / 52.9 / 71.5 / 87.2 and 50.6 / 46.5 / 81.3 / 91.9). Measured
(lead, two runs at once on the idle 2-core machine, data seed 0):

    --modes hard --seeds 0 1 --jobs 2   R@1 69.6 / 68.1, pair scores 60/58/54 and 62/55/50, relation group 0 / 0,
                                        val R@1 75.0 / 72.4, 194 s each
    --modes plain                       R@1 66.6, pair scores 54/55/45, relation group 0, val R@1 71.4, 247 s
    before (max pool only), hard        R@1 64.2, group 49, val R@1 65.7 (stop 23)
    before, 36 / 48 epochs, sincos      R@1 73.4 / 75.0 (seed 1: 71.5), group 57 / 61 (59), val 75.7 / 79.6
    text tower mean-pooled (18 epochs)  R@1 62.3, group 42, val 64.0

Stop 25: a cheaper step (text context 20 instead of 32, fused AdamW, decoded images kept by each data worker;
an epoch costs 0.71x the CPU time) spent on 24 epochs instead of 18, the same CPU time. Four training seeds,
two runs at once beside other work (their seconds are not the demo's):

    --modes hard --seeds 0 1 --jobs 2      R@1 70.6 / 65.8, group 58 / 49, relation group 0 / 0, val 79.0 / 68.8
    --modes hard --seeds 2 3 --jobs 2      R@1 69.8 / 73.4, group 52 / 57, relation group 0 / 0, val 77.8 / 75.9
    … --module '{"tower_lr": {"logit_scale": 2e-2}}', seeds 0-3
                                           R@1 73.5 / 68.7 / 68.4 / 68.7, group 56 / 53 / 54 / 51,
                                           val 76.1 / 69.5 / 71.9 / 75.4 (logit scale ends at 95-100, not ~25)
    … --module '{"tower_lr": {"text": 5e-3}}', seeds 0 1
                                           R@1 62.2 / 66.8, group 48 / 45, val 64.6 / 69.8
    --modes plain                          R@1 69.5, pair scores 63/55/49, relation group 0, val 77.6
                                           (hard, seed 0: 70.6, 65/62/58, val 79.0)

Validation means: default 75.4 (18 epochs: 73.7 over seeds 0 / 1), logit-scale rate 73.2: the default stays.
Test R@1 69.9 on average (goal 75: missed); group >= 50 on 3 seeds of 4; the relation pairs still 0.

Stop 26: a convolutional stem for the ViT (`vision.stem="conv"`: stride-2 3x3 conv-BN-ReLU stages down to the
same 8x8 grid, Xiao et al. 2021). Toyworld's small shapes are ~13 pixels wide and straddle the 8x8 patches;
the shape pairs were the largest share of what R@1 missed (48 of the 100 test pairs, R@1 ~70 %). Four
training seeds each, two runs at once on the loaded 2-core machine (`--model-overrides` with the stem; now
the default):

    stem width 16, --seeds 0 1 / 2 3   R@1 72.9 / 82.5 / 79.3 / 79.2 (mean 78.5), group 55 / 76 / 69 / 62,
                                       val 79.8 / 88.3 / 82.4 / 82.1
    stem width 32, --seeds 0 2 / 1 3   R@1 85.0 / 83.2 / 88.0 / 80.5 (seeds 0-3, mean 84.2),
                                       group 80 / 74 / 85 / 73, val 86.4 / 85.9 / 87.4 / 83.0 (mean 85.7)

With width 32, by change (seed 0): shape R@1 92 (was 70), swap 88, size 93, relation 57 with group 21: the
text tower starts to bind word order to the direction word (caption / direction-flipped cosine 0.979, was
0.998-1.000) once the image tower no longer holds the shapes back; on seeds 1 and 3 the relation group is
still 0 / 5. About 13 % more time per run than the patch stem (759 s against 671 s, under the same load).
Plain batches with the stem, `--modes plain` (seed 0): R@1 84.5, pair scores 81 / 80 / 77, relation group 0,
val 86.1: beside the hard-negative batches' 85.0 and 80 the batches now matter little; the stem does the work.

Modes change only the batches (`data.group_batches`), the loss (`NegClipLoss` over each image's hard-negative
captions) and those captions: the distractor's, and in `hard+swaps` also the direction-flipped and
object-swapped edits of the image's own captions (toyworld's `swap_negatives`, both false cells of the
relation's XOR, for every image). Everything else is `TOYWORLD_DEMO`'s. `--jobs 2` trains the modes in parallel
processes (one thread each): their seconds then include the other's load.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.console import Console

import vlzoo.core as vz
from vlzoo.core.data import build_source
from vlzoo.core.data.toyworld import CHANGES, SHAPES, SIZES, Scene, Shape, ToyWorld, caption_swaps, render
from vlzoo.core.demo import TOYWORLD_DEMO, DemoSpec, run_demo
from vlzoo.core.eval import PAIR_SCORE_CHANCE, encode_retrieval_set, eval_loader, linear_probe, pair_scores

HARD_BATCHES = {"group_batches": {"key": "pair", "per_group": 2}}
NEGCLIP = {"loss": {"name": "negclip"}}
SWAPS = {"swap_negatives": True}  # toyworld's negatives also hold each caption's direction / object swaps
MODES = {  # name -> (data arguments, ZooModule arguments added to the demo's, generate arguments added)
    "plain": ({}, {}, {}),
    "hard": (HARD_BATCHES, {}, {}),
    "negclip": ({}, NEGCLIP, {}),
    "hard+negclip": (HARD_BATCHES, NEGCLIP, {}),
    "hard+swaps": (HARD_BATCHES, NEGCLIP, SWAPS),
}
SCORES = tuple(PAIR_SCORE_CHANCE)


def spec_for(
    mode: str,
    epochs: int,
    n_train: int,
    model_overrides: dict[str, Any] | None = None,
    seed: int = 0,
    module_args: dict[str, Any] | None = None,
    batch_size: int | None = None,
) -> DemoSpec:
    data, module, generate = MODES[mode]
    spec = TOYWORLD_DEMO.resized(epochs=epochs, n_train=n_train)
    spec = replace(spec, generate={**spec.generate, **generate})
    module = {**spec.module, **(module_args or {}), **module}
    if model_overrides is not None:
        module["model_overrides"] = model_overrides
    data = {**{k: v for k, v in spec.data.items() if k != "group_batches"}, **data}  # keep e.g. data_options
    return replace(spec, data=data, module=module, seed=seed, batch_size=batch_size or spec.batch_size)


def scores_by_change(model: torch.nn.Module, index: Path, batch_size: int) -> dict[str, dict[str, float]]:
    """Pair scores on the test split, by the change that makes each pair (`"change"` in toyworld's JSON);
    plus, over all captions, how many find their image's distractor first (R@1's misses that bag-of-words
    would make)."""
    test = build_source(str(index), "karpathy", "test", "all", {"train": False})
    with torch.no_grad():
        encoded = encode_retrieval_set(model.eval(), eval_loader(model, test, batch_size))
    changes = test.field_values("change")
    members: dict[Any, list[int]] = {}
    for index, pair in enumerate(test.field_values("pair")):
        members.setdefault(pair, []).append(index)
    pairs = torch.tensor([m for m in members.values() if len(m) == 2])
    owners = encoded.text_to_image
    best = (encoded.text_features.float() @ encoded.image_features.float().T).argmax(1)
    out = {}
    for change in CHANGES:
        chosen = pairs[torch.tensor([changes[p[0]] == change for p in pairs.tolist()])]
        if len(chosen):
            scores = pair_scores(encoded.image_features, encoded.text_features, owners, chosen)
            captions = torch.isin(owners, chosen.flatten())
            scores["R@1"] = 100.0 * (best[captions] == owners[captions]).float().mean().item()
            scores.update(pair_cosines(encoded.image_features, encoded.text_features, owners, chosen))
            out[change] = scores
    out["all"] = {"to_distractor": 100.0 * (best == owners ^ 1).float().mean().item()}
    return out


def pair_cosines(
    image_features: torch.Tensor, text_features: torch.Tensor, owners: torch.Tensor, pairs: torch.Tensor
) -> dict[str, float]:
    """Mean cosine between the two images of each pair (`image_cos`) and between their captions (`caption_cos`:
    each caption of one image with each of the other's): which tower fails to set a pair apart. Two captions
    of one image sit at about 0.99 in a trained tower."""
    images = torch.nn.functional.normalize(image_features.float(), dim=-1)
    texts = torch.nn.functional.normalize(text_features.float(), dim=-1)
    first, second = pairs[:, 0], pairs[:, 1]
    # [captions, pairs] memberships; per pair, the mean over (caption of the first, caption of the second)
    of_first = (owners[:, None] == first).float()
    of_second = (owners[:, None] == second).float()
    block = (texts @ texts.T) @ of_first  # each caption's summed cosine with the first image's captions
    sums = (block * of_second).sum(0) / (of_first.sum(0) * of_second.sum(0))
    return {
        "image_cos": (images[first] * images[second]).sum(-1).mean().item(),
        "caption_cos": sums.mean().item(),
    }


def caption_edit_cosines(model: torch.nn.Module, index: Path) -> dict[str, float]:
    """Mean cosine between each test caption's embedding and its edits that make it false (`caption_swaps`):
    the direction word flipped, the two objects swapped. Near 1 means the text tower reads a bag of words; an
    untrained tower gives about 0.97."""
    images = json.loads(Path(index).read_text())["images"]
    captions = [s["raw"] for image in images if image["split"] == "test" for s in image["sentences"]]
    edits = [(text, caption_swaps(text)) for text in captions]
    edits = [(text, swaps) for text, swaps in edits if swaps]
    tokenizer = vz.get_tokenizer(model)
    out = {}
    with torch.no_grad():
        originals = model.eval().encode_text(tokenizer([text for text, _ in edits]))
        for kind in ("direction", "objects"):
            edited = model.encode_text(tokenizer([swaps[kind] for _, swaps in edits]))
            out[kind] = (originals * edited).sum(-1).mean().item()
    return out


PROBE_COLOURS = (("red", "blue"), ("green", "purple"), ("yellow", "white"))


def direction_images(
    colours: tuple[str, str], n: int, size: int, seed: int
) -> tuple[list[Any], torch.Tensor]:
    """`n` toyworld images of the two `colours`, one above the other (random shapes, sizes and places), and
    whether the first colour is the upper one: what a relation caption asks and a bag of words can't see."""
    rng = np.random.default_rng(seed)
    images, upper = [], rng.integers(2, size=n)
    for first_on_top in upper.tolist():
        shapes = []
        for colour in colours:
            kind, scale = SHAPES[rng.integers(len(SHAPES))], list(SIZES)[rng.integers(len(SIZES))]
            r = round(SIZES[scale] * size, 2)
            shapes.append(Shape(kind, colour, scale, x=float(rng.uniform(r + 1, size - r - 1)), r=r))
        top, bottom = shapes if first_on_top else shapes[::-1]
        y_top = float(rng.uniform(top.r + 1, size - bottom.r * 2 - top.r - 4))
        y_bottom = float(rng.uniform(y_top + top.r + bottom.r + 2, size - bottom.r - 1))
        placed = (replace(top, y=y_top), replace(bottom, y=y_bottom))
        images.append(Image.fromarray(render(Scene(placed, "above"), size, rng)))
    return images, torch.as_tensor(upper)


def direction_probe(model: torch.nn.Module, n: int = 400) -> dict[str, float]:
    """Can a linear read-out of the image tower tell "A above B" from "A below B"? Mean held-out accuracy over
    three colour pairs (chance 50 %), on the image embedding and on the mean of the trunk's patch tokens. Near
    50 % on the embedding means the relation pairs can't be scored whatever the text tower learns."""
    transform = vz.get_transforms(model, train=False)
    accuracies: dict[str, list[float]] = {"embedding": [], "mean_patch_tokens": []}
    for i, colours in enumerate(PROBE_COLOURS):
        images, labels = direction_images(colours, n, TOYWORLD_DEMO.generate["image_size"], seed=1000 + i)
        pixels = torch.stack([transform(image) for image in images])
        with torch.no_grad():
            embedding = model.encode_image(pixels)
            tokens, _ = model.visual.forward_tokens(pixels)
        # vlzoo.core.eval.linear_probe picks its weight decay on a split of the first n_fit, tests on the rest
        n_fit = 3 * n // 4
        for name, features in (("embedding", embedding), ("mean_patch_tokens", tokens.mean(1))):
            probe = linear_probe(features[:n_fit], labels[:n_fit], features[n_fit:], labels[n_fit:])
            accuracies[name].append(probe["accuracy"])
    return {name: sum(a) / len(a) for name, a in accuracies.items()}


def text_capacity(
    steps: int = 400,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    model_overrides: dict[str, Any] | None = None,
) -> list[tuple[int, float]]:
    """Can the demo's text tower compute the relation's XOR at all, and in how many steps? It is trained alone,
    with a linear head and direct labels, to say whether the alphabetically first of a caption's two colours is
    the upper (or left) object, from toyworld's training captions (all five paraphrases, drawn at random);
    held-out accuracy on the validation captions every 100 steps. Word order or the direction word alone says
    nothing about the label (chance and any bag of words: 50 %), so reaching ~100 % means the tower can bind
    them, and what contrastive training lacks is the signal, not the capacity."""
    torch.manual_seed(seed)

    def labelled(split: str, n: int) -> tuple[list[list[str]], torch.Tensor]:
        world, captions, labels = ToyWorld(split, n, TOYWORLD_DEMO.generate["image_size"], seed=0), [], []
        for i in range(n):
            _, scene, texts = world.generate(i)
            a, b = scene.objects
            if a.colour != b.colour:
                first = a if scene.relation in ("above", "left of") else b  # the upper or left object
                captions.append(texts)
                labels.append(first.colour == min(a.colour, b.colour))
        return captions, torch.tensor(labels, dtype=torch.long)

    train, train_labels = labelled("train", TOYWORLD_DEMO.generate["n_train"])
    val, val_labels = labelled("val", TOYWORLD_DEMO.generate["n_val"])
    val_texts = [text for texts in val for text in texts]
    val_labels = val_labels.repeat_interleave(torch.tensor([len(t) for t in val]))
    overrides = (
        TOYWORLD_DEMO.module.get("model_overrides", {}) if model_overrides is None else model_overrides
    )
    model = vz.create_model(TOYWORLD_DEMO.model, **overrides)
    tokenizer, tower = vz.get_tokenizer(model), model.text
    head = torch.nn.Linear(tower.output_dim, 2)
    parameters = [*tower.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0)
    generator, curve = torch.Generator().manual_seed(seed), []
    for step in range(1, steps + 1):
        rows = torch.randint(len(train), (batch_size,), generator=generator)
        picks = torch.randint(len(train[0]), (batch_size,), generator=generator)
        texts = [train[r][c] for r, c in zip(rows.tolist(), picks.tolist())]
        loss = torch.nn.functional.cross_entropy(head(tower(tokenizer(texts))), train_labels[rows])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            with torch.no_grad():
                predicted = head(tower(tokenizer(val_texts))).argmax(-1)
            curve.append((step, 100.0 * (predicted == val_labels).float().mean().item()))
    return curve


def run_mode(
    mode: str,
    epochs: int,
    n_train: int,
    overrides: dict[str, Any] | None,
    out: str,
    seed: int = 0,
    module_args: dict[str, Any] | None = None,
    batch_size: int | None = None,
    probe: bool = False,
) -> dict[str, Any]:
    torch.set_num_threads(1)
    spec = spec_for(mode, epochs, n_train, overrides, seed, module_args, batch_size)
    if probe:
        torch.manual_seed(seed)
        untrained = vz.create_model(spec.model, **spec.module.get("model_overrides", {})).eval()
        probe_at_init = direction_probe(untrained)
    result = run_demo(spec, out, console=Console(quiet=True))
    pairs = json.loads((Path(out) / "metrics.json").read_text())["pair_scores"]
    val = float(result.trainer.callback_metrics.get("val/text_to_image_R@1", float("nan")))
    model = result.trainer.lightning_module.model
    by_change = scores_by_change(model, Path(out) / "data" / "toyworld.json", spec.batch_size)
    probes = {"init": probe_at_init, "trained": direction_probe(model.eval())} if probe else {}
    cosines = caption_edit_cosines(model, Path(out) / "data" / "toyworld.json")
    return {
        "probes": probes,
        "mode": mode if seed == TOYWORLD_DEMO.seed else f"{mode} (seed {seed})",
        "metrics": result.metrics,
        "pairs": pairs,
        "val": val,
        "seconds": result.seconds,
        "by_change": by_change,
        "caption_edit_cosines": cosines,
        "logit_scale": float(model.scale().detach()) if hasattr(model, "scale") else float("nan"),
    }


def print_by_change(rows: list[dict[str, Any]], cell: Callable[[dict[str, float]], str]) -> None:
    """One line per run: each change type's figures (`scores_by_change`) as `cell` writes them."""
    for row in rows:
        parts = [f"{change} {cell(s)}" for change, s in row["by_change"].items() if change != "all"]
        print(f"  {row['mode']}: " + " · ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=TOYWORLD_DEMO.epochs)
    parser.add_argument("--n-train", type=int, default=TOYWORLD_DEMO.generate["n_train"])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["plain", "hard"])
    parser.add_argument("--batch-size", type=int, default=TOYWORLD_DEMO.batch_size)
    parser.add_argument("--seeds", type=int, nargs="+", default=[TOYWORLD_DEMO.seed], help="training seeds")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="linear probes of the relation's direction, untrained and trained",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, in separate processes")
    parser.add_argument(
        "--model-overrides", type=json.loads, default=None, help="JSON replacing the demo's model_overrides"
    )
    parser.add_argument(
        "--module", type=json.loads, default=None, help="JSON merged into the demo's ZooModule arguments"
    )
    parser.add_argument(
        "--text-capacity",
        action="store_true",
        help="only train the text tower alone on the relation's XOR (direct labels) and print its accuracy",
    )
    args = parser.parse_args()
    if args.text_capacity:
        torch.set_num_threads(1)
        curve = " · ".join(
            f"step {step}: {accuracy:.1f}%"
            for step, accuracy in text_capacity(
                seed=args.seeds[0],
                lr=(args.module or {}).get("lr", TOYWORLD_DEMO.module["lr"]),
                model_overrides=args.model_overrides,
            )
        )
        print(
            f"text tower alone, relation's XOR from direct labels (chance 50%), module {args.module or {}}, "
            f"model overrides {args.model_overrides or TOYWORLD_DEMO.module['model_overrides']}: {curve}"
        )
        return
    default = next(
        m
        for m, (data, module, generate) in MODES.items()
        if data.get("group_batches") == TOYWORLD_DEMO.data.get("group_batches") and not module
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [
            (
                mode,
                args.epochs,
                args.n_train,
                args.model_overrides,
                str(Path(tmp) / f"{mode.replace('+', '_')}_{seed}"),
                seed,
                args.module,
                args.batch_size,
                args.probe,
            )
            for mode in args.modes
            for seed in args.seeds
        ]
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                rows = list(pool.map(run_mode, *zip(*jobs)))
        else:
            rows = [run_mode(*job) for job in jobs]
    overrides = args.model_overrides or TOYWORLD_DEMO.module.get("model_overrides")
    print(
        f"toyworld demo, {args.epochs} epochs, {args.n_train} training images, batch {args.batch_size}, "
        f"model overrides {overrides}, "
        f"module {args.module or {}}; "
        f"the default demo is {default!r}"
    )
    print("| batches / loss | R@1 | R@5 | text | image | group | to distractor | val R@1 | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        m, p = row["metrics"], row["pairs"]
        scores = " | ".join(f"{p[k]:.1f}" for k in SCORES)
        r1, r5 = m["text_to_image_R@1"], m["text_to_image_R@5"]
        missed = row["by_change"]["all"]["to_distractor"]
        print(
            f"| {row['mode']} | {r1:.1f} | {r5:.1f} | {scores} | {missed:.1f} | {row['val']:.1f} | "
            f"{row['seconds']:.0f} |"
        )
    print("test split (val R@1: the validation split, what settings were chosen on); to distractor: captions")
    print("whose first image is their image's distractor. By change (pairs; text / image / group; R@1):")
    print_by_change(
        rows, lambda s: f"({s['pairs']}): {' / '.join(f'{s[k]:.0f}' for k in SCORES)}; {s['R@1']:.0f}"
    )
    print("mean cosine of a pair's two images / of a caption of one with a caption of the other, by change:")
    print_by_change(rows, lambda s: f"{s['image_cos']:.3f} / {s['caption_cos']:.3f}")
    print("chance: R@1 0.5, text 25.0, image 25.0, group 16.7; goal: R@1 >= 75, group >= 50")
    print("text tower, mean cosine of a test caption with its direction word flipped / its objects swapped:")
    for row in rows:
        cosines = row["caption_edit_cosines"]
        print(f"  {row['mode']}: {cosines['direction']:.3f} / {cosines['objects']:.3f}")
    print(
        "trained logit scale (exp, CLIP's cap 100): "
        + " · ".join(f"{r['mode']} {r['logit_scale']:.1f}" for r in rows)
    )
    for row in rows:
        for stage, accuracy in row["probes"].items():
            found = " · ".join(f"{name} {value:.1f}%" for name, value in accuracy.items())
            print(f"  {row['mode']}: direction probe ({stage}, chance 50%): {found}")


if __name__ == "__main__":
    main()
