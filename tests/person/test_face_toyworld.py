"""face-toyworld: real CelebA-format files and a FaceCaption-style parquet that agree with each other, captions
that name the attributes, faces drawn as their attributes say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlzoo.core.data import build_source, ensure_generated, infer_data_kind
from vlzoo.person.data import (
    FACE_ATTRIBUTES,
    CelebASource,
    read_celeba_attributes,
    read_celeba_partition,
    write_face_toyworld,
)
from vlzoo.person.data.face_toyworld import draw_face_attributes, face_captions, render_face


@pytest.fixture(scope="module")
def face_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_toyworld(
        tmp_path_factory.mktemp("faces"), n_train=40, n_val=8, n_test=16, seed=3
    ).parent


def test_the_files_are_celeba_and_facecaption_formats_that_agree(face_root: Path):
    attributes = read_celeba_attributes(face_root / "list_attr_celeba.txt")
    assert attributes.names == list(FACE_ATTRIBUTES) and len(attributes.files) == 64
    partition = read_celeba_partition(face_root / "list_eval_partition.txt")
    assert [partition[f] for f in attributes.files] == ["train"] * 40 + ["val"] * 8 + ["test"] * 16
    rows = pq.read_table(face_root / "face-toyworld.parquet").to_pylist()
    assert [r["image"].split("/")[-1] for r in rows] == attributes.files
    table_labels = np.array([[r[n] for n in FACE_ATTRIBUTES] for r in rows])
    np.testing.assert_array_equal(table_labels, attributes.labels)
    assert all((face_root / r["image"]).is_file() for r in rows)
    # Both readers of the package read them: the caption table by suffix, the CelebA folder by its files.
    assert infer_data_kind(str(face_root / "face-toyworld.parquet")) == "facecaption"
    test = build_source(str(face_root / "face-toyworld.parquet"), "facecaption", "test", "all", {})
    assert len(test) == 16 and len(test[0]["texts"]) == 3
    assert CelebASource(face_root, "val").labels.shape == (8, len(FACE_ATTRIBUTES))


def test_attributes_are_consistent_and_every_one_varies(face_root: Path):
    labels = read_celeba_attributes(face_root / "list_attr_celeba.txt").labels
    a = dict(zip(FACE_ATTRIBUTES, labels.T))
    hair = a["Black_Hair"] + a["Blond_Hair"] + a["Brown_Hair"] + a["Gray_Hair"]
    assert np.array_equal(hair, 1 - a["Bald"])  # one hair colour, or bald
    assert not (a["Bangs"] & a["Bald"]).any()
    assert not ((a["Mustache"] | (1 - a["No_Beard"])) & (1 - a["Male"])).any()  # beards are men's
    rng = np.random.default_rng(0)
    many = np.array(
        [[d[n] for n in FACE_ATTRIBUTES] for d in (draw_face_attributes(rng) for _ in range(400))]
    )
    assert (many.mean(0) > 0.02).all() and (many.mean(0) < 0.98).all()


def test_captions_name_the_attributes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = draw_face_attributes(rng)
        for caption in face_captions(a, rng, n=3):
            assert ("glasses" in caption) == bool(a["Eyeglasses"])
            assert ("hat" in caption) == bool(a["Wearing_Hat"])
            assert ("bald" in caption) == bool(a["Bald"])
            assert ("smiling" in caption) == bool(a["Smiling"])
            assert (" man" in caption) == bool(a["Male"]) and (" woman" in caption) == (not a["Male"])
            assert ("beard" in caption and "with a beard" in caption) == bool(a["Male"] and not a["No_Beard"])


def test_faces_are_drawn_as_their_attributes_say():
    base = {n: 0 for n in FACE_ATTRIBUTES} | {"Black_Hair": 1, "No_Beard": 1}
    plain = render_face(base, np.random.default_rng(5))
    assert plain.shape == (64, 64, 3) and plain.dtype == np.uint8
    # Same seed, one attribute changed: only the region that attribute draws changes.
    hat = render_face(base | {"Wearing_Hat": 1}, np.random.default_rng(5))
    rows = np.nonzero((hat != plain).any(axis=(1, 2)))[0]
    assert rows.size and rows.max() < 32  # the hat sits on the head's top half
    glasses = render_face(base | {"Eyeglasses": 1}, np.random.default_rng(5))
    changed = np.nonzero((glasses != plain).any(axis=2))
    assert changed[0].size and 16 < changed[0].mean() < 40  # around the eyes


def test_face_toyworld_is_a_generated_dataset(tmp_path: Path):
    path = ensure_generated("face-toyworld", tmp_path, {"n_train": 4, "n_val": 0, "n_test": 2})
    assert path.name == "face-toyworld.parquet" and infer_data_kind("face-toyworld") == "face-toyworld"
    assert len(build_source(str(path), "facecaption", "train", "random", {})) == 4
