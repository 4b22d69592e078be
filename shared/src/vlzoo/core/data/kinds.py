"""Data kinds: what a recipe's `data:` names and how it is read.

A *kind* turns a path into a map-style or iterable dataset of sample dicts: the core has `csv`, `tsv`,
`jsonl`, `karpathy` and `webdataset`; a domain adds its own (`medconcept`, `rs-karpathy`, ...) with
`register_data_kind`. A *generated dataset* (`toyworld`, a domain's `rs-toyworld`) is a name instead of a
path: its writer runs once under the datamodule's `data_dir` and the file it writes is then read with its
kind. Domains register both when their `vlzoo.models` entry point is imported, so lookups discover plugins
first. A name belongs to the module that registered it first (`plugins.register_unique`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vlzoo.core.data.shards import ShardSource
from vlzoo.core.data.sources import CsvPairs, JsonlPairs, KarpathySplits
from vlzoo.core.data.toyworld import write_toyworld
from vlzoo.core.errors import ConfigError
from vlzoo.core.plugins import discover_plugins, owner_of, register_unique

# build(path, split, captions, options) -> Dataset. `captions` is "all" when evaluating (every caption of
# an image), else the training mode ("random" / "each"); `options` holds the datamodule's arguments
# (img_key, caption_key, data_dir, shuffle_buffer, ...) plus `train`.
SourceBuilder = Callable[[str, str, str, Mapping[str, Any]], Dataset]


@dataclass(frozen=True)
class DataKind:
    name: str
    build: SourceBuilder
    suffixes: tuple[str, ...] = ()
    has_splits: bool = False  # one file holds train/val/test (Karpathy JSON): evaluation defaults to it
    owner: str = ""  # the module that registered it; another module may not take the name
    options: tuple[str, ...] = ()  # the `data_options` keys its reader takes (`image_root`, `bands`, ...)


@dataclass(frozen=True)
class GeneratedDataset:
    name: str
    write: Callable[..., Any]
    filename: str
    kind: str = "karpathy"
    owner: str = ""


_KINDS: dict[str, DataKind] = {}
_GENERATED: dict[str, GeneratedDataset] = {}


def register_data_kind(
    name: str,
    build: SourceBuilder,
    suffixes: tuple[str, ...] | list[str] = (),
    has_splits: bool = False,
    options: tuple[str, ...] | list[str] = (),
) -> None:
    """Read data of kind `name` (and, with `data_kind: auto`, files ending in one of `suffixes`) with
    `build(path, split, captions, options)`. `has_splits`: one file holds every split, so validation and
    test default to the training file. `options`: the `data_options` keys the reader takes; any other is
    refused before data is read. Another module's name is refused with a `ConfigError`."""
    kind = DataKind(
        name, build, tuple(s.lower() for s in suffixes), has_splits, owner_of(build), tuple(options)
    )
    register_unique(_KINDS, name, kind, what="data kind")


def register_generated_dataset(
    name: str, write: Callable[..., Any], filename: str, kind: str = "karpathy"
) -> None:
    """`data: <name>` runs `write(data_dir, **generate)` once (when `data_dir/filename` is missing) and reads
    `data_dir/filename` as data of `kind`. Another module's name is refused with a `ConfigError`."""
    dataset = GeneratedDataset(name, write, filename, kind, owner_of(write))
    register_unique(_GENERATED, name, dataset, what="generated dataset")


def data_kinds() -> list[str]:
    discover_plugins()
    return sorted(_KINDS)


def generated_datasets() -> list[str]:
    discover_plugins()
    return sorted(_GENERATED)


def get_data_kind(name: str) -> DataKind:
    if name not in _KINDS:
        discover_plugins()
    if name not in _KINDS:
        raise ConfigError(f"unknown data kind {name!r}; the kinds are {sorted(_KINDS)}")
    return _KINDS[name]


def get_generated_dataset(name: str) -> GeneratedDataset | None:
    if name not in _GENERATED:
        discover_plugins()
    return _GENERATED.get(name)


def check_data_options(kinds: list[str], options: Mapping[str, Any], key: str = "data.data_options") -> None:
    """Refuse `options` keys that none of the data `kinds` reads, with suggestions, before any data is read
    (an ignored `image_root` would only show later as every sample "unreadable")."""
    known = sorted({o for kind in kinds for o in get_data_kind(kind).options})
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ConfigError(
            f"{key}: {', '.join(map(repr, unknown))} not read by data kind {' / '.join(sorted(set(kinds)))}"
            f"{_suggest(unknown, known)}; it takes {known or 'no options'}"
        )


def check_generate_options(name: str, options: Mapping[str, Any], key: str = "data.generate") -> None:
    """Refuse arguments the writer of generated dataset `name` does not take, with suggestions, before any
    model or data is built."""
    spec = get_generated_dataset(name)
    if spec is None:
        raise ConfigError(f"{name!r} is not a generated dataset; those are {generated_datasets()}")
    parameters = list(inspect.signature(spec.write).parameters.values())[1:]  # the first is the folder
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    known = [p.name for p in parameters]
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ConfigError(
            f"{key}: {name}'s writer takes no {', '.join(map(repr, unknown))}{_suggest(unknown, known)}; "
            f"it takes {known}"
        )


def _suggest(unknown: list[str], known: list[str]) -> str:
    close = [m for k in unknown for m in difflib.get_close_matches(k, known, n=1)]
    return f" (did you mean {', '.join(close)}?)" if close else ""


def infer_data_kind(path: str) -> str:
    """The kind a data argument names: a generated dataset's name, else the longest matching file suffix
    (`.csv`, `.tsv`, `.jsonl`, `.json` = Karpathy, a domain's own), else `webdataset` for `.tar` shards."""
    if get_generated_dataset(path) is not None:
        return path
    name = str(path).split("::")[0].lower()
    matches = [(len(s), kind.name) for kind in _KINDS.values() for s in kind.suffixes if name.endswith(s)]
    if matches:
        return max(matches)[1]
    if ".tar" in name:
        return "webdataset"
    raise ConfigError(
        f"cannot tell the format of data {path!r}: give data_kind (one of {data_kinds()}) or a generated "
        f"dataset's name ({generated_datasets()})"
    )


def build_source(path: str, kind: str, split: str, captions: str, options: Mapping[str, Any]) -> Dataset:
    return get_data_kind(kind).build(str(path), split, captions, options)


def ensure_generated(name: str, data_dir: str | Path, options: Mapping[str, Any] | None = None) -> Path:
    """Write generated dataset `name` under `data_dir` unless its file is there; return that file."""
    spec = get_generated_dataset(name)
    if spec is None:
        raise ConfigError(f"{name!r} is not a generated dataset; those are {generated_datasets()}")
    path = Path(data_dir) / spec.filename
    if not path.is_file():
        check_generate_options(name, options or {})
        spec.write(data_dir, **dict(options or {}))
    return path


# ------------------------------------------------------------------------------------ the core's kinds


def _csv(sep: str) -> SourceBuilder:
    def build(path: str, split: str, captions: str, options: Mapping[str, Any]) -> Dataset:
        return CsvPairs(
            path,
            img_key=options.get("img_key") or "filepath",
            caption_key=options.get("caption_key") or "title",
            sep=sep,
            image_root=options.get("image_root"),
            cache_decoded=int(options.get("cache_decoded", 0)),
        )

    return build


def _jsonl(path: str, split: str, captions: str, options: Mapping[str, Any]) -> Dataset:
    return JsonlPairs(
        path,
        img_key=options.get("img_key") or "image",
        caption_key=options.get("caption_key") or "text",
        captions="all" if captions == "all" else "first",
        image_root=options.get("image_root"),
        cache_decoded=int(options.get("cache_decoded", 0)),
    )


def _karpathy(path: str, split: str, captions: str, options: Mapping[str, Any]) -> Dataset:
    return KarpathySplits(
        path,
        split=split,
        captions=captions,  # type: ignore[arg-type]
        image_root=options.get("image_root"),
        cache_decoded=int(options.get("cache_decoded", 0)),
    )


def _webdataset(path: str, split: str, captions: str, options: Mapping[str, Any]) -> Dataset:
    train = bool(options.get("train", captions != "all"))
    epoch_length = options.get("epoch_length")
    return ShardSource(
        path,
        shuffle_buffer=options.get("shuffle_buffer", 1000) if train else 0,
        resampled=bool(options.get("resampled_shards", False)) and train,
        epoch_length=epoch_length,
        num_samples=epoch_length if train else None,
        seed=options.get("seed", 0),
        cache_decoded=int(options.get("cache_decoded", 0)),
        jpeg_draft=_size_or_none(options.get("jpeg_draft")),
    )


def _size_or_none(value: Any) -> int | tuple[int, int] | None:
    return tuple(value) if isinstance(value, list | tuple) else value  # YAML gives a list for (h, w)


# decoded images kept per process (LRU) for small scene sets; PIL's JPEG draft size for large JPEGs
SHARD_OPTIONS = ("cache_decoded", "jpeg_draft")
# image paths resolve against `image_root` instead of the index file's folder; decoded images kept per process
FOLDER_OPTIONS = ("image_root", "cache_decoded")
register_data_kind("csv", _csv(","), suffixes=(".csv",), options=FOLDER_OPTIONS)
register_data_kind("tsv", _csv("\t"), suffixes=(".tsv",), options=FOLDER_OPTIONS)
register_data_kind("jsonl", _jsonl, suffixes=(".jsonl",), options=FOLDER_OPTIONS)
register_data_kind("karpathy", _karpathy, suffixes=(".json",), has_splits=True, options=FOLDER_OPTIONS)
register_data_kind("webdataset", _webdataset, options=SHARD_OPTIONS)
register_generated_dataset("toyworld", write_toyworld, "toyworld.json", kind="karpathy")
