"""The toyworld demo with plain batches vs hard-negative batches (each image beside its distractor), and with
NegCLIP's hard-negative captions, same spec, seed and epochs: text→image R@1/R@5, Winoground's pair scores
(overall and by what tells an image from its distractor: a shape, a shape swap, a size, the relation) and
seconds for each.

Issue goal: the default demo (hard-negative batches), within its few-minute budget, at text→image R@1 >= 75 %
and group score >= 50 %, with the plain-batch run's figures beside it.

    python benchmarks/hard_negatives.py --jobs 2                 # plain vs the default demo, side by side
    python benchmarks/hard_negatives.py --modes plain negclip hard hard+negclip
    python benchmarks/hard_negatives.py --epochs 30 --modes hard
    python benchmarks/hard_negatives.py --modes plain \
        --model-overrides '{"vision": {"pool": "max", "pos_embed_init": "sincos"}}'
    python benchmarks/hard_negatives.py --modes hard plain --seeds 0 1 --batch-size 64 --jobs 4
    python benchmarks/hard_negatives.py --modes hard --module '{"lr": 3e-3}' --probe

`--probe` fits linear probes for the relation's direction ("A above B" vs "A below B", same colours, random
shapes, sizes and places) on the image embedding and on the mean patch token, before and after training:
whether the image tower can tell the relation pairs apart at all, whatever the text tower learns.

Modes change only the batches (`data.group_batches`) and the loss (`NegClipLoss` over each image's
distractor captions); everything else is `TOYWORLD_DEMO`'s. `--jobs 2` trains the modes in parallel processes
(one thread each): their seconds then include the other's load.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
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
from vlzoo.core.data.toyworld import CHANGES, SHAPES, SIZES, Scene, Shape, render
from vlzoo.core.demo import TOYWORLD_DEMO, DemoSpec, run_demo
from vlzoo.core.eval import PAIR_SCORE_CHANCE, encode_retrieval_set, eval_loader, linear_probe, pair_scores

HARD_BATCHES = {"group_batches": {"key": "pair", "per_group": 2}}
NEGCLIP = {"loss": {"name": "negclip"}}
MODES = {  # name -> (data arguments, ZooModule arguments added to the demo's)
    "plain": ({}, {}),
    "hard": (HARD_BATCHES, {}),
    "negclip": ({}, NEGCLIP),
    "hard+negclip": (HARD_BATCHES, NEGCLIP),
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
    data, module = MODES[mode]
    spec = TOYWORLD_DEMO.resized(epochs=epochs, n_train=n_train)
    module = {**spec.module, **(module_args or {}), **module}
    if model_overrides is not None:
        module["model_overrides"] = model_overrides
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
            out[change] = scores
    out["all"] = {"to_distractor": 100.0 * (best == owners ^ 1).float().mean().item()}
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
    return {
        "probes": probes,
        "mode": mode if seed == TOYWORLD_DEMO.seed else f"{mode} (seed {seed})",
        "metrics": result.metrics,
        "pairs": pairs,
        "val": val,
        "seconds": result.seconds,
        "by_change": by_change,
    }


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
    args = parser.parse_args()
    default = next(
        m for m, (data, module) in MODES.items() if data == dict(TOYWORLD_DEMO.data) and not module
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
    for row in rows:
        parts = [
            f"{change} ({s['pairs']}): {' / '.join(f'{s[k]:.0f}' for k in SCORES)}; {s['R@1']:.0f}"
            for change, s in row["by_change"].items()
            if change != "all"
        ]
        print(f"  {row['mode']}: " + " · ".join(parts))
    print("chance: R@1 0.5, text 25.0, image 25.0, group 16.7; goal: R@1 >= 75, group >= 50")
    for row in rows:
        for stage, accuracy in row["probes"].items():
            found = " · ".join(f"{name} {value:.1f}%" for name, value in accuracy.items())
            print(f"  {row['mode']}: direction probe ({stage}, chance 50%): {found}")


if __name__ == "__main__":
    main()
