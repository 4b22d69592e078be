"""Identity retrieval metrics: Rank-K (CMC), mAP and mINP when any gallery item of the query's identity is a hit.

Person search (text → image, TBPS), person re-identification and face identification rank a gallery for
each query and count as correct *every* gallery item of the query's identity, not one paired item. The
definitions are those of IRRA's `rank` (the TBPS literature's protocol), per query with the gallery sorted
by descending similarity, ranks k = 1..G and match_k = 1 when item k has the query's identity:

- CMC@K = 1 when a match lies within the top K; Rank-K = mean over queries, in percent.
- AP (`ap="tbps"`) = Σ_k precision@k · match_k / (number of matches): non-interpolated, over the whole gallery.
- INP = (number of matches) / (rank of the last match); mINP = mean, in percent.

`ap="market1501"` is the trapezoidal AP of the Market-1501 evaluation code, which PLIP's released script
uses: with the matches at 0-based positions r_0 < r_1 < ..., AP = Σ_i (p_i + p'_i) / 2 / n, p_i =
(i + 1) / (r_i + 1), p'_i = i / r_i (1 when r_i = 0). It also averages Rank-K and AP over *all* queries,
a query without any match counting 0, where the TBPS protocol refuses such a query (IRRA's code fails on
one). The two AP definitions give different numbers: a table holds one of them, which the result names.

Ties: the order among equal similarities decides Rank-K, AP and INP, and `argsort` leaves it unspecified.
`ties="stable"` keeps the gallery's order among equal scores (deterministic, and what a sort that happens
to be stable does), `"optimistic"` puts matches first among equal scores, `"pessimistic"` last.

Queries are scored one chunk at a time: memory is O(chunk × gallery), as in `retrieval_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from vlzoo.core.errors import ConfigError, DataError

__all__ = ["IDENTITY_AP_PROTOCOLS", "identity_ranking", "identity_retrieval"]

APProtocol = Literal["tbps", "market1501"]
IdentityTies = Literal["stable", "optimistic", "pessimistic"]
IDENTITY_AP_PROTOCOLS = ("tbps", "market1501")
# Elements of one chunk's sorted block; the sort holds scores, int64 indices and the match flags of it.
_BLOCK_ELEMENTS = 1 << 22


def _check(
    query_features: torch.Tensor,
    gallery_features: torch.Tensor,
    query_ids: torch.Tensor | Sequence[int],
    gallery_ids: torch.Tensor | Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    for name, feats in (("query_features", query_features), ("gallery_features", gallery_features)):
        if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or not feats.is_floating_point():
            shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise DataError(f"{name} must be a floating-point tensor [N, D], got {shape}")
        if feats.shape[0] == 0:
            raise DataError(f"{name} is empty: shape {tuple(feats.shape)}")
        if not bool(torch.isfinite(feats).all()):
            raise DataError(f"{name} {tuple(feats.shape)} holds NaN or infinite values")
    if query_features.shape[1] != gallery_features.shape[1]:
        raise DataError(
            f"query_features {tuple(query_features.shape)} and gallery_features "
            f"{tuple(gallery_features.shape)} have different feature dimensions"
        )
    ids = []
    for name, values, feats in (
        ("query_ids", query_ids, query_features),
        ("gallery_ids", gallery_ids, gallery_features),
    ):
        t = torch.as_tensor(values)
        if t.ndim != 1 or t.shape[0] != feats.shape[0] or t.is_floating_point() or t.is_complex():
            raise DataError(
                f"{name} must be an integer tensor [{feats.shape[0]}] (one identity per row), "
                f"got {t.dtype} {tuple(t.shape)}"
            )
        ids.append(t.to(device=gallery_features.device, dtype=torch.long))
    return ids[0], ids[1]


def identity_ranking(
    query_features: torch.Tensor,
    gallery_features: torch.Tensor,
    query_ids: torch.Tensor | Sequence[int],
    gallery_ids: torch.Tensor | Sequence[int],
    *,
    top: int = 10,
    normalize: bool = True,
    ties: IdentityTies = "stable",
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(indices [Q, top], matches [Q, top])`: each query's best `top` gallery indices and whether each has
    the query's identity (the query-to-gallery figure of a report)."""
    q_ids, g_ids = _check(query_features, gallery_features, query_ids, gallery_ids)
    top = min(top, gallery_features.shape[0])
    q, g = _prepare(query_features, gallery_features, normalize)
    chunk = max(1, _BLOCK_ELEMENTS // g.shape[0])
    indices, matches = [], []
    for start in range(0, q.shape[0], chunk):
        order, match = _sorted_matches(q[start : start + chunk], g, q_ids[start : start + chunk], g_ids, ties)
        indices.append(order[:, :top])
        matches.append(match[:, :top])
    return torch.cat(indices), torch.cat(matches)


def _prepare(
    query: torch.Tensor, gallery: torch.Tensor, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = torch.promote_types(query.dtype, torch.float32)  # half-precision scores tie far too often
    query, gallery = query.to(dtype), gallery.to(device=query.device, dtype=dtype)
    if normalize:
        query, gallery = F.normalize(query, dim=-1), F.normalize(gallery, dim=-1)
    return query, gallery


def _sorted_matches(
    query: torch.Tensor, gallery: torch.Tensor, q_ids: torch.Tensor, g_ids: torch.Tensor, ties: IdentityTies
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gallery order per query (descending score, ties as asked) and the match flags in that order."""
    scores = query @ gallery.T  # [chunk, G]
    same = g_ids[None, :] == q_ids[:, None]
    if ties == "stable":
        order = torch.argsort(scores, dim=1, descending=True, stable=True)
    else:
        # Two stable sorts: first by match (first or last as asked), then by score, which keeps that
        # order among equal scores.
        pre = torch.argsort(same.to(torch.int8), dim=1, descending=ties == "optimistic", stable=True)
        order = pre.gather(1, torch.argsort(scores.gather(1, pre), dim=1, descending=True, stable=True))
    return order, same.gather(1, order)


def identity_retrieval(
    query_features: torch.Tensor,
    gallery_features: torch.Tensor,
    query_ids: torch.Tensor | Sequence[int],
    gallery_ids: torch.Tensor | Sequence[int],
    *,
    ap: APProtocol = "tbps",
    ks: Sequence[int] = (1, 5, 10),
    normalize: bool = True,
    ties: IdentityTies = "stable",
    chunk_size: int | None = None,
) -> dict[str, float | str]:
    """Rank-K, mAP and mINP (percent) of `query_features` searching `gallery_features`, a hit being any
    gallery row whose id equals the query's (see the module docstring for the definitions, `ap` and `ties`).

    `normalize`: compare by cosine similarity (IRRA normalizes both sides), else by dot product. Returns
    `{"R@1": ..., "R@5": ..., "R@10": ..., "mAP": ..., "mINP": ..., "ap_protocol": ap}`.

    Raises:
        DataError: bad shapes or values; with `ap="tbps"`, queries without any match in the gallery.
        ConfigError: an unknown `ap` or `ties`, or a K outside 1..gallery size.
    """
    if ap not in IDENTITY_AP_PROTOCOLS:
        raise ConfigError(f"ap must be one of {IDENTITY_AP_PROTOCOLS}, got {ap!r}")
    if ties not in ("stable", "optimistic", "pessimistic"):
        raise ConfigError(f"ties must be 'stable', 'optimistic' or 'pessimistic', got {ties!r}")
    q_ids, g_ids = _check(query_features, gallery_features, query_ids, gallery_ids)
    n_gallery = gallery_features.shape[0]
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_gallery for k in ks):
        raise ConfigError(f"ks must be ints in 1..{n_gallery} (the gallery size), got {ks}")
    q, g = _prepare(query_features, gallery_features, normalize)
    chunk = chunk_size or max(1, _BLOCK_ELEMENTS // n_gallery)
    cmc = torch.zeros(len(ks), dtype=torch.float64)
    ap_sum = inp_sum = 0.0
    no_match = 0
    positions = torch.arange(1, n_gallery + 1, device=g.device, dtype=torch.float64)
    ks_index = torch.tensor([k - 1 for k in ks], device=g.device)
    for start in range(0, q.shape[0], chunk):
        _, match = _sorted_matches(q[start : start + chunk], g, q_ids[start : start + chunk], g_ids, ties)
        match = match.to(torch.float64)
        hits = match.cumsum(1)  # matches up to and including rank k
        n_rel = hits[:, -1]
        found = n_rel > 0
        no_match += int((~found).sum())
        cmc += (hits[:, ks_index] > 0).sum(0).cpu()
        last = n_gallery - match.flip(1).argmax(1)  # 1-based rank of the last match (G+? when none: masked)
        inp_sum += float(torch.where(found, n_rel / last, 0.0).sum())
        if ap == "tbps":
            ap_sum += float(((hits / positions) * match).sum(1)[found].div(n_rel[found]).sum())
        else:
            # Market-1501's trapezoid: at the i-th match (0-based i, 0-based position r), the mean of the
            # precision just after it, (i+1)/(r+1), and just before it, i/r (1 at r = 0).
            i = hits - 1
            r = positions - 1
            after = (i + 1) / (r + 1)
            before = torch.where(r > 0, i / r.clamp_min(1), torch.ones_like(r))
            ap_sum += float((((after + before) / 2) * match).sum(1)[found].div(n_rel[found]).sum())
    n_queries = q.shape[0]
    if ap == "tbps" and no_match:
        raise DataError(
            f"{no_match} of {n_queries} queries have no gallery item of their identity: their AP is "
            "undefined under the TBPS protocol (use ap='market1501' to count them as 0)"
        )
    metrics: dict[str, float | str] = {f"R@{k}": float(100.0 * cmc[j] / n_queries) for j, k in enumerate(ks)}
    metrics["mAP"] = 100.0 * ap_sum / n_queries
    metrics["mINP"] = 100.0 * inp_sum / n_queries
    metrics["ap_protocol"] = ap
    return metrics
