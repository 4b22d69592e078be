"""ocr-toyworld and the detection pipeline: real files, seeded, registered; polygon-aware augmentation,
DB targets and glyph labels that line up with the pixels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import shapely
import torch

from vlzoo.core.train import ImageTextDataModule
from vlzoo.ocr.data import (
    DetectionAugment,
    DetectionDataset,
    TextInstance,
    read_detection_records,
    write_gt_file,
    write_ocr_toyworld,
)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_the_same_seed_writes_the_same_files(tmp_path: Path):
    a = write_ocr_toyworld(tmp_path / "a", n_train=6, n_val=0, n_test=2, image_size=96, seed=3)
    b = write_ocr_toyworld(tmp_path / "b", n_train=6, n_val=0, n_test=2, image_size=96, seed=3)
    c = write_ocr_toyworld(tmp_path / "c", n_train=6, n_val=0, n_test=2, image_size=96, seed=4)
    assert _digest(a.parent) == _digest(b.parent) != _digest(c.parent)


def test_scenes_are_png_and_jpeg_files_with_icdar_gt_of_separate_words(toyworld: Path):
    index = json.loads(toyworld.read_text())
    assert {Path(e["image"]).suffix for e in index["splits"]["train"]} == {".png", ".jpg"}
    records = read_detection_records(toyworld, "train")
    counts = [len(r.instances) for r in records]
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) > 1
    words = [i for r in records for i in r.instances]
    assert 0 < sum(i.ignore for i in words) < 0.3 * len(words)  # some don't-care words
    for record in records:
        image = cv2.imread(str(record.image_path))
        assert image.shape == (128, 128, 3)
        polygons = [shapely.Polygon(i.polygon) for i in record.instances]
        assert all(p.is_valid and p.area > 20 for p in polygons)
        assert all(not a.intersects(b) for k, a in enumerate(polygons) for b in polygons[k + 1 :])


def test_word_pixels_stand_out_from_the_background(toyworld: Path):
    """Inside each word's polygon the pixels vary more than in a ring just around it: there is text."""
    contrasts = []
    for record in read_detection_records(toyworld, "test"):
        gray = cv2.cvtColor(cv2.imread(str(record.image_path)), cv2.COLOR_BGR2GRAY).astype(np.float32)
        for word in record.instances:
            inside = np.zeros(gray.shape, np.uint8)
            cv2.fillPoly(inside, [np.round(word.polygon).astype(np.int32)], 1)
            ring = cv2.dilate(inside, np.ones((7, 7), np.uint8)) - inside
            contrasts.append(gray[inside == 1].std() > gray[ring == 1].std())
    assert np.mean(contrasts) > 0.8


def test_augmentation_moves_polygons_with_the_pixels():
    image = np.zeros((100, 160, 3), np.uint8)
    polygon = np.array([[30, 40], [110, 40], [110, 60], [30, 60]], np.float32)
    cv2.fillPoly(image, [polygon.astype(np.int32)], (255, 255, 255))
    augment = DetectionAugment(96, scales=(0.8, 1.2), rotate=20)
    for seed in range(6):
        out, (moved,) = augment(image, [polygon], np.random.default_rng(seed))
        assert out.shape == (96, 96, 3)
        white = out.max(2) > 200
        inside = np.zeros(white.shape, np.uint8)
        cv2.fillPoly(inside, [np.round(moved).astype(np.int32)], 1)
        inside = cv2.dilate(inside, np.ones((5, 5), np.uint8))
        assert not (white & (inside == 0)).any()  # every bright pixel inside the moved polygon
        if white.sum() > 50:
            assert (white & (inside == 1)).sum() / inside.sum() > 0.4
    # the same generator state draws the same augmentation (albumentations' own RNG included)
    a, (pa,) = augment(image, [polygon], np.random.default_rng(7))
    b, (pb,) = augment(image, [polygon], np.random.default_rng(7))
    assert np.array_equal(a, b) and np.array_equal(pa, pb)


def test_training_samples_carry_db_maps_and_glyphs_inside_their_words(toyworld: Path):
    dataset = DetectionDataset(read_detection_records(toyworld, "train")[:6], 128, train=True)
    torch.manual_seed(0)
    for i in range(len(dataset)):
        s = dataset[i]
        assert s["image"].shape == (128, 128, 3)
        words = np.zeros((128, 128), np.uint8)
        for polygon in s["polygons"]:
            cv2.fillPoly(words, [np.round(polygon).astype(np.int32)], 1)
        words = cv2.dilate(words, np.ones((3, 3), np.uint8))
        assert not ((s["prob_map"].numpy() > 0) & (words == 0)).any()
        assert not ((s["glyph"].numpy() > 0) & (words == 0)).any()
        assert float(s["thresh_map"].min()) >= 0.3 - 1e-6 and float(s["thresh_map"].max()) <= 0.7 + 1e-6


def test_the_data_kind_feeds_the_cores_datamodule_at_the_models_size(toyworld: Path):
    data = ImageTextDataModule(
        data=str(toyworld), data_kind="icdar-detection", model="dbnet-tiny", batch_size=4, num_workers=0
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (4, 3, 128, 128) and batch["image"].dtype == torch.float32
    assert batch["prob_map"].shape == (4, 128, 128) and "glyph" not in batch  # DBNet asks for DB maps only
    assert len(batch["polygons"]) == 4 and isinstance(batch["words"][0], list)


def test_the_generated_dataset_is_written_on_first_use(tmp_path: Path):
    data = ImageTextDataModule(
        data="ocr-toyworld",
        model="odm-tiny",
        data_dir=str(tmp_path),
        generate={"n_train": 4, "n_val": 0, "n_test": 0, "image_size": 64},
        batch_size=2,
        num_workers=0,
    )
    data.prepare_data()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert (tmp_path / "ocr-toyworld.json").is_file()
    assert batch["glyph"].shape == (2, 128, 128) and batch["prompt"][0]  # ODM: glyphs and prompts


def test_an_unreadable_image_is_a_counted_skip(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((40, 60, 3), np.uint8))
    (tmp_path / "images" / "b.png").write_bytes(b"\x89PNG truncated")
    for name in ("a", "b"):
        write_gt_file(
            tmp_path / "gt" / f"gt_{name}.txt",
            [TextInstance(np.array([[2, 2], [30, 2], [30, 12], [2, 12]], np.float32), "ab")],
        )
    data = ImageTextDataModule(
        data=str(tmp_path), data_kind="icdar-detection", model="dbnet-tiny", batch_size=2, num_workers=0
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert len(batch["id"]) == 1 and [Path(p).name for p, _ in batch["skipped"]] == ["b.png"]
    assert "cannot be decoded" in batch["skipped"][0][1]
