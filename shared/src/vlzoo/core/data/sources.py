"""Map-style sources of image-text (or image-label) samples read from files on disk.

Every source yields plain dicts: `{"image": PIL.Image (RGB), "text": str}` or `"texts": list[str]` (several
captions per image, kept for evaluation), `"id"`, `"path"` and whatever else the format carries
(`"label"`, `"class_name"`, `"split"`).

Two kinds of failure are told apart:
- a whole-file problem (a CSV that doesn't parse, a column that doesn't exist, a JSON without `"images"`,
  nothing left after the split filter) raises `DataError` at construction, naming the file and the problem;
- a problem of one sample (a missing or truncated image, an empty caption) does not raise: the source
  returns a *skip marker* `{"__skipped__": True, "id", "path", "reason"}`. Markers travel through DataLoader
  worker processes like any sample, so the collate function can drop them and report them in the batch,
  and the skip rate can be counted in the main process (see `vlzoo.core.data.collate.SkipCounter`).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from vlzoo.core.data.cache import DecodedImageCache, ProcessImageCache
from vlzoo.core.errors import DataError
from vlzoo.core.plugins import register_unique

Sample = dict[str, Any]
ImageDecoder = Callable[[bytes | str | os.PathLike, str], Any]
CaptionMode = Literal["all", "each", "random", "first"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif")

# Errors that mean "this one sample is unreadable"; anything else (a bug) still propagates. PIL raises
# OSError for truncated/unidentified files, SyntaxError and ValueError for some broken PNG/TIFF headers.
SAMPLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
)


# ---------------------------------------------------------------------------------------------- decoding


def _decode_pil(data: bytes | str | os.PathLike, name: str) -> Image.Image:
    """Decode fully (`load()`), so a truncated file fails here, inside the source, not later in a transform."""
    if not isinstance(data, bytes | bytearray):
        with Image.open(data) as img:
            img.load()
            return img.convert("RGB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (
        UnidentifiedImageError
    ) as err:  # PIL names the buffer object (`<_io.BytesIO at 0x…>`), not the file
        raise UnidentifiedImageError(f"cannot identify image file {name!r}") from err


# Only the decoders domains add: PIL is the fallback for every other extension, so it owns none and a domain
# may take `.tif` for its multi-band reader.
_DECODERS: dict[str, ImageDecoder] = {}


def register_image_decoder(extension: str, decoder: ImageDecoder) -> None:
    """Decode files ending in `extension` (e.g. `".tif"`) with `decoder(path_or_bytes, name)`.

    Domain packages register here what PIL can't read well, e.g. a multi-band GeoTIFF decoder returning a
    `[H, W, C]` array. An extension another module's decoder has is refused (`plugins.register_unique`).
    """
    ext = extension.lower() if extension.startswith(".") else f".{extension.lower()}"  # ".nii.gz" works too
    register_unique(_DECODERS, ext, decoder, what="image decoder for")


def decode_image(data: bytes | str | os.PathLike, name: str | os.PathLike) -> Any:
    """Decode an image file (path) or its bytes; `name` carries the extension that picks the decoder (the
    longest registered one: `.nii.gz` before `.gz`; PIL when none is registered)."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    for i in range(len(suffixes)):
        decoder = _DECODERS.get("".join(suffixes[i:]))
        if decoder is not None:
            return decoder(data, str(name))
    return _decode_pil(data, str(name))


# --------------------------------------------------------------------------------------------- markers


def skip_marker(sample_id: Any, path: str | os.PathLike, reason: str) -> Sample:
    """The stand-in a source returns for a sample it can't read (see the module docstring)."""
    return {"__skipped__": True, "id": sample_id, "path": str(path), "reason": reason}


def is_skipped(sample: Sample) -> bool:
    return bool(sample.get("__skipped__", False))


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _clean_captions(captions: Iterable[Any]) -> list[str]:
    return [c.strip() for c in captions if isinstance(c, str) and c.strip()]


# ------------------------------------------------------------------------------------------ base class


@dataclass
class Record:
    """One sample before decoding: where its image is and what it says. Cheap to hold for a whole dataset."""

    image_path: Path
    captions: list[str]
    sample_id: Any
    extra: dict[str, Any]


class ImageTextSource(Dataset):
    """Base of the file-backed sources: a list of `Record`s, decoded lazily in `__getitem__`.

    `captions` picks what a sample carries when a record has several captions:
    `"all"` → `"texts"` (evaluation), `"each"` → one sample per (image, caption) pair,
    `"random"` → one caption drawn per access (torch's RNG, which DataLoader seeds per worker),
    `"first"` → the first caption.

    `cache_decoded`: keep up to this many decoded images in memory (`DecodedImageCache`, by image path),
    per process, as `ShardSource` does; 0 (the default) decodes every time. A DataLoader worker keeps its
    own cache, across epochs only with `persistent_workers=True`; with `shuffle=True` each worker is handed
    random indices, so its hit rate grows over epochs (about 1/2, 3/4, ... of the images with 2 workers)
    until it holds every image it is asked for, memory permitting.
    """

    def __init__(
        self,
        records: list[Record],
        captions: CaptionMode,
        where: str | os.PathLike,
        cache_decoded: int = 0,
    ):
        if captions not in ("all", "each", "random", "first"):
            raise DataError(f"{where}: captions must be 'all', 'each', 'random' or 'first', got {captions!r}")
        if not records:
            raise DataError(f"{where}: the dataset is empty")
        if cache_decoded < 0:
            raise DataError(f"{where}: cache_decoded must be ≥ 0, got {cache_decoded}")
        self.records = records
        self.captions = captions
        self.where = str(where)
        self.cache_decoded = cache_decoded
        self._caches = ProcessImageCache()
        # "each": index → (record, caption); a record without any caption still yields one (skipped) sample
        self._index: list[tuple[int, int]] = (
            [(r, c) for r, rec in enumerate(records) for c in range(max(1, len(rec.captions)))]
            if captions == "each"
            else [(r, 0) for r in range(len(records))]
        )

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> Sample:
        rec_index, cap_index = self._index[index]
        rec = self.records[rec_index]
        cache = self.image_cache()
        if cache is None:
            return load_record(rec, self.captions, cap_index)
        return load_record(rec, self.captions, cap_index, decode=functools.partial(_cached_decode, cache))

    def image_cache(self) -> DecodedImageCache | None:
        """This process's cache of decoded images (None when `cache_decoded` is 0)."""
        return self._caches.get(self.cache_decoded)

    def field_values(self, key: str) -> list[Any]:
        """The value of a record field (`id`, or an extra column such as an identity or a pair) for every
        sample index, read from the index alone: no image is decoded. A sampler groups batches by it."""
        if key == "id":
            return [self.records[r].sample_id for r, _ in self._index]
        missing = next((r for r, _ in self._index if key not in self.records[r].extra), None)
        if missing is not None:
            rec = self.records[missing]
            raise DataError(f"{self.where}: record {rec.sample_id!r} ({rec.image_path}) has no field {key!r}")
        return [self.records[r].extra[key] for r, _ in self._index]


def _cached_decode(cache: DecodedImageCache, path: str | os.PathLike, name: str | os.PathLike) -> Any:
    return cache.get_or_decode(str(path), lambda: decode_image(path, name))


def load_record(
    rec: Record, captions: CaptionMode, cap_index: int = 0, decode: ImageDecoder | None = None
) -> Sample:
    """Decode one record into a sample dict, or a skip marker if its image or caption is unusable.

    `decode(path, name)` reads the image (default `decode_image`, by suffix); a source whose "images" are
    not files by suffix (a DICOM series folder) passes its own."""
    texts = _clean_captions(rec.captions)
    if not texts:
        return skip_marker(rec.sample_id, rec.image_path, "empty caption")
    sample: Sample = {**rec.extra, "id": rec.sample_id, "path": str(rec.image_path)}
    if captions == "all":
        sample["texts"] = texts
    else:
        raw = rec.captions[cap_index] if captions == "each" else None
        if captions == "each" and not (isinstance(raw, str) and raw.strip()):
            return skip_marker(rec.sample_id, rec.image_path, f"empty caption #{cap_index}")
        if captions == "random":
            raw = texts[int(torch.randint(len(texts), ()))]
        elif captions == "first":
            raw = texts[0]
        sample["text"] = raw.strip()
    try:
        sample["image"] = (decode or decode_image)(rec.image_path, rec.image_path)
    except SAMPLE_ERRORS as err:
        return skip_marker(rec.sample_id, rec.image_path, _reason(err))
    return sample


# ----------------------------------------------------------------------------------------- CSV / JSONL


class CsvPairs(ImageTextSource):
    """Image-caption pairs from a CSV or TSV file; image paths are relative to the file's folder.

    Column names default to open_clip's (`filepath`, `title`) so its CSVs load as they are. `sep=None`
    picks a tab for `.tsv`/`.tab` files and a comma otherwise. `id_key` names an id column; without it the
    id is the row's index. Other columns are passed through as strings. `cache_decoded`: see
    `ImageTextSource`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        img_key: str = "filepath",
        caption_key: str = "title",
        sep: str | None = None,
        image_root: str | os.PathLike | None = None,
        id_key: str | None = None,
        cache_decoded: int = 0,
    ):
        self.path = Path(path)
        root = Path(image_root) if image_root is not None else self.path.parent
        if sep is None:
            sep = "\t" if self.path.suffix.lower() in (".tsv", ".tab") else ","
        rows, columns = read_csv_rows(self.path, sep)
        for key in (img_key, caption_key, id_key):
            if key is not None and key not in columns:
                raise DataError(f"{self.path}: no column {key!r}; the columns are {columns}")
        records = [
            Record(
                image_path=root / row[img_key],
                captions=[row[caption_key] or ""],
                sample_id=row[id_key] if id_key else i,
                extra={k: v for k, v in row.items() if k not in (img_key, caption_key, id_key) and k},
            )
            for i, row in enumerate(rows)
        ]
        super().__init__(records, "first", self.path, cache_decoded)


def read_csv_rows(path: Path, sep: str = ",") -> tuple[list[dict[str, str]], list[str]]:
    """(rows as dicts, column names) of a CSV/TSV file with a header; `DataError` naming the file and row."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=sep, strict=True)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except (csv.Error, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable {'TSV' if sep == chr(9) else 'CSV'} file: {err}") from err
    bad = next((i for i, row in enumerate(rows) if None in row), None)
    if bad is not None:  # DictReader files surplus fields under the key None
        raise DataError(f"{path}: row {bad + 2} has more fields than the header ({len(columns)})")
    return rows, columns


class JsonlPairs(ImageTextSource):
    """Image-caption pairs from a JSON-lines file: one object per line, image paths relative to the file.

    `caption_key` may hold a string or a list of strings (several captions: see `captions`);
    `cache_decoded`: see `ImageTextSource`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        img_key: str = "image",
        caption_key: str = "text",
        image_root: str | os.PathLike | None = None,
        id_key: str | None = None,
        captions: CaptionMode = "first",
        cache_decoded: int = 0,
    ):
        self.path = Path(path)
        root = Path(image_root) if image_root is not None else self.path.parent
        records = []
        for lineno, obj in read_jsonl(self.path):
            for key in (img_key, caption_key):
                if key not in obj:
                    raise DataError(f"{self.path}: line {lineno} has no key {key!r}; it has {sorted(obj)}")
            caps = obj[caption_key]
            records.append(
                Record(
                    image_path=root / obj[img_key],
                    captions=list(caps) if isinstance(caps, list) else [caps],
                    sample_id=obj[id_key] if id_key and id_key in obj else len(records),
                    extra={k: v for k, v in obj.items() if k not in (img_key, caption_key, id_key)},
                )
            )
        super().__init__(records, captions, self.path, cache_decoded)


def read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; `DataError` naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text: {err}") from err
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {lineno} is not valid JSON: {err.msg}") from err
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {lineno} is a JSON {type(obj).__name__}, not an object")
        yield lineno, obj


# ------------------------------------------------------------------------------------- Karpathy splits


class KarpathySplits(ImageTextSource):
    """The Karpathy split JSON of COCO, Flickr30k, RSICD, RSITMD, UCM-captions (and `toyworld`).

    `{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw", "tokens"}], "imgid"}]}`; an image
    is at `image_root / filepath / filename` (`image_root` defaults to the JSON's folder). `split` keeps one
    split or several (COCO's `("train", "restval")`); None keeps all. Evaluation wants `captions="all"`
    (`"texts"`, every caption of an image); training `"each"` (one sample per pair) or `"random"`.
    Unknown per-image keys other than sentences (e.g. toyworld's `"scene"`) are passed through.
    `cache_decoded`: see `ImageTextSource`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str | Sequence[str] | None = "train",
        image_root: str | os.PathLike | None = None,
        captions: CaptionMode = "all",
        cache_decoded: int = 0,
    ):
        self.path = Path(path)
        root = Path(image_root) if image_root is not None else self.path.parent
        images = read_karpathy(self.path)["images"]
        wanted = {split} if isinstance(split, str) else (set(split) if split is not None else None)
        records = []
        for i, entry in enumerate(images):
            if wanted is not None and entry.get("split") not in wanted:
                continue
            folder = root / entry["filepath"] if entry.get("filepath") else root
            records.append(
                Record(
                    image_path=folder / entry["filename"],
                    captions=[_sentence_text(s) for s in entry["sentences"]],
                    sample_id=entry.get("imgid", i),
                    extra={k: v for k, v in entry.items() if k not in _KARPATHY_CONSUMED},
                )
            )
        if not records:
            splits = sorted({str(e.get("split")) for e in images})
            raise DataError(f"{self.path}: no image in split {split!r}; the file has splits {splits}")
        super().__init__(records, captions, self.path, cache_decoded)


_KARPATHY_CONSUMED = {"filename", "filepath", "sentences", "imgid", "sentids"}


def _sentence_text(sentence: Any) -> str:
    if isinstance(sentence, str):
        return sentence
    if isinstance(sentence, dict):
        if isinstance(sentence.get("raw"), str):
            return sentence["raw"]
        if isinstance(sentence.get("tokens"), list):
            return " ".join(str(t) for t in sentence["tokens"])
    return ""


def read_karpathy(path: Path) -> dict[str, Any]:
    """The whole Karpathy split file (top-level keys kept), checked: `DataError` naming the file and entry."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg}, line {err.lineno} column {err.colno})") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f'{path}: not a Karpathy split file: no top-level list "images"')
    for i, entry in enumerate(data["images"]):
        missing = [k for k in ("filename", "sentences") if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise DataError(f"{path}: images[{i}] has no {', '.join(repr(k) for k in missing)}")
    return data


# ------------------------------------------------------------------------------------ image folders


class ImageFolderClasses(Dataset):
    """`root/<class>/<image>` for zero-shot and linear-probe classification.

    Samples are `{"image", "label": int, "class_name", "id", "path"}`; classes are the sorted folder names
    (`.classes`), `.class_names` the same with `_` as spaces, ready for prompts like "a photo of a {}".
    Unreadable images become skip markers, like the pair sources.
    """

    def __init__(self, root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: not a directory")
        exts = {e.lower() for e in extensions}
        self.classes = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not self.classes:
            raise DataError(f"{self.root}: no class folders (expected root/<class>/<image>)")
        self.class_names = [c.replace("_", " ") for c in self.classes]
        self.samples: list[tuple[Path, int]] = [
            (p, label)
            for label, name in enumerate(self.classes)
            for p in sorted((self.root / name).rglob("*"))
            if p.suffix.lower() in exts and p.is_file()
        ]
        if not self.samples:
            raise DataError(f"{self.root}: no images with extensions {sorted(exts)} in the class folders")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        path, label = self.samples[index]
        sample_id = path.relative_to(self.root).as_posix()
        try:
            image = decode_image(path, path)
        except SAMPLE_ERRORS as err:
            return skip_marker(sample_id, path, _reason(err))
        return {
            "image": image,
            "label": label,
            "class_name": self.class_names[label],
            "id": sample_id,
            "path": str(path),
        }
