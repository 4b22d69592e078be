"""Scene-text recognition LMDBs, in the layout every STR benchmark ships (PARSeq, ABINet, OpenOCR).

>>> ds = LmdbDataset("data/test/IIIT5k")          # a folder holding data.mdb
>>> len(ds), ds[0]                                 # 3000, {"image": PIL.Image, "text": "private", ...}
>>> create_lmdb("crops/", "crops/labels.txt", "data/train/mine")   # path<TAB>label lines → a new LMDB

Keys (1-based): `num-samples` (the count, as text), `image-%09d` (the encoded image file's bytes),
`label-%09d` (UTF-8 text), and optionally `wh-%09d` (`"<width>_<height>"`, OpenOCR's extra, used here to
filter small images without decoding them). The environment is opened lazily, once per process and
database (`open_lmdb`), read-only and without locks (as PARSeq's reader), so the dataset can be handed to
DataLoader workers.

Labels are normalized to the training charset when the dataset is built (PARSeq's order: whitespace, NFKD,
length ≤ `max_length` checked *before* the charset filter, then an empty label is dropped); those dropped
are counted in `skipped_labels`. An image whose bytes don't decode is a skip marker (the collator counts it)
or, with `strict=True`, a `DataError` naming the database and the index.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
from PIL import Image
from torch.utils.data import Dataset

from vlzoo.core import DataError
from vlzoo.core.data import SAMPLE_ERRORS, skip_marker
from vlzoo.ocr.data.labels import filter_charset, load_charset, normalize_unicode

__all__ = ["LmdbDataset", "configure_lmdb_command", "create_lmdb", "open_lmdb", "read_labels_file"]

NUM_SAMPLES = b"num-samples"


def _key(kind: str, index: int) -> bytes:
    return f"{kind}-{index:09d}".encode()


# One read-only environment per database and process: py-lmdb refuses a second `open` of a database a
# process holds, and a handle must not cross a fork into DataLoader workers (hence the pid).
_ENVS: dict[str, lmdb.Environment] = {}
_ENVS_PID = -1


def open_lmdb(path: str | os.PathLike) -> lmdb.Environment:
    """The process's read-only environment of the database at `path` (opened on first use)."""
    global _ENVS_PID
    if os.getpid() == _ENVS_PID and (env := _ENVS.get(str(path))) is not None:
        return env  # the hot path of every sample: one dict lookup
    if os.getpid() != _ENVS_PID:
        _ENVS.clear()  # inherited from the parent: never used here
        _ENVS_PID = os.getpid()
    resolved = Path(path).resolve()
    if str(resolved) not in _ENVS:
        if not (resolved / "data.mdb").is_file():
            raise DataError(f"{resolved}: not an LMDB database (no data.mdb in it)")
        # max_readers=1, lock=False: read-only sharing without the lock file, as PARSeq's reader opens it
        _ENVS[str(resolved)] = lmdb.open(
            str(resolved),
            max_readers=1,
            readonly=True,
            create=False,
            readahead=False,
            meminit=False,
            lock=False,
        )
    if Path(path).is_absolute():  # a relative key would go stale with the working directory
        _ENVS[str(path)] = _ENVS[str(resolved)]
    return _ENVS[str(resolved)]


@dataclass
class LmdbDataset(Dataset):
    """An STR LMDB as a map-style dataset of `{"image": PIL.Image (RGB), "text": str, "id", "path"}`.

    Args:
        path: the folder holding `data.mdb`.
        charset: labels are normalized to it (a name or a file, see `load_charset`; default the 94 printable
            ASCII characters); `normalize=False` keeps labels as stored.
        max_length: longer labels are dropped (counted in `skipped_labels`), as PARSeq does.
        min_image_dim: images narrower or lower than this are dropped (needs `wh-` keys; else ignored).
        strict: an undecodable image raises `DataError` instead of returning a skip marker.
    """

    path: str | os.PathLike
    charset: str | None = None
    max_length: int = 25
    normalize: bool = True
    min_image_dim: int = 0
    strict: bool = False
    skipped_labels: list[tuple[int, str]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path).absolute()
        self._charset = load_charset(self.charset)
        self.indices, self.labels = self._read_labels()
        if not self.indices:
            raise DataError(f"{self.path}: no usable sample ({len(self.skipped_labels)} labels dropped)")

    # ------------------------------------------------------------------------------------ the index
    def _read_labels(self) -> tuple[list[int], list[str]]:
        with open_lmdb(self.path).begin() as txn:
            raw = txn.get(NUM_SAMPLES)
            if raw is None:
                raise DataError(f"{self.path}: LMDB has no 'num-samples' key, so it is not an STR database")
            try:
                count = int(raw.decode())
            except ValueError as err:
                raise DataError(f"{self.path}: 'num-samples' is {raw[:20]!r}, not a number") from err
            indices, labels = [], []
            for index in range(1, count + 1):
                reason, label = self._check(txn, index)
                if reason:
                    self.skipped_labels.append((index, reason))
                else:
                    indices.append(index)
                    labels.append(label)
        return indices, labels

    def _check(self, txn: lmdb.Transaction, index: int) -> tuple[str, str]:
        """(reason to drop sample `index` or "", its label)."""
        raw = txn.get(_key("label", index))
        if raw is None:
            return "no label key", ""
        label = raw.decode("utf-8", errors="replace")
        if self.normalize:
            label = normalize_unicode(label)
            if len(label) > self.max_length:  # before the charset filter, as PARSeq
                return f"label longer than {self.max_length} characters", ""
            label = filter_charset(label, self._charset)
        elif len(label) > self.max_length:
            return f"label longer than {self.max_length} characters", ""
        if not label:
            return "label empty after normalization", ""
        if self.min_image_dim and (wh := txn.get(_key("wh", index))) is not None:
            w, h = (int(v) for v in wh.decode().split("_"))
            if min(w, h) < self.min_image_dim:
                return f"image smaller than {self.min_image_dim} pixels", ""
        return "", label

    # ------------------------------------------------------------------------------------- samples
    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index = self.indices[item]
        where = f"{self.path}#{index}"
        with open_lmdb(self.path).begin() as txn:
            data = txn.get(_key("image", index))
        try:
            if data is None:
                raise KeyError(f"no key image-{index:09d}")
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                image = img.convert("RGB")
        except (*SAMPLE_ERRORS, KeyError) as err:
            if self.strict:
                raise DataError(f"{self.path}: sample {index}: image does not decode ({err})") from err
            return skip_marker(index, where, f"image does not decode: {err}")
        return {"image": image, "text": self.labels[item], "id": index, "path": where}


# --------------------------------------------------------------------------------------- writing


def read_labels_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """`path<TAB>label` lines (the label may hold spaces; blank lines are ignored) → [(path, label)]."""
    path = Path(path)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        image, sep, label = line.partition("\t")
        if not sep or not image:
            raise DataError(f"{path}:{lineno}: expected 'path<TAB>label', got {line[:80]!r}")
        rows.append((image, label))
    if not rows:
        raise DataError(f"{path}: no 'path<TAB>label' lines")
    return rows


def create_lmdb(
    folder: str | os.PathLike, labels: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False
) -> dict[str, Any]:
    """Write an STR LMDB at `out` from the images under `folder` named in the `labels` file.

    Written into a temporary folder beside `out` and renamed into place at the end, so `out` is either
    absent or complete. An image that is missing or doesn't decode is left out and counted (the first few
    are listed under `"examples"`); the LMDB's samples are numbered 1.. without gaps.
    Returns `{"written", "skipped", "examples"}`."""
    folder, out = Path(folder), Path(out)
    rows = read_labels_file(labels)
    if out.exists() and not overwrite:
        raise DataError(f"{out} exists; give overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    skipped: list[tuple[str, str]] = []
    try:
        sizes = [(folder / p).stat().st_size for p, _ in rows if (folder / p).is_file()]
        env = lmdb.open(str(tmp), map_size=2 * sum(sizes) + (64 << 20))
        written = 0
        with env.begin(write=True) as txn:
            for image, label in rows:
                file = folder / image
                try:
                    data = file.read_bytes()
                    with Image.open(io.BytesIO(data)) as img:
                        img.load()
                        w, h = img.size
                except (*SAMPLE_ERRORS, FileNotFoundError) as err:
                    skipped.append((str(file), f"{type(err).__name__}: {err}"))
                    continue
                written += 1
                txn.put(_key("image", written), data)
                txn.put(_key("label", written), label.encode("utf-8"))
                txn.put(_key("wh", written), f"{w}_{h}".encode())
            txn.put(NUM_SAMPLES, str(written).encode())
        env.close()
        if written == 0:
            raise DataError(f"{labels}: none of the {len(rows)} images could be read ({skipped[0][1]})")
        if out.exists():
            stale = _ENVS.get(str(out.resolve()))
            if stale is not None:  # this process read the old database: its handle would see freed pages
                for key in [k for k, env in _ENVS.items() if env is stale]:
                    del _ENVS[key]
                stale.close()
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {"written": written, "skipped": len(skipped), "examples": skipped[:5]}


# ------------------------------------------------------------------------------------------ command


def configure_lmdb_command(parser: Any) -> None:
    """`vlzoo-ocr lmdb create FOLDER LABELS OUT [--overwrite]` and `vlzoo-ocr lmdb info DB`."""
    sub = parser.add_subparsers(dest="lmdb_command", required=True)
    create = sub.add_parser("create", help="write an STR LMDB from a folder and a path<TAB>label file")
    create.add_argument("folder", help="the folder the labels file's image paths are relative to")
    create.add_argument("labels", help="a text file of 'path<TAB>label' lines")
    create.add_argument("out", help="the LMDB folder to write (atomically: complete or absent)")
    create.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    create.set_defaults(func=_run_create)
    info = sub.add_parser("info", help="count an LMDB's samples and the labels it would drop")
    info.add_argument("db", help="the LMDB folder")
    info.add_argument("--charset", default=None, help="94 (default), 36, or a file with one char per line")
    info.add_argument("--max-length", type=int, default=25)
    info.set_defaults(func=_run_info)


def _run_create(args: Any) -> int:
    result = create_lmdb(args.folder, args.labels, args.out, overwrite=args.overwrite)
    print(f"wrote {result['written']} samples to {args.out}; skipped {result['skipped']} unreadable images")
    for path, reason in result["examples"]:
        print(f"  skipped {path}: {reason}")
    return 0


def _run_info(args: Any) -> int:
    ds = LmdbDataset(args.db, charset=args.charset, max_length=args.max_length)
    print(f"{args.db}: {len(ds)} samples; {len(ds.skipped_labels)} labels dropped")
    for index, reason in ds.skipped_labels[:5]:
        print(f"  #{index}: {reason}")
    return 0
