"""Does the diagram get through GeoX's tiny pipeline? Probes of a run's checkpoints, stage by stage:

- the frozen MAE encoder: how different its patch features are (std across the patches of one diagram, and
  across diagrams at one patch, beside the features' mean magnitude), and a linear probe of the figure
  family (5 classes) from them, beside the same probe on the same ViT untrained and on the raw pixels
  (downsampled 2×): MAE training should not lose what a random ViT keeps;
- the same family probe on what the decoder is given: GS-Former's query states after alignment and the
  instruction-tuned model's visual prefix (if these can't tell a circle from a triangle, neither can the
  decoder);
- GS-Former after alignment: diagram ↔ formal-description R@1 on the test pairs (chance 1/n) and the
  fraction of patches its last sampler keeps in eval;
- the instruction-tuned model: how much its visual prefix varies across diagrams, and the program loss with
  each problem's own diagram against another problem's.

    python benchmarks/geometry_geox_ablation.py --out runs/ablation      # writes data/ and runs/geox/
    python benchmarks/geometry_diagram_probe.py runs/ablation/data runs/ablation/runs/geox
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import vlzoo.core as vz
from vlzoo.core.train import ImageTextDataModule
from vlzoo.geometry.data.toyworld import FAMILIES
from vlzoo.geometry.pipeline import alignment_recall, diagram_reliance


def _batches(data_dir: Path, split: str, limit: int):
    data = ImageTextDataModule(
        data="geo-toyworld", data_dir=str(data_dir), model="geox-tiny", batch_size=50, num_workers=0
    )
    data.setup("test" if split == "test" else "fit")
    loader = data.test_dataloader() if split == "test" else data.train_dataloader()
    seen = 0
    for batch in loader:
        yield batch
        seen += len(batch["id"])
        if seen >= limit:
            return


def _linear_probe(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor) -> float:
    """Held-out accuracy of an L2-regularised softmax regression (L-BFGS) on standardised features."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, x_test = (x - mean) / std, (x_test - mean) / std
    head = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=300)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + 1e-3 * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return float((head(x_test).argmax(1) == y_test).float().mean())


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="the run's geo-toyworld folder")
    parser.add_argument("run", type=Path, help="the folder of a variant's stage checkpoints")
    parser.add_argument("--n-probe", type=int, default=600, help="training diagrams of the family probe")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = json.loads((args.data / "geo-toyworld.json").read_text())
    family = {r["id"]: list(FAMILIES).index(r["family"]) for rows in records.values() for r in rows}
    mae = vz.create_model("geox-tiny", pretrained=args.run / "mae.safetensors", stage="mae").eval()
    torch.manual_seed(0)
    untrained = vz.create_model("geox-tiny", stage="mae").eval()
    aligned = vz.create_model("geox-tiny", pretrained=args.run / "align.safetensors", stage="align").eval()
    tuned = vz.create_model("geox-tiny", pretrained=args.run / "instruct.safetensors").eval()
    encoders = {
        "MAE features": mae.diagram_features,
        "untrained ViT": untrained.diagram_features,
        "raw pixels": lambda x: torch.nn.functional.avg_pool2d(x, 2),
        "aligned query states": aligned.query_states,
        "instruct visual prefix": tuned.visual_prefix,
    }

    def features(split: str, limit: int):
        feats, labels = {k: [] for k in encoders}, []
        for batch in _batches(args.data, split, limit):
            for k, encode in encoders.items():
                feats[k].append(encode(batch["image"]))
            labels += [family[i] for i in batch["id"]]
        return {k: torch.cat(v) for k, v in feats.items()}, torch.tensor(labels)

    (train, y_train), (test, y_test) = features("train", args.n_probe), features("test", 100)
    f = test["MAE features"][:, 1:]
    print(
        f"MAE patch features: std across one diagram's patches {f.std(1).mean():.3f}, across diagrams "
        f"{f.std(0).mean():.3f}, mean |feature| {f.abs().mean():.3f}"
    )
    probes = {k: _linear_probe(train[k].flatten(1), y_train, test[k].flatten(1), y_test) for k in encoders}
    print(
        f"family probe (5 classes, {len(y_test)} test diagrams, {len(y_train)} training): "
        + ", ".join(f"{k} {v:.1%}" for k, v in probes.items())
    )
    recall = alignment_recall(aligned, args.data)
    keep = aligned.patch_keep_mask(next(_batches(args.data, "test", 50))["image"])
    kept = "no samplers" if keep is None else f"{keep[:, 1:].mean():.1%}"
    print(
        f"alignment: R@1 diagram→formal {recall['i2t_r1']:.1%}, formal→diagram {recall['t2i_r1']:.1%} "
        f"(chance {1 / recall['n']:.1%}); patches the last sampler keeps: {kept}"
    )
    prefix = tuned.visual_prefix(next(_batches(args.data, "test", 50))["image"])
    loss = diagram_reliance(tuned, args.data)
    print(
        f"instruction-tuned: visual prefix std across diagrams {prefix.std(0).mean():.2e} (mean |prefix| "
        f"{prefix.abs().mean():.3f}); program loss own diagram {loss['own']:.5f}, another's {loss['shuffled']:.5f}"
    )


if __name__ == "__main__":
    main()
