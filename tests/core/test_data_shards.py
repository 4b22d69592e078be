"""webdataset shards: written from a source within a size limit, read back whole, split across workers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

import vlzoo.core.data.shards as shards_module
from vlzoo.core.data import (
    CsvPairs,
    KarpathySplits,
    ShardSource,
    ToyWorld,
    is_skipped,
    write_shards,
    write_toyworld,
)
from vlzoo.core.errors import DataError

N = 40


@pytest.fixture(scope="module")
def toy_json(tmp_path_factory) -> Path:
    return write_toyworld(tmp_path_factory.mktemp("toy"), n_train=N, n_val=0, n_test=0, image_size=32)


@pytest.fixture(scope="module")
def shards(toy_json, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("shards")
    return write_shards(KarpathySplits(toy_json, "train"), out / "toy-%04d.tar", max_size_bytes=30_000)


def _all(dataset) -> list[dict]:
    return list(iter(dataset))


def _loader_ids(dataset, workers: int) -> list:
    loader = DataLoader(dataset, batch_size=4, num_workers=workers, collate_fn=lambda b: [s["id"] for s in b])
    return [i for batch in loader for i in batch]


def test_shards_respect_the_size_limit(shards):
    # ~4 kB a sample in tar (headers, 512-byte blocks) after a 1.5 kB index, files grow in 10 kB records:
    # ≤ 20 kB a shard
    assert 4 <= len(shards) <= 12
    sizes = [p.stat().st_size for p in shards]
    assert max(sizes) <= 30_000
    assert [p.name for p in shards] == [f"toy-{i:04d}.tar" for i in range(len(shards))]
    for p in shards:
        with tarfile.open(p) as tar:
            names = tar.getnames()
        assert names[0] == "__vlzoo_index__"  # write_shards' index, first; webdataset skips it
        assert len(names) > 1 and all(n.endswith((".png", ".json")) for n in names[1:])


def test_reading_back_gives_every_sample_unchanged(shards, toy_json):
    source = KarpathySplits(toy_json, "train")
    back = {s["id"]: s for s in _all(ShardSource(shards, shuffle_buffer=0))}
    assert len(back) == N
    for i in range(N):
        original = source[i]
        copy = back[original["id"]]
        assert copy["texts"] == original["texts"]
        assert copy["scene"] == original["scene"]
        np.testing.assert_array_equal(np.asarray(copy["image"]), np.asarray(original["image"]))


def test_max_count_and_brace_patterns(toy_json, tmp_path):
    paths = write_shards(
        KarpathySplits(toy_json, "train", captions="first"), tmp_path / "s-%02d.tar", max_count=16
    )
    assert len(paths) == 3  # 16 + 16 + 8
    samples = _all(ShardSource(str(tmp_path / "s-{00..02}.tar"), shuffle_buffer=0))
    assert len(samples) == N
    assert all(isinstance(s["text"], str) and s["text"] for s in samples)


def test_in_memory_images_are_stored_as_png(tmp_path):
    world = ToyWorld("val", n=6, image_size=32, captions="first")
    paths = write_shards(world, tmp_path / "mem-%d.tar")
    back = _all(ShardSource(paths, shuffle_buffer=0))
    assert [s["id"] for s in back] == [world[i]["id"] for i in range(6)]
    for i, s in enumerate(back):
        np.testing.assert_array_equal(np.asarray(s["image"]), np.asarray(world[i]["image"]))
        assert s["text"] == world[i]["text"]


def test_two_workers_see_each_sample_exactly_once(shards):
    ids = _loader_ids(ShardSource(shards, shuffle_buffer=8), workers=2)
    assert sorted(ids) == sorted(f"train/{i:06d}" for i in range(N))


def test_shuffling_changes_the_order_reproducibly(shards):
    plain = [s["id"] for s in _all(ShardSource(shards, shuffle_buffer=0))]
    shuffled = ShardSource(shards, shuffle_buffer=16, seed=1)
    first = [s["id"] for s in _all(shuffled)]
    again = [s["id"] for s in _all(ShardSource(shards, shuffle_buffer=16, seed=1))]
    shuffled.set_epoch(1)
    next_epoch = [s["id"] for s in _all(shuffled)]
    assert sorted(first) == sorted(plain)
    assert first != plain
    assert first == again
    assert next_epoch != first


def test_the_shuffle_buffer_holds_bytes_and_images_are_decoded_as_they_leave_it(shards, monkeypatch):
    decoded: list[str] = []
    real = shards_module.decode_member
    monkeypatch.setattr(shards_module, "decode_member", lambda *a: decoded.append(a[2]) or real(*a))
    samples = iter(ShardSource(shards, shuffle_buffer=16, seed=1))
    first = next(samples)
    assert len(decoded) == 1 and decoded[0].endswith(f"#{first['__key__']}.png")  # not the 16 buffered
    rest = list(samples)
    assert len(decoded) == N == 1 + len(rest)
    assert sorted(s["id"] for s in [first, *rest]) == [f"train/{i:06d}" for i in range(N)]


def test_resampled_epochs_have_the_requested_length(shards):
    dataset = ShardSource(shards, resampled=True, epoch_length=51, shuffle_buffer=4)
    assert len(dataset) == 51
    ids = _loader_ids(dataset, workers=2)
    assert len(ids) == 51
    assert set(ids) <= {f"train/{i:06d}" for i in range(N)}
    with pytest.raises(DataError, match="epoch_length"):
        ShardSource(shards, resampled=True)


def test_missing_shard_is_named(tmp_path):
    with pytest.raises(DataError, match=r"shard file not found: .*nope-0\.tar"):
        ShardSource(str(tmp_path / "nope-{0..1}.tar"))


def _rewrite_with_corrupt_member(src: Path, dst: Path) -> str:
    """Copy a shard, cutting the PNG of its second sample short; returns that sample's key."""
    with tarfile.open(src) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    keys = sorted({m.name.split(".")[0] for m, _ in members})
    victim = keys[1]
    with tarfile.open(dst, "w") as out:
        for m, data in members:
            if m.name == f"{victim}.png":
                data = data[: len(data) // 2]
                m.size = len(data)
            out.addfile(m, io.BytesIO(data))
    return victim


def test_a_corrupt_member_is_skipped_and_counted(shards, tmp_path):
    bad = tmp_path / "bad.tar"
    victim = _rewrite_with_corrupt_member(shards[0], bad)
    samples = _all(ShardSource([bad, *shards[1:]], shuffle_buffer=0))
    markers = [s for s in samples if is_skipped(s)]
    assert len(markers) == 1
    assert markers[0]["path"] == f"{bad}#{victim}.png"
    assert len(samples) == N  # the others are all there


def test_a_truncated_tar_file_ends_its_shard_with_a_marker(shards, tmp_path):
    cut = tmp_path / "cut.tar"
    data = shards[0].read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 100])
    samples = _all(ShardSource([cut, shards[1]], shuffle_buffer=0))
    markers = [s for s in samples if is_skipped(s)]
    assert markers
    assert str(cut) in markers[-1]["path"]
    assert sum(not is_skipped(s) for s in samples) > 0


def test_unreadable_source_samples_are_left_out_with_a_warning(tmp_path):
    ToyWorld("test", 2, 32, captions="first")[0]["image"].save(tmp_path / "ok.png")
    (tmp_path / "pairs.csv").write_text("filepath,title\nmissing.png,lost\nok.png,fine\n")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable samples.*missing\.png"):
        paths = write_shards(CsvPairs(tmp_path / "pairs.csv"), tmp_path / "out" / "x-%d.tar")
    assert [s["text"] for s in _all(ShardSource(paths, shuffle_buffer=0))] == ["fine"]


def test_bad_pattern_is_refused(tmp_path):
    with pytest.raises(DataError, match="printf field"):
        write_shards(ToyWorld("val", 2, 32), tmp_path / "no-field.tar")


CASES = [(m, "png", "PNG") for m in ("RGB", "RGBA", "P", "L")] + [
    ("RGB", "jpg", "PNG"),  # mislabeled
    ("P", "jpg", "PNG"),
    ("RGB", "jpg", "JPEG"),
    ("L", "jpg", "JPEG"),
]


@pytest.mark.parametrize(("mode", "ext", "fmt"), CASES, ids=str)
def test_shard_images_decode_as_decode_image_decodes_them(mode, ext, fmt):
    """The shard reader opens an image as its extension's format, without decode_image's RGB copy; a
    mislabeled file (PNG bytes named .jpg) still decodes, through PIL's probing."""
    from PIL import Image

    from vlzoo.core.data import decode_image
    from vlzoo.core.data.shards import decode_member

    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    image = Image.fromarray(pixels if mode == "RGBA" else pixels[..., :3]).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    got = decode_member(buf.getvalue(), ext, f"x.{ext}")
    want = decode_image(buf.getvalue(), f"x.{ext}")
    assert got.mode == "RGB" and np.array_equal(np.asarray(got), np.asarray(want))
    if fmt == "PNG":  # lossless: the pixels of the image that was saved
        assert np.array_equal(np.asarray(got), np.asarray(image.convert("RGB")))


def _smooth_jpeg(width: int, height: int) -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_jpeg_draft_decodes_at_the_smallest_scale_that_keeps_the_size():
    from PIL import Image

    from vlzoo.core.data.shards import decode_member

    data = _smooth_jpeg(256, 200)
    assert decode_member(data, "jpg", "x.jpg").size == (256, 200)
    assert decode_member(data, "jpg", "x.jpg", jpeg_draft=(50, 64)).size == (64, 50)  # 1/4
    assert decode_member(data, "jpg", "x.jpg", jpeg_draft=(60, 64)).size == (128, 100)  # 1/3 → 1/2
    assert decode_member(data, "jpg", "x.jpg", jpeg_draft=(201, 10)).size == (256, 200)  # never smaller
    drafted = np.asarray(decode_member(data, "jpg", "x.jpg", jpeg_draft=(50, 64)), dtype=float)
    full = decode_member(data, "jpg", "x.jpg").resize((64, 50), Image.Resampling.BOX)
    assert np.abs(drafted - np.asarray(full, dtype=float)).mean() < 2.0  # a downscale, in the DCT domain
    png = io.BytesIO()
    Image.new("RGB", (256, 200)).save(png, format="PNG")
    assert decode_member(png.getvalue(), "png", "x.png", jpeg_draft=(50, 64)).size == (256, 200)


def test_shard_source_drafts_jpegs_when_asked(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(_smooth_jpeg(128, 128))
    (tmp_path / "pairs.csv").write_text(
        "filepath,title\n" + "".join(f"{i}.jpg,image {i}\n" for i in range(3))
    )
    paths = write_shards(CsvPairs(tmp_path / "pairs.csv"), tmp_path / "s-%d.tar")
    assert [s["image"].size for s in _all(ShardSource(paths, shuffle_buffer=0))] == [(128, 128)] * 3
    drafted = _all(ShardSource(paths, shuffle_buffer=0, jpeg_draft=32, cache_decoded=3))
    assert [s["image"].size for s in drafted] == [(32, 32)] * 3
    with pytest.raises(DataError, match="jpeg_draft"):
        ShardSource(paths, jpeg_draft=0)


def test_the_shuffle_buffer_emits_once_its_initial_samples_are_in_and_never_holds_more_than_its_size():
    """webdataset's `shuffle(size, initial)`: the first sample leaves after `initial` are read (not a whole
    buffer), the buffer then grows two in, one out, up to `size`; every sample comes out exactly once."""
    import random

    read = []

    def stream():
        for i in range(5000):
            read.append(i)
            yield i

    emitted, reads_at_emission = [], []
    for sample in shards_module._shuffled(stream(), 1000, random.Random(0), initial=100):
        emitted.append(sample)
        reads_at_emission.append(len(read))
    assert sorted(emitted) == list(range(5000))
    assert emitted != list(range(5000))
    assert reads_at_emission[0] == 100
    held = [n - k for k, n in enumerate(reads_at_emission)]  # in the buffer as each sample leaves
    assert max(held) == 1000
    assert held[:5] == [100, 101, 102, 103, 104]  # growing: two read for each one emitted
    # an initial larger than the buffer means the whole buffer, as before
    read.clear()
    first = next(iter(shards_module._shuffled(stream(), 50, random.Random(0), initial=500)))
    assert len(read) == 50 and 0 <= first < 50
