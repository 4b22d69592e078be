"""Remote-sensing caption files: RSICD, RSITMD, UCM-captions, Sydney-captions and their translations.

All four ship as Karpathy split JSON (`{"images": [{"filename", "split", "sentences": [{"raw"}]}]}`, five
captions per image). `RSKarpathySplits` reads them like the core's `KarpathySplits` and adds what the
remote-sensing models need:

- `class_name` / `class_id`: the scene class. RSICD and RSITMD name files `<class>_<n>.<ext>`
  ("denseresidential_12.jpg"); the class is the part before the first `_`, as PriorCLIP's official code
  takes it. A name without `_` ("00012.jpg", "agricultural07.tif") keeps its stem without the trailing
  digits, "unlabelled" if nothing is left (our choice: the official split would make each such file its
  own class); an explicit per-image
  `"class_name"` wins. Ids index the sorted class list of the *whole* file (every split), so train and test
  agree; `batch["class_id"]` is what PriorCLIP's affiliation loss consumes.
- `geo`: `{"crs", "transform"}` of GeoTIFF images, read with the pixels.
- `languages`: multilingual caption files. The format is a Karpathy JSON whose sentences may carry a
  `"lang"` code (ISO 639-1: "en", "pt", "zh", ...); a sentence without one is in the file's top-level
  `"lang"`, default `"en"`. So a translated file stays a valid Karpathy JSON, each image keeping one
  caption list per language inside `sentences`:

      {"lang": "en", "images": [{"filename": "airport_1.tif", "split": "test", "sentences": [
          {"raw": "many planes are parked near the terminal"},
          {"raw": "muitos aviões estão estacionados perto do terminal", "lang": "pt"}, ...]}]}

  `languages=("pt",)` keeps the Portuguese captions only; None keeps every language.

Data kinds (`data_kind:` in a recipe, or `evaluate_*(data_kind=...)`): `rs-karpathy` reads every caption
(or the languages after `::`, `data: rsicd_multi.json::en,pt`); `rs-multilingual` trains on every
language but evaluates on English unless `::` names others, since a gallery holding each caption in ten
languages would count translations as distinct hits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlzoo.core.data import (
    CaptionMode,
    ImageTextSource,
    Record,
    Sample,
    is_skipped,
    read_karpathy,
    skip_marker,
)
from vlzoo.core.errors import DataError
from vlzoo.remote_sensing.data.geotiff import Bands, select_bands

__all__ = [
    "DEFAULT_LANGUAGE",
    "RSKarpathySplits",
    "caption_languages",
    "class_from_filename",
    "finish_geo_sample",
    "parse_languages",
]

DEFAULT_LANGUAGE = "en"
_TRAILING_DIGITS = re.compile(r"[\d\s\-.]+$")
# Keys a Karpathy entry spends on the record itself; everything else is passed through to the sample.
_CONSUMED = {"filename", "filepath", "sentences", "imgid", "sentids", "class_name"}


def class_from_filename(filename: str) -> str:
    """ "denseresidential_12.jpg" → "denseresidential"; "agricultural07.tif" → "agricultural"."""
    stem = Path(filename).name.split(".")[0]
    if "_" in stem:
        return stem.split("_", 1)[0]
    return _TRAILING_DIGITS.sub("", stem) or "unlabelled"


def parse_languages(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """ "en,pt" / ["en", "pt"] → ("en", "pt"); None or "" → None (every language)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    codes = tuple(str(v).strip().lower() for v in items if str(v).strip())
    return codes or None


def _read_json(path: Path) -> dict[str, Any]:
    data = read_karpathy(path)
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry["sentences"], list):
            raise DataError(f"{path}: images[{i}] 'sentences' is not a list")
    return data


def _sentence(sentence: Any, default_lang: str) -> tuple[str, str]:
    """(text, language) of one Karpathy sentence: a string, or a dict with "raw" (or "tokens")."""
    if isinstance(sentence, str):
        return sentence, default_lang
    if isinstance(sentence, dict):
        lang = str(sentence.get("lang", default_lang)).lower()
        if isinstance(sentence.get("raw"), str):
            return sentence["raw"], lang
        if isinstance(sentence.get("tokens"), list):
            return " ".join(str(t) for t in sentence["tokens"]), lang
        return "", lang
    return "", default_lang


def caption_languages(path: str | os.PathLike) -> dict[str, int]:
    """Number of captions per language code in a (multilingual) Karpathy JSON."""
    data = _read_json(Path(path))
    default = str(data.get("lang", DEFAULT_LANGUAGE)).lower()
    counts: dict[str, int] = {}
    for entry in data["images"]:
        for sentence in entry["sentences"]:
            lang = _sentence(sentence, default)[1]
            counts[lang] = counts.get(lang, 0) + 1
    return dict(sorted(counts.items()))


class RSKarpathySplits(ImageTextSource):
    """A remote-sensing Karpathy split JSON: samples add `class_name`, `class_id` and, for GeoTIFFs, `geo`.

    Args:
        path: the JSON; images are at `image_root / filepath / filename` (`image_root` defaults to the
            JSON's folder; RSICD's JSON names no `filepath`, so point `image_root` at its `RSICDimages/`).
        split: one split, several (a sequence), or None for all.
        captions: "all" (evaluation: every caption as `"texts"`), "each", "random" or "first".
        languages: caption languages to keep (see the module docstring); None keeps all.
        classes: the class list to index into (default: the sorted classes of the whole file).
        bands: bands to keep, by 1-based index or name (`("B04", "B03", "B02")`); None keeps every band.
            A file without one of them is skipped and counted, like an unreadable one.

    `.classes` is the class list, `.class_names` the same for prompts. See the module docstring.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str | Sequence[str] | None = "train",
        image_root: str | os.PathLike | None = None,
        captions: CaptionMode = "all",
        languages: str | Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
        bands: Bands = None,
    ):
        self.path = Path(path)
        self.bands = bands
        root = Path(image_root) if image_root is not None else self.path.parent
        data = _read_json(self.path)
        images = data["images"]
        default_lang = str(data.get("lang", DEFAULT_LANGUAGE)).lower()
        self.languages = parse_languages(languages)
        image_classes = [e.get("class_name") or class_from_filename(e["filename"]) for e in images]
        self.classes = list(classes) if classes is not None else sorted(set(image_classes))
        self.class_names = [c.replace("_", " ") for c in self.classes]
        class_ids = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(image_classes) - set(class_ids))
        if unknown:
            raise DataError(f"{self.path}: classes {unknown[:5]} are not in the given class list")
        wanted = {split} if isinstance(split, str) else (set(split) if split is not None else None)
        records = []
        for i, (entry, name) in enumerate(zip(images, image_classes)):
            if wanted is not None and entry.get("split") not in wanted:
                continue
            texts = [_sentence(s, default_lang) for s in entry["sentences"]]
            kept = [t for t, lang in texts if self.languages is None or lang in self.languages]
            folder = root / entry["filepath"] if entry.get("filepath") else root
            extra = {k: v for k, v in entry.items() if k not in _CONSUMED}
            records.append(
                Record(
                    image_path=folder / entry["filename"],
                    captions=kept,
                    sample_id=entry.get("imgid", i),
                    extra={**extra, "class_name": name, "class_id": class_ids[name]},
                )
            )
        if not records:
            splits = sorted({str(e.get("split")) for e in images})
            raise DataError(f"{self.path}: no image in split {split!r}; the file has splits {splits}")
        if self.languages is not None and not any(r.captions for r in records):
            found = sorted(caption_languages(self.path))
            raise DataError(f"{self.path}: no caption in languages {self.languages}; the file has {found}")
        super().__init__(records, captions, self.path)

    @property
    def class_ids(self) -> np.ndarray:
        """The class id of every record (image), in order."""
        return np.array([r.extra["class_id"] for r in self.records], dtype=np.int64)

    def __getitem__(self, index: int) -> Sample:
        return finish_geo_sample(super().__getitem__(index), self.bands)


def finish_geo_sample(sample: Sample, bands: Bands = None) -> Sample:
    """A decoded sample made plain: the GeoTIFF decoder's `geo` moved into `sample["geo"]`, the `bands`
    kept (a missing one turns the sample into a skip marker naming the file), a plain array handed on."""
    if is_skipped(sample):
        return sample
    image = sample["image"]
    geo = getattr(image, "geo", None)
    if bands is not None:
        if not isinstance(image, np.ndarray):  # a PIL image (JPEG, PNG): bands by index
            image = np.asarray(image)
        try:
            image = select_bands(image, bands, sample.get("path", sample.get("id")))
        except DataError as err:
            return skip_marker(sample.get("id"), sample.get("path", ""), f"DataError: {err}")
    elif isinstance(image, np.ndarray):
        image = image.view(np.ndarray)
    if geo is not None:
        sample["geo"] = geo
    sample["image"] = image
    return sample


# ---------------------------------------------------------------------------------------- data kinds


def _split_path(path: str) -> tuple[str, tuple[str, ...] | None]:
    """ "rsicd.json::en,pt" → ("rsicd.json", ("en", "pt"))."""
    file, sep, langs = str(path).partition("::")
    return file, (parse_languages(langs) if sep else None)


def _languages(path_langs: tuple[str, ...] | None, options: Mapping[str, Any]) -> tuple[str, ...] | None:
    return path_langs or parse_languages(options.get("languages"))


def build_rs_karpathy(path: str, split: str, captions: str, options: Mapping[str, Any]) -> RSKarpathySplits:
    """The `rs-karpathy` data kind: every caption, or the languages after `::`."""
    file, langs = _split_path(path)
    return RSKarpathySplits(
        file,
        split=split,
        image_root=options.get("image_root"),
        captions=captions,  # type: ignore[arg-type]
        languages=_languages(langs, options),
        bands=options.get("bands"),
    )


def build_rs_multilingual(
    path: str, split: str, captions: str, options: Mapping[str, Any]
) -> RSKarpathySplits:
    """The `rs-multilingual` data kind: training on every language, evaluation on English by default."""
    file, langs = _split_path(path)
    langs = _languages(langs, options)
    if langs is None and captions == "all":
        langs = (DEFAULT_LANGUAGE,)
    return RSKarpathySplits(
        file,
        split=split,
        image_root=options.get("image_root"),
        captions=captions,  # type: ignore[arg-type]
        languages=langs,
        bands=options.get("bands"),
    )
