"""PARSeq's decoder: permutation orders and masks as the paper defines them, and the three decodings."""

from __future__ import annotations

import math

import pytest
import torch

from vlzoo.ocr.data.labels import CharTokenizer
from vlzoo.ocr.parseq import ParseqConfig, ParseqDecoder, permutation_masks, permutation_orders


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 25])
def test_every_order_is_a_proper_order_and_comes_with_its_mirror(n: int):
    orders = permutation_orders(n, perm_num=6, generator=torch.Generator().manual_seed(n))
    assert orders.shape[1] == n + 2
    expected_rows = 1 if n == 1 else min(6, math.factorial(n))  # 2 chars: 2 orders, 3 chars: 6 (of 6)
    assert len(orders) == expected_rows
    for k, order in enumerate(orders):  # [B] first, every position once, [E] last (but in the reverse order)
        assert order[0] == 0 and sorted(order.tolist()) == list(range(n + 2))
        assert order[-1] == n + 1 or k == 1
    if n < 5:  # drawn from the pool without replacement (longer labels draw at random, as PARSeq)
        assert len({tuple(o.tolist()) for o in orders}) == len(orders)
    if n > 1:
        assert orders[0, 1:-1].tolist() == list(range(1, n + 1))  # left to right
        # the reverse of the whole sequence, [E] included: it gives [E] the null context (PARSeq)
        assert orders[1, 1:].tolist() == list(range(n + 1, 0, -1))
        for k in range(2, len(orders), 2):  # the rest in mirrored pairs
            assert orders[k + 1, 1:-1].tolist() == orders[k, 1:-1].flip(0).tolist()


def test_four_characters_draw_from_orders_whose_mirrors_are_not_drawn_twice():
    seen = set()
    for seed in range(40):
        orders = permutation_orders(4, generator=torch.Generator().manual_seed(seed))
        seen |= {tuple(o[1:-1].tolist()) for o in orders[2::2]}
    assert len(seen) == 11  # PARSeq's 12 selected orders minus the forward one
    assert not any(tuple(reversed(o)) in seen for o in seen)


def _masks_by_definition(order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's rule as PARSeq's loop states it: position order[i] may not see order[i+1:]."""
    size = len(order)
    mask = torch.zeros(size, size, dtype=torch.bool)
    for i, position in enumerate(order):
        mask[position, order[i + 1 :]] = True
    content = mask[:-1, :-1].clone()
    mask |= torch.eye(size, dtype=torch.bool)
    return content, mask[1:, :-1]


def test_masks_of_a_small_order_by_hand():
    # order [B] c2 c1 [E]: c2 sees only [B]; c1 sees [B] and c2; [E] sees everything
    content, query = permutation_masks(torch.tensor([0, 2, 1, 3]))
    T, F = True, False
    assert content.tolist() == [[F, T, T], [F, F, F], [F, T, F]]
    assert query.tolist() == [[F, T, F], [F, T, T], [F, F, F]]


def test_masks_match_the_definition_for_random_orders():
    for order in permutation_orders(7, perm_num=6, generator=torch.Generator().manual_seed(0)):
        got = permutation_masks(order)
        want = _masks_by_definition(order.tolist())
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_decoding_shapes():
    tok = CharTokenizer("abc", max_length=6)
    decoder = ParseqDecoder(
        ParseqConfig(embed_dim=32, num_heads=4, depth=2, max_length=6), tok.num_classes, 16
    )
    decoder.eval()
    memory = torch.randn(3, 5, 16)
    assert decoder.decode(memory, ar=False).shape == (3, 7, 4)
    assert decoder.decode(memory, ar=False, refine_iters=0).shape == (3, 7, 4)
    assert decoder.decode(memory, ar=True, refine_iters=2).shape == (3, 7, 4)  # refinement queries all 7
    ar = decoder.decode(memory, ar=True, refine_iters=0)
    assert ar.shape[0] == 3 and 1 <= ar.shape[1] <= 7 and ar.shape[2] == 4
    assert decoder.decode(memory, max_length=3, ar=False).shape == (3, 4, 4)


@pytest.mark.slow
def test_a_decoder_trained_with_permutations_reads_with_every_decoding():
    """Four memories, four words: after training on the permutation loss, autoregressive, parallel and
    refined decoding all give the words back."""
    torch.manual_seed(0)
    words = ["cab", "abba", "c", "bcaac"]
    tok = CharTokenizer("abc", max_length=6)
    decoder = ParseqDecoder(
        ParseqConfig(embed_dim=32, num_heads=4, depth=1, max_length=6, dropout=0.0), tok.num_classes, 16
    )
    memory = torch.randn(4, 3, 16)
    targets = tok(words)
    opt = torch.optim.AdamW(decoder.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        loss = decoder.loss(memory, targets)
        loss.backward()
        opt.step()
    decoder.eval()
    for ar in (True, False):
        for refine in (0, 1):
            ids = decoder.decode(memory, ar=ar, refine_iters=refine).argmax(-1)
            assert tok.decode(ids) == words, (ar, refine)
    ids, confidence = decoder.predict(memory)
    assert tok.decode(ids) == words and bool((confidence > 0.5).all())
