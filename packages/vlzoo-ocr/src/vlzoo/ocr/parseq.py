"""PARSeq's permutation language model decoder ("Scene Text Recognition with Permuted Autoregressive
Sequence Models", Bautista & Atienza, ECCV 2022), as OpenOCR's `dptr_parseq` decoder uses it.

>>> decoder = ParseqDecoder(ParseqConfig(embed_dim=512, num_heads=8, depth=6), num_classes=95)
>>> loss = decoder.loss(memory, targets)          # memory [B, S, D], targets [B, L] ([B] chars [E] [P]...)
>>> logits = decoder.decode(memory)               # [B, max_length + 1, num_classes]: AR + 1 refinement

Paper → code:
- Two-stream attention (XLNet): a *query* stream of learned position queries and a *content* stream of the
  token embeddings (×√d, plus position queries; `[B]` is the null context), each with pre-norm
  self-attention over the content, cross-attention to the memory and an MLP (`DecoderLayer`). The last
  layer leaves the content stream as it is: only the queries are read out.
- Permutation language modelling: per batch, `perm_num` orders of the label's positions (the left-to-right
  one, its mirror forced to the right-to-left one, random others each with its mirror), sampled from the
  whole pool for labels of ≤ 4 characters (`permutation_orders`). Each order gives an attention mask
  (`permutation_masks`): a position sees the positions placed before it in the order. The loss is the
  token-weighted mean of the cross-entropies of all orders; from the third order on, `[E]` is not a target
  (PARSeq's system.py: after the first two, the end token is padding).
- Decoding (`decode`): autoregressive, one position per step with a causal query mask, or parallel (NAR:
  every position queried at once from the null context alone), then `refine_iters` cloze refinements
  (each position sees every other predicted character but itself; positions after the first `[E]` are
  padding).

Token ids are those of `vlzoo.ocr.data.labels.CharTokenizer`: `[E]` = 0, characters 1..C, `[B]` = C + 1,
`[P]` = C + 2; the head predicts C + 1 classes, never `[B]` or `[P]`. Masks are boolean (True = may not
attend), equivalent to OpenOCR's additive −inf masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations

import torch
import torch.nn.functional as F
from torch import nn

from vlzoo.core import ConfigError, DataError

__all__ = [
    "DecoderLayer",
    "ParseqConfig",
    "ParseqDecoder",
    "permutation_masks",
    "permutation_orders",
]


@dataclass
class ParseqConfig:
    """The decoder's hyperparameters. Defaults: OpenOCR's `dptr_parseq` (PARSeq's own decoder has depth 1,
    12 heads at width 384)."""

    embed_dim: int = 512
    num_heads: int = 8
    depth: int = 6
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    max_length: int = 25  # characters; the decoder has max_length + 1 positions (the last for [E])
    perm_num: int = 6  # orders per batch, mirrored pairs included
    perm_forward: bool = True  # the left-to-right order is always one of them
    perm_mirrored: bool = True  # each sampled order comes with its reverse
    decode_ar: bool = True  # autoregressive decoding at test time, else parallel (NAR)
    refine_iters: int = 1  # cloze refinement passes after the first decoding


# --------------------------------------------------------------------------------------- permutations


def permutation_orders(
    num_chars: int,
    perm_num: int = 6,
    forward: bool = True,
    mirrored: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`[K, num_chars + 2]` orders of the positions `0` (`[B]`), `1..num_chars`, `num_chars + 1` (`[E]`):
    every order starts at `[B]` and ends at `[E]`. Row 0 is left-to-right (with `forward`), row 1
    right-to-left; with `mirrored`, rows come in pairs `(order, reversed order)`.

    PARSeq draws `perm_num // 2` orders (mirrored) from all `num_chars!` when `num_chars < 5` (for 4
    characters from the 12 whose mirrors are not among them), else uniformly at random."""
    if num_chars < 1:
        raise DataError("permutation_orders needs at least one character")
    if num_chars == 1:
        return torch.arange(3).unsqueeze(0)
    max_gen = perm_num // 2 if mirrored else perm_num
    total = math.factorial(num_chars) // (2 if mirrored else 1)
    wanted = min(max_gen, total)
    orders = [torch.arange(num_chars)] if forward else []
    if num_chars < 5:
        pool = torch.tensor(list(permutations(range(num_chars))))  # lexicographic: pool[0] is forward
        # for 4 characters, mirrored: the lexicographic indices of 12 orders that hold no order's mirror
        # (PARSeq's selector); else the first num_chars! (/ 2) orders
        selector = (
            [0, 3, 4, 6, 9, 10, 12, 16, 17, 18, 19, 21] if num_chars == 4 and mirrored else slice(total)
        )
        pool = pool[selector]
        if forward:
            pool = pool[1:]
        pick = torch.randperm(len(pool), generator=generator)[: wanted - len(orders)]
        orders.extend(pool[pick])
    else:
        # one draw for all: successive torch.randperm calls on one generator can repeat for small n
        orders.extend(torch.rand(wanted - len(orders), num_chars, generator=generator).argsort(-1))
    inner = torch.stack(orders)
    if mirrored:
        inner = torch.stack([inner, inner.flip(-1)], dim=1).reshape(-1, num_chars)
    k = inner.shape[0]
    full = torch.cat(
        [torch.zeros(k, 1, dtype=torch.long), inner + 1, torch.full((k, 1), num_chars + 1)], dim=1
    )
    if k > 1:  # the second order is right-to-left, which also gives [E] the null context
        full[1, 1:] = num_chars + 1 - torch.arange(num_chars + 1)
    return full


def permutation_masks(order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean attention masks (True = masked) of one order over `T = len(order)` positions:
    `(content_mask [T-1, T-1], query_mask [T-1, T-1])`. Position `a` may see position `b` when `b` comes
    before `a` in the order; the content stream also sees itself, the query stream never does."""
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    later = rank.unsqueeze(0) > rank.unsqueeze(1)  # later[a, b]: b is placed after a
    content = later[:-1, :-1]
    query = (later | torch.eye(len(order), dtype=torch.bool, device=order.device))[1:, :-1]
    return content, query


# ---------------------------------------------------------------------------------------------- modules


class DecoderLayer(nn.Module):
    """One pre-norm two-stream layer: self-attention over the content, cross-attention to the memory, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, memory_dim: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(
            dim, heads, dropout=dropout, batch_first=True, kdim=memory_dim, vdim=memory_dim
        )
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.norm_query = nn.LayerNorm(dim)
        self.norm_content = nn.LayerNorm(dim)
        self.norm_cross = nn.LayerNorm(dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.drop_self, self.drop_cross, self.drop_mlp = (nn.Dropout(dropout) for _ in range(3))

    def _stream(
        self,
        x: torch.Tensor,
        x_norm: torch.Tensor,
        content_norm: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor | None,
        padding: torch.Tensor | None,
    ) -> torch.Tensor:
        attended = self.self_attn(
            x_norm, content_norm, content_norm, attn_mask=mask, key_padding_mask=padding, need_weights=False
        )[0]
        x = x + self.drop_self(attended)
        x = x + self.drop_cross(self.cross_attn(self.norm_cross(x), memory, memory, need_weights=False)[0])
        return x + self.drop_mlp(self.mlp(self.norm_mlp(x)))

    def forward(
        self,
        query: torch.Tensor,
        content: torch.Tensor,
        memory: torch.Tensor,
        query_mask: torch.Tensor | None,
        content_mask: torch.Tensor | None,
        padding: torch.Tensor | None,
        update_content: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        content_norm = self.norm_content(content)
        query = self._stream(query, self.norm_query(query), content_norm, memory, query_mask, padding)
        if update_content:
            content = self._stream(content, content_norm, content_norm, memory, content_mask, padding)
        return query, content


class ParseqDecoder(nn.Module):
    """PARSeq's decoder over any memory `[B, S, memory_dim]` (ViT patches, CLIP text states, FMU queries)."""

    def __init__(self, cfg: ParseqConfig, num_classes: int, memory_dim: int | None = None):
        super().__init__()
        if cfg.embed_dim % cfg.num_heads:
            raise ConfigError(f"decoder embed_dim {cfg.embed_dim} is not divisible by {cfg.num_heads} heads")
        if cfg.perm_num < 1 or (cfg.perm_mirrored and cfg.perm_num % 2):
            raise ConfigError(
                f"perm_num must be a positive (with perm_mirrored: even) number, got {cfg.perm_num}"
            )
        self.cfg = cfg
        self.num_classes = num_classes  # [E] + characters
        self.eos_id, self.bos_id, self.pad_id = 0, num_classes, num_classes + 1
        dim = cfg.embed_dim
        self.layers = nn.ModuleList(
            DecoderLayer(dim, cfg.num_heads, cfg.mlp_ratio, cfg.dropout, memory_dim or dim)
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.text_embed = nn.Embedding(num_classes + 2, dim)  # + [B] and [P]
        self.pos_queries = nn.Parameter(torch.empty(1, cfg.max_length + 1, dim))
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_queries, std=0.02)
        nn.init.trunc_normal_(self.text_embed.weight, std=0.02)

    # ------------------------------------------------------------------------------------ one pass
    def forward_stream(
        self,
        tokens: torch.Tensor,
        memory: torch.Tensor,
        content_mask: torch.Tensor | None = None,
        padding: torch.Tensor | None = None,
        queries: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decoder output `[B, Q, D]` for the context `tokens [B, L]` (starting with `[B]`)."""
        batch, length = tokens.shape
        scale = math.sqrt(self.cfg.embed_dim)
        null = scale * self.text_embed(tokens[:, :1])
        rest = self.pos_queries[:, : length - 1] + scale * self.text_embed(tokens[:, 1:])
        content = self.dropout(torch.cat([null, rest], dim=1))
        if queries is None:
            queries = self.pos_queries[:, :length].expand(batch, -1, -1)
        query = self.dropout(queries)
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            query, content = layer(
                query, content, memory, query_mask, content_mask, padding, update_content=not last
            )
        return self.norm(query)

    def forward(self, memory: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(memory, targets)

    # ------------------------------------------------------------------------------------ training
    def trim(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets cut to the batch's longest label (PARSeq pads per batch): the orders' length follows it."""
        used = (targets != self.pad_id).any(0).nonzero()
        return targets[:, : int(used.max()) + 1]

    def loss(self, memory: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None):
        """The permutation language modelling loss of `targets [B, L]` (`[B]` chars `[E]` `[P]`...)."""
        targets = self.trim(targets)
        if targets.shape[1] - 2 > self.cfg.max_length:
            raise DataError(
                f"labels of {targets.shape[1] - 2} characters; the decoder takes {self.cfg.max_length}"
            )
        cfg = self.cfg
        orders = permutation_orders(
            targets.shape[1] - 2, cfg.perm_num, cfg.perm_forward, cfg.perm_mirrored, generator
        ).to(targets.device)
        context, expected = targets[:, :-1], targets[:, 1:]
        padding = (context == self.pad_id) | (context == self.eos_id)
        total, count = memory.new_zeros(()), 0
        n = int((expected != self.pad_id).sum())
        for i, order in enumerate(orders):
            content_mask, query_mask = permutation_masks(order)
            out = self.forward_stream(context, memory, content_mask, padding, query_mask=query_mask)
            logits = self.head(out).flatten(0, 1)
            total = total + n * F.cross_entropy(logits, expected.flatten(), ignore_index=self.pad_id)
            count += n
            if i == 1:  # from the third order on, [E] is no target (PARSeq)
                expected = torch.where(expected == self.eos_id, self.pad_id, expected)
                n = int((expected != self.pad_id).sum())
        return total / count

    # ----------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def decode(
        self,
        memory: torch.Tensor,
        max_length: int | None = None,
        ar: bool | None = None,
        refine_iters: int | None = None,
    ) -> torch.Tensor:
        """Logits `[B, T, num_classes]` (T ≤ max_length + 1), autoregressive (`ar`, default the config's)
        or parallel, then `refine_iters` cloze refinements. AR decoding stops once every row has `[E]`."""
        cfg = self.cfg
        ar = cfg.decode_ar if ar is None else ar
        refine_iters = cfg.refine_iters if refine_iters is None else refine_iters
        steps = min(max_length or cfg.max_length, cfg.max_length) + 1
        batch, device = memory.shape[0], memory.device
        queries = self.pos_queries[:, :steps].expand(batch, -1, -1)
        causal = torch.ones(steps, steps, dtype=torch.bool, device=device).triu(1)
        if ar:
            tokens = torch.full((batch, steps), self.pad_id, dtype=torch.long, device=device)
            tokens[:, 0] = self.bos_id
            logits = []
            for i in range(steps):
                out = self.forward_stream(
                    tokens[:, : i + 1],
                    memory,
                    causal[: i + 1, : i + 1],
                    queries=queries[:, i : i + 1],
                    query_mask=causal[i : i + 1, : i + 1],
                )
                step = self.head(out)
                logits.append(step)
                if i + 1 < steps:
                    tokens[:, i + 1] = step.squeeze(1).argmax(-1)
                    if (tokens == self.eos_id).any(-1).all():
                        break
            logits = torch.cat(logits, dim=1)
        else:
            bos = torch.full((batch, 1), self.bos_id, dtype=torch.long, device=device)
            logits = self.head(self.forward_stream(bos, memory, queries=queries))
        # cloze: a query sees every predicted character but the one it predicts (content position i + 1)
        cloze = causal & ~torch.ones_like(causal).triu(2)
        bos = torch.full((batch, 1), self.bos_id, dtype=torch.long, device=device)
        for _ in range(refine_iters):
            tokens = torch.cat([bos, logits[:, :-1].argmax(-1)], dim=1)
            length = tokens.shape[1]
            padding = (tokens == self.eos_id).int().cumsum(-1) > 0
            # every position is queried again, also those after an early AR stop
            out = self.forward_stream(
                tokens, memory, causal[:length, :length], padding, queries, cloze[:, :length]
            )
            logits = self.head(out)
        return logits

    def predict(self, memory: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """`(class ids [B, T], confidence [B])`: the argmax path and the product of its probabilities up to
        and including the first `[E]` (PARSeq's confidence)."""
        probs = self.decode(memory, **kwargs).softmax(-1)
        conf, ids = probs.max(-1)
        before_end = (ids == self.eos_id).int().cumsum(-1) - (ids == self.eos_id).int() == 0
        return ids, torch.where(before_end, conf, torch.ones_like(conf)).prod(-1)
