"""Beam search and greedy decoding after a prefix of embeddings: with and without the KV cache, scores that
match an independent recomputation, and constraints that are never broken."""

from __future__ import annotations

import pytest
import torch

from vlzoo.core.errors import ConfigError
from vlzoo.core.models import beam_search, greedy_search
from vlzoo.core.towers import CausalLM, CausalLMConfig

VOCAB, EOS, PAD = 30, 2, 0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    torch.manual_seed(0)
    model = CausalLM(CausalLMConfig(config_overrides={"vocab_size": VOCAB})).eval()
    with torch.no_grad():  # sharper next-token distributions than a fresh init: beams then really differ
        model.model.lm_head.weight.mul_(8.0)
    return model


def _prefix(batch: int = 3, length: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(batch, length, 64, generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, :2] = 0  # a left-padded row
    return embeds, mask


def _sequence_logprob(lm: CausalLM, embeds, mask, tokens: list[int]) -> float:
    """Sum of log p(token | prefix, earlier tokens), from one full forward (independent of the search)."""
    ids = torch.tensor([tokens])
    with torch.no_grad():
        logits = lm(ids, prefix_embeds=embeds[None], prefix_mask=mask[None]).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    start = embeds.shape[0] - 1  # the slot that predicts the first generated token
    return float(sum(logp[start + i, t] for i, t in enumerate(tokens)))


def _generated(row: torch.Tensor) -> list[int]:
    tokens = row.tolist()
    return tokens[: tokens.index(EOS) + 1] if EOS in tokens else tokens


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kv_cache_and_no_cache_give_identical_beams(lm, seed):
    embeds, mask = _prefix(seed=seed)
    kwargs = {"num_beams": 5, "max_new_tokens": 10, "eos_token_id": EOS, "pad_token_id": PAD}
    cached = beam_search(lm, embeds, mask, use_cache=True, **kwargs)
    recomputed = beam_search(lm, embeds, mask, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, recomputed.sequences)
    assert torch.allclose(cached.scores, recomputed.scores, atol=1e-4)
    assert len({tuple(s) for s in cached.sequences[1].tolist()}) == 5  # five distinct beams


def test_greedy_is_the_argmax_rollout(lm):
    embeds, mask = _prefix(batch=2, seed=4)
    got = greedy_search(lm, embeds, mask, max_new_tokens=6, eos_token_id=EOS, pad_token_id=PAD)
    for b in range(2):
        tokens: list[int] = []
        for _ in range(6):  # the plain loop: full forward, take the most likely token
            ids = torch.tensor([tokens], dtype=torch.long)
            logits = lm(
                ids if tokens else None, prefix_embeds=embeds[b : b + 1], prefix_mask=mask[b : b + 1]
            ).logits
            tokens.append(int(logits[0, -1].argmax()))
            if tokens[-1] == EOS:
                break
        assert _generated(got[b]) == tokens


def test_scores_are_the_length_normalised_log_probability_and_sorted(lm):
    embeds, mask = _prefix(seed=5)
    out = beam_search(lm, embeds, mask, num_beams=4, max_new_tokens=8, eos_token_id=EOS, pad_token_id=PAD)
    for b in range(3):
        assert out.scores[b].tolist() == sorted(out.scores[b].tolist(), reverse=True)
        for k in range(4):
            tokens = _generated(out.sequences[b, k])
            expected = _sequence_logprob(lm, embeds[b], mask[b], tokens) / len(tokens)
            assert out.lengths[b, k] == len(tokens)
            assert out.scores[b, k].item() == pytest.approx(expected, abs=1e-4)


def test_the_best_beam_scores_at_least_as_well_as_greedy(lm):
    embeds, mask = _prefix(seed=6)
    kwargs = {"max_new_tokens": 8, "eos_token_id": EOS, "pad_token_id": PAD, "length_penalty": 0.0}
    beams = beam_search(lm, embeds, mask, num_beams=6, **kwargs)
    greedy = beam_search(lm, embeds, mask, num_beams=1, **kwargs)
    assert bool((beams.scores[:, 0] >= greedy.scores[:, 0] - 1e-5).all())


def _parity_rule(tokens: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """A grammar that depends on the prefix and the sample: after an even token an odd one (or EOS after 3
    tokens); sample 1 may never use tokens above 20."""
    allowed = torch.ones(tokens.shape[0], VOCAB, dtype=torch.bool)
    ids = torch.arange(VOCAB)
    if tokens.shape[1]:
        last_even = tokens[:, -1] % 2 == 0
        allowed &= torch.where(last_even[:, None], ids[None] % 2 == 1, ids[None] % 2 == 0)
    allowed[sample == 1] &= ids[None] <= 20
    allowed[:, EOS] = tokens.shape[1] >= 3
    allowed[:, PAD] = False
    return allowed


@pytest.mark.parametrize("use_cache", [True, False])
def test_constrained_decoding_never_emits_a_disallowed_token(lm, use_cache):
    embeds, mask = _prefix(seed=7)
    out = beam_search(
        lm,
        embeds,
        mask,
        num_beams=5,
        max_new_tokens=8,
        eos_token_id=EOS,
        pad_token_id=PAD,
        allowed_tokens=_parity_rule,
        use_cache=use_cache,
    )
    checked = 0
    for b in range(3):
        for k in range(5):
            tokens = _generated(out.sequences[b, k])
            for t in range(len(tokens)):  # re-ask the rule about every emitted token, from its own prefix
                prefix = torch.tensor([tokens[:t]], dtype=torch.long)
                assert _parity_rule(prefix, torch.tensor([b]))[0, tokens[t]], (b, k, tokens)
                checked += 1
    assert checked > 30


def test_a_beam_left_without_an_allowed_token_is_dead_not_wrong(lm):
    embeds, mask = _prefix(seed=8)

    def two_tokens(tokens: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        allowed = torch.zeros(tokens.shape[0], VOCAB, dtype=torch.bool)
        allowed[:, 7 if tokens.shape[1] == 0 else EOS] = True  # one sequence only: 7 EOS
        allowed[: tokens.shape[0], 9] = tokens.shape[1] == 0  # or 9 EOS
        return allowed

    out = beam_search(
        lm,
        embeds,
        mask,
        num_beams=4,
        max_new_tokens=5,
        eos_token_id=EOS,
        pad_token_id=PAD,
        allowed_tokens=two_tokens,
    )
    for b in range(3):
        live = [_generated(s) for s, score in zip(out.sequences[b], out.scores[b]) if score > float("-inf")]
        assert sorted(live) == [[7, EOS], [9, EOS]]
        dead = out.sequences[b][torch.isinf(out.scores[b])]
        assert dead.shape[0] == 2


def test_bad_settings_are_config_errors(lm):
    embeds, mask = _prefix()
    with pytest.raises(ConfigError, match="num_beams"):
        beam_search(lm, embeds, mask, num_beams=0, eos_token_id=EOS, pad_token_id=PAD)
