"""Encode a whole evaluation set once, batch by batch, into normalized features kept on the CPU.

Every metric of :mod:`vlzoo.core.eval` works on precomputed features, so a model is run once per test set
whatever the number of metrics. Features land on the CPU in float32: a 100k-image gallery stays out of
accelerator memory, and mixed-precision towers don't leave half-precision scores that tie.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval.retrieval import retrieval_metrics

__all__ = [
    "EncodedImages",
    "EncodedRetrievalSet",
    "encode_images",
    "encode_pair_batch",
    "encode_retrieval_set",
    "encode_texts",
]


def encode_pair_batch(model: torch.nn.Module, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    """(image features, text features) of an evaluation batch: the model's own `retrieval_features(batch)`
    face when it has one (a volume encoder, a fusion model's uni-modal paths), else
    `encode_image(batch["image"])` and `encode_text(batch["text"])`."""
    own = getattr(model, "retrieval_features", None)
    if callable(own):
        return own(batch)
    return model.encode_image(batch["image"]), model.encode_text(batch["text"])


@dataclass
class EncodedImages:
    """``features [N, D]`` (L2-normalized, float32, CPU) and, when the batches carried them, ``labels [N]``
    and ``ids`` (a tensor, or a list for string ids)."""

    features: torch.Tensor
    labels: torch.Tensor | None = None
    ids: torch.Tensor | list | None = None

    def __len__(self) -> int:
        return self.features.shape[0]


def _resolve_device(model, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


class _EvalMode:
    """Puts a module in eval mode (dropout off, BatchNorm on running stats) and restores it afterwards."""

    def __init__(self, model):
        self.model = model
        self.was_training = getattr(model, "training", False)

    def __enter__(self):
        if hasattr(self.model, "eval"):
            self.model.eval()

    def __exit__(self, *exc):
        if self.was_training:
            self.model.train()


def _to_cpu_features(features) -> torch.Tensor:
    if isinstance(features, tuple):  # encode_* with output_tokens returns (pooled, tokens)
        features = features[0]
    # Renormalize in float32: a half-precision normalization leaves norms off by ~1e-3.
    return F.normalize(features.detach().float(), dim=-1).cpu()


def _gather(values: list) -> torch.Tensor | list | None:
    if not values:
        return None
    if all(isinstance(v, torch.Tensor) for v in values):
        return torch.cat([v.detach().cpu().reshape(-1) for v in values])
    return [item for v in values for item in (v.tolist() if isinstance(v, torch.Tensor) else v)]


@torch.inference_mode()
def encode_images(
    model, loader: Iterable[Mapping[str, object]], device: torch.device | str | None = None
) -> EncodedImages:
    """Runs ``model.encode_image(batch["image"], normalize=True)`` over ``loader``.

    Batches are dicts with ``"image"`` ``[B, C, H, W]`` and optionally ``"label"`` and ``"id"``; labels and
    ids are returned only if every batch has them (a partial column could not be aligned with the
    features). ``device`` defaults to the model's.
    """
    device = _resolve_device(model, device)
    features, labels, ids = [], [], []
    n_batches = n_labelled = n_with_ids = 0
    with _EvalMode(model):
        for batch in loader:
            if not isinstance(batch, Mapping) or "image" not in batch:
                found = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
                raise DataError(f"encode_images expects dict batches with an 'image' key, got {found}")
            images = batch["image"]
            if not isinstance(images, torch.Tensor) or images.ndim != 4:
                shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
                raise DataError(f"batch['image'] must be a tensor [B, C, H, W], got {shape}")
            features.append(_to_cpu_features(model.encode_image(images.to(device), normalize=True)))
            n_batches += 1
            if "label" in batch:
                labels.append(torch.as_tensor(batch["label"]))
                n_labelled += 1
            if "id" in batch:
                ids.append(batch["id"])
                n_with_ids += 1
    if not features:
        raise DataError("encode_images got an empty loader")
    return EncodedImages(
        features=torch.cat(features),
        labels=_gather(labels).long() if n_labelled == n_batches else None,
        ids=_gather(ids) if n_with_ids == n_batches else None,
    )


def _to_device(tokens, device: torch.device):
    return tokens.to(device) if hasattr(tokens, "to") else tokens


@torch.inference_mode()
def encode_texts(
    model,
    tokenizer: Callable[[list[str]], object],
    texts: Sequence[str],
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``[len(texts), D]`` normalized caption features, ``batch_size`` captions per forward pass."""
    if isinstance(texts, str):
        raise ConfigError("texts must be a sequence of captions, not one string")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    if len(texts) == 0:
        raise DataError("encode_texts got no texts")
    device = _resolve_device(model, device)
    texts = list(texts)
    with _EvalMode(model):
        parts = [
            _to_cpu_features(
                model.encode_text(_to_device(tokenizer(texts[i : i + batch_size]), device), normalize=True)
            )
            for i in range(0, len(texts), batch_size)
        ]
    return torch.cat(parts)


@dataclass
class EncodedRetrievalSet:
    """A retrieval set encoded: images, every caption, caption → image index, and how many samples were
    skipped (unreadable files, dropped by the collator)."""

    image_features: torch.Tensor
    text_features: torch.Tensor
    text_to_image: torch.Tensor
    captions: list[str]
    skipped: int

    def metrics(self, **options) -> dict[str, object]:
        """`retrieval_metrics(**options)` plus the counts every retrieval report carries: images, captions
        and skipped samples."""
        metrics = dict(
            retrieval_metrics(self.image_features, self.text_features, self.text_to_image, **options)
        )
        metrics.update(
            images=int(self.image_features.shape[0]),
            captions=int(self.text_features.shape[0]),
            skipped=int(self.skipped),
        )
        return metrics

    def plots(self) -> dict[str, object]:
        """The keywords of `write_report` (and `report`) that draw the retrieval plots."""
        return {
            "image_features": self.image_features,
            "text_features": self.text_features,
            "text_to_image": self.text_to_image,
            "captions": self.captions or None,
        }


@torch.inference_mode()
def encode_retrieval_set(model: torch.nn.Module, loader: Iterable[Mapping]) -> EncodedRetrievalSet:
    """Encode every image and caption of `loader` (batches of `ImageTextCollator(captions="all")`) with
    `encode_pair_batch`; caption owners are re-indexed into the whole gallery."""
    images, texts, owners, captions, offset, skipped = [], [], [], [], 0, 0
    for batch in loader:
        skipped += len(batch.get("skipped", ()))
        if len(batch["image"]) == 0:
            continue
        image_features, text_features = encode_pair_batch(model, batch)
        images.append(image_features)
        texts.append(text_features)
        owners.append(batch.get("text_to_image", torch.arange(len(batch["image"]))) + offset)
        captions.extend(batch.get("captions", []))
        offset += len(batch["image"])
    if not images:
        raise DataError(f"no readable sample to encode ({skipped} skipped)")
    return EncodedRetrievalSet(torch.cat(images), torch.cat(texts), torch.cat(owners), captions, skipped)
