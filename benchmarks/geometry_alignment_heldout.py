"""GS-Former's alignment stage on held-out geo-toyworld pairs: the diagram → formal-description R@1 over the
test split in the ITC space (chance 1 / n) and how often the retrieved description is of the diagram's figure
family (chance: the sum of the squared family shares), before and after `--steps` alignment steps.

The stage starts from a symbol-stage checkpoint of the pipeline (its MAE encoder and decoder) with a freshly
initialised GS-Former of `geox-tiny` as registered, so that an older checkpoint (whose GS-Former, untouched
by the MAE and symbol stages, carries the Q-Former config it was written with) measures the current one.

    python benchmarks/geometry_alignment_heldout.py DATA_DIR RUN_DIR/symbol.safetensors --steps 100

Measured (`/tmp/geo_runs/a3/seed0`: the ablation's seed-0 data and symbol checkpoint, 100 steps, batch 16,
lr 5e-4): R@1 0.01 -> 0.03 (chance 0.01), family match 0.20 -> 0.43 (chance 0.20); `--steps 300`: R@1 0.03,
family match 0.56. That run's own alignment (same data, checkpoint and budget, the former Q-Former
init/dropout): R@1 0.01, family match 0.20, chance on both. R@1 stays low, likely (not measured) because
the descriptions within a family differ mostly in their point letters, small in a 64 px diagram.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import torch

import vlzoo.core as vz
from vlzoo.core.train import ImageTextDataModule
from vlzoo.core.weights import save
from vlzoo.geometry.pipeline import train_stage


@torch.no_grad()
def heldout_retrieval(model: torch.nn.Module, data_dir: Path) -> dict[str, float]:
    records = {r["id"]: r for r in json.loads((data_dir / "geo-toyworld.json").read_text())["test"]}
    data = ImageTextDataModule(
        data="geo-toyworld", data_dir=str(data_dir), model="geox-tiny", batch_size=64, num_workers=0
    )
    data.setup("test")
    model.eval()
    images, texts, ids = [], [], []
    for batch in data.test_dataloader():
        image, text = model.retrieval_features(batch)
        images.append(image)
        texts.append(text)
        ids += list(batch["id"])
    best = (torch.cat(images) @ torch.cat(texts).T).argmax(1)
    family = [records[i]["family"] for i in ids]
    shares = Counter(family)
    return {
        "r1": float((best == torch.arange(len(best))).float().mean()),
        "r1_chance": 1 / len(best),
        "family": sum(family[i] == family[j] for i, j in enumerate(best.tolist())) / len(best),
        "family_chance": sum((n / len(family)) ** 2 for n in shares.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="a geo-toyworld directory (with geo-toyworld.json)")
    parser.add_argument("symbol", type=Path, help="the pipeline's symbol-stage weights")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    trained = vz.create_model("geox-tiny", pretrained=args.symbol, stage="symbol")
    torch.manual_seed(args.seed)
    start = vz.create_model("geox-tiny", stage="align")
    for name in ("mae", "decoder", "projector"):
        getattr(start, name).load_state_dict(getattr(trained, name).state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        first = save(start, Path(tmp) / "start.safetensors")
        print("before alignment:", heldout_retrieval(start, args.data_dir), flush=True)
        weights = train_stage(
            "geox-tiny",
            "align",
            args.data_dir,
            tmp,
            steps=args.steps,
            batch_size=args.batch,
            lr=args.lr,
            pretrained=first,
            seed=args.seed,
        )
        aligned = vz.create_model("geox-tiny", pretrained=weights, stage="align")
        print(f"after {args.steps} alignment steps:", heldout_retrieval(aligned, args.data_dir), flush=True)


if __name__ == "__main__":
    main()
