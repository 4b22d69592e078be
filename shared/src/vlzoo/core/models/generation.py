"""Beam search and greedy decoding on a causal LM after a prefix of embeddings (a visual prefix plus a prompt),
with or without a KV cache, optionally constrained by a grammar.

>>> out = beam_search(lm, prefix_embeds, prefix_mask, num_beams=10, max_new_tokens=16, eos_token_id=eos,
...                   pad_token_id=pad, allowed_tokens=grammar)
>>> out.sequences  # [B, beams, T] best first; out.scores [B, beams] (length-normalised log-probabilities)

Why not `transformers.GenerationMixin.generate`: started from `inputs_embeds` without a cache it only ever feeds
the generated ids back (the prefix is lost after the first step), so "the same model without a KV cache" could
not be compared with it. This loop runs both ways through the same code and is vectorised over batch × beams.

Beam bookkeeping follows the common simplification of HF's `BeamSearchScorer`: a beam that emitted EOS keeps
its slot and is extended with padding at no cost, and the final ranking divides each beam's summed
log-probability by its length ** `length_penalty` (HF's default 1.0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vlzoo.core.errors import ConfigError, DataError

__all__ = ["AllowedTokens", "BeamSearchOutput", "beam_search", "greedy_search"]

# allowed(tokens [N, t] generated so far, sample [N] the batch row each beam belongs to) -> bool [N, vocab]
AllowedTokens = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class BeamSearchOutput:
    sequences: torch.Tensor  # [B, R, T] generated ids, best first; after EOS (and for dead beams) padding
    scores: torch.Tensor  # [B, R] length-normalised log-probability; -inf for a beam the constraint killed
    lengths: torch.Tensor  # [B, R] generated tokens up to and including EOS


def _step_logits(lm, embeds, mask, tokens, token_mask, cache, use_cache: bool):
    """Logits of the next token of every beam, and the KV cache to use next (None without caching)."""
    if not use_cache:
        out = lm(input_ids=tokens, attention_mask=token_mask, prefix_embeds=embeds, prefix_mask=mask)
        return out.logits[:, -1], None
    if cache is None:  # first step: run the prefix once and keep its keys and values
        out = lm(prefix_embeds=embeds, prefix_mask=mask, use_cache=True)
    else:
        past_mask = torch.cat([mask, token_mask[:, :-1]], dim=1)
        out = lm(
            input_ids=tokens[:, -1:],
            attention_mask=token_mask[:, -1:],
            cache=cache,
            cache_mask=past_mask,
            use_cache=True,
        )
    return out.logits[:, -1], out.cache


@torch.no_grad()
def beam_search(
    lm,
    prefix_embeds: torch.Tensor,
    prefix_mask: torch.Tensor | None = None,
    *,
    num_beams: int = 4,
    max_new_tokens: int = 16,
    eos_token_id: int,
    pad_token_id: int,
    allowed_tokens: AllowedTokens | None = None,
    use_cache: bool = True,
    length_penalty: float = 1.0,
) -> BeamSearchOutput:
    """Decode `num_beams` continuations of each prefix (`[B, P, D]`, left-padded by `prefix_mask`).

    `lm` is a `vlzoo.core.towers.CausalLM`. `allowed_tokens` masks, at every step, the tokens each beam may
    emit next (a grammar): a beam never emits a disallowed token; one left with none is dead (score -inf,
    all padding). Returns every beam, best first by length-normalised log-probability.
    """
    if num_beams < 1 or max_new_tokens < 1:
        raise ConfigError(f"num_beams and max_new_tokens must be >= 1, got {num_beams}, {max_new_tokens}")
    if prefix_embeds.ndim != 3:
        raise DataError(f"prefix_embeds must be [batch, length, hidden], got {tuple(prefix_embeds.shape)}")
    batch, k, device = prefix_embeds.shape[0], num_beams, prefix_embeds.device
    if prefix_mask is None:
        prefix_mask = torch.ones(prefix_embeds.shape[:2], dtype=torch.long, device=device)
    embeds = prefix_embeds.repeat_interleave(k, dim=0)
    mask = prefix_mask.long().repeat_interleave(k, dim=0)
    sample = torch.arange(batch, device=device).repeat_interleave(k)
    tokens = torch.empty(batch * k, 0, dtype=torch.long, device=device)
    token_mask = torch.empty_like(tokens)
    # Only the first beam of each sample is live at the start, so the first step's top-k are k distinct tokens.
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * k, dtype=torch.long, device=device)
    cache = None
    for _ in range(max_new_tokens):
        logits, cache = _step_logits(lm, embeds, mask, tokens, token_mask, cache, use_cache)
        logp = torch.log_softmax(logits.float(), dim=-1)
        vocab = logp.shape[-1]
        if allowed_tokens is not None:
            logp = logp.masked_fill(~allowed_tokens(tokens, sample).to(device), float("-inf"))
        # A finished beam continues with padding at no cost, so its score stays what it was.
        logp[finished] = float("-inf")
        logp[finished, pad_token_id] = 0.0
        candidates = (scores.reshape(-1, 1) + logp).reshape(batch, k * vocab)
        scores, flat = candidates.topk(k, dim=1)
        source = (torch.arange(batch, device=device)[:, None] * k + flat // vocab).reshape(-1)
        token = (flat % vocab).reshape(-1)
        dead = torch.isinf(scores.reshape(-1))
        token = torch.where(dead, torch.full_like(token, pad_token_id), token)
        was_finished = finished[source]
        tokens = torch.cat([tokens[source], token[:, None]], dim=1)
        token_mask = torch.cat([token_mask[source], torch.ones_like(token[:, None])], dim=1)
        lengths = lengths[source] + (~was_finished & ~dead).long()
        finished = was_finished | dead | (token == eos_token_id)
        if cache is not None:
            cache.reorder_cache(source)
        if bool(finished.all()):
            break
    normalised = scores.reshape(-1) / lengths.clamp_min(1).float() ** length_penalty
    order = normalised.reshape(batch, k).argsort(dim=1, descending=True, stable=True)
    pick = (torch.arange(batch, device=device)[:, None] * k + order).reshape(-1)
    return BeamSearchOutput(
        sequences=tokens[pick].reshape(batch, k, -1),
        scores=normalised[pick].reshape(batch, k),
        lengths=lengths[pick].reshape(batch, k),
    )


def greedy_search(
    lm, prefix_embeds: torch.Tensor, prefix_mask: torch.Tensor | None = None, **kwargs
) -> torch.Tensor:
    """The most likely token at every step (`[B, T]`): beam search with one beam."""
    return beam_search(lm, prefix_embeds, prefix_mask, num_beams=1, **kwargs).sequences[:, 0]
