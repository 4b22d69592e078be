"""Batching: transform and tokenize a list of samples into tensors, and count the samples that were skipped.

Sources return skip markers instead of raising (see `vlzoo.core.data.sources`); the collator drops them and
lists them in `batch["skipped"]`, so the count survives DataLoader worker processes and reaches the training
loop, where a `SkipCounter` sums them per epoch and stops the run when the rate passes a threshold.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import get_worker_info

from vlzoo.core.data.sources import Sample, is_skipped
from vlzoo.core.errors import DataError

Tokenizer = Callable[[list[str]], Any]  # ClipTokenizer / HFTokenizer → TokenizedText
Transform = Callable[[Any], torch.Tensor]
CaptionChoice = Literal["random", "first", "all"]


def flatten_captions(texts_per_image: Sequence[Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """`[[a, b], [c]]` → `([a, b, c], tensor([0, 0, 1]))`: caption i belongs to image `text_to_image[i]`.

    The index is what `retrieval_metrics(image_features, text_features, text_to_image)` expects.
    """
    flat = [t for texts in texts_per_image for t in texts]
    owner = [i for i, texts in enumerate(texts_per_image) for _ in texts]
    return flat, torch.tensor(owner, dtype=torch.long)


class ImageTextCollator:
    """samples → `{"image": FloatTensor[B,C,H,W], "text": TokenizedText, "id": list, "skipped": list, ...}`.

    - `transform` maps one decoded image to a tensor (torchvision or a `build_transform` albumentations
      wrapper), or to a dict of tensors with `"image"` among them (several views: multi-crop, a volume's
      slice mask): each key is stacked into the batch. `tokenizer` is called once per batch.
    - `text_key`: the caption field of single-caption samples. Samples with `"texts"` (several captions):
      `captions="random"` picks one per sample (training), `"first"` the first, `"all"` keeps every one and
      adds `batch["text_to_image"]` (LongTensor, caption row → image row in this batch) for retrieval
      evaluation. The raw strings of the tokenized rows are in `batch["captions"]`.
    - Random picks come from a generator seeded with `seed` and, in a DataLoader worker, with the worker's
      seed, so that workers don't repeat each other's choices and runs with `torch.manual_seed` repeat.
    - `"negative_texts"` (a sample's hard-negative captions, for NegCLIP's loss): in training one per sample,
      picked as its caption is, tokenized as `batch["negative_text"]`.
    - Other keys: ints/bools → LongTensor, floats → FloatTensor, same-shape tensors → stacked, the rest
      (ids, strings, lists) stay lists. Keys starting with `__` (shard bookkeeping) are dropped.
    - Skip markers are dropped and listed as `(path, reason)` in `batch["skipped"]`. A batch whose samples
      were all skipped has an empty `"id"` list and `image` of shape `[0]`: skip such a step.
    """

    def __init__(
        self,
        transform: Transform,
        tokenizer: Tokenizer | None,
        text_key: str = "text",
        captions: CaptionChoice = "random",
        seed: int = 0,
    ):
        if captions not in ("random", "first", "all"):
            raise DataError(f"captions must be 'random', 'first' or 'all', got {captions!r}")
        self.transform = transform
        self.tokenizer = tokenizer
        self.text_key = text_key
        self.captions = captions
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._generator_owner: tuple[int, int] | None = None

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        kept = [s for s in samples if not is_skipped(s)]
        skipped = [(str(s.get("path")), str(s.get("reason"))) for s in samples if is_skipped(s)]
        kept, uncaptioned = self._split_uncaptioned(kept)
        skipped += uncaptioned
        batch: dict[str, Any] = {"skipped": skipped, "id": [s.get("id") for s in kept]}
        if not kept:
            batch["image"] = torch.empty(0)
            return batch
        views = [self._to_tensor(s) for s in kept]
        if isinstance(views[0], Mapping):  # several views per sample: {"image", "global_crops", ...}
            batch.update({key: torch.stack([v[key] for v in views]) for key in views[0]})
        else:
            batch["image"] = torch.stack(views)
        texts, text_to_image = self._texts(kept)
        if texts is not None:
            batch["captions"] = texts
            if self.tokenizer is not None:
                batch["text"] = self.tokenizer(texts)
            if text_to_image is not None:
                batch["text_to_image"] = text_to_image
        negatives = self._negative_texts(kept)
        if negatives is not None and self.tokenizer is not None:
            batch["negative_text"] = self.tokenizer(negatives)
        consumed = {"image", "id", "path", self.text_key, "texts", "negative_texts"}
        for key in kept[0]:
            if key not in consumed and not key.startswith("__") and all(key in s for s in kept):
                batch[key] = _collate_values([s[key] for s in kept])
        return batch

    def _split_uncaptioned(self, kept: list[Sample]) -> tuple[list[Sample], list[tuple[str, str]]]:
        """A sample without a caption among captioned ones (a shard member lost) is a counted skip: its batch
        would otherwise reach a contrastive loss without `text`."""
        has_text = [self.text_key in s or "texts" in s for s in kept]
        if self.tokenizer is None or all(has_text) or not any(has_text):
            return kept, []
        lost = [
            (str(s.get("path", s.get("id"))), "no caption, unlike the other samples of its batch")
            for s, ok in zip(kept, has_text)
            if not ok
        ]
        return [s for s, ok in zip(kept, has_text) if ok], lost

    def _to_tensor(self, sample: Sample) -> torch.Tensor | Mapping[str, torch.Tensor]:
        out = self.transform(sample["image"])
        where = sample.get("path", sample.get("id"))
        if isinstance(out, Mapping):
            if "image" not in out or not all(torch.is_tensor(v) for v in out.values()):
                raise DataError(
                    f"the transform returned a dict for {where} without an 'image' tensor or with values "
                    f"that are not tensors (keys: {sorted(out)})"
                )
            return out
        if not torch.is_tensor(out):
            raise DataError(
                f"the transform returned {type(out).__name__} for {where}, not a tensor or a dict of "
                "tensors; end it with ToTensor (torchvision) or use build_transform"
            )
        return out

    def _texts(self, kept: list[Sample]) -> tuple[list[str] | None, torch.Tensor | None]:
        if not all(self.text_key in s or "texts" in s for s in kept):
            return None, None  # e.g. classification samples: label only
        if self.captions != "all" and all(self.text_key in s for s in kept):
            return [s[self.text_key] for s in kept], None
        per_image = [s["texts"] if "texts" in s else [s[self.text_key]] for s in kept]
        if self.captions == "all":
            return flatten_captions(per_image)
        if self.captions == "first":
            return [t[0] for t in per_image], None
        gen = self._rng()
        return [t[int(torch.randint(len(t), (), generator=gen))] for t in per_image], None

    def _negative_texts(self, kept: list[Sample]) -> list[str] | None:
        """One hard-negative caption per sample (NegCLIP) from each sample's `"negative_texts"`, picked as its
        caption is; training only (`captions` "random" or "first"), and only when every sample has some."""
        if self.captions == "all" or not all(s.get("negative_texts") for s in kept):
            return None
        per_image = [s["negative_texts"] for s in kept]
        if self.captions == "first":
            return [t[0] for t in per_image]
        gen = self._rng()
        return [t[int(torch.randint(len(t), (), generator=gen))] for t in per_image]

    def _rng(self) -> torch.Generator:
        info = get_worker_info()
        owner = (os.getpid(), info.seed if info is not None else 0)
        if self._generator is None or self._generator_owner != owner:
            self._generator = torch.Generator().manual_seed((self.seed + owner[1]) % 2**63)
            self._generator_owner = owner
        return self._generator


def _collate_values(values: list[Any]) -> Any:
    first = values[0]
    if all(isinstance(v, bool | int | np.integer) for v in values):
        return torch.tensor([int(v) for v in values], dtype=torch.long)
    if all(isinstance(v, float | np.floating) for v in values):
        return torch.tensor([float(v) for v in values], dtype=torch.float32)
    if torch.is_tensor(first) and all(torch.is_tensor(v) and v.shape == first.shape for v in values):
        return torch.stack(values)
    return values


@dataclass
class SkipCounter:
    """Counts skipped samples over an epoch and stops the run when too many files are unreadable.

    `update(seen, skipped)` after each batch (`seen` counts skipped samples too), or `update_from_batch`;
    `check(threshold)` raises `DataError` naming example files once `rate` passes `threshold`
    (a fraction: 0.01 = 1%); `reset()` at each epoch start. Under DDP, sum `seen`/`skipped` across ranks
    before `check` for a global rate.
    """

    max_examples: int = 5
    seen: int = 0
    skipped: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)

    def update(self, batch_size_seen: int, skipped_list: Sequence[tuple[str, str]]) -> None:
        self.seen += batch_size_seen
        self.skipped += len(skipped_list)
        room = self.max_examples - len(self.examples)
        if room > 0:
            self.examples.extend((str(p), str(r)) for p, r in list(skipped_list)[:room])

    def update_from_batch(self, batch: dict[str, Any]) -> None:
        skipped = batch.get("skipped", [])
        self.update(len(batch.get("id", [])) + len(skipped), skipped)

    @property
    def rate(self) -> float:
        return self.skipped / self.seen if self.seen else 0.0

    def check(self, threshold: float = 0.01) -> None:
        if self.rate <= threshold:
            return
        listed = "\n".join(f"  {path}: {reason}" for path, reason in self.examples)
        raise DataError(
            f"{self.skipped} of {self.seen} samples ({self.rate:.1%}) were unreadable and skipped, more than "
            f"the {threshold:.1%} allowed; for example:\n{listed}"
        )

    def reset(self) -> None:
        self.seen = self.skipped = 0
        self.examples = []


def images_of_captions(batch: Mapping[str, Any], user: str = "this") -> torch.Tensor:
    """The image of each caption of a collated batch: `batch["image"]` indexed by `batch["text_to_image"]`
    when the batch has several captions per image, else the images themselves (caption `j` with image `j`).
    `user` names the caller in the error raised when captions and images can't be paired."""
    images, owners = batch["image"], batch.get("text_to_image")
    if owners is not None:
        images = images[owners.to(images.device)]
    if len(images) != len(batch["text"]):
        raise DataError(
            f"{user} pairs captions with images: got {len(batch['text'])} captions for {len(images)} images "
            "and no 'text_to_image' saying which image each caption belongs to"
        )
    return images
