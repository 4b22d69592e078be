"""`vlzoo demo` and every domain's `vlzoo-<domain> demo`: generate a toy world, train a tiny model on the
CPU, evaluate retrieval on its test split against chance and trivial matchers, write the report.

It is the whole product in miniature: real files in the field's formats, the Lightning loop with
checkpoints and logs, retrieval metrics over the whole test split, plots, and exported weights that
`create_model(..., pretrained=...)` loads back. A domain describes its demo as a `DemoSpec`:

    MEDICAL_DEMO = DemoSpec(
        name="vlzoo-medical demo", model="radclip-tiny", dataset="med-toyworld",
        generate={"n_train": 800, "n_val": 50, "n_test": 200, "seed": 0}, epochs=20, batch_size=32,
        module={"lr": 1e-3, "warmup_steps": 20, "model_overrides": {"lock_text_tower": False}},
        baselines=region_only_matcher,
    )
    run_demo(MEDICAL_DEMO, "vlzoo-medical-demo")
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from rich.console import Console

from vlzoo.core.data import KarpathySplits, bag_of_colours_baseline, build_source, ensure_generated
from vlzoo.core.data.kinds import get_generated_dataset
from vlzoo.core.errors import ConfigError
from vlzoo.core.eval import (
    PAIR_SCORE_CHANCE,
    GalleryImages,
    encode_retrieval_set,
    eval_loader,
    pair_scores,
    write_report,
)
from vlzoo.core.train import ImageTextDataModule, ZooModule

# Trivial matchers: (the dataset's index file, split, k) -> their text→image R@k (%) by name.
Baselines = Callable[[Path, str, int], dict[str, float]]


@dataclass(frozen=True)
class DemoSpec:
    """One demo: the generated dataset, the tiny model and how it trains, and what its retrieval is
    compared with. Sizes are for a 2-core CPU: a demo trains in a few minutes.

    Args:
        name: the command that runs it (`"vlzoo-medical demo"`), for the report's title.
        model: a registered model; `module` holds the `ZooModule` arguments besides it (`lr`,
            `warmup_steps`, `weight_decay`, `min_lr_ratio`, `model_overrides`, ...).
        dataset, generate: a registered generated dataset and its writer's arguments (sizes, seed).
        baselines: the trivial matchers' recall@`k` (%) on the test split, by name, from the dataset's
            index file; chance is always reported besides them.
        k: the recall the summary compares (text→image R@k).
        display: how a plot shows an image file (a GeoTIFF's RGB composite); default the decoded sample.
        data: further `ImageTextDataModule` arguments, e.g. `{"group_batches": {"key": "pair"}}` to train
            on hard-negative batches (each image beside its distractor).
        pair_key: a record field pairing each test image with its distractor: the report adds Winoground's
            text, image and group scores over those pairs (`vlzoo.core.eval.pair_scores`) beside chance.
        reference: a measured comparison the report states beside the result (another setting's figures and
            the command that measured them), e.g. the same demo trained on plain batches.
    """

    name: str
    model: str
    dataset: str
    generate: Mapping[str, Any]
    epochs: int
    batch_size: int = 64
    module: Mapping[str, Any] = field(default_factory=dict)
    baselines: Baselines | None = None
    k: int = 1
    display: Callable[[str], Any] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    pair_key: str | None = None
    reference: str | None = None
    num_workers: int = 2
    seed: int = 0

    def resized(
        self, epochs: int | None = None, n_train: int | None = None, num_workers: int | None = None
    ) -> DemoSpec:
        """The same demo with fewer (or more) epochs, training images or data workers."""
        generate = dict(self.generate) if n_train is None else {**self.generate, "n_train": n_train}
        return replace(
            self,
            epochs=self.epochs if epochs is None else epochs,
            generate=generate,
            num_workers=self.num_workers if num_workers is None else num_workers,
        )


@dataclass
class DemoResult:
    metrics: dict[str, Any]  # retrieval metrics over the whole test split, with its image/caption counts
    baselines: dict[str, float]  # chance and the spec's matchers, text→image R@k (%)
    paths: dict[str, Path]  # the report's files by name
    weights: Path  # the exported trained model
    trainer: L.Trainer
    seconds: float


def attribute_only_recall(attributes: Sequence[Hashable], text_to_image: torch.Tensor, k: int = 1) -> float:
    """Expected text→image R@k (%) of a matcher that sees one attribute of each image (its region, its
    class) and of each caption's own image, and ranks the images sharing it first, in random order: a
    caption whose image shares its attribute with m images is found in the top k with probability
    min(k, m) / m. What a model must beat to show it learned more than that attribute."""
    counts = Counter(attributes)
    owners = text_to_image.tolist()
    return 100.0 * sum(min(k, counts[attributes[i]]) / counts[attributes[i]] for i in owners) / len(owners)


def attribute_only_matchers(attributes: Mapping[str, Callable[[dict[str, Any]], Hashable]]) -> Baselines:
    """Baselines of `attribute_only_recall`, one per attribute: `{"region_only": lambda image:
    image["case"]["region"]}` reads each image's attribute from its entry in the Karpathy JSON (the
    ground truth a toy world writes there)."""

    def baselines(index: Path, split: str, k: int) -> dict[str, float]:
        images = [i for i in json.loads(Path(index).read_text())["images"] if i["split"] == split]
        owners = torch.tensor([n for n, image in enumerate(images) for _ in image["sentences"]])
        return {
            f"{name}_text_to_image_R@{k}": attribute_only_recall([get(i) for i in images], owners, k)
            for name, get in attributes.items()
        }

    return baselines


def _pair_indices(source: Any, key: str) -> torch.Tensor:
    """`[P, 2]` indices of the test images that share `key` two by two (an image and its distractor)."""
    members: dict[Hashable, list[int]] = {}
    for index, value in enumerate(source.field_values(key)):
        members.setdefault(value, []).append(index)
    return torch.tensor([m for m in members.values() if len(m) == 2], dtype=torch.long).view(-1, 2)


def _fit(spec: DemoSpec, data_dir: Path, run_dir: Path) -> tuple[ZooModule, L.Trainer]:
    module_args = dict(spec.module)
    overrides = module_args.get("model_overrides")
    module = ZooModule(spec.model, **module_args)
    data = ImageTextDataModule(
        spec.dataset,
        data_dir=str(data_dir),
        generate=dict(spec.generate),
        model=spec.model,
        model_overrides=overrides,
        batch_size=spec.batch_size,
        num_workers=spec.num_workers,
        seed=spec.seed,
        **dict(spec.data),
    )
    # metrics.csv and the exported weights in run_dir itself, TensorBoard's events in run_dir/tensorboard
    loggers = [
        CSVLogger(run_dir, name="", version=""),
        TensorBoardLogger(run_dir, name="tensorboard", version=""),
    ]
    trainer = L.Trainer(
        max_epochs=spec.epochs,
        accelerator="cpu",
        default_root_dir=run_dir,
        logger=loggers,
        callbacks=[ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True)],
        check_val_every_n_epoch=max(spec.epochs // 3, 1),
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        enable_model_summary=False,
    )
    trainer.fit(module, data)
    return module, trainer


def run_demo(
    spec: DemoSpec | None = None, out_dir: str | Path = "vlzoo-demo", console: Console | None = None
) -> DemoResult:
    """Run `spec` (default the core's toyworld demo) end to end, writing everything under `out_dir`:
    `data/` (the generated dataset), `run/` (logs, checkpoints, `model.safetensors`), and the report
    (`metrics.json` and plots)."""
    spec = spec or TOYWORLD_DEMO
    console = console or Console()
    out = Path(out_dir)
    started = time.perf_counter()
    L.seed_everything(spec.seed, verbose=False)
    generated = get_generated_dataset(spec.dataset)
    if generated is None:
        raise ConfigError(f"demo {spec.name!r}: {spec.dataset!r} is not a registered generated dataset")
    index = ensure_generated(spec.dataset, out / "data", spec.generate)
    console.print(f"[bold]{spec.dataset}[/]: {dict(spec.generate)} in {index.parent}")
    module, trainer = _fit(spec, out / "data", out / "run")

    test = build_source(str(index), generated.kind, "test", "all", {"train": False})
    model = module.model.eval()
    encoded = encode_retrieval_set(model, eval_loader(model, test, spec.batch_size))
    metrics = encoded.metrics()
    key = f"text_to_image_R@{spec.k}"
    if key not in metrics:
        raise ConfigError(
            f"demo {spec.name!r}: k={spec.k} is not one of the recalls computed ({sorted(metrics)})"
        )
    baselines = {f"chance_{key}": 100.0 * min(spec.k, metrics["images"]) / metrics["images"]}
    if spec.baselines is not None:
        baselines.update(spec.baselines(index, "test", spec.k))
    report = {"model": spec.model, "dataset": spec.dataset, "test": metrics, "baselines": baselines}
    if spec.reference is not None:
        report["reference"] = spec.reference
    if spec.pair_key is not None and encoded.skipped == 0:  # pairs index the gallery: only when complete
        pairs = _pair_indices(test, spec.pair_key)
        report["pair_scores"] = pair_scores(
            encoded.image_features, encoded.text_features, encoded.text_to_image, pairs
        )
        report["pair_scores_chance"] = dict(PAIR_SCORE_CHANCE)
    seconds = round(time.perf_counter() - started, 1)
    paths = write_report(
        out,
        {**report, "seconds": seconds},
        title=f"{spec.name}: {spec.model} on {spec.dataset} (test split)",
        images=GalleryImages.of(test, encoded, display=spec.display),
        console=console,
        **encoded.plots(),
    )
    weights = out / "run" / "model.safetensors"
    compared = " and ".join(f"{name.removesuffix('_' + key)} {v:.1f}%" for name, v in baselines.items())
    if "pair_scores" in report:
        scores = " / ".join(f"{report['pair_scores'][k]:.1f}" for k in PAIR_SCORE_CHANCE)
        chance = " / ".join(f"{v:.1f}" for v in PAIR_SCORE_CHANCE.values())
        compared += f" · pair scores text / image / group {scores}% vs chance {chance}%"
    if spec.reference is not None:
        compared += f" · {spec.reference}"
    console.print(
        f"{spec.name}: text→image R@{spec.k} {metrics[key]:.1f}% vs {compared} · weights {weights} · "
        f"checkpoint {out / 'run' / 'checkpoints' / 'last.ckpt'} · report {paths.get('json', out)} · "
        f"{seconds:.0f} s"
    )
    return DemoResult(metrics, baselines, paths, weights, trainer, seconds)


# ------------------------------------------------------------------------------------ the core's demo


def colours_only_matcher(index: Path, split: str, k: int) -> dict[str, float]:
    """A matcher that sees only colours: the colours a caption names against those in each image."""
    if k != 1:
        raise ConfigError(f"the colours-only matcher gives R@1 only, not R@{k}")
    return {
        "bag_of_colours_text_to_image_R@1": 100.0
        * bag_of_colours_baseline(KarpathySplits(index, split, captions="all"))
    }


# Why the demo's tiny CLIP is set up as it is (each choice made on the validation split, the "val R@1" column of
# `benchmarks/hard_negatives.py`, which prints the test figures beside it):
# - The ViT pools its patch tokens by max (timm's `global_pool="max"`), not by its class token: at random init the
#   class token's output is the same for every toyworld image (~90 % identical background), and training sat
#   ~80 steps at loss ln(batch); the max lets the objects' patches through from the first step.
# - Its position table starts from sine-cosine: with timm's N(0, 0.02) the image embedding can't tell "A above
#   B" from "A below B" (`--probe`: 56 %, chance 50 %), with sine-cosine it can (92 %).
# - A convolutional stem (`stem="conv"`, 32 channels doubling to 128 on the same 8×8 grid) instead of the linear
#   8×8 patch embedding: toyworld's small shapes are ~13 pixels wide and straddle patch borders; with the stem the
#   shape pairs' R@1 goes from ~70 % to ~92 %, and the text tower, no longer waiting on the image tower,
#   begins to bind word order to the direction word (the relation pairs' group score leaves 0).
# - The text tower is 2 layers × 128 wide (clip-vit-tiny's own: 4 × 64) with a 20-token context: toyworld's longest
#   caption is 17 tokens with its start and end, and under the causal mask the pooling end token never sees the
#   padding after it, so the shorter context changes no output.
# - AdamW runs fused (one kernel instead of per-tensor ops over CLIP's 49408-row token table: 60 -> 6 ms a step)
#   and each data worker keeps the decoded images (`cache_decoded`), which bought 24 epochs for 18's CPU time.
# Measured over 4 training seeds, two runs at once on a loaded machine (`--modes hard --seeds 0 2 --jobs 2`, then
# `1 3`): test R@1 85.0 / 83.2 / 88.0 / 80.5, group 80 / 74 / 85 / 73, validation R@1 86.4 / 85.9 / 87.4 / 83.0;
# the patch stem's were 70.6 / 65.8 / 69.8 / 73.4, group 58 / 49 / 52 / 57, validation 79.0 / 68.8 / 77.8 / 75.9.
# The stem costs ~13 % more time per run; a 16-channel stem: R@1 72.9 / 82.5 / 79.3 / 79.2, validation mean 83.2.
TOYWORLD_DEMO = DemoSpec(
    name="vlzoo demo",
    model="clip-vit-tiny",
    dataset="toyworld",
    generate={"n_train": 3000, "n_val": 200, "n_test": 200, "image_size": 64, "seed": 0},
    epochs=24,
    batch_size=128,
    module={
        "lr": 2e-3,
        "warmup_steps": 50,
        "weight_decay": 0.05,
        "min_lr_ratio": 0.05,
        "fused": True,
        "model_overrides": {
            "vision": {"pool": "max", "pos_embed_init": "sincos", "stem": "conv", "stem_width": 32},
            "text": {"layers": 2, "width": 128, "context_length": 20},
        },
    },
    baselines=colours_only_matcher,
    # Hard-negative batches (NegCLIP-style): every image beside its distractor, so that each batch asks the
    # model to bind shapes, sizes and sides to the right object instead of matching a bag of words.
    data={"group_batches": {"key": "pair", "per_group": 2}, "data_options": {"cache_decoded": 3000}},
    # The pair scores show what R@1 hides: whether the model tells an image from its distractor.
    pair_key="pair",
    reference=(
        "plain batches, same model and epochs: R@1 84.5%, pair scores 81.0 / 80.0 / 77.0% "
        "(python benchmarks/hard_negatives.py --modes plain)"
    ),
)

__all__ = [
    "TOYWORLD_DEMO",
    "DemoResult",
    "DemoSpec",
    "attribute_only_matchers",
    "attribute_only_recall",
    "colours_only_matcher",
    "run_demo",
]
