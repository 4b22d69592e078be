"""Face data: FaceCaption-15M-style image-caption tables and CelebA's attribute and partition files.

FaceCaption-15M ships as parquet (`FaceCaption-v1.parquet`: an image URL or the image, a face box, the
LAION caption and the face caption). Its exact column names are not published outside the hub viewer, so
`FaceCaptionTable` reads any parquet or JSONL table with an image column (a path relative to the table, raw
bytes, or the Hugging Face image struct `{"bytes", "path"}`), a caption column (a string or a list of
strings) and optional columns passed through with each sample (attribute columns, a face box, `split`).
Column names are found among common spellings (`FACE_IMAGE_KEYS`, `FACE_CAPTION_KEYS`) unless given.

CelebA's annotation files, as the official release and torchvision read them:
- `list_attr_celeba.txt`: line 1 the number of images, line 2 the attribute names (40 in CelebA), then one
  row per image `000001.jpg -1 1 -1 ...` (columns separated by one or more spaces), values in {-1, 1},
  mapped to {0, 1};
- `list_eval_partition.txt`: `<file> <0|1|2>`, 0 = train, 1 = valid, 2 = test.
A row with the wrong number of columns, a value other than ±1 or a partition other than 0/1/2 is a
`DataError` naming the file and the line. A missing image is a counted skip (the core's skip marker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vlzoo.core.data import (
    SAMPLE_ERRORS,
    ImageTextSource,
    Record,
    decode_image,
    load_record,
    read_jsonl,
    skip_marker,
)
from vlzoo.core.errors import DataError

__all__ = [
    "CELEBA_ATTRIBUTES",
    "CELEBA_SPLITS",
    "FACE_CAPTION_KEYS",
    "FACE_IMAGE_KEYS",
    "CelebAAttributes",
    "CelebASource",
    "FaceCaptionTable",
    "build_celeba",
    "build_face_captions",
    "read_celeba_attributes",
    "read_celeba_partition",
    "read_face_table",
]

# CelebA's 40 attributes, in the order of `list_attr_celeba.txt`.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
CELEBA_SPLITS = {"0": "train", "1": "val", "2": "test"}
CELEBA_ATTR_FILE = "list_attr_celeba.txt"
CELEBA_PARTITION_FILE = "list_eval_partition.txt"
CELEBA_IMAGE_DIR = "img_align_celeba"

FACE_IMAGE_KEYS = ("image", "img_path", "file_path", "path", "filename", "filepath")
FACE_CAPTION_KEYS = ("caption", "face_caption", "captions", "text")


# -------------------------------------------------------------------------------------------- CelebA


@dataclass
class CelebAAttributes:
    """`list_attr_celeba.txt` read: attribute `names [A]`, image `files [N]`, `labels [N, A]` in {0, 1}."""

    names: list[str]
    files: list[str]
    labels: np.ndarray

    def index(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.files)}


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text: {err}") from err


def read_celeba_attributes(path: str | os.PathLike) -> CelebAAttributes:
    """Parse `list_attr_celeba.txt` (see the module docstring); `DataError` naming the file and line."""
    path = Path(path)
    lines = _lines(path)
    if len(lines) < 2:
        raise DataError(f"{path}: needs a count line and a line of attribute names, has {len(lines)} lines")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}: line 1 must be the number of images, got {lines[0].strip()!r}") from None
    names = lines[1].split()
    if not names:
        raise DataError(f"{path}: line 2 must name the attributes, it is empty")
    rows = [(n, line.split()) for n, line in enumerate(lines[2:], 3) if line.strip()]
    width = len(names) + 1
    bad = next(((n, parts) for n, parts in rows if len(parts) != width), None)
    if bad is not None:
        raise DataError(
            f"{path}: line {bad[0]} has {len(bad[1])} columns, expected {width} (a file name and "
            f"{len(names)} attributes)"
        )
    values = np.array([parts[1:] for _, parts in rows], dtype=object).reshape(len(rows), len(names))
    plus, minus = values == "1", values == "-1"
    wrong = ~(plus | minus)
    if wrong.any():
        row, column = np.argwhere(wrong)[0]
        raise DataError(
            f"{path}: line {rows[row][0]}: attribute {names[column]} is {values[row, column]!r}, not 1 or -1"
        )
    if count != len(rows):
        raise DataError(f"{path}: line 1 announces {count} images, the file lists {len(rows)}")
    return CelebAAttributes(names, [parts[0] for _, parts in rows], plus.astype(np.int64))


def read_celeba_partition(path: str | os.PathLike) -> dict[str, str]:
    """Parse `list_eval_partition.txt` into file → "train" / "val" / "test"."""
    path = Path(path)
    split: dict[str, str] = {}
    for n, line in enumerate(_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in CELEBA_SPLITS:
            raise DataError(f"{path}: line {n} must be '<file> <0|1|2>', got {line.strip()!r}")
        split[parts[0]] = CELEBA_SPLITS[parts[1]]
    return split


class CelebASource(Dataset):
    """CelebA-layout images with their binary attributes: `root/img_align_celeba/<file>`,
    `root/list_attr_celeba.txt` and (for `split`) `root/list_eval_partition.txt`.

    Samples are `{"image", "attributes": LongTensor [A] of 0/1, "id": file, "path"}`; `attributes`
    chooses and orders the attribute names (default: every one in the file). A missing or unreadable image
    is a skip marker; `split=None` keeps every image.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = "train",
        attributes: Sequence[str] | None = None,
        image_dir: str = CELEBA_IMAGE_DIR,
    ):
        self.root = Path(root)
        table = read_celeba_attributes(self.root / CELEBA_ATTR_FILE)
        self.attribute_names = list(attributes) if attributes is not None else table.names
        unknown = [a for a in self.attribute_names if a not in table.names]
        if unknown:
            raise DataError(f"{self.root / CELEBA_ATTR_FILE}: no attribute {unknown}; it has {table.names}")
        columns = [table.names.index(a) for a in self.attribute_names]
        keep = np.arange(len(table.files))
        if split is not None:
            partition = read_celeba_partition(self.root / CELEBA_PARTITION_FILE)
            unlisted = [f for f in table.files if f not in partition]
            if unlisted:
                raise DataError(
                    f"{self.root / CELEBA_PARTITION_FILE}: {len(unlisted)} images of {CELEBA_ATTR_FILE} are "
                    f"not in it (e.g. {unlisted[0]})"
                )
            keep = np.array([i for i, f in enumerate(table.files) if partition[f] == split], dtype=np.int64)
            if keep.size == 0:
                raise DataError(f"{self.root}: no image in split {split!r}")
        self.files = [table.files[i] for i in keep]
        self.labels = torch.from_numpy(table.labels[keep][:, columns])
        self.image_dir = self.root / image_dir

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.image_dir / self.files[index]
        try:
            image = decode_image(path, path)
        except SAMPLE_ERRORS as err:
            return skip_marker(self.files[index], path, f"{type(err).__name__}: {err}")
        return {"image": image, "attributes": self.labels[index], "id": self.files[index], "path": str(path)}


def build_celeba(path: str, split: str, captions: str, options: Mapping[str, Any]) -> Dataset:
    """Data kind `celeba`: `path` is the CelebA folder or its `list_attr_celeba.txt`."""
    root = Path(path)
    return CelebASource(root.parent if root.is_file() else root, split, options.get("attributes"))


# --------------------------------------------------------------------------------- FaceCaption tables


def read_face_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a parquet (pyarrow) or JSONL table as dicts; `DataError` naming the file."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except FileNotFoundError as err:
            raise DataError(f"{path}: file not found") from err
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{path}: not a readable parquet file: {err}") from err
    return [obj for _, obj in read_jsonl(path)]


def _pick(
    columns: Sequence[str], wanted: str | None, candidates: Sequence[str], path: Path, what: str
) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{path}: no {what} column {wanted!r}; the columns are {sorted(columns)}")
        return wanted
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise DataError(
            f"{path}: no {what} column (looked for {list(candidates)}); columns: {sorted(columns)}"
        )
    return found


class FaceCaptionTable(ImageTextSource):
    """Face image-caption pairs from a FaceCaption-15M-style parquet or JSONL table (module docstring).

    `split` keeps the rows whose `split` column equals it when the table has one (else every row); the
    other columns (attributes, face box, url) travel with each sample. An image given as bytes is decoded
    from them (named by its `path` when the struct has one, for the decoder's suffix); a row whose image is
    neither a path nor bytes is a `DataError` naming the row.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str | None = None,
        img_key: str | None = None,
        caption_key: str | None = None,
        image_root: str | os.PathLike | None = None,
        captions: str = "first",
    ):
        self.path = Path(path)
        root = Path(image_root) if image_root is not None else self.path.parent
        rows = read_face_table(self.path)
        if not rows:
            raise DataError(f"{self.path}: the table is empty")
        columns = list(dict.fromkeys(k for row in rows[:1000] for k in row))
        img_key = _pick(columns, img_key, FACE_IMAGE_KEYS, self.path, "image")
        caption_key = _pick(columns, caption_key, FACE_CAPTION_KEYS, self.path, "caption")
        if split is not None and "split" in columns:
            rows_numbered = [(i, r) for i, r in enumerate(rows) if r.get("split") == split]
            if not rows_numbered:
                found = sorted({str(r.get("split")) for r in rows})
                raise DataError(f"{self.path}: no row in split {split!r}; the table has splits {found}")
        else:
            rows_numbered = list(enumerate(rows))
        records, self.image_bytes = [], []
        for i, row in rows_numbered:
            image_path, data = self._image(row.get(img_key), root, i)
            caps = row.get(caption_key)
            records.append(
                Record(
                    image_path=image_path,
                    captions=list(caps)
                    if isinstance(caps, list)
                    else [caps if isinstance(caps, str) else ""],
                    sample_id=row.get("id", i),
                    extra={k: v for k, v in row.items() if k not in (img_key, caption_key, "id")},
                )
            )
            self.image_bytes.append(data)
        super().__init__(records, captions, self.path)  # type: ignore[arg-type]

    def _image(self, value: Any, root: Path, row: int) -> tuple[Path, bytes | None]:
        where = f"{self.path}: row {row} ({'line ' + str(row + 1) if self.path.suffix == '.jsonl' else 'parquet'})"
        if isinstance(value, Mapping):  # the Hugging Face image feature
            data, name = value.get("bytes"), value.get("path")
            if isinstance(data, bytes | bytearray):
                return Path(name or f"row{row}.png"), bytes(data)
            value = name
        if isinstance(value, bytes | bytearray):
            return Path(f"row{row}.png"), bytes(value)
        if isinstance(value, str) and value.strip():
            return root / value, None
        raise DataError(f"{where}: the image is neither a path nor image bytes: {type(value).__name__}")

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec_index, cap_index = self._index[index]
        data = self.image_bytes[rec_index]
        decode = None if data is None else (lambda _path, name: decode_image(data, name))
        return load_record(self.records[rec_index], self.captions, cap_index, decode=decode)  # type: ignore[arg-type]


def build_face_captions(path: str, split: str, captions: str, options: Mapping[str, Any]) -> Dataset:
    """Data kind `facecaption`: a FaceCaption-style parquet (by suffix) or JSONL (by name) table."""
    return FaceCaptionTable(
        path,
        split=split,
        img_key=options.get("img_key"),
        caption_key=options.get("caption_key"),
        image_root=options.get("image_root"),
        captions=captions,
    )
