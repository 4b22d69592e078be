"""webdataset tar shards: write them from any source, stream them back as an `IterableDataset`.

A shard is a plain tar file in webdataset's layout: the members of one sample share a key
(`000000042.png`, `000000042.txt`, `000000042.json`). The image keeps its original bytes when the source
read it from a file (no re-encoding, so a PNG comes back pixel-equal and a JPEG byte-equal); images made in
memory are stored as PNG. `.txt` holds the caption of a single-caption sample, `.json` the id, the list
`"texts"` of a multi-caption sample and the other JSON-able fields (`"label"`, `"class_name"`, ...).

`write_shards` puts an index first in each shard, a member named `__vlzoo_index__` (webdataset and other
readers skip `__…__` names): the number of samples, the first key, the fields every sample has and the
file's size. It writes `name.tar.tmp` and renames it once the shard is whole, so a killed writer never
leaves a `.tar` that looks complete, and a rerun keeps the complete shards and continues after them.

Reading streams each shard sequentially (what makes shards fast on network and spinning disks), splits
the shard list by node (rank) then by DataLoader worker, and mixes samples through a shuffle buffer.
`resampled=True` draws shards with replacement for an epoch of `epoch_length` samples, as open_clip does
for large corpora, so that every worker always has data and epochs have a fixed length. The tar headers are
parsed by `tarstream.TarMembers` (≈6× less CPU than `tarfile`'s stream reader); the shuffle buffer holds
samples as read (their members' bytes) and each is parsed and decoded as it leaves the buffer, the order of
open_clip's webdataset pipeline (`UndecodedSample`); images are opened as the format their extension
names; `cache_decoded` keeps decoded images across epochs.

No sample is lost silently. The reader stops at the first header it can't trust (a bad checksum, a file
cut short), checks what follows the last member (a whole tar file has nothing there but zero blocks, at
least the two that close it) and turns what a broken shard lost into skip markers naming the shard: one
per missing sample when the shard has the index, otherwise one for "the rest of the shard". A sample
missing a field every sample of its shard has (its caption, say) is a skip too.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import hashlib
import io
import itertools
import json
import lzma
import os
import random
import tarfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from multiprocessing import Value
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.shardlists import expand_urls

from vlzoo.core.data.cache import DecodedImageCache, ProcessImageCache
from vlzoo.core.data.sources import (
    _DECODERS,
    SAMPLE_ERRORS,
    Sample,
    _reason,
    decode_image,
    is_skipped,
    skip_marker,
)
from vlzoo.core.data.tarstream import TarMembers
from vlzoo.core.errors import DataError

MemberDecoder = Callable[[bytes, str, str], Any]  # (image bytes, extension, name) → decoded image
SHARD_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp")
SHARD_INDEX = "__vlzoo_index__"  # webdataset skips member names that start and end with "__"
_INDEX_SIZE = 1024  # fixed, so that the index can be filled in when the shard is done without moving data
_TAR_BLOCK = 512
_TAR_RECORD = 20 * _TAR_BLOCK  # tarfile pads the archive to a multiple of this
_TAR_END = 2 * _TAR_BLOCK  # two zero blocks close an archive
_INDEX_BYTES = _TAR_BLOCK + _INDEX_SIZE  # its header and data
_FORMAT = tarfile.USTAR_FORMAT  # webdataset's TarWriter default: our short names never need pax headers
_MTIME = 0  # an int: a float mtime makes tarfile add a pax header to every member
_OWNER = "bigdata"  # webdataset's TarWriter default user and group


# ------------------------------------------------------------------------------------------- writing


def write_shards(
    source: Iterable[Sample],
    pattern: str | os.PathLike,
    max_size_bytes: int = 1_000_000_000,
    max_count: int = 10_000,
    resume: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the samples of `source` to tar shards; returns the shard paths in order.

    - `source`: a map-style source (`__len__` + `__getitem__`: CsvPairs, KarpathySplits, ToyWorld, ...) or
      any iterable of sample dicts. Skip markers (unreadable samples) are left out and reported in one
      warning with example files.
    - `pattern`: printf-style path of the shards, e.g. `"shards/coco-train-%06d.tar"`; folders are created.
    - `max_size_bytes`: no shard file is larger than this (tar headers, index and padding counted), unless
      one sample alone is larger: it then gets a shard of its own, with a warning.
    - `max_count`: at most this many samples per shard.
    - `resume`: keep the complete shards a killed or finished earlier run wrote from a map-style source
      with the same settings, whose first sample is still the same (shards are deterministic, so they
      are the ones this run would write), and continue after them; `log` receives one line saying what
      was kept. `False`, or a source that is only iterable, writes every shard again.

    Keys are the running sample number (webdataset keys can't hold dots, ids can); the source's id is
    kept in the `.json` member. Tar members carry mtime 0, so the same source gives byte-identical shards.
    """
    pattern = str(pattern)
    try:
        pattern % 0
    except TypeError as err:
        raise DataError(
            f"shard pattern {pattern!r} needs one printf field for the shard number, e.g. %06d"
        ) from err
    if max_size_bytes < _TAR_RECORD or max_count < 1:
        raise DataError(f"{pattern}: max_size_bytes must be ≥ {_TAR_RECORD} and max_count ≥ 1")
    length = len(source) if _is_map(source) else None  # type: ignore[arg-type]
    settings = {"max_size_bytes": max_size_bytes, "max_count": max_count, "source_length": length}
    writer = _ShardRoller(pattern, settings)
    start = writer.keep_complete(lambda i: _digest_at(source, i)) if resume and length else 0
    if writer.paths and log is not None:
        log(f"kept {len(writer.paths)} complete shards of an earlier run ({writer.paths[-1]} the last)")
    skipped: list[Sample] = []
    try:
        for position, sample in _iterate(source, start):
            if is_skipped(sample):
                skipped.append(sample)
                continue
            writer.write(*_encode_sample(sample), position)
    except BaseException:
        writer.abandon()  # the shard in progress goes (a kill leaves its .tmp, which no reader takes)
        raise
    writer.close()
    if skipped:
        examples = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:5])
        warnings.warn(
            f"write_shards({pattern}): skipped {len(skipped)} unreadable samples, e.g. {examples}",
            stacklevel=2,
        )
    return writer.paths


def _is_map(source: Iterable[Sample]) -> bool:
    return (
        hasattr(source, "__len__")
        and hasattr(source, "__getitem__")
        and not isinstance(source, IterableDataset)
    )


def _iterate(source: Iterable[Sample], start: int = 0) -> Iterator[tuple[int, Sample]]:
    """(position, sample) from position `start` on; a map-style source isn't read before it."""
    if _is_map(source):
        return ((i, source[i]) for i in range(start, len(source)))  # type: ignore[index, arg-type]
    return itertools.islice(enumerate(source), start, None)


def _encode_sample(sample: Sample) -> tuple[dict[str, bytes], frozenset[str]]:
    """A source sample → (tar members: extension → bytes, the sample's fields)."""
    out: dict[str, bytes] = {}
    ext, data = _image_bytes(sample)
    out[ext] = data
    meta = {k: v for k, v in sample.items() if k not in ("image", "text", "path") and _jsonable(v)}
    if "text" in sample:
        out["txt"] = sample["text"].encode("utf-8")
    out["json"] = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    return out, _fields(out, meta)


def _digest_at(source: Sequence[Sample], position: int) -> str | None:
    sample = source[position]
    return None if is_skipped(sample) else _digest(_encode_sample(sample)[0])


def _digest(members: Mapping[str, bytes]) -> str:
    """What tells a sample's members from another's: their sha256."""
    digest = hashlib.sha256()
    for ext, data in sorted(members.items()):
        digest.update(f"{ext}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def _fields(extensions: Iterable[str], meta: Mapping[str, Any]) -> frozenset[str]:
    """What a sample carries, by name: `image`, `caption` (a `.txt` member or json `"texts"`), its json
    keys. The writer records those every sample of a shard has; the reader skips a sample lacking one."""
    extensions = set(extensions)
    fields = set(meta) - {"texts"}
    if extensions & set(SHARD_IMAGE_EXTENSIONS):
        fields.add("image")
    if "txt" in extensions or "texts" in meta:
        fields.add("caption")
    return frozenset(fields)


def _image_bytes(sample: Sample) -> tuple[str, bytes]:
    path = sample.get("path")
    if path and os.path.isfile(path):
        ext = Path(path).suffix.lower().lstrip(".")
        if ext in SHARD_IMAGE_EXTENSIONS:
            return ("jpg" if ext == "jpeg" else ext), Path(path).read_bytes()
    image = sample["image"]
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise DataError(f"sample {sample.get('id')!r}: can't store an image of type {type(image).__name__}")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "png", buf.getvalue()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, _MTIME, 0o444
    info.uname = info.gname = _OWNER
    return info


def _tar_size(key: str, members: Mapping[str, bytes]) -> int:
    """Bytes the members take in the archive: the header blocks tarfile writes for each (asked of tarfile
    itself, so that any extended header is counted), and the data padded to whole blocks."""
    size = 0
    for ext, value in members.items():
        size += len(_tar_info(f"{key}.{ext}", len(value)).tobuf(_FORMAT, "utf-8", "surrogateescape"))
        size += -(-len(value) // _TAR_BLOCK) * _TAR_BLOCK
    return size


def _file_size(content: int) -> int:
    return -(-(content + _TAR_END) // _TAR_RECORD) * _TAR_RECORD


class _ShardRoller:
    """Opens the next shard when the current one would pass the size or count limit.

    webdataset's ShardWriter checks the limit only *after* a write and ignores tar padding, so its shards
    overshoot; here the exact on-disk size is predicted before each write.
    """

    def __init__(self, pattern: str, settings: dict[str, Any]):
        self.pattern, self.settings = pattern, settings
        self.max_size, self.max_count = settings["max_size_bytes"], settings["max_count"]
        self.paths: list[Path] = []
        self.shard: _OpenShard | None = None
        self.count_total = 0
        self.position = 0  # of the source: where the next shard's samples start

    def keep_complete(self, digest_at: Callable[[int], str]) -> int:
        """Adopt the complete shards an earlier run wrote with the same settings, in order, up to the first
        that is missing or different (`digest_at(position)`: the digest of the source's sample there, to
        compare with the shard's first); returns the source position to continue from."""
        while True:
            path = Path(self.pattern % len(self.paths))
            index = read_shard_index(path)
            source = index.get("source") if index is not None else None
            if (
                index is None
                or index["first_key"] != f"{self.count_total:09d}"
                or index.get("written_with") != self.settings
                or path.stat().st_size != index.get("bytes")
                or not (
                    isinstance(source, list) and len(source) == 2 and self.position <= source[0] < source[1]
                )
                or index.get("first_sample") != digest_at(source[0])
            ):
                return self.position
            self.paths.append(path)
            self.count_total += index["samples"]
            self.position = index["source"][1]

    def write(self, members: dict[str, bytes], fields: frozenset[str], position: int) -> None:
        key = f"{self.count_total:09d}"
        size = _tar_size(key, members)
        shard = self.shard
        if shard is None or shard.samples >= self.max_count or _file_size(shard.size + size) > self.max_size:
            self._next(position)
        if _file_size(_INDEX_BYTES + size) > self.max_size:
            warnings.warn(
                f"{self.paths[-1]}: sample {key} alone takes "
                f"{_file_size(_INDEX_BYTES + size)} bytes, more than max_size_bytes={self.max_size}; "
                "it gets a shard of its own",
                stacklevel=3,
            )
        self.shard.add(key, members, fields, size, position)
        self.count_total += 1

    def _next(self, position: int) -> None:
        self.close()
        path = Path(self.pattern % len(self.paths))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.paths.append(path)
        self.shard = _OpenShard(path, f"{self.count_total:09d}", position, self.settings)

    def close(self) -> None:
        if self.shard is not None:
            self.shard.finish()
            self.shard = None

    def abandon(self) -> None:
        if self.shard is not None:
            self.shard.abandon()
            self.shard = None


class _OpenShard:
    """One shard being written to `name.tar.tmp`: the index first, as a placeholder of fixed size filled in
    by `finish`, which then flushes the file to disk and renames it to `name.tar`."""

    def __init__(self, path: Path, first_key: str, position: int, settings: dict[str, Any]):
        self.path, self.tmp = path, path.with_name(path.name + ".tmp")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed by finish or abandon)
        self.tar = tarfile.TarFile(fileobj=self.file, mode="w", format=_FORMAT)
        self.tar.addfile(_tar_info(SHARD_INDEX, _INDEX_SIZE), io.BytesIO(b" " * _INDEX_SIZE))
        self.index_at = self.tar.offset - _INDEX_SIZE
        self.index: dict[str, Any] = {"vlzoo_shard": 1, "samples": 0, "first_key": first_key}
        self.index["source"] = [position, position]
        self.index["written_with"] = settings
        self.fields: frozenset[str] | None = None
        self.size = _INDEX_BYTES
        self.samples = 0

    def add(
        self, key: str, members: dict[str, bytes], fields: frozenset[str], size: int, position: int
    ) -> None:
        for ext, data in sorted(members.items()):
            self.tar.addfile(_tar_info(f"{key}.{ext}", len(data)), io.BytesIO(data))
        if not self.samples:
            self.index["first_sample"] = _digest(members)
        self.fields = fields if self.fields is None else self.fields & fields
        self.size += size
        self.samples += 1
        self.index["source"][1] = position + 1

    def finish(self) -> None:
        self.tar.close()  # the closing zero blocks and the record padding; the file stays open
        self.index.update(samples=self.samples, fields=sorted(self.fields or ()), bytes=self.file.tell())
        self.file.seek(self.index_at)
        self.file.write(_index_bytes(self.index))
        self.file.flush()
        os.fsync(self.file.fileno())  # the data reaches the disk before the name says the shard is whole
        self.file.close()
        os.replace(self.tmp, self.path)

    def abandon(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def _index_bytes(index: dict[str, Any]) -> bytes:
    data = json.dumps(index, ensure_ascii=False).encode("utf-8")
    if len(data) > _INDEX_SIZE:  # too many json keys to list: readers then require image and caption only
        data = json.dumps({k: v for k, v in index.items() if k != "fields"}).encode("utf-8")
    return data.ljust(_INDEX_SIZE, b" ")


def _parse_index(data: bytes) -> dict[str, Any] | None:
    """The index of a shard `write_shards` finished, or None (a placeholder, something else)."""
    try:
        index = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(index, dict) or index.get("vlzoo_shard") != 1:
        return None
    first, samples = index.get("first_key"), index.get("samples")
    ok = isinstance(first, str) and first.isdigit() and isinstance(samples, int) and samples >= 0
    return index if ok else None


def read_shard_index(path: str | os.PathLike) -> dict[str, Any] | None:
    """The index `write_shards` puts first in a shard (`samples`, `first_key`, `fields`, `bytes`, ...), or
    None for a shard without one (written by other tools) or a file that isn't a finished shard."""
    try:
        with open(path, "rb") as f:
            head = f.read(_INDEX_BYTES)
        info = tarfile.TarInfo.frombuf(head[:_TAR_BLOCK], "utf-8", "surrogateescape")
    except (OSError, tarfile.TarError):
        return None
    if info.name != SHARD_INDEX or info.size != _INDEX_SIZE:
        return None
    return _parse_index(head[_TAR_BLOCK:])


# ------------------------------------------------------------------------------------------- reading


def expand_shards(urls: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """`"dir/shard-{000000..000009}.tar"` (brace ranges, `::` between lists), a path, or a list of paths."""
    if isinstance(urls, str | os.PathLike):
        return expand_urls(str(urls))
    return [str(u) for u in urls]


# Samples in the buffer before the first leaves it (webdataset's `initial`, its default).
SHUFFLE_INITIAL = 100


class ShardSource(IterableDataset):
    """Samples streamed from webdataset tar shards, in the same dict form as the map-style sources.

    - Shards are split by node (torch.distributed rank) and then by DataLoader worker, so with
      `resampled=False` every sample is seen exactly once per epoch over all processes (ranks get whole
      shards: have at least as many shards as ranks × workers, or some will idle).
    - `shuffle_buffer` samples are mixed per worker (0 turns shuffling off, shard order included);
      the order depends on `seed` and the epoch (`set_epoch`, shared with running workers). The first
      sample leaves once `SHUFFLE_INITIAL` are in, as in webdataset's `shuffle`, not after a whole buffer.
    - `resampled=True`: each worker draws shards with replacement until it has yielded its part of
      `epoch_length` samples (required then; the parts add up to exactly `epoch_length`).
    - A corrupt member becomes a skip marker (path `shard.tar#key`), not an exception; a shard cut short or
      with a corrupt header yields a marker for each sample it lost (see `read_shard`), so that the skip
      count and its threshold see them.
    - `cache_decoded`: keep up to this many decoded images in memory, per process (`DecodedImageCache`),
      for small datasets read every epoch; it lasts across epochs in DataLoader workers only with
      `persistent_workers=True`. 0 (the default) decodes every time.
    - `jpeg_draft`: the size (an int, or (height, width)) the transform needs at least; a JPEG at least
      twice as large is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling (PIL's `draft`), never
      below that size, which cuts its decode time about as much. Pixels then differ a little from a full
      decode followed by the transform's resize; give some margin for a random crop (e.g. 1.25 × the
      model's size). None (the default) decodes at full size.
    """

    def __init__(
        self,
        urls: str | os.PathLike | Sequence[str | os.PathLike],
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        epoch_length: int | None = None,
        seed: int = 0,
        split_by_node: bool = True,
        num_samples: int | None = None,
        cache_decoded: int = 0,
        jpeg_draft: int | tuple[int, int] | None = None,
    ):
        self.urls = expand_shards(urls)
        if not self.urls:
            raise DataError(f"no shards in {urls!r}")
        missing = [u for u in self.urls if "://" not in u and not os.path.isfile(u)]
        if missing:
            raise DataError(
                f"shard file not found: {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        if resampled and not epoch_length:
            raise DataError(f"{self.urls[0]}...: resampled shards need an epoch_length (samples per epoch)")
        self.shuffle_buffer = shuffle_buffer
        self.resampled = resampled
        self.epoch_length = epoch_length
        self.seed = seed
        self.split_by_node = split_by_node
        self.num_samples = num_samples
        if cache_decoded < 0:
            raise DataError(f"{self.urls[0]}...: cache_decoded must be ≥ 0, got {cache_decoded}")
        self.jpeg_draft = (jpeg_draft, jpeg_draft) if isinstance(jpeg_draft, int) else jpeg_draft
        if self.jpeg_draft is not None and min(self.jpeg_draft) < 1:
            raise DataError(f"{self.urls[0]}...: jpeg_draft must be a positive size, got {jpeg_draft}")
        self.cache_decoded = cache_decoded
        self._caches = ProcessImageCache()
        # A shared int: persistent DataLoader workers see the epoch the main process sets (open_clip's trick).
        self._epoch = Value("i", 0)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = epoch

    def __len__(self) -> int:
        n = self.epoch_length if self.resampled else self.num_samples
        if n is None:
            raise TypeError(
                "ShardSource has no length unless resampled (epoch_length) or num_samples is given"
            )
        return n

    def __iter__(self) -> Iterator[Sample]:
        rank, world = _node_info() if self.split_by_node else (0, 1)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self._epoch.value
        rng = random.Random(f"{self.seed}-{epoch}-{rank}-{worker}")
        if self.resampled:
            slot, slots = rank * workers + worker, world * workers
            quota = self.epoch_length // slots + (slot < self.epoch_length % slots)
            stream = _take(self._resampled_samples(rng), quota)
        else:
            shards = self.urls[rank::world][worker::workers]
            if self.shuffle_buffer > 0:
                shards = shards.copy()
                rng.shuffle(shards)
            stream = itertools.chain.from_iterable(map(shard_items, shards))
        decode = self._decode()
        for item in _shuffled(stream, self.shuffle_buffer, rng):
            yield item if isinstance(item, dict) else item.sample(decode)

    def _resampled_samples(self, rng: random.Random) -> Iterator[Sample | UndecodedSample]:
        while True:
            yield from shard_items(rng.choice(self.urls))

    def _decode(self) -> MemberDecoder:
        decode = decode_member
        if self.jpeg_draft is not None:
            decode = functools.partial(decode_member, jpeg_draft=self.jpeg_draft)
        cache = self.image_cache()
        return decode if cache is None else CachedDecoder(decode, cache)

    def image_cache(self) -> DecodedImageCache | None:
        """This process's cache of decoded images (None when `cache_decoded` is 0)."""
        return self._caches.get(self.cache_decoded)


def _node_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _take(it: Iterator[Any], n: int) -> Iterator[Any]:
    for _, sample in zip(range(n), it):
        yield sample


def _shuffled(
    stream: Iterable[Any], size: int, rng: random.Random, initial: int = SHUFFLE_INITIAL
) -> Iterator[Any]:
    """A buffer of up to `size` samples, each emitted sample drawn from it at random, as webdataset's
    `shuffle(size, initial)`: emission starts once `initial` samples are in, and while the buffer grows it
    reads two samples per one emitted, so an epoch's first batch doesn't wait for a whole buffer's reading."""
    if size <= 1:
        yield from stream
        return
    initial = min(initial, size)
    stream = iter(stream)
    buf: list[Any] = []
    for sample in stream:
        buf.append(sample)
        if len(buf) < size:
            buf.extend(itertools.islice(stream, 1))
        if len(buf) >= initial:
            i = rng.randrange(len(buf))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


def read_shard(path: str, decode: MemberDecoder | None = None) -> Iterator[Sample]:
    """Samples of one tar shard in file order, then a skip marker (naming the shard) for each sample it lost.

    A shard that breaks (cut short, a corrupt header, an unreadable member) yields what comes before the
    break, and for the rest: one marker per missing sample when it has `write_shards`' index, else one
    marker saying from which byte the rest is unreadable. The sample right before a break of an index-less
    shard may lack members that came after it and is skipped too; with the index, the fields every sample
    has tell whether it is whole. `decode(bytes, extension, name)` decodes the image members (default
    `decode_member`).
    """
    for item in shard_items(path):
        yield item if isinstance(item, dict) else item.sample(decode)


class UndecodedSample:
    """A sample's tar members as read, before anything is parsed or decoded: `sample(decode)` makes the
    sample dict (or its skip marker).

    `ShardSource` shuffles these and decodes each as it leaves the shuffle buffer, as webdataset's pipeline
    in open_clip does (shuffle, then decode): the buffer then holds the files' bytes, not decoded images
    (smaller, by 2-10×), and an image is decoded right before its transform reads it, while it is still in
    the CPU's cache. Decoding into a buffer of a thousand cost 12 µs more CPU per 64-px PNG (10% of reading it)."""

    __slots__ = ("duplicate", "key", "members", "note", "required", "shard")

    def __init__(
        self,
        group: tuple[str, dict[str, bytes], str | None],
        shard: str,
        required: frozenset[str],
        note: str | None = None,
    ):
        self.key, self.members, self.duplicate = group
        self.shard, self.required = shard, required
        self.note = note  # why the shard broke right after this sample, added to its reason if skipped

    def sample(self, decode: MemberDecoder | None = None) -> Sample:
        where = f"{self.shard}#{self.key}"
        if self.duplicate is not None:
            out = skip_marker(self.key, where, f"two .{self.duplicate} members")
        else:
            out = decode_shard_sample(self.members, self.key, self.shard, self.required, decode)
        if self.note is not None and is_skipped(out):
            out["reason"] += f" (the shard breaks after it: {self.note})"
        return out


def shard_items(path: str) -> Iterator[Sample | UndecodedSample]:
    """What `read_shard` yields, with each sample left undecoded (`UndecodedSample`); skip markers for what
    the shard lost are sample dicts already."""
    walk = _TarWalk(path)
    seen: set[str] = set()
    required: frozenset[str] | None = None
    held: tuple[str, dict[str, bytes], str | None] | None = None  # yielded once the next one shows it whole
    for group in _grouped(walk.files()):
        if required is None:
            required = _required_fields(walk.index, group[1])
        if held is not None:
            yield UndecodedSample(held, path, required)
        held = group
        seen.add(group[0])
    if held is not None:
        if walk.problem is not None and walk.index is None:
            yield skip_marker(held[0], f"{path}#{held[0]}", f"may be incomplete: {walk.problem}")
        else:
            yield UndecodedSample(held, path, required or frozenset(), walk.problem)
    yield from _lost_samples(path, walk, seen)


_CAPTION_FIELDS = frozenset(("caption", "texts"))


def _has_field(field: str, members: Mapping[str, bytes], meta: Mapping[str, Any]) -> bool:
    """Whether a sample with an image member has `field` (`field in _fields(members, meta)`, with less work)."""
    if field == "caption":
        return "txt" in members or "texts" in meta
    return field == "image" or (field != "texts" and field in meta)


def _required_fields(index: dict[str, Any] | None, first: dict[str, bytes]) -> frozenset[str]:
    """The fields every sample must have: the shard's own list when it has the index, else image and caption
    where its first sample has them (a shard of other tools may vary in its json keys)."""
    if index is not None and isinstance(index.get("fields"), list):
        return frozenset(index["fields"])
    return _fields(first, _meta(first)) & {"image", "caption"}


def _meta(members: Mapping[str, bytes]) -> dict[str, Any]:
    try:
        meta = json.loads(members["json"]) if "json" in members else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _lost_samples(path: str, walk: _TarWalk, seen: set[str]) -> Iterator[Sample]:
    if walk.index is not None:
        first = int(walk.index["first_key"])
        keys = (f"{first + i:09d}" for i in range(walk.index["samples"]))
        reason = walk.problem or "the shard's index lists it but the shard doesn't hold it"
        for key in keys:
            if key not in seen:
                yield skip_marker(key, f"{path}#{key}", f"lost: {reason}")
    elif walk.problem is not None:
        yield skip_marker(
            None, path, f"{walk.problem}; how many samples that lost is unknown (counted as one)"
        )


def _grouped(files: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, dict[str, bytes], str | None]]:
    """Consecutive members that share a key → (key, {extension: bytes}, a repeated extension or None).

    Names split as webdataset splits them: the key is the path up to the first dot of the file name (a
    name without a dot, or starting with one, is no sample member)."""
    key, group, duplicate = None, {}, None
    for name, data in files:
        start = name.rfind("/") + 1
        dot = name.find(".", start)
        if dot <= start:
            continue
        if name[:dot] != key:
            if group:
                yield key, group, duplicate
            key, group, duplicate = name[:dot], {}, None
        ext = name[dot + 1 :].lower()
        duplicate = ext if ext in group else duplicate
        group[ext] = data
    if group:
        yield key, group, duplicate


# A compressed shard is decompressed here, not by tarfile, so that the walk sees the tar bytes themselves.
_DECOMPRESSORS: dict[bytes, Callable[[BinaryIO], BinaryIO]] = {
    b"\x1f\x8b": lambda f: gzip.GzipFile(fileobj=f),
    b"BZh": lambda f: bz2.BZ2File(f),
    b"\xfd7zXZ\x00": lambda f: lzma.LZMAFile(f),  # noqa: SIM115 (closed with the file it reads)
}
_READ_BUFFER = 1 << 20  # one read syscall per MB, not per member


class _TarWalk:
    """The regular files of a tar shard, in order, as (name, bytes); never raises for a damaged file.

    `problem` says afterwards where and why the shard ended early (None for a whole one); `index` is the
    shard's `write_shards` index, if it has one.
    """

    def __init__(self, path: str):
        self.path = path
        self.index: dict[str, Any] | None = None
        self.problem: str | None = None

    def files(self) -> Iterator[tuple[str, bytes]]:
        try:
            raw = open(self.path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 (closed below)
        except OSError as err:
            self.problem = f"the shard can't be opened: {_reason(err)}"
            return
        with raw:
            members = TarMembers(_decompressed(raw))
            for at, name, data in members.files():
                if name == SHARD_INDEX and at == 0:
                    self.index = _parse_index(data)
                elif not (name.startswith("__") and name.endswith("__")):
                    yield name, data
            self.problem = members.problem


def _decompressed(raw: BinaryIO) -> BinaryIO:
    magic = raw.peek(6)[:6] if hasattr(raw, "peek") else b""
    opener = next((f for m, f in _DECOMPRESSORS.items() if magic.startswith(m)), None)
    return opener(raw) if opener is not None else raw


def decode_shard_sample(
    members: dict[str, bytes],
    key: str,
    shard: str,
    required: frozenset[str] = frozenset(),
    decode: MemberDecoder | None = None,
) -> Sample:
    """Tar members of one sample → a sample dict, or a skip marker naming `shard#key` and the problem: a bad
    json, no image, a field of `required` missing (e.g. `"caption"`), an empty caption, a broken image.
    `decode(bytes, extension, "shard#key.extension")` decodes the image (default `decode_member`)."""
    where = f"{shard}#{key}"
    try:
        meta = json.loads(members["json"]) if "json" in members else {}
        if not isinstance(meta, dict):
            raise DataError("the .json member is not an object")
        sample_id = meta.get("id", key)
    except (ValueError, UnicodeDecodeError) as err:
        return skip_marker(key, where, f"bad .json member: {_reason(err)}")
    for image_ext in SHARD_IMAGE_EXTENSIONS:
        if image_ext in members:
            break
    else:
        return skip_marker(sample_id, where, f"no image member (has {sorted(members)})")
    # a json key is a field the sample has, unless it names a caption (those come from .txt or "texts")
    unsure = required.difference(meta).union(required.intersection(_CAPTION_FIELDS))
    missing = [f for f in unsure if not _has_field(f, members, meta)]
    if missing:
        return skip_marker(
            sample_id, where, f"no {', '.join(sorted(missing))}, which every sample of the shard has"
        )
    sample: Sample = meta  # parsed for this sample alone: it becomes the sample, with its keys in order
    sample["id"], sample["__key__"], sample["__shard__"] = sample_id, key, shard
    if "txt" in members:
        sample["text"] = members["txt"].decode("utf-8", "replace").strip()
        if not sample["text"]:
            return skip_marker(sample_id, where, "empty caption")
    elif "texts" in meta:
        sample["texts"] = [t.strip() for t in meta["texts"] if isinstance(t, str) and t.strip()]
        if not sample["texts"]:
            return skip_marker(sample_id, where, "empty caption")
    name = f"{where}.{image_ext}"
    try:
        sample["image"] = (decode or decode_member)(members[image_ext], image_ext, name)
    except SAMPLE_ERRORS as err:
        return skip_marker(sample_id, name, _reason(err))
    return sample


# PIL's format of each image extension a shard may hold: opening with it skips PIL's probing of others.
_PIL_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "tif": "TIFF", "tiff": "TIFF", "webp": "WEBP"}
_PIL_FORMATS["bmp"] = "BMP"


def decode_member(data: bytes, ext: str, name: str, jpeg_draft: tuple[int, int] | None = None) -> Any:
    """`decode_image(data, name)` for the image member of extension `ext`, with less work per image.

    A decoder a domain registered for `.ext` decodes it as everywhere. Otherwise PIL opens it as the format
    its extension names (a mislabeled file falls back to PIL's probing) and loads it fully (a truncated
    file fails here); an RGB image is returned as loaded, without the copy `convert("RGB")` makes.
    `jpeg_draft` = (height, width): a JPEG is decoded at the smallest DCT scale that keeps it at least
    that large (see `ShardSource`).
    """
    fmt = _PIL_FORMATS.get(ext)
    if fmt is None or f".{ext}" in _DECODERS:
        return decode_image(data, name)
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
    except UnidentifiedImageError:
        return decode_image(data, name)
    if jpeg_draft is not None and image.format == "JPEG":
        image.draft("RGB", (jpeg_draft[1], jpeg_draft[0]))  # PIL sizes are (width, height)
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


class CachedDecoder:
    """A `MemberDecoder` that serves the images it decoded before from a `DecodedImageCache`, by name
    (`shard#key.ext`, unique per member)."""

    def __init__(self, decode: MemberDecoder, cache: DecodedImageCache):
        self.decode, self.cache = decode, cache

    def __call__(self, data: bytes, ext: str, name: str) -> Any:
        return self.cache.get_or_decode(name, lambda: self.decode(data, ext, name))
