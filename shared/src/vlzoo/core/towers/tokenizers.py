"""Tokenizers that turn captions into the `LongTensor[B, context_length]` the text towers read.

Two kinds:
- `ClipTokenizer`: OpenAI CLIP's byte-level BPE (49408 tokens, `<start_of_text>` ... `<end_of_text>`, zero
  padding), built offline from the merges file shipped inside vlzoo-core, on the `tokenizers` library.
- `HFTokenizer`: any `transformers.AutoTokenizer` by hub id or local directory (BERT, RoBERTa, XLM-R, ...).

Both return a `TokenizedText` holding `input_ids` and `attention_mask` (1 = real token); an `HFTokenizer`
with a fast (Rust) backend also fills `offsets`, each token's character span in its caption, which is what
maps character-level annotations (concept spans, entities) onto tokens.
"""

from __future__ import annotations

import gzip
import html
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from vlzoo.core.errors import ConfigError, DataError

CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_VOCAB_SIZE = 49408
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"

# CLIP's pre-tokenization: special tokens, English contractions, runs of letters, single digits, runs of
# anything else. Lower-casing happens before, so one case of each contraction suffices.
_CLIP_SPLIT_PATTERN = (
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)
_WHITESPACE = re.compile(r"\s+")


@dataclass
class TokenizedText:
    """Token ids and attention mask, both `LongTensor[B, context_length]`.

    `offsets` (optional) is `LongTensor[B, context_length, 2]`: the `[start, end)` characters of each token
    in its caption as given to the tokenizer, `(0, 0)` for special and padding tokens.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    offsets: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> TokenizedText:
        offsets = self.offsets.to(device) if self.offsets is not None else None
        return TokenizedText(self.input_ids.to(device), self.attention_mask.to(device), offsets)

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in _byte_to_unicode().items()}


@lru_cache(maxsize=1)
def _clip_bpe_tables() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of CLIP's BPE, in the id order the released CLIP checkpoints use."""
    raw = resources.files("vlzoo.core.towers").joinpath(CLIP_BPE_FILE).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    # The first line is a header; CLIP keeps the first 48894 merges so that the vocabulary is 49408 long.
    n_merges = CLIP_VOCAB_SIZE - 256 * 2 - 2
    merges = [tuple(line.split()) for line in lines[1 : 1 + n_merges]]
    chars = list(_byte_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [SOT_TOKEN, EOT_TOKEN]
    return {tok: i for i, tok in enumerate(tokens)}, merges


@lru_cache(maxsize=1)
def _clip_backend() -> Tokenizer:
    vocab, merges = _clip_bpe_tables()
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", unk_token=None))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.add_special_tokens([SOT_TOKEN, EOT_TOKEN])
    return tok


def _clean(text: str) -> str:
    # CLIP also runs ftfy on captions; vlzoo leaves mojibake repair to the data pipeline.
    return _WHITESPACE.sub(" ", html.unescape(html.unescape(text))).strip()


def _as_list(texts: str | list[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not all(isinstance(t, str) for t in texts):
        bad = next(type(t).__name__ for t in texts if not isinstance(t, str))
        raise DataError(f"tokenizer expects strings, got an item of type {bad}")
    return list(texts)


def _pack(rows: list[list[int]], context_length: int, pad_id: int) -> TokenizedText:
    ids = torch.full((len(rows), context_length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), context_length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return TokenizedText(ids, mask)


class ClipTokenizer:
    """CLIP's BPE tokenizer, offline. Captions longer than `context_length` are cut and end with EOT.

    Padding is 0, as in the OpenAI and open_clip releases; the causal text tower pools at EOT, so pad
    tokens never reach the embedding.
    """

    vocab_size = CLIP_VOCAB_SIZE

    def __init__(self, context_length: int = 77):
        if context_length < 2:
            raise ConfigError(
                f"context_length must leave room for the start and end tokens, got {context_length}"
            )
        self.context_length = context_length
        self.backend = _clip_backend()  # the `tokenizers.Tokenizer` underneath (vocabulary, id ↔ token)
        self.sot_token_id = self.backend.token_to_id(SOT_TOKEN)
        self.eot_token_id = self.backend.token_to_id(EOT_TOKEN)
        self.pad_token_id = 0

    def encode(self, text: str) -> list[int]:
        """Token ids of one caption without start/end tokens."""
        return self.backend.encode(_clean(text), add_special_tokens=False).ids

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        ids = [int(i) for i in ids if int(i) not in (self.pad_token_id, self.sot_token_id, self.eot_token_id)]
        words = "".join(self.backend.id_to_token(i) for i in ids).split("</w>")
        byte_of = _unicode_to_byte()
        return " ".join(bytes(byte_of[c] for c in w).decode("utf-8", "replace") for w in words if w)

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> TokenizedText:
        length = context_length or self.context_length
        encoded = self.backend.encode_batch([_clean(t) for t in _as_list(texts)], add_special_tokens=False)
        rows = [[self.sot_token_id, *e.ids[: length - 2], self.eot_token_id] for e in encoded]
        return _pack(rows, length, self.pad_token_id)


class HFTokenizer:
    """A transformers tokenizer (hub id or local directory) with fixed-length padding and truncation.

    `return_offsets`: fill `TokenizedText.offsets` (character span of each token). Only fast tokenizers
    know them; `None` (default) = whenever the backend is fast, `True` = required (an error otherwise).
    """

    def __init__(
        self, name_or_path: str, context_length: int = 77, return_offsets: bool | None = None, **kwargs
    ):
        from transformers import AutoTokenizer

        self.name_or_path = name_or_path
        self.context_length = context_length
        self.backend = AutoTokenizer.from_pretrained(name_or_path, **kwargs)  # special ids, vocabulary
        self.vocab_size = len(self.backend)
        self.pad_token_id = self.backend.pad_token_id
        is_fast = bool(getattr(self.backend, "is_fast", False))
        if return_offsets and not is_fast:
            raise ConfigError(
                f"tokenizer {name_or_path!r} is not a fast (Rust) tokenizer, so it cannot return character "
                "offsets; save it with a tokenizer.json or use return_offsets=False"
            )
        self.return_offsets = is_fast if return_offsets is None else return_offsets

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> TokenizedText:
        out = self.backend(
            _as_list(texts),
            padding="max_length",
            truncation=True,
            max_length=context_length or self.context_length,
            return_tensors="pt",
            return_offsets_mapping=self.return_offsets,
        )
        offsets = out["offset_mapping"].long() if self.return_offsets else None
        return TokenizedText(out["input_ids"].long(), out["attention_mask"].long(), offsets)

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        return self.backend.decode(ids, skip_special_tokens=True)
