"""Caption translation: a Karpathy JSON's captions machine-translated into other languages.

RS-M-CLIP (Silva et al., 2024) trains on remote-sensing captions machine-translated from English into nine
languages (pt, es, fr, de, nl, it, zh, ko, ru). This module makes such a file with any transformers
sequence-to-sequence translation model, by hub id or local directory:

    vlzoo-remote-sensing translate rsicd.json rsicd_multi.json \\
        --model 'Helsinki-NLP/opus-mt-en-{lang}' --languages pt,es,fr,de,nl,it,zh,ko,ru

`{lang}` in `--model` is replaced by each target code, one model per language (MarianMT's opus-mt models);
a model without `{lang}` serves every language, told which by `--prefix` (opus-mt multi-target models take
`">>{lang}<< "`) or `--forced-bos` (NLLB, M2M100: the target's language token, e.g. `"{lang}"` with
`--lang-codes pt=por_Latn,es=spa_Latn`). Decoding is deterministic (greedy, or beam search with
`--beams`), batched over the distinct source captions sorted by length.

The output is the multilingual format of `vlzoo.remote_sensing.data.captions`: the input Karpathy JSON with,
for each image, one sentence `{"raw": ..., "lang": code}` per source caption and target language appended
after the original sentences (which keep theirs; the file's top-level `"lang"`, default "en", names the
language of sentences without one).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from vlzoo.core.errors import ConfigError, DataError

__all__ = ["Seq2SeqTranslator", "add_arguments", "run", "translate_file", "translate_karpathy"]

DEFAULT_LANGUAGE = "en"
# A translator maps (source captions, target language) to one translation per caption, in order.
Translator = Callable[[Sequence[str], str], list[str]]


def _sentence_text(sentence: Any) -> str | None:
    if isinstance(sentence, str):
        return sentence
    if isinstance(sentence, dict):
        if isinstance(sentence.get("raw"), str):
            return sentence["raw"]
        if isinstance(sentence.get("tokens"), list):
            return " ".join(str(t) for t in sentence["tokens"])
    return None


def _sentence_lang(sentence: Any, default: str) -> str:
    return str(sentence.get("lang", default)).lower() if isinstance(sentence, dict) else default


def translate_karpathy(
    data: dict[str, Any],
    translate: Translator,
    languages: Sequence[str],
    source_lang: str = DEFAULT_LANGUAGE,
    where: str = "captions",
) -> dict[str, Any]:
    """A copy of a Karpathy dict with every `source_lang` caption translated into each of `languages`.

    Each distinct caption is translated once per language. A target language the file already holds is
    refused (translating twice would duplicate captions).
    """
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f'{where}: not a Karpathy split file: no top-level list "images"')
    default = str(data.get("lang", DEFAULT_LANGUAGE)).lower()
    source_lang = source_lang.lower()
    targets = [lang.lower() for lang in languages]
    if not targets or source_lang in targets or len(set(targets)) != len(targets):
        raise ConfigError(
            f"target languages {targets} must be distinct and differ from the source {source_lang!r}"
        )
    per_image: list[list[str]] = []
    present: set[str] = set()
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("sentences"), list):
            raise DataError(f"{where}: images[{i}] has no list 'sentences'")
        texts = []
        for j, sentence in enumerate(entry["sentences"]):
            lang = _sentence_lang(sentence, default)
            present.add(lang)
            if lang != source_lang:
                continue
            text = _sentence_text(sentence)
            if text is None:
                raise DataError(f"{where}: images[{i}].sentences[{j}] has no 'raw' text")
            texts.append(text)
        per_image.append(texts)
    clash = sorted(present & set(targets))
    if clash:
        raise DataError(f"{where} already holds captions in {clash}; translate into the other languages only")
    unique = list(dict.fromkeys(t for texts in per_image for t in texts))
    if not unique:
        raise DataError(
            f"{where}: no caption in the source language {source_lang!r} (languages found: {sorted(present)})"
        )
    out = {
        **data,
        "lang": default,
        "images": [dict(e, sentences=list(e["sentences"])) for e in data["images"]],
    }
    for lang in targets:
        translated = translate(unique, lang)
        if len(translated) != len(unique):
            raise ConfigError(
                f"the translator returned {len(translated)} translations for {len(unique)} captions"
            )
        lookup = dict(zip(unique, translated))
        for entry, texts in zip(out["images"], per_image):
            entry["sentences"].extend({"raw": lookup[t], "lang": lang} for t in texts)
    return out


class Seq2SeqTranslator:
    """Batched, deterministic translation with `AutoModelForSeq2SeqLM` (MarianMT, NLLB, M2M100, mT5 ...).

    Args:
        model: hub id or directory; `{lang}` is replaced by the target code (one model per language).
        batch_size, num_beams, max_new_tokens: generation (num_beams=1 is greedy; never sampling).
        prefix: prepended to each source caption, `{lang}` replaced (multi-target Marian: `">>{lang}<< "`).
        forced_bos: the token to start each translation with, `{lang}` replaced (NLLB, M2M100).
        lang_codes: target code → the model's own code (`{"pt": "por_Latn"}`) used in the templates.
        device: "cpu", "cuda", ...; default CUDA when available.
    """

    def __init__(
        self,
        model: str,
        batch_size: int = 32,
        num_beams: int = 1,
        max_new_tokens: int = 128,
        prefix: str = "",
        forced_bos: str | None = None,
        lang_codes: dict[str, str] | None = None,
        device: str | None = None,
    ):
        if batch_size < 1 or num_beams < 1 or max_new_tokens < 1:
            raise ConfigError("batch_size, num_beams and max_new_tokens must be >= 1")
        self.model_template = model
        self.batch_size = batch_size
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.prefix = prefix
        self.forced_bos = forced_bos
        self.lang_codes = dict(lang_codes or {})
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._loaded: tuple[str, Any, Any] | None = None  # (name, tokenizer, model): one model in memory

    def _code(self, lang: str) -> str:
        return self.lang_codes.get(lang, lang)

    def _load(self, lang: str) -> tuple[Any, Any]:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        name = self.model_template.replace("{lang}", self._code(lang))
        if self._loaded is None or self._loaded[0] != name:
            self._loaded = None  # free the previous language's model first
            try:
                tokenizer = AutoTokenizer.from_pretrained(name)
                model = AutoModelForSeq2SeqLM.from_pretrained(name).to(self.device).eval()
            except OSError as err:
                raise ConfigError(
                    f"cannot load the translation model {name!r} (target {lang!r}): {err}"
                ) from err
            self._loaded = (name, tokenizer, model)
        return self._loaded[1], self._loaded[2]

    def generation_kwargs(self, tokenizer: Any, lang: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "num_beams": self.num_beams,
            "do_sample": False,
            "max_new_tokens": self.max_new_tokens,
        }
        if self.forced_bos:
            token = self.forced_bos.replace("{lang}", self._code(lang))
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == tokenizer.unk_token_id:
                raise ConfigError(f"the translation tokenizer has no token {token!r} for target {lang!r}")
            kwargs["forced_bos_token_id"] = token_id
        return kwargs

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str], lang: str) -> list[str]:
        tokenizer, model = self._load(lang)
        kwargs = self.generation_kwargs(tokenizer, lang)
        prefix = self.prefix.replace("{lang}", self._code(lang))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad little
        out: list[str] = [""] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            inputs = tokenizer(
                [prefix + texts[i] for i in chunk], return_tensors="pt", padding=True, truncation=True
            ).to(self.device)
            generated = model.generate(**inputs, **kwargs)
            for i, text in zip(chunk, tokenizer.batch_decode(generated, skip_special_tokens=True)):
                out[i] = text.strip()
        return out


def translate_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    translate: Translator,
    languages: Sequence[str],
    source_lang: str = DEFAULT_LANGUAGE,
) -> Path:
    """Read a Karpathy JSON, translate its captions, write the multilingual JSON (atomically); returns `dst`."""
    src, dst = Path(src), Path(dst)
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{src}: file not found") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{src}: not valid JSON ({err.msg}, line {err.lineno})") from err
    out = translate_karpathy(data, translate, languages, source_lang, where=str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, dst)
    return dst


def _lang_codes(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ConfigError(f"--lang-codes takes CODE=MODEL_CODE pairs separated by commas, got {text!r}")
    return {k.strip().lower(): v.strip() for k, v in pairs}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `translate` command's arguments (the CLI's `Command.configure`)."""
    parser.description = (
        "Translate every caption of a Karpathy JSON into each target language with a transformers "
        "sequence-to-sequence model; writes the multilingual caption file (sentences with a 'lang')."
    )
    parser.add_argument("input", help="Karpathy split JSON whose captions are translated")
    parser.add_argument("output", help="where to write the multilingual JSON")
    parser.add_argument(
        "--model", required=True, help="translation model id or directory; {lang} → target code"
    )
    parser.add_argument(
        "--languages", required=True, help="target language codes, comma-separated (pt,es,...)"
    )
    parser.add_argument(
        "--source-lang", default=DEFAULT_LANGUAGE, help="language of the captions to translate"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--beams", type=int, default=1, help="beam width (1: greedy)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--prefix", default="", help="text put before each caption, {lang} replaced")
    parser.add_argument("--forced-bos", default=None, help="first token of each translation, {lang} replaced")
    parser.add_argument(
        "--lang-codes", default=None, help="target code → model code, e.g. pt=por_Latn,es=spa_Latn"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    translator = Seq2SeqTranslator(
        args.model,
        batch_size=args.batch_size,
        num_beams=args.beams,
        max_new_tokens=args.max_new_tokens,
        prefix=args.prefix,
        forced_bos=args.forced_bos,
        lang_codes=_lang_codes(args.lang_codes),
        device=args.device,
    )
    out = translate_file(args.input, args.output, translator, languages, args.source_lang)
    print(f"wrote {out}: captions in {args.source_lang} translated into {', '.join(languages)}")
    return 0
