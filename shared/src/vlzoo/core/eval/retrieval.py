"""Image-text retrieval metrics (R@K, median rank, mean recall) for galleries too large for one matrix.

A COCO-style test set has one image per several captions; a remote-sensing gallery may hold 100k images
and 500k captions, whose full similarity matrix (200 GB in float32) never fits. Queries are therefore
scored one chunk at a time against the whole gallery, and each query keeps a single number: the 0-based
rank of its correct item, i.e. how many gallery items score strictly higher (``ties="optimistic"``) or at
least as high (``ties="pessimistic"``) as the best-scoring correct one. Memory is
``O(chunk × gallery)``; time is that of the similarity blocks plus one comparison pass over each.

Ties: the optimistic rule puts the correct item first among equal scores (the usual "count strictly
higher" rule of retrieval evaluations); the pessimistic one puts it last. Both are deterministic, unlike
``argsort`` whose order among equal scores is unspecified. Real features rarely tie, but collapsed ones
(a constant text tower) do, and then the optimistic rule reports a perfect R@1: compare both to spot it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from vlzoo.core.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_RECALL_KS",
    "PAIR_SCORE_CHANCE",
    "auto_chunk_size",
    "median_rank",
    "pair_scores",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_ranks",
]

Ties = Literal["optimistic", "pessimistic"]
DEFAULT_RECALL_KS: tuple[int, ...] = (1, 5, 10)
# One similarity block of this many elements (256 MiB in float32; the ranking reuses it in place): big
# enough that the matrix product runs at full speed, small enough for any laptop.
_BLOCK_ELEMENTS = 1 << 26
# float32 counts 0./1. exactly up to 2**24; sum wider blocks in column slices of this width.
_EXACT_COUNT_COLUMNS = 1 << 23


def auto_chunk_size(gallery_size: int, block_elements: int = _BLOCK_ELEMENTS) -> int:
    """Queries per chunk so that one ``chunk × gallery`` similarity block holds ``block_elements``."""
    return max(1, min(block_elements // max(gallery_size, 1), 65536))


def _all_finite(features: torch.Tensor) -> bool:
    """True if no NaN or infinity, without the ``N × D`` boolean mask ``isfinite(x).all()`` would allocate
    (244 MiB for 500k captions of width 512: as much as a similarity block)."""
    if torch.isfinite(features.sum()).item():  # a NaN or inf anywhere makes the sum NaN or inf
        return True
    # The sum can also overflow with huge finite values: decide exactly, a slice of rows at a time.
    rows = max(1, (1 << 24) // max(features.shape[1], 1))
    return all(bool(torch.isfinite(features[i : i + rows]).all()) for i in range(0, features.shape[0], rows))


def _check_inputs(
    image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor
) -> torch.Tensor:
    """Validates shapes and values; returns ``text_to_image`` as int64 on the features' device."""
    for name, feats in (("image_features", image_features), ("text_features", text_features)):
        if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or not feats.is_floating_point():
            shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise DataError(f"{name} must be a floating-point tensor [N, D], got {shape}")
        if feats.shape[0] == 0:
            raise DataError(f"{name} is empty: shape {tuple(feats.shape)}")
        if not _all_finite(feats):
            raise DataError(f"{name} {tuple(feats.shape)} holds NaN or infinite values")
    if image_features.shape[1] != text_features.shape[1]:
        raise DataError(
            f"image_features {tuple(image_features.shape)} and text_features {tuple(text_features.shape)} "
            "have different feature dimensions"
        )
    t2i = torch.as_tensor(text_to_image)
    if t2i.ndim != 1 or t2i.shape[0] != text_features.shape[0] or t2i.is_floating_point() or t2i.is_complex():
        raise DataError(
            f"text_to_image must be an integer tensor [N_txt] = [{text_features.shape[0]}] (the image index "
            f"of each caption), got {t2i.dtype} {tuple(t2i.shape)}"
        )
    t2i = t2i.to(device=text_features.device, dtype=torch.long)
    n_img = image_features.shape[0]
    if int(t2i.min()) < 0 or int(t2i.max()) >= n_img:
        raise DataError(
            f"text_to_image values must lie in [0, {n_img}) for image_features {tuple(image_features.shape)}; "
            f"got min {int(t2i.min())}, max {int(t2i.max())}"
        )
    return t2i


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision scores tie far too often (bfloat16 has 8 mantissa bits); rank in at least float32.
    return torch.promote_types(dtype, torch.float32)


def _count_per_row(flags: torch.Tensor) -> torch.Tensor:
    """Row sums of a block of 0./1. floats (an in-place comparison), as int64.

    Comparing in place into the score block and summing floats is ~4x faster on CPU than summing a bool
    mask (which torch widens to int64, 8 bytes per score) and allocates nothing. Float sums of 0/1 are
    exact below 2**24, so wider galleries are summed in column slices.
    """
    width = _EXACT_COUNT_COLUMNS
    if flags.shape[1] <= width:
        return flags.sum(dim=1).long()
    return sum(flags[:, s : s + width].sum(dim=1).long() for s in range(0, flags.shape[1], width))


def _text_to_image_ranks(
    image_features: torch.Tensor, text_features: torch.Tensor, t2i: torch.Tensor, chunk: int, ties: Ties
) -> torch.Tensor:
    n_txt = text_features.shape[0]
    ranks = torch.empty(n_txt, dtype=torch.long, device=text_features.device)
    gallery_t = image_features.T
    for start in range(0, n_txt, chunk):
        stop = min(start + chunk, n_txt)
        scores = text_features[start:stop] @ gallery_t  # [chunk, N_img]
        # The correct score is read from the same block it is compared with: recomputing it as a
        # row-wise dot product could differ in the last bit and make the correct image outrank itself.
        # Advanced indexing copies, so the in-place comparison below doesn't overwrite it.
        correct = scores[torch.arange(stop - start, device=scores.device), t2i[start:stop]].unsqueeze(1)
        if ties == "optimistic":
            ranks[start:stop] = _count_per_row(scores.gt_(correct))
        else:
            ranks[start:stop] = _count_per_row(scores.ge_(correct)) - 1  # minus the image itself
        del scores  # else the next block is allocated while this one is alive: twice the memory
    return ranks


def _image_to_text_ranks(
    image_features: torch.Tensor, text_features: torch.Tensor, t2i: torch.Tensor, chunk: int, ties: Ties
) -> torch.Tensor:
    """Rank of each image's best-scoring caption among all captions; -1 for an image without captions."""
    n_img = image_features.shape[0]
    device = image_features.device
    # Captions grouped by image, so that a chunk of images owns one contiguous run of caption indices.
    order = torch.argsort(t2i, stable=True)
    sorted_images = t2i[order]
    bounds = torch.searchsorted(sorted_images, torch.arange(0, n_img + chunk, chunk, device=device)).tolist()
    ranks = torch.empty(n_img, dtype=torch.long, device=device)
    gallery_t = text_features.T
    for index, start in enumerate(range(0, n_img, chunk)):
        stop = min(start + chunk, n_img)
        scores = image_features[start:stop] @ gallery_t  # [chunk, N_txt]
        captions = order[bounds[index] : bounds[index + 1]]
        rows = t2i[captions] - start
        correct = scores[rows, captions]
        best = torch.full((stop - start,), float("-inf"), dtype=scores.dtype, device=device)
        best.scatter_reduce_(0, rows, correct, reduce="amax")
        if ties == "optimistic":
            # Correct captions never score strictly above the best correct one: all counted are wrong.
            ranks[start:stop] = _count_per_row(scores.gt_(best.unsqueeze(1)))
        else:
            at_least = _count_per_row(scores.ge_(best.unsqueeze(1)))
            correct_ties = torch.zeros_like(at_least).scatter_add_(0, rows, (correct >= best[rows]).long())
            ranks[start:stop] = at_least - correct_ties
        del scores
    has_caption = torch.bincount(t2i, minlength=n_img) > 0
    return torch.where(has_caption, ranks, torch.full_like(ranks, -1))


@torch.inference_mode()
def retrieval_ranks(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    chunk_size: int | None = None,
    ties: Ties = "optimistic",
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks of the correct items: ``(image_to_text [N_img], text_to_image [N_txt])``.

    Similarity is the dot product, i.e. cosine similarity for L2-normalized features. An image's rank is
    that of its best-ranked caption; an image with no caption gets -1 (it is a gallery distractor for
    text-to-image retrieval, not a query). ``chunk_size`` queries are scored at a time (default: a block of
    2**26 similarities). Any recall or rank statistic follows from these two vectors.
    """
    t2i = _check_inputs(image_features, text_features, text_to_image)
    if ties not in ("optimistic", "pessimistic"):
        raise ConfigError(f"ties must be 'optimistic' or 'pessimistic', got {ties!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1
    ):
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    dtype = _compute_dtype(torch.promote_types(image_features.dtype, text_features.dtype))
    images, texts = image_features.to(dtype), text_features.to(dtype)
    i2t_chunk = chunk_size or auto_chunk_size(texts.shape[0])
    t2i_chunk = chunk_size or auto_chunk_size(images.shape[0])
    i2t = _image_to_text_ranks(images, texts, t2i, int(i2t_chunk), ties)
    t2i_ranks = _text_to_image_ranks(images, texts, t2i, int(t2i_chunk), ties)
    return i2t, t2i_ranks


def recall_at_k(ranks: torch.Tensor, ks: Sequence[int]) -> list[float]:
    """Percent of queries whose correct item is within the top K, for each K; ranks < 0 are skipped."""
    valid = ranks[ranks >= 0]
    if valid.numel() == 0:
        return [float("nan")] * len(ks)
    return [100.0 * torch.count_nonzero(valid < k).item() / valid.numel() for k in ks]


def median_rank(ranks: torch.Tensor) -> float:
    """1-based median rank as the VSE++/SCAN evaluations report it: ``floor(median(0-based)) + 1``.

    The median of an even count averages the two middle ranks; the floor keeps the figure an integer rank
    comparable with published tables. Ranks < 0 (images without captions) are skipped.
    """
    ordered = torch.sort(ranks[ranks >= 0]).values  # torch.quantile refuses more than 2**24 values
    n = ordered.numel()
    if n == 0:
        return float("nan")
    middle = (ordered[(n - 1) // 2] + ordered[n // 2]).item() / 2
    return float(int(middle) + 1)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or int(k) != k or k < 1 for k in ks):
        raise ConfigError(f"ks must be positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    chunk_size: int | None = None,
    ks: Sequence[int] = DEFAULT_RECALL_KS,
    ties: Ties = "optimistic",
) -> dict[str, float]:
    """R@K in both directions, median ranks and mean recall, in percent as the COCO/RSICD papers report.

    ``text_to_image[j]`` is the index of the image that caption ``j`` describes; images may have any number
    of captions. Keys: ``image_to_text_R@{k}``, ``text_to_image_R@{k}``, ``image_to_text_median_rank``,
    ``text_to_image_median_rank`` and ``mean_recall`` (the mean of all the recalls: mR with the default
    K = 1, 5, 10). See the module docstring for chunking and ``ties``.
    """
    ks = _check_ks(ks)
    i2t, t2i = retrieval_ranks(image_features, text_features, text_to_image, chunk_size=chunk_size, ties=ties)
    metrics: dict[str, float] = {}
    recalls: list[float] = []
    for direction, ranks in (("image_to_text", i2t), ("text_to_image", t2i)):
        values = recall_at_k(ranks, ks)
        recalls += values
        metrics.update({f"{direction}_R@{k}": v for k, v in zip(ks, values)})
        metrics[f"{direction}_median_rank"] = median_rank(ranks)
    metrics["mean_recall"] = sum(recalls) / len(recalls)
    return metrics


# Chance of each Winoground score with two images and two captions in random order.
PAIR_SCORE_CHANCE = {"text_score": 25.0, "image_score": 25.0, "group_score": 100.0 / 6}


def pair_scores(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    pairs: torch.Tensor,
) -> dict[str, float]:
    """Winoground's scores (%) over minimal pairs: `pairs [P, 2]` holds the gallery indices of an image and
    its distractor (the same objects with one thing changed), each compared through its first caption.

    - text score: each image ranks its own caption above the other image's;
    - image score: each caption ranks its own image above the other;
    - group score: both. Chance is `PAIR_SCORE_CHANCE` (25 / 25 / 16.7).
    A model that only sees which objects are present scores near chance: this is the bag-of-words test that
    recall over a whole gallery hides.
    """
    pairs = torch.as_tensor(pairs, dtype=torch.long).cpu()
    owners = torch.as_tensor(text_to_image, dtype=torch.long).cpu()
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise DataError(
            f"pairs must be a non-empty [P, 2] tensor of gallery indices, got {tuple(pairs.shape)}"
        )
    n_images = image_features.shape[0]
    # the first caption of every image: the caption index where its owner first appears
    first = torch.full((n_images,), len(owners), dtype=torch.long)
    first.scatter_reduce_(0, owners, torch.arange(len(owners)), reduce="amin")
    if (first[pairs] == len(owners)).any():
        raise DataError("every image of a pair needs a caption")
    images = image_features.float().cpu()[pairs]  # [P, 2, D]
    texts = text_features.float().cpu()[first[pairs]]  # [P, 2, D]
    s = images @ texts.transpose(1, 2)  # s[p, i, c]: image i of pair p against caption c
    text_ok = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    image_ok = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    return {
        "text_score": 100.0 * text_ok.float().mean().item(),
        "image_score": 100.0 * image_ok.float().mean().item(),
        "group_score": 100.0 * (text_ok & image_ok).float().mean().item(),
        "pairs": len(pairs),
    }
