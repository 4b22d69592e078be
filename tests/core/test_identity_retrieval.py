"""`vlzoo.core.eval.identity_retrieval`: Rank-K, mAP (TBPS and Market-1501) and mINP against a brute-force
reference written from the definitions (ties included), and on a small case checked by hand."""

from __future__ import annotations

import pytest
import torch

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import identity_ranking, identity_retrieval


def brute_force(scores, query_ids, gallery_ids, ks, ap, ties):
    """Per query, a Python sort of the gallery by (-score, tie key), then the metrics term by term."""
    n_q, n_g = len(scores), len(scores[0])
    rank_k = {k: 0.0 for k in ks}
    ap_sum = inp_sum = 0.0
    for q in range(n_q):

        def key(j, q=q):
            positive = gallery_ids[j] == query_ids[q]
            tie = {"stable": j, "optimistic": (not positive, j), "pessimistic": (positive, j)}[ties]
            return (-scores[q][j], tie)

        order = sorted(range(n_g), key=key)
        match = [int(gallery_ids[j] == query_ids[q]) for j in order]
        n_rel = sum(match)
        for k in ks:
            rank_k[k] += 1.0 if any(match[:k]) else 0.0
        if n_rel == 0:
            continue
        positions = [p for p, m in enumerate(match) if m]  # 0-based
        if ap == "tbps":
            ap_sum += sum((i + 1) / (p + 1) for i, p in enumerate(positions)) / n_rel
        else:
            total = 0.0
            for i, p in enumerate(positions):
                before = 1.0 if p == 0 else i / p
                total += ((i + 1) / (p + 1) + before) / 2
            ap_sum += total / n_rel
        inp_sum += n_rel / (positions[-1] + 1)
    out = {f"R@{k}": 100 * v / n_q for k, v in rank_k.items()}
    out.update(mAP=100 * ap_sum / n_q, mINP=100 * inp_sum / n_q)
    return out


def tied_case(seed: int, n_q: int = 23, n_g: int = 31, dim: int = 3):
    """Features from {-1, 0, 1}: many exact ties. Dot products (normalize=False) of such vectors are exact."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randint(-1, 2, (n_q, dim), generator=gen).double()
    gallery = torch.randint(-1, 2, (n_g, dim), generator=gen).double()
    gallery_ids = torch.randint(0, 6, (n_g,), generator=gen)
    gallery_ids[:6] = torch.arange(6)  # every identity is in the gallery
    query_ids = torch.randint(0, 6, (n_q,), generator=gen)
    return query, gallery, query_ids, gallery_ids


@pytest.mark.parametrize("ties", ["stable", "optimistic", "pessimistic"])
@pytest.mark.parametrize("ap", ["tbps", "market1501"])
def test_equals_brute_force_with_ties(ap, ties):
    for seed in range(4):
        query, gallery, q_ids, g_ids = tied_case(seed)
        scores = (query @ gallery.T).tolist()
        want = brute_force(scores, q_ids.tolist(), g_ids.tolist(), (1, 5, 10), ap, ties)
        # chunk_size 4 splits the queries into uneven chunks: chunking must not change anything
        got = identity_retrieval(
            query, gallery, q_ids, g_ids, ap=ap, ties=ties, normalize=False, chunk_size=4
        )
        assert got["ap_protocol"] == ap
        for name, value in want.items():
            assert got[name] == pytest.approx(value, abs=1e-9), (seed, name)


def test_ties_decide_the_numbers():
    """One query, three gallery items with equal scores, the match in the middle."""
    query, gallery = torch.ones(1, 1), torch.ones(3, 1)
    q_ids, g_ids = torch.tensor([1]), torch.tensor([2, 1, 2])
    stable = identity_retrieval(query, gallery, q_ids, g_ids, ks=(1, 2), ties="stable")
    optimistic = identity_retrieval(query, gallery, q_ids, g_ids, ks=(1, 2), ties="optimistic")
    pessimistic = identity_retrieval(query, gallery, q_ids, g_ids, ks=(1, 2), ties="pessimistic")
    assert (stable["R@1"], stable["R@2"], stable["mAP"], stable["mINP"]) == (0.0, 100.0, 50.0, 50.0)
    assert (optimistic["R@1"], optimistic["mAP"], optimistic["mINP"]) == (100.0, 100.0, 100.0)
    assert pessimistic["R@2"] == 0.0
    assert pessimistic["mAP"] == pytest.approx(100 / 3) and pessimistic["mINP"] == pytest.approx(100 / 3)


def test_hand_checked_case():
    """Gallery ids [1, 2, 1, 3, 1] with 1-d features, so the orders are plain to see:
    query A (id 1, feature +1) ranks the gallery 0,1,2,3,4 → matches 1 0 1 0 1;
    query B (id 3, feature -1) ranks it 4,3,2,1,0 → matches 0 1 0 0 0.

    A: R@1 = 1; AP = (1/1 + 2/3 + 3/5) / 3 = 0.755556; INP = 3/5 = 0.6;
       Market AP = [(1 + 1)/2 + (2/3 + 1/2)/2 + (3/5 + 2/4)/2] / 3 = (1 + 0.583333 + 0.55) / 3 = 0.711111.
    B: R@1 = 0, R@2 = 1; AP = 1/2; INP = 1/2; Market AP = (1/2 + 0/1)/2 = 0.25.
    """
    gallery = torch.tensor([[0.9], [0.8], [0.7], [0.6], [0.1]])
    query = torch.tensor([[1.0], [-1.0]])
    q_ids, g_ids = [1, 3], [1, 2, 1, 3, 1]
    tbps = identity_retrieval(query, gallery, q_ids, g_ids, ks=(1, 2, 5), normalize=False)
    assert tbps["R@1"] == pytest.approx(50.0)
    assert tbps["R@2"] == pytest.approx(100.0) and tbps["R@5"] == pytest.approx(100.0)
    assert tbps["mAP"] == pytest.approx(100 * (0.755556 + 0.5) / 2, abs=1e-4)
    assert tbps["mINP"] == pytest.approx(100 * (0.6 + 0.5) / 2)
    market = identity_retrieval(query, gallery, q_ids, g_ids, ks=(1, 2, 5), normalize=False, ap="market1501")
    assert market["mAP"] == pytest.approx(100 * (0.711111 + 0.25) / 2, abs=1e-4)
    assert market["R@1"] == tbps["R@1"] and market["mINP"] == tbps["mINP"]


def test_cosine_by_default_and_the_ranking():
    """Normalized by default: a long gallery vector pointing away does not win by its length."""
    query = torch.tensor([[1.0, 0.0]])
    gallery = torch.tensor([[10.0, 10.0], [1.0, 0.1], [0.0, 1.0]])
    q_ids, g_ids = [7], [3, 7, 3]
    assert identity_retrieval(query, gallery, q_ids, g_ids, ks=(1,))["R@1"] == 100.0
    assert identity_retrieval(query, gallery, q_ids, g_ids, ks=(1,), normalize=False)["R@1"] == 0.0
    indices, matches = identity_ranking(query, gallery, q_ids, g_ids, top=2)
    assert indices.tolist() == [[1, 0]] and matches.tolist() == [[True, False]]


def test_queries_without_a_match():
    query, gallery = torch.eye(2), torch.eye(2)
    with pytest.raises(DataError, match="1 of 2 queries have no gallery item"):
        identity_retrieval(query, gallery, [0, 5], [0, 1], ks=(1,))
    market = identity_retrieval(query, gallery, [0, 5], [0, 1], ks=(1,), ap="market1501")
    assert market["R@1"] == 50.0 and market["mAP"] == 50.0  # the unmatched query counts 0


def test_bad_input():
    q, g = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(DataError, match="gallery_ids must be an integer tensor \\[5\\]"):
        identity_retrieval(q, g, [0, 1, 2], [0, 1])
    with pytest.raises(DataError, match="different feature dimensions"):
        identity_retrieval(q, torch.randn(5, 3), [0, 1, 2], [0, 1, 2, 3, 4])
    with pytest.raises(DataError, match="NaN"):
        identity_retrieval(q, torch.full((5, 4), float("nan")), [0, 1, 2], [0, 1, 2, 3, 4])
    with pytest.raises(ConfigError, match=r"ks must be ints in 1\.\.5"):
        identity_retrieval(q, g, [0, 1, 2], [0, 1, 2, 3, 4], ks=(1, 10))
    with pytest.raises(ConfigError, match="ap must be one of"):
        identity_retrieval(q, g, [0, 1, 2], [0, 1, 2, 3, 4], ks=(1,), ap="cmc")
