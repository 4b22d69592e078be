"""Text codecs of GeoX: the bundled geometry vocabulary of the tiny models, or hub tokenizers at paper scale;
and the program grammar that constrains decoding to well-formed GeoQA programs.

The bundled vocabulary is a WordPiece model (Hugging Face `tokenizers`) built in memory: every program token
(the 18 operators, `N_i`, `V_i`, `C_i`) and the formal language's predicates are single tokens, and any
other word falls back to its characters (`##` continuations), as BERT's WordPiece does. So a program of k
tokens is k ids, and the grammar can work id by id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.towers import TokenizedText
from vlzoo.geometry.program import CONSTANTS, OPERATORS

__all__ = ["GeometryTokenizer", "HubCodec", "ProgramGrammar", "build_codec"]

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[DEC]", "[BOS]", "[EOS]", "[MASK]")
MAX_OPERANDS = 16  # N_0..N_15 and V_0..V_15: GeoQA's programs use far fewer
_FORMAL_TEXT = (
    "Triangle Line Point Circle Angle Arc Polygon Quadrilateral Rectangle Square Rhombus Parallelogram Trapezoid "
    "Cone Sector Chord Radius Diameter Equals MeasureOf LengthOf AreaOf PerimeterOf RadiusOf DiameterOf "
    "Perpendicular Parallel PointLiesOnLine PointLiesOnCircle Tangent IsMidpointOf IsDiagonalOf IsChordOf "
    "IsDiameterOf IsRadiusOf IsCentreOf IsCenterOf Right RightAngle Isosceles Equilateral Congruent Similar "
    "Find find As shown in the figure of is are and if a an to what Given given then length angle side "
    "area perimeter circumference circle triangle line lines parallel perpendicular right chord tangent "
    "diagonal diagonals rectangle rhombus parallelogram cone radius diameter degrees cm value measure"
)
FORMAL_WORDS = tuple(_FORMAL_TEXT.split())
# Whole words (operators, operands, predicates), one character of anything else, or one digit.
_PIECES = r"[A-Za-z]+(?:_[A-Za-z0-9]+)*|\d|[^A-Za-z\d\s]"
_CHARS = [chr(c) for c in range(33, 127)] + list("∠°√π△⊙∥⊥⌒·²³")


def _vocabulary() -> list[str]:
    program = list(OPERATORS) + [f"{k}_{i}" for k in "NV" for i in range(MAX_OPERANDS)]
    program += [f"C_{i}" for i in range(len(CONSTANTS))]
    words = list(dict.fromkeys([*program, *FORMAL_WORDS]))
    return list(SPECIALS) + words + [c for c in _CHARS if c not in words] + [f"##{c}" for c in _CHARS]


@lru_cache(maxsize=1)
def _bundled_backend():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(dict.fromkeys(_vocabulary()))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=64))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_PIECES), behavior="isolated")]
    )
    backend.decoder = decoders.WordPiece()
    return backend


class GeometryTokenizer:
    """The bundled geometry WordPiece vocabulary; `__call__` gives `[CLS] text [SEP]` rows (a BERT-style text
    for the Q-Former and the core's collator), `encode` the bare ids."""

    def __init__(self, context_length: int = 64):
        self.backend = _bundled_backend()
        self.context_length = context_length
        self.vocab_size = self.backend.get_vocab_size()
        ids = {name: self.backend.token_to_id(name) for name in SPECIALS}
        self.pad_token_id, self.unk_token_id = ids["[PAD]"], ids["[UNK]"]
        self.cls_token_id, self.sep_token_id, self.dec_token_id = ids["[CLS]"], ids["[SEP]"], ids["[DEC]"]
        self.bos_token_id, self.eos_token_id = ids["[BOS]"], ids["[EOS]"]

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self.backend.id_to_token(index)

    def words(self, ids: Sequence[int]) -> list[str]:
        """Ids → whole words (WordPiece continuations joined), special tokens dropped: a program's tokens."""
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=True)
        return text.split()

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> TokenizedText:
        rows = [[self.cls_token_id, *ids, self.sep_token_id] for ids in self.encode_batch(_as_list(texts))]
        return pack_right(rows, context_length or self.context_length, self.pad_token_id)


class HubCodec:
    """A transformers tokenizer (a hub id or directory) behind the same faces, for paper-scale models: the
    decoder's (LLEMMA's sentencepiece) or the Q-Former's (BERT's, with an added `[DEC]`)."""

    def __init__(self, name_or_path: str, context_length: int = 64, add_dec: bool = False):
        from transformers import AutoTokenizer

        try:
            self.backend = AutoTokenizer.from_pretrained(name_or_path)
        except OSError as err:
            raise ConfigError(f"cannot load tokenizer {name_or_path!r}: {str(err).splitlines()[0]}") from None
        if add_dec:
            self.backend.add_special_tokens({"bos_token": "[DEC]"})
        b = self.backend
        self.context_length = context_length
        self.vocab_size = len(b)
        self.pad_token_id = b.pad_token_id if b.pad_token_id is not None else (b.unk_token_id or 0)
        self.unk_token_id = b.unk_token_id
        self.cls_token_id = b.cls_token_id if b.cls_token_id is not None else b.bos_token_id
        self.sep_token_id = b.sep_token_id if b.sep_token_id is not None else b.eos_token_id
        self.bos_token_id = b.bos_token_id if b.bos_token_id is not None else self.cls_token_id
        self.eos_token_id = b.eos_token_id if b.eos_token_id is not None else self.sep_token_id
        self.dec_token_id = b.convert_tokens_to_ids("[DEC]") if add_dec else self.bos_token_id

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.backend(list(texts), add_special_tokens=False)["input_ids"]

    def token_to_id(self, token: str) -> int | None:
        index = self.backend.convert_tokens_to_ids(token)
        return None if index == self.unk_token_id else index

    def words(self, ids: Sequence[int]) -> list[str]:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True).split()

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> TokenizedText:
        rows = [[self.cls_token_id, *ids, self.sep_token_id] for ids in self.encode_batch(_as_list(texts))]
        return pack_right(rows, context_length or self.context_length, self.pad_token_id)


def build_codec(name: str | None, context_length: int = 64, add_dec: bool = False) -> Any:
    """`None` → the bundled `GeometryTokenizer`; else a hub tokenizer by id or directory."""
    if name is None:
        return GeometryTokenizer(context_length)
    return HubCodec(name, context_length, add_dec=add_dec)


def _as_list(texts: str | list[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not all(isinstance(t, str) for t in texts):
        raise DataError(f"texts must be strings, got {sorted({type(t).__name__ for t in texts})}")
    return list(texts)


def pack_right(rows: list[list[int]], length: int, pad: int) -> TokenizedText:
    """Rows of ids truncated to `length` (keeping the last, closing token) and right-padded."""
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        row = row if len(row) <= length else row[: length - 1] + row[-1:]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return TokenizedText(ids, mask)


def pack_left(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids left-padded to the longest (the layout a decoding prompt needs)."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, length - len(row) :] = 1
    return ids, mask


# --------------------------------------------------------------------------------------------- grammar


class ProgramGrammar:
    """Which token may come next in a GeoQA prefix program, for a whole batch of beams at once.

    A program is `op operand.. op operand..`, each operator followed by exactly its arity's operands; an
    operand is `N_i` (i < the problem's count of numbers), `V_j` (j < the operators before the current one)
    or `C_k`. EOS may follow only a complete operator. Called as `allowed(tokens [N, t], sample [N])` with
    `numbers_per_sample` the count of numbers of each batch row; works on ids whose program tokens are
    single tokens (the bundled vocabulary).
    """

    def __init__(self, codec: Any, vocab_size: int, numbers_per_sample: Sequence[int] | torch.Tensor):
        self.vocab_size = vocab_size
        self.eos = codec.eos_token_id
        arity = torch.zeros(vocab_size, dtype=torch.long)
        self.is_op = torch.zeros(vocab_size, dtype=torch.bool)
        self.n_index = torch.full((vocab_size,), -1, dtype=torch.long)
        self.v_index = torch.full((vocab_size,), -1, dtype=torch.long)
        self.is_const = torch.zeros(vocab_size, dtype=torch.bool)
        for name, op in OPERATORS.items():
            index = _single_id(codec, name)
            arity[index], self.is_op[index] = op.arity, True
        for i in range(MAX_OPERANDS):
            self.n_index[_single_id(codec, f"N_{i}")] = i
            self.v_index[_single_id(codec, f"V_{i}")] = i
        for i in range(len(CONSTANTS)):
            self.is_const[_single_id(codec, f"C_{i}")] = True
        self.arity = arity
        self.numbers = torch.as_tensor(list(numbers_per_sample), dtype=torch.long)

    def __call__(self, tokens: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        rows = tokens.shape[0]
        pending = torch.zeros(rows, dtype=torch.long)
        ops = torch.zeros(rows, dtype=torch.long)
        for step in range(tokens.shape[1]):  # over generated positions, vectorised over beams
            token = tokens[:, step].cpu()
            is_op = self.is_op[token]
            pending = torch.where(is_op, self.arity[token], (pending - 1).clamp_min(0))
            ops = ops + is_op.long()
        need_operand = pending > 0
        numbers = self.numbers.to(sample.device)[sample].cpu()
        allowed = torch.zeros(rows, self.vocab_size, dtype=torch.bool)
        operand = (
            ((self.n_index[None] >= 0) & (self.n_index[None] < numbers[:, None]))
            | ((self.v_index[None] >= 0) & (self.v_index[None] < (ops - 1)[:, None]))
            | self.is_const[None]
        )
        allowed |= need_operand[:, None] & operand
        allowed |= ~need_operand[:, None] & self.is_op[None]
        allowed[:, self.eos] = ~need_operand & (ops > 0)
        return allowed.to(tokens.device)


def _single_id(codec: Any, token: str) -> int:
    index = codec.token_to_id(token)
    if index is None or codec.encode(token) != [index]:
        raise ConfigError(
            f"constrained decoding needs program token {token!r} to be one token of the vocabulary; this "
            "tokenizer splits it (use the bundled geometry vocabulary, or constrained=False)"
        )
    return int(index)


def split_words(text: str) -> list[str]:
    """The pieces the bundled pre-tokenizer cuts `text` into (whole words, digits, single symbols)."""
    return re.findall(_PIECES, text)
