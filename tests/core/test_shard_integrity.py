"""Shards never lose samples silently (issue 18, item 1): a shard cut short or with a corrupt tar header
counts what it lost as skipped, naming the shard; a sample missing a member is a counted skip; the writer
renames a shard into place only when it is whole and resumes after the whole ones."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from webdataset.handlers import reraise_exception
from webdataset.tariterators import group_by_keys, tar_file_iterator

from vlzoo.core.cli import main
from vlzoo.core.data import (
    KarpathySplits,
    ShardSource,
    SkipCounter,
    ToyWorld,
    is_skipped,
    read_shard,
    write_shards,
    write_toyworld,
)
from vlzoo.core.errors import DataError

PER_SHARD = 10


@pytest.fixture(scope="module")
def toy_json(tmp_path_factory) -> Path:
    return write_toyworld(tmp_path_factory.mktemp("toy"), n_train=24, n_val=0, n_test=0, image_size=32)


@pytest.fixture(scope="module")
def shard(toy_json, tmp_path_factory) -> Path:
    """A whole shard of 10 single-caption samples, each `.json`, `.png`, `.txt`, behind the index."""
    out = tmp_path_factory.mktemp("shards")
    source = KarpathySplits(toy_json, "train", captions="first")
    return write_shards(source, out / "s-%02d.tar", max_count=PER_SHARD)[0]


def _offsets(path: Path) -> dict[str, int]:
    with tarfile.open(path) as tar:
        return {m.name: m.offset for m in tar.getmembers()}


def _read(path: Path) -> tuple[list[dict], list[dict]]:
    samples = list(read_shard(str(path)))
    return [s for s in samples if not is_skipped(s)], [s for s in samples if is_skipped(s)]


def _copy_members(src: Path, dst: Path, keep=lambda name: True) -> None:
    """Rewrite a shard with only the members `keep` accepts (no index: a shard written by other tools)."""
    with tarfile.open(src) as tar, tarfile.open(dst, "w") as out:
        for member in tar.getmembers():
            if keep(member.name):
                out.addfile(member, tar.extractfile(member))


def _corrupt_header(src: Path, dst: Path, member: str) -> int:
    data = bytearray(src.read_bytes())
    at = _offsets(src)[member]
    data[at : at + 512] = bytes(range(256)) * 2  # garbage: tarfile's stream reader takes it for the end
    dst.write_bytes(bytes(data))
    return at


# ------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    "cut",
    [("000000004.json", 0), ("000000004.png", 700), ("000000004.txt", 100)],
    ids=["at-a-header", "inside-an-image", "inside-a-header"],
)
def test_a_truncated_shard_counts_every_lost_sample(shard, tmp_path, cut):
    member, into = cut
    broken = tmp_path / "cut.tar"
    broken.write_bytes(shard.read_bytes()[: _offsets(shard)[member] + into])
    good, markers = _read(broken)
    assert len(good) + len(markers) == PER_SHARD  # every sample read or counted, once
    assert [s["__key__"] for s in good] == [f"{i:09d}" for i in range(4)]
    assert all(s["text"] for s in good)
    assert [m["path"] for m in markers] == [f"{broken}#{i:09d}" for i in range(4, PER_SHARD)]
    assert any("cut short" in m["reason"] or "unreadable from byte" in m["reason"] for m in markers)


def test_a_corrupt_header_mid_shard_counts_the_rest(shard, tmp_path):
    broken = tmp_path / "corrupt.tar"
    at = _corrupt_header(shard, broken, "000000005.json")
    good, markers = _read(broken)
    assert [s["__key__"] for s in good] == [f"{i:09d}" for i in range(5)]
    assert [m["path"] for m in markers] == [f"{broken}#{i:09d}" for i in range(5, PER_SHARD)]
    assert all(f"unreadable from byte {at}" in m["reason"] for m in markers)


def test_a_shard_without_the_index_reports_its_break(shard, tmp_path):
    foreign = tmp_path / "foreign.tar"
    _copy_members(shard, foreign, keep=lambda name: not name.startswith("__"))
    good, markers = _read(foreign)
    assert len(good) == PER_SHARD and not markers  # a whole shard of other tools: no false alarm
    broken = tmp_path / "foreign-corrupt.tar"
    at = _corrupt_header(foreign, broken, "000000005.txt")  # sample 5 keeps its image, loses its caption
    good, markers = _read(broken)
    assert [s["__key__"] for s in good] == [f"{i:09d}" for i in range(5)]
    assert all(s["text"] for s in good)
    assert [m["path"] for m in markers] == [f"{broken}#000000005", str(broken)]
    assert "may be incomplete" in markers[0]["reason"]
    assert f"unreadable from byte {at}" in markers[1]["reason"]


def test_a_compressed_shard_reads_whole_and_its_truncation_is_counted(shard, tmp_path):
    packed = gzip.compress(shard.read_bytes(), mtime=0)
    whole, cut = tmp_path / "s.tar.gz", tmp_path / "cut.tar.gz"
    whole.write_bytes(packed)
    cut.write_bytes(packed[: len(packed) // 2])
    good, markers = _read(whole)
    assert len(good) == PER_SHARD and not markers
    good, markers = _read(cut)
    assert good and len(good) + len(markers) == PER_SHARD
    assert all(m["path"].startswith(f"{cut}#") for m in markers)


def test_a_sample_missing_its_caption_is_a_counted_skip(shard, tmp_path):
    holed = tmp_path / "holed.tar"
    with tarfile.open(shard) as tar, tarfile.open(holed, "w") as out:  # the index stays, first
        for member in tar.getmembers():
            if member.name != "000000003.txt":
                out.addfile(member, tar.extractfile(member))
    good, markers = _read(holed)
    assert len(good) == PER_SHARD - 1 and all(s["text"] for s in good)
    assert [(m["path"], m["reason"]) for m in markers] == [
        (f"{holed}#000000003", "no caption, which every sample of the shard has")
    ]


def test_the_training_loader_yields_only_whole_samples(shard, tmp_path):
    from vlzoo.core.train import ImageTextDataModule

    foreign, broken = tmp_path / "foreign.tar", tmp_path / "broken.tar"
    _copy_members(shard, foreign, keep=lambda name: not name.startswith("__"))
    _corrupt_header(foreign, broken, "000000005.txt")
    data = ImageTextDataModule(str(broken), batch_size=1, num_workers=0, shuffle_buffer=0, epoch_length=10)
    data.setup("fit")
    counter = SkipCounter()
    for batch in data.train_dataloader():
        counter.update_from_batch(batch)
        if batch["id"]:
            assert "text" in batch and len(batch["captions"]) == len(batch["id"])
    assert (counter.seen, counter.skipped) == (7, 2)  # 5 whole, the cut one, one for the unreadable rest
    with pytest.raises(DataError, match=str(broken)):
        counter.check(0.01)


def test_webdataset_reads_our_shards_and_skips_the_index(shard):
    with open(shard, "rb") as stream:
        files = ({**f, "__url__": str(shard)} for f in tar_file_iterator(stream, handler=reraise_exception))
        keys = [s["__key__"] for s in group_by_keys(files, handler=reraise_exception)]
    assert keys == [f"{i:09d}" for i in range(PER_SHARD)]


# ------------------------------------------------------------------------------------------- writing


class _Breaking:
    """A map-style source that fails when sample `at` is read, as a killed or crashing run would stop."""

    def __init__(self, source, at: int):
        self.source, self.at = source, at

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        if i == self.at:
            raise KeyboardInterrupt
        return self.source[i]


def test_an_interrupted_writer_leaves_only_whole_shards_and_a_rerun_resumes(toy_json, tmp_path):
    source = KarpathySplits(toy_json, "train", captions="first")
    pattern = tmp_path / "run" / "s-%02d.tar"
    with pytest.raises(KeyboardInterrupt):
        write_shards(_Breaking(source, at=15), pattern, max_count=5)
    # samples 10..14 filled shard 2, but it was still open (no sample 15 yet): it is not there
    left = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert left == ["s-00.tar", "s-01.tar"]
    for path in (tmp_path / "run").iterdir():
        good, markers = _read(path)
        assert len(good) == 5 and not markers
    inodes = [(tmp_path / "run" / name).stat().st_ino for name in left]

    said: list[str] = []
    paths = write_shards(source, pattern, max_count=5, log=said.append)
    assert [p.name for p in paths] == [f"s-{i:02d}.tar" for i in range(5)]
    assert said == [f"kept 2 complete shards of an earlier run ({paths[1]} the last)"]
    assert [p.stat().st_ino for p in paths[:2]] == inodes  # kept, not written again
    fresh = write_shards(source, tmp_path / "fresh" / "s-%02d.tar", max_count=5)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in fresh]

    said.clear()  # other settings, other shards: nothing is kept
    again = write_shards(source, pattern, max_count=4, log=said.append)
    assert len(again) == 6 and not said
    assert sum(1 for _ in ShardSource(again, shuffle_buffer=0)) == 24


class _Edited:
    """The same source with the caption of sample `at` changed."""

    def __init__(self, source, at: int):
        self.source, self.at = source, at

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        sample = self.source[i]
        return {**sample, "text": "changed"} if i == self.at else sample


def test_a_rerun_over_a_changed_source_keeps_only_the_shards_before_the_change(toy_json, tmp_path):
    source = KarpathySplits(toy_json, "train", captions="first")
    pattern = tmp_path / "s-%02d.tar"
    write_shards(source, pattern, max_count=5)
    said: list[str] = []
    paths = write_shards(_Edited(source, at=10), pattern, max_count=5, log=said.append)
    assert said == [f"kept 2 complete shards of an earlier run ({paths[1]} the last)"]
    assert next(iter(ShardSource(paths[2], shuffle_buffer=0)))["text"] == "changed"
    said.clear()
    write_shards(_Edited(source, at=0), pattern, max_count=5, log=said.append)
    assert not said
    assert next(iter(ShardSource(paths[0], shuffle_buffer=0)))["text"] == "changed"


_SLOW_WRITER = """
import sys, time
from vlzoo.core.data import KarpathySplits, write_shards

class Slow(KarpathySplits):
    def __getitem__(self, i):
        time.sleep(0.02)
        return super().__getitem__(i)

write_shards(Slow(sys.argv[1], "train", captions="first"), sys.argv[2], max_count=3)
"""


@pytest.mark.slow
def test_a_killed_writer_leaves_no_shard_that_looks_whole(toy_json, tmp_path):
    out = tmp_path / "run"
    pattern = str(out / "s-%02d.tar")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(toy_json), pattern], env=env)
    deadline = time.monotonic() + 300
    while not (out / "s-01.tar").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "s-01.tar").exists() and not (out / "s-07.tar").exists()  # killed mid-run
    for path in out.glob("*.tar"):
        good, markers = _read(path)
        assert len(good) == 3 and not markers
    source = KarpathySplits(toy_json, "train", captions="first")
    resumed = write_shards(source, pattern, max_count=3)
    fresh = write_shards(source, tmp_path / "fresh" / "s-%02d.tar", max_count=3)
    assert [p.read_bytes() for p in resumed] == [p.read_bytes() for p in fresh]
    assert not list(out.glob("*.tmp"))


# ----------------------------------------------------------------------------------------------- CLI


def test_shards_command_reads_jsonl_with_its_own_keys_and_resumes(tmp_path, capsys):
    world = ToyWorld("val", n=3, image_size=32, captions="first")
    lines = []
    for i in range(3):
        world[i]["image"].save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "text": world[i]["text"]}))
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    pattern = str(tmp_path / "out" / "p-%02d.tar")
    assert main(["shards", str(tmp_path / "pairs.jsonl"), pattern]) == 0
    assert "wrote 1 shards" in capsys.readouterr().out
    texts = [s["text"] for s in ShardSource(pattern % 0, shuffle_buffer=0)]
    assert texts == [world[i]["text"] for i in range(3)]
    assert main(["shards", str(tmp_path / "pairs.jsonl"), pattern]) == 0
    assert "kept 1 complete shards of an earlier run" in capsys.readouterr().out


def test_index_names_no_member_a_reader_would_take_for_a_sample(shard, toy_json):
    with tarfile.open(shard) as tar:
        first = tar.getmembers()[0]
        index = json.load(io.BytesIO(tar.extractfile(first).read()))
    assert first.name == "__vlzoo_index__"
    assert (index["samples"], index["first_key"], index["bytes"]) == (
        PER_SHARD,
        "000000000",
        shard.stat().st_size,
    )
    # the image, its caption, its id and the per-image keys of toyworld's JSON (pair, scene, split, ...)
    extra = set(KarpathySplits(toy_json, "train").records[0].extra)
    assert {"pair", "scene", "split"} <= extra
    assert index["fields"] == sorted({"caption", "id", "image"} | extra)
