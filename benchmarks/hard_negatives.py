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

import torch
from rich.console import Console

from vlzoo.core.data import build_source
from vlzoo.core.data.toyworld import CHANGES
from vlzoo.core.demo import TOYWORLD_DEMO, DemoSpec, run_demo
from vlzoo.core.eval import PAIR_SCORE_CHANCE, encode_retrieval_set, eval_loader, pair_scores

HARD_BATCHES = {"group_batches": {"key": "pair", "per_group": 2}}
NEGCLIP = {"loss": {"name": "negclip"}}
MODES = {  # name -> (data arguments, ZooModule arguments added to the demo's)
    "plain": ({}, {}),
    "hard": (HARD_BATCHES, {}),
    "negclip": ({}, NEGCLIP),
    "hard+negclip": (HARD_BATCHES, NEGCLIP),
}
SCORES = tuple(PAIR_SCORE_CHANCE)


def spec_for(mode: str, epochs: int, n_train: int, model_overrides: dict[str, Any] | None = None) -> DemoSpec:
    data, module = MODES[mode]
    spec = TOYWORLD_DEMO.resized(epochs=epochs, n_train=n_train)
    module = {**spec.module, **module}
    if model_overrides is not None:
        module["model_overrides"] = model_overrides
    return replace(spec, data=data, module=module)


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


def run_mode(
    mode: str, epochs: int, n_train: int, overrides: dict[str, Any] | None, out: str
) -> dict[str, Any]:
    torch.set_num_threads(1)
    spec = spec_for(mode, epochs, n_train, overrides)
    result = run_demo(spec, out, console=Console(quiet=True))
    pairs = json.loads((Path(out) / "metrics.json").read_text())["pair_scores"]
    val = float(result.trainer.callback_metrics.get("val/text_to_image_R@1", float("nan")))
    model = result.trainer.lightning_module.model
    by_change = scores_by_change(model, Path(out) / "data" / "toyworld.json", spec.batch_size)
    return {
        "mode": mode,
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
    parser.add_argument("--jobs", type=int, default=1, help="modes trained at once, in separate processes")
    parser.add_argument(
        "--model-overrides", type=json.loads, default=None, help="JSON replacing the demo's model_overrides"
    )
    args = parser.parse_args()
    default = next(
        m for m, (data, module) in MODES.items() if data == dict(TOYWORLD_DEMO.data) and not module
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [
            (mode, args.epochs, args.n_train, args.model_overrides, str(Path(tmp) / mode.replace("+", "_")))
            for mode in args.modes
        ]
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                rows = list(pool.map(run_mode, *zip(*jobs)))
        else:
            rows = [run_mode(*job) for job in jobs]
    overrides = args.model_overrides or TOYWORLD_DEMO.module.get("model_overrides")
    print(
        f"toyworld demo, {args.epochs} epochs, {args.n_train} training images, model overrides {overrides}; "
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


if __name__ == "__main__":
    main()
