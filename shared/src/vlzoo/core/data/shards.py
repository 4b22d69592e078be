"""webdataset tar shards: write them from any source, stream them back as an `IterableDataset`.

A shard is a plain tar file in webdataset's layout: the members of one sample share a key
(`000000042.png`, `000000042.txt`, `000000042.json`). The image keeps its original bytes when the source
read it from a file (no re-encoding, so a PNG comes back pixel-equal and a JPEG byte-equal); images made in
memory are stored as PNG. `.txt` holds the caption of a single-caption sample, `.json` the id, the list
`"texts"` of a multi-caption sample and the other JSON-able fields (`"label"`, `"class_name"`, ...).

Reading streams each shard sequentially (what makes shards fast on network and spinning disks), splits
the shard list by node (rank) then by DataLoader worker, and mixes samples through a shuffle buffer.
`resampled=True` draws shards with replacement for an epoch of `epoch_length` samples, as open_clip does
for large corpora, so that every worker always has data and epochs have a fixed length.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from multiprocessing import Value
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info
from webdataset import TarWriter
from webdataset.handlers import reraise_exception
from webdataset.shardlists import expand_urls
from webdataset.tariterators import group_by_keys, tar_file_iterator

from vlzoo.core.data.sources import SAMPLE_ERRORS, Sample, _reason, decode_image, is_skipped, skip_marker
from vlzoo.core.errors import DataError

SHARD_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp")
_TAR_BLOCK = 512
_TAR_RECORD = 20 * _TAR_BLOCK  # tarfile pads the archive to a multiple of this
_TAR_END = 2 * _TAR_BLOCK  # two zero blocks close an archive
_MTIME = 0  # an int: a float mtime makes tarfile add a pax header to every member


# ------------------------------------------------------------------------------------------- writing


def write_shards(
    source: Iterable[Sample],
    pattern: str | os.PathLike,
    max_size_bytes: int = 1_000_000_000,
    max_count: int = 10_000,
) -> list[Path]:
    """Write the samples of `source` to tar shards; returns the shard paths in order.

    - `source`: a map-style source (`__len__` + `__getitem__`: CsvPairs, KarpathySplits, ToyWorld, ...) or
      any iterable of sample dicts. Skip markers (unreadable samples) are left out and reported in one
      warning with example files.
    - `pattern`: printf-style path of the shards, e.g. `"shards/coco-train-%06d.tar"`; folders are created.
    - `max_size_bytes`: no shard file is larger than this (tar headers and padding counted), unless one
      sample alone is larger: it then gets a shard of its own, with a warning.
    - `max_count`: at most this many samples per shard.

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
    writer = _ShardRoller(pattern, max_size_bytes, max_count)
    skipped: list[Sample] = []
    try:
        for sample in _iterate(source):
            if is_skipped(sample):
                skipped.append(sample)
                continue
            writer.write(_encode_sample(sample, writer.count_total))
    finally:
        writer.close()
    if skipped:
        examples = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:5])
        warnings.warn(
            f"write_shards({pattern}): skipped {len(skipped)} unreadable samples, e.g. {examples}",
            stacklevel=2,
        )
    return writer.paths


def _iterate(source: Iterable[Sample]) -> Iterator[Sample]:
    if (
        hasattr(source, "__len__")
        and hasattr(source, "__getitem__")
        and not isinstance(source, IterableDataset)
    ):
        return (source[i] for i in range(len(source)))
    return iter(source)


def _encode_sample(sample: Sample, index: int) -> dict[str, bytes | str]:
    """A source sample → tar members (extension → bytes)."""
    out: dict[str, bytes | str] = {"__key__": f"{index:09d}"}
    ext, data = _image_bytes(sample)
    out[ext] = data
    meta = {k: v for k, v in sample.items() if k not in ("image", "text", "path") and _jsonable(v)}
    if "text" in sample:
        out["txt"] = sample["text"]
    out["json"] = json.dumps(meta, ensure_ascii=False)
    return out


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


def _tar_size(members: dict[str, bytes | str]) -> int:
    """Bytes the members take in the archive: the header blocks tarfile writes for each (asked of tarfile
    itself, so pax headers are counted), and the data padded to whole blocks."""
    size = 0
    key = members["__key__"]
    for ext, value in members.items():
        if ext.startswith("_"):
            continue
        n = len(value.encode("utf-8") if isinstance(value, str) else value)
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size, info.mtime, info.mode = n, _MTIME, 0o444
        info.uname = info.gname = "bigdata"  # TarWriter's defaults
        size += len(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        size += -(-n // _TAR_BLOCK) * _TAR_BLOCK
    return size


def _file_size(content: int) -> int:
    return -(-(content + _TAR_END) // _TAR_RECORD) * _TAR_RECORD


class _ShardRoller:
    """Opens the next shard when the current one would pass the size or count limit.

    webdataset's ShardWriter checks the limit only *after* a write and ignores tar padding, so its shards
    overshoot; here the exact on-disk size is predicted before each write.
    """

    def __init__(self, pattern: str, max_size: int, max_count: int):
        self.pattern, self.max_size, self.max_count = pattern, max_size, max_count
        self.paths: list[Path] = []
        self.tar: TarWriter | None = None
        self.size = self.count = self.count_total = 0

    def write(self, members: dict[str, bytes | str]) -> None:
        size = _tar_size(members)
        full = self.count >= self.max_count or _file_size(self.size + size) > self.max_size
        if self.tar is None or (full and self.count > 0):
            self._next()
        if _file_size(size) > self.max_size:
            warnings.warn(
                f"{self.paths[-1]}: sample {members['__key__']} alone takes {_file_size(size)} bytes, "
                f"more than max_size_bytes={self.max_size}; it gets a shard of its own",
                stacklevel=3,
            )
        self.tar.write(members)
        self.size += size
        self.count += 1
        self.count_total += 1

    def _next(self) -> None:
        self.close()
        path = Path(self.pattern % len(self.paths))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.paths.append(path)
        self.tar = TarWriter(str(path), mtime=_MTIME)
        self.size = self.count = 0

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None


# ------------------------------------------------------------------------------------------- reading


def expand_shards(urls: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """`"dir/shard-{000000..000009}.tar"` (brace ranges, `::` between lists), a path, or a list of paths."""
    if isinstance(urls, str | os.PathLike):
        return expand_urls(str(urls))
    return [str(u) for u in urls]


class ShardSource(IterableDataset):
    """Samples streamed from webdataset tar shards, in the same dict form as the map-style sources.

    - Shards are split by node (torch.distributed rank) and then by DataLoader worker, so with
      `resampled=False` every sample is seen exactly once per epoch over all processes (ranks get whole
      shards: have at least as many shards as ranks × workers, or some will idle).
    - `shuffle_buffer` samples are mixed per worker (0 turns shuffling off, shard order included);
      the order depends on `seed` and the epoch (`set_epoch`, shared with running workers).
    - `resampled=True`: each worker draws shards with replacement until it has yielded its part of
      `epoch_length` samples (required then; the parts add up to exactly `epoch_length`).
    - A corrupt member or a broken tar file becomes a skip marker (path `shard.tar#key`), not an exception.
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
            stream = (s for shard in shards for s in read_shard(shard))
        yield from _shuffled(stream, self.shuffle_buffer, rng)

    def _resampled_samples(self, rng: random.Random) -> Iterator[Sample]:
        while True:
            yield from read_shard(rng.choice(self.urls))


def _node_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _take(it: Iterator[Sample], n: int) -> Iterator[Sample]:
    for _, sample in zip(range(n), it):
        yield sample


def _shuffled(stream: Iterable[Sample], size: int, rng: random.Random) -> Iterator[Sample]:
    """Reservoir-style buffer: fill to `size`, then emit a random element for each one read."""
    if size <= 1:
        yield from stream
        return
    buf: list[Sample] = []
    for sample in stream:
        if len(buf) < size:
            buf.append(sample)
            continue
        i = rng.randrange(size)
        buf[i], sample = sample, buf[i]
        yield sample
    rng.shuffle(buf)
    yield from buf


def read_shard(path: str) -> Iterator[Sample]:
    """Samples of one tar shard in file order; a broken archive ends the shard with one skip marker."""
    key = None
    try:
        for key, members in _tar_groups(path):
            yield decode_shard_sample(members, key, path)
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:  # ValueError: a duplicated member
        where = f"{path}#{key}" if key else path
        yield skip_marker(key, where, f"broken tar file after this member: {_reason(err)}")


def _tar_groups(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample, grouped by webdataset's own tar iterators.

    Their errors are re-raised (not skipped silently, webdataset's default for training) so that
    `read_shard` turns them into a counted skip marker.
    """
    with open(path, "rb") as stream:
        files = ({**f, "__url__": path} for f in tar_file_iterator(stream, handler=reraise_exception))
        for sample in group_by_keys(files, handler=reraise_exception):
            yield sample["__key__"], {k: v for k, v in sample.items() if not k.startswith("__")}


def decode_shard_sample(members: dict[str, bytes], key: str, shard: str) -> Sample:
    """Tar members of one sample → a sample dict (or a skip marker naming `shard#key` and the problem)."""
    where = f"{shard}#{key}"
    try:
        meta = json.loads(members["json"]) if "json" in members else {}
        if not isinstance(meta, dict):
            raise DataError("the .json member is not an object")
        sample_id = meta.get("id", key)
    except (ValueError, UnicodeDecodeError) as err:
        return skip_marker(key, where, f"bad .json member: {_reason(err)}")
    image_ext = next((e for e in SHARD_IMAGE_EXTENSIONS if e in members), None)
    if image_ext is None:
        return skip_marker(sample_id, where, f"no image member (has {sorted(members)})")
    sample: Sample = {**meta, "id": sample_id, "__key__": key, "__shard__": shard}
    if "txt" in members:
        sample["text"] = members["txt"].decode("utf-8", "replace").strip()
        if not sample["text"]:
            return skip_marker(sample_id, where, "empty caption")
    elif "texts" in meta:
        sample["texts"] = [t.strip() for t in meta["texts"] if isinstance(t, str) and t.strip()]
        if not sample["texts"]:
            return skip_marker(sample_id, where, "empty caption")
    try:
        sample["image"] = decode_image(members[image_ext], f"{key}.{image_ext}")
    except SAMPLE_ERRORS as err:
        return skip_marker(sample_id, f"{where}.{image_ext}", _reason(err))
    return sample
