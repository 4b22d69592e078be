"""Face and pseudo-text evaluation: `vlzoo-person eval face-attributes` and `eval pseudo-text`.

face-attributes: FLIP's downstream protocol on CelebA-format data (CelebA itself, face-toyworld): the
encoder frozen, one linear classifier per binary attribute (the core's `linear_probe`: L2-regularized
logistic regression, its strength chosen on a held-out part of the training split) trained on `train_split`
and scored on `split`. Reported per attribute with the majority-class baseline (the accuracy of always
answering the training split's most frequent value), and their means: CelebA's "mean accuracy".

pseudo-text: the divide-conquer-combine generator (`vlzoo.person.pseudo_text`) run on images whose
attributes are known (person-toyworld's `attributes`, a face table's 0/1 columns): per attribute group, how
often the phrase kept names the image's true value, against chance (one over the group's candidates).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from vlzoo.core.data import build_source, generated_datasets, infer_data_kind
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import (
    eval_loader,
    evaluation_runner,
    linear_probe,
    load_eval_model,
    print_skip_note,
    resolve_eval_data,
    with_skips,
    write_json,
)
from vlzoo.person.data.faces import CELEBA_ATTR_FILE, CelebASource

__all__ = [
    "encode_attribute_set",
    "evaluate_face_attributes",
    "evaluate_pseudo_text",
    "face_attribute_probe",
    "majority_baseline",
    "pseudo_text_metrics",
]


# ----------------------------------------------------------------------------------- face attributes


def majority_baseline(train_labels: torch.Tensor, test_labels: torch.Tensor) -> torch.Tensor:
    """`[A]` percent accuracy on `test_labels [N, A]` of answering each attribute's most frequent training
    value (`train_labels [M, A]`, 0/1; a tie answers 0)."""
    majority = (train_labels.float().mean(0) > 0.5).long()
    return 100.0 * (test_labels.long() == majority).float().mean(0)


def face_attribute_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    names: Sequence[str],
    seed: int = 0,
) -> dict[str, Any]:
    """One linear probe per attribute column of the 0/1 `labels [N, A]` on frozen `features [N, D]`.

    Returns percent `mean_accuracy`, `mean_majority_baseline`, and per attribute `accuracy`,
    `majority_baseline` and the probe's `best_weight_decay`.
    """
    if train_labels.ndim != 2 or train_labels.shape[1] != len(names) or test_labels.shape[1] != len(names):
        raise DataError(
            f"attribute labels must be [N, {len(names)}], got {tuple(train_labels.shape)} and "
            f"{tuple(test_labels.shape)}"
        )
    baseline = majority_baseline(train_labels, test_labels)
    per_attribute: dict[str, dict[str, float]] = {}
    for column, name in enumerate(names):
        result = linear_probe(
            train_features, train_labels[:, column], test_features, test_labels[:, column], seed=seed
        )
        per_attribute[name] = {
            "accuracy": float(result["accuracy"]),
            "majority_baseline": float(baseline[column]),
            "best_weight_decay": float(result["best_weight_decay"]),
        }
    accuracies = [v["accuracy"] for v in per_attribute.values()]
    return {
        "mean_accuracy": sum(accuracies) / len(accuracies),
        "mean_majority_baseline": float(baseline.mean()),
        "attributes": per_attribute,
    }


@torch.inference_mode()
def encode_attribute_set(
    net: nn.Module, dataset: CelebASource, batch_size: int = 128, workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(features [N, D], labels [N, A])`: frozen, L2-normalized `encode_image` features of every readable
    image of `dataset` and its attributes (skipped images drop out of both, and are counted)."""
    features, labels = [], []
    device = next(net.parameters()).device
    for batch in eval_loader(net, dataset, batch_size, workers, captions=False):
        if not batch["id"]:
            continue
        out = net.encode_image(batch["image"].to(device), normalize=True)
        features.append(torch.nn.functional.normalize(out.float(), dim=-1).cpu())
        labels.append(batch["attributes"].long())
    if not features:
        raise DataError(f"{dataset.root}: no readable image")
    return torch.cat(features), torch.cat(labels)


def celeba_root(data: str, data_dir: str | Path | None, generate: Mapping[str, Any] | None) -> Path:
    """The CelebA-layout folder `data` names: a folder, its `list_attr_celeba.txt`, or a generated face
    dataset's name (its files are written beside its caption table)."""
    if data in generated_datasets():
        return Path(resolve_eval_data(data, data_dir, generate)).parent
    path = Path(data)
    root = path.parent if path.is_file() else path
    if not (root / CELEBA_ATTR_FILE).is_file():
        raise ConfigError(f"{data}: not a CelebA folder (no {CELEBA_ATTR_FILE}) nor a generated face dataset")
    return root


@evaluation_runner
@torch.inference_mode()
def evaluate_face_attributes(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 128,
    workers: int = 2,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    train_split: str = "train",
    attributes: str | Sequence[str] | None = None,
    generate: Mapping[str, Any] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """FLIP's attribute protocol on CelebA-format `data` (a CelebA folder, or `face-toyworld`): a linear
    probe per attribute on the frozen image encoder, trained on `train_split`, tested on `split`.

    Prints the per-attribute table; with `out`, writes `metrics.json` and `face_attributes.md`. Returns
    `face_attribute_probe`'s metrics plus the image counts.
    """
    root = celeba_root(data, data_dir, generate)
    names = attributes.split(",") if isinstance(attributes, str) else attributes
    train_set, test_set = (CelebASource(root, s, names) for s in (train_split, split))
    net, name = load_eval_model(model, pretrained)
    train_x, train_y = encode_attribute_set(net, train_set, batch_size, workers)
    test_x, test_y = encode_attribute_set(net, test_set, batch_size, workers)
    with torch.inference_mode(False):  # the probes themselves are trained
        metrics = face_attribute_probe(
            train_x.clone(), train_y.clone(), test_x.clone(), test_y.clone(), train_set.attribute_names
        )
    metrics.update(train_images=len(train_x), test_images=len(test_x))
    metrics = with_skips(metrics)
    title = f"{name} face attributes on {root.name} (linear probes, {train_split} → {split})"
    table = Table(title=title)
    for column in ("attribute", "accuracy", "majority baseline"):
        table.add_column(column, justify="right")
    for attribute, row in metrics["attributes"].items():
        table.add_row(attribute, f"{row['accuracy']:.2f}", f"{row['majority_baseline']:.2f}")
    table.add_row("mean", f"{metrics['mean_accuracy']:.2f}", f"{metrics['mean_majority_baseline']:.2f}")
    (console or Console()).print(table)
    print_skip_note(console, always=True)
    if out is not None:
        out = Path(out)
        write_json(metrics, out / "metrics.json")
        lines = [f"{title}\n", "| attribute | accuracy | majority baseline |", "|---|---|---|"]
        lines += [
            f"| {a} | {r['accuracy']:.2f} | {r['majority_baseline']:.2f} |"
            for a, r in metrics["attributes"].items()
        ]
        lines.append(f"| mean | {metrics['mean_accuracy']:.2f} | {metrics['mean_majority_baseline']:.2f} |")
        (out / "face_attributes.md").write_text("\n".join(lines) + "\n")
    return metrics


# ---------------------------------------------------------------------------------------- pseudo-text


def _known_values(batch: Mapping[str, Any], group: str) -> list[str | None]:
    """The true value of `group` for each image of `batch`: from an `attributes` mapping (person-toyworld,
    SYNTH-PEDES) or a column of that name (a face table's 0/1 attributes)."""
    if "attributes" in batch and isinstance(batch["attributes"], list):
        return [None if a is None or group not in a else str(a[group]) for a in batch["attributes"]]
    if group in batch:
        values = batch[group]
        return [str(v) for v in (values.tolist() if torch.is_tensor(values) else values)]
    return [None] * len(batch["id"])


def pseudo_text_metrics(
    chosen: Mapping[str, list[str | None]], known: Mapping[str, list[str | None]], sizes: Mapping[str, int]
) -> dict[str, Any]:
    """Per group: `accuracy` (percent of the images with a known value whose kept phrase names it; a group
    left out counts as wrong), `coverage` (percent kept), `precision` (percent right among kept) and
    `chance` (100 / number of candidates); and their means over the groups."""
    groups: dict[str, dict[str, float]] = {}
    for name, picks in chosen.items():
        pairs = [(c, k) for c, k in zip(picks, known[name]) if k is not None]
        if not pairs:
            continue
        kept = [(c, k) for c, k in pairs if c is not None]
        right = sum(c == k for c, k in kept)
        groups[name] = {
            "accuracy": 100.0 * right / len(pairs),
            "coverage": 100.0 * len(kept) / len(pairs),
            "precision": 100.0 * right / len(kept) if kept else 0.0,
            "chance": 100.0 / sizes[name],
            "images": len(pairs),
        }
    if not groups:
        raise DataError("no image carries a known value of any attribute group of the spec")
    mean = {k: sum(g[k] for g in groups.values()) / len(groups) for k in ("accuracy", "coverage", "chance")}
    return {"mean_accuracy": mean["accuracy"], "mean_coverage": mean["coverage"], "mean_chance": mean["chance"],
            "groups": groups}  # fmt: skip


@evaluation_runner
@torch.inference_mode()
def evaluate_pseudo_text(
    model: str | nn.Module,
    *,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 128,
    workers: int = 2,
    out: str | Path | None = None,
    data_kind: str | None = None,
    data_dir: str | Path | None = None,
    attributes: str | Any | None = None,
    threshold: float | None = None,
    generate: Mapping[str, Any] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Attribute correctness of divide-conquer-combine captions on images with known attributes.

    `data`: person-toyworld (default spec: `person_toyworld_spec`) or any data whose samples carry the
    attribute groups of the `attributes` YAML (or `PseudoTextSpec`). Prints a table per group; with `out`,
    writes `metrics.json` and `pseudo_captions.jsonl` (the generated caption of each image beside its known
    attributes).
    """
    from vlzoo.person.pseudo_text import (
        PseudoTextGenerator,
        PseudoTextSpec,
        load_attribute_spec,
        person_toyworld_spec,
    )

    if not attributes:
        spec = person_toyworld_spec()
    else:
        spec = attributes if isinstance(attributes, PseudoTextSpec) else load_attribute_spec(attributes)
    if threshold is not None:
        for group in spec.groups:
            group.threshold = threshold
    path = resolve_eval_data(data, data_dir, generate)
    source = build_source(path, data_kind or infer_data_kind(path), split, "all", {"train": False})
    net, name = load_eval_model(model, pretrained)
    from vlzoo.core import get_tokenizer

    generator = PseudoTextGenerator(net, get_tokenizer(net), spec)
    names = [g.name for g in spec.groups]
    chosen: dict[str, list[str | None]] = {n: [] for n in names}
    known: dict[str, list[str | None]] = {n: [] for n in names}
    records = []
    for batch in eval_loader(net, source, batch_size, workers, captions=False):
        if not batch["id"]:
            continue
        choices, _ = generator.choose(generator.encode(batch["image"]))
        captions = generator.captions(choices)
        for g, n in enumerate(names):
            chosen[n] += [generator.values[g][c] if c >= 0 else None for c in choices[:, g].tolist()]
            known[n] += _known_values(batch, n)
        records += [{"id": i, "caption": c} for i, c in zip(batch["id"], captions)]
    metrics = pseudo_text_metrics(chosen, known, {g.name: len(g.candidates) for g in spec.groups})
    metrics["images"] = len(records)
    metrics = with_skips(metrics)
    table = Table(title=f"{name} pseudo-text attribute correctness on {Path(str(data)).name} ({split})")
    for column in ("group", "accuracy", "coverage", "chance"):
        table.add_column(column, justify="right")
    for group, row in metrics["groups"].items():
        table.add_row(group, f"{row['accuracy']:.2f}", f"{row['coverage']:.2f}", f"{row['chance']:.2f}")
    table.add_row("mean", f"{metrics['mean_accuracy']:.2f}", f"{metrics['mean_coverage']:.2f}",
                  f"{metrics['mean_chance']:.2f}")  # fmt: skip
    (console or Console()).print(table)
    print_skip_note(console, always=True)
    if out is not None:
        out = Path(out)
        write_json(metrics, out / "metrics.json")
        lines = [
            json.dumps({**r, **{n: chosen[n][i] for n in names}}, default=str) for i, r in enumerate(records)
        ]
        (out / "pseudo_captions.jsonl").write_text("\n".join(lines) + "\n")
    return metrics
