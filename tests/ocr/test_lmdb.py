"""STR LMDBs: `vlzoo-ocr lmdb create` round trip, PARSeq's label filtering, bad input, 2 DataLoader workers."""

from __future__ import annotations

import io
from pathlib import Path

import lmdb
import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from vlzoo.core import DataError
from vlzoo.core.data import is_skipped
from vlzoo.ocr.cli import main
from vlzoo.ocr.data.lmdb import LmdbDataset, create_lmdb, open_lmdb

LABELS = ["hello", "Caf\u00e9", "New York", "x" * 30, "\u00bf?", "world"]


def _crop(i: int) -> Image.Image:
    rng = np.random.default_rng(i)
    return Image.fromarray(rng.integers(0, 256, (16 + i, 40 + 3 * i, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crops")
    (root / "img").mkdir()
    lines = []
    for i, label in enumerate(LABELS):
        _crop(i).save(root / "img" / f"{i}.png")
        lines.append(f"img/{i}.png\t{label}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def db(crops: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lmdb") / "train"
    assert main(["lmdb", "create", str(crops), str(crops / "labels.txt"), str(out)]) == 0
    return out


def _raw_db(path: Path, entries: dict[str, bytes]) -> Path:
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in entries.items():
            txn.put(key.encode(), value)
    env.close()
    return path


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_round_trip_keeps_pixels_and_normalizes_labels(db: Path):
    ds = LmdbDataset(db)
    # "x"*30 is longer than 25 and "¿?" is "?" after NFKD-to-ASCII (kept by the 94-char charset)
    assert ds.labels == ["hello", "Cafe", "NewYork", "?", "world"]
    assert ds.skipped_labels == [(4, "label longer than 25 characters")]
    sample = ds[1]
    assert sample["text"] == "Cafe" and sample["id"] == 2 and sample["path"] == f"{db}#2"
    assert np.array_equal(np.asarray(sample["image"]), np.asarray(_crop(1)))
    with open_lmdb(db).begin() as txn:
        assert txn.get(b"num-samples") == b"6"
        assert txn.get(b"wh-000000003") == f"{40 + 6}_{16 + 2}".encode()
        assert txn.get(b"label-000000003").decode() == "New York"  # stored as given


def test_the_36_char_charset_folds_case_and_drops_what_is_outside(db: Path):
    ds = LmdbDataset(db, charset="36")
    assert ds.labels == ["hello", "cafe", "newyork", "world"]  # "?" alone is empty → dropped
    assert (5, "label empty after normalization") in ds.skipped_labels
    assert LmdbDataset(db, normalize=False, max_length=40).labels == LABELS


def test_min_image_dim_uses_the_wh_keys(db: Path):
    assert LmdbDataset(db, min_image_dim=18).labels == ["NewYork", "?", "world"]  # heights 16, 17 dropped


def test_reading_from_two_workers(db: Path):
    ds = LmdbDataset(db)
    ds[0]  # the parent opens its environment first: workers must open their own
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=list)
    seen = sorted((s["id"], s["text"], np.asarray(s["image"]).shape) for batch in loader for s in batch)
    assert seen == sorted((i + 1, t, np.asarray(_crop(i)).shape) for i, t in zip([0, 1, 2, 4, 5], ds.labels))


def test_an_lmdb_without_num_samples_is_refused(tmp_path: Path):
    path = _raw_db(tmp_path / "bad", {"image-000000001": b"x", "label-000000001": b"a"})
    with pytest.raises(DataError, match=r"bad: LMDB has no 'num-samples' key"):
        LmdbDataset(path)
    with pytest.raises(DataError, match=r"no data\.mdb"):
        LmdbDataset(tmp_path)


def test_an_undecodable_image_is_a_counted_skip_or_a_strict_error(tmp_path: Path):
    good = _png(_crop(0))
    entries = {"num-samples": b"2", "image-000000001": good, "label-000000001": b"ok"}
    entries |= {"image-000000002": b"\x89PNG broken", "label-000000002": b"bad"}
    path = _raw_db(tmp_path / "db", entries)
    ds = LmdbDataset(path)
    assert ds[0]["text"] == "ok"
    marker = ds[1]
    assert is_skipped(marker) and marker["path"] == f"{path}#2" and "does not decode" in marker["reason"]
    with pytest.raises(DataError, match=r"db: sample 2: image does not decode"):
        LmdbDataset(path, strict=True)[1]


def test_create_skips_unreadable_images_and_refuses_bad_lines(crops: Path, tmp_path: Path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    labels = tmp_path / "labels.txt"
    labels.write_text(f"{crops}/img/0.png\thi\nbroken.png\tno\nmissing.png\tno\n", encoding="utf-8")
    result = create_lmdb(tmp_path, labels, tmp_path / "out")
    assert (result["written"], result["skipped"]) == (1, 2)
    assert LmdbDataset(tmp_path / "out").labels == ["hi"]
    with pytest.raises(DataError, match="out exists"):
        create_lmdb(tmp_path, labels, tmp_path / "out")

    labels.write_text("0.png\thi\n1.png no tab\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"labels.txt:2: expected 'path<TAB>label'"):
        create_lmdb(tmp_path, labels, tmp_path / "out2")


def test_create_is_atomic_when_nothing_can_be_written(tmp_path: Path):
    labels = tmp_path / "labels.txt"
    labels.write_text("missing.png\ta\n", encoding="utf-8")
    with pytest.raises(DataError, match="none of the 1 images could be read"):
        create_lmdb(tmp_path, labels, tmp_path / "db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt"]  # no db, no temporary folder
