"""Evaluate a model on files: image-text retrieval, zero-shot and linear-probe classification.

These are what `vlzoo eval ...` runs; each returns its metrics and, given `out`, writes the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from vlzoo.core.data import ImageFolderClasses, ImageTextCollator, build_source, infer_data_kind
from vlzoo.core.eval import (
    SIMPLE_TEMPLATES,
    encode_images,
    linear_probe,
    print_table,
    retrieval_features,
    retrieval_metrics,
    write_report,
    zeroshot_classifier,
    zeroshot_metrics,
)
from vlzoo.core.registry import create_model, get_tokenizer, get_transforms


def _model(name: str, pretrained: str | None) -> torch.nn.Module:
    return create_model(name, pretrained=pretrained).eval()


def eval_loader(
    model_name: str, dataset: Dataset, batch_size: int = 128, workers: int = 0, captions: bool = True
) -> DataLoader:
    """Batches with the model's evaluation preprocessing and, with `captions`, every caption tokenized."""
    transform = get_transforms(model_name, train=False)
    tokenizer = get_tokenizer(model_name) if captions else None
    collate = ImageTextCollator(transform, tokenizer, captions="all")
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)


@dataclass
class RetrievalFeatures:
    """A retrieval set encoded: images, every caption, caption → image index, and how many were skipped."""

    image_features: torch.Tensor
    text_features: torch.Tensor
    text_to_image: torch.Tensor
    captions: list[str]
    skipped: int


@torch.inference_mode()
def encode_retrieval_set(model: torch.nn.Module, loader: DataLoader) -> RetrievalFeatures:
    """Encode every image and caption of `loader`; caption owners are re-indexed into the whole gallery."""
    images, texts, owners, captions, offset, skipped = [], [], [], [], 0, 0
    for batch in loader:
        skipped += len(batch["skipped"])
        if len(batch["image"]) == 0:
            continue
        image_features, text_features = retrieval_features(model, batch)
        images.append(image_features)
        texts.append(text_features)
        owners.append(batch.get("text_to_image", torch.arange(len(batch["image"]))) + offset)
        captions.extend(batch.get("captions", []))
        offset += len(batch["image"])
    return RetrievalFeatures(torch.cat(images), torch.cat(texts), torch.cat(owners), captions, skipped)


def _retrieval_source(data: str, split: str, kind: str | None = None) -> Dataset:
    """Every caption of every image of `data` (a file of any registered kind)."""
    return build_source(data, kind or infer_data_kind(data), split, "all", {"train": False})


@torch.inference_mode()
def evaluate_retrieval(
    model: str,
    data: str,
    pretrained: str | None = None,
    split: str = "test",
    batch_size: int = 128,
    workers: int = 2,
    out: str | None = None,
    data_kind: str | None = None,
) -> dict[str, Any]:
    """Image↔text retrieval on a Karpathy split (all captions per image), a CSV/JSONL of pairs, or data of
    any registered kind (`data_kind`, else from the file's suffix)."""
    source = _retrieval_source(data, split, data_kind)
    encoded = encode_retrieval_set(_model(model, pretrained), eval_loader(model, source, batch_size, workers))
    metrics = retrieval_metrics(encoded.image_features, encoded.text_features, encoded.text_to_image)
    title = f"{model} retrieval on {data} ({split})"
    if out:
        # The query grid shows gallery images by index: only possible when none was skipped.
        gallery = _GalleryImages(source) if not encoded.skipped else None
        write_report(
            out,
            metrics,
            title=title,
            image_features=encoded.image_features,
            text_features=encoded.text_features,
            text_to_image=encoded.text_to_image,
            captions=encoded.captions or None,
            images=gallery,
        )
    else:
        print_table(metrics, title=title)
    return metrics


@torch.inference_mode()
def evaluate_zeroshot(
    model: str,
    data: str,
    pretrained: str | None = None,
    templates: Sequence[str] | None = None,
    batch_size: int = 128,
    workers: int = 2,
    out: str | None = None,
) -> dict[str, Any]:
    """Zero-shot classification of an image folder (`root/<class>/<image>`) with prompt templates."""
    net = _model(model, pretrained)
    dataset = ImageFolderClasses(data)
    classifier = zeroshot_classifier(
        net, get_tokenizer(model), dataset.class_names, templates or SIMPLE_TEMPLATES
    )
    encoded = encode_images(net, eval_loader(model, dataset, batch_size, workers, captions=False))
    metrics = zeroshot_metrics(encoded.features, classifier, encoded.labels, classnames=dataset.class_names)
    _finish(metrics, f"{model} zero-shot on {data}", out)
    return metrics


@torch.inference_mode()
def evaluate_linear_probe(
    model: str,
    data: str,
    train_data: str,
    pretrained: str | None = None,
    batch_size: int = 128,
    workers: int = 2,
    out: str | None = None,
) -> dict[str, Any]:
    """Logistic regression on frozen image features: trained on `train_data`, tested on `data` (folders)."""
    net = _model(model, pretrained)
    train = encode_images(
        net, eval_loader(model, ImageFolderClasses(train_data), batch_size, workers, captions=False)
    )
    test = encode_images(
        net, eval_loader(model, ImageFolderClasses(data), batch_size, workers, captions=False)
    )
    with torch.inference_mode(False):  # the probe itself is trained
        metrics = linear_probe(
            train.features.clone(), train.labels.clone(), test.features.clone(), test.labels.clone()
        )
    _finish(metrics, f"{model} linear probe on {data}", out)
    return metrics


class _GalleryImages(Sequence):
    """The gallery's images, decoded only when a plot shows them."""

    def __init__(self, source: Dataset):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        return self.source[index]["image"]


def _finish(metrics: dict[str, Any], title: str, out: str | None) -> None:
    if out:
        write_report(Path(out), metrics, title=title)
    else:
        print_table(metrics, title=title)
