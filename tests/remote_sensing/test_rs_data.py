"""Remote-sensing datasets: caption files with classes and geo, multilingual captions, scene folders,
skipped corrupt GeoTIFFs, data kinds, and the generated rs-toyworld."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from vlzoo.core.data import ImageTextCollator, SkipCounter, build_source
from vlzoo.core.data.kinds import get_data_kind, get_generated_dataset
from vlzoo.core.errors import DataError
from vlzoo.core.registry import get_tokenizer, get_transforms
from vlzoo.core.train import ImageTextDataModule
from vlzoo.remote_sensing import RSKarpathySplits, SceneFolder, class_from_filename, write_rs_toyworld
from vlzoo.remote_sensing.data import (
    CLASSES,
    caption_languages,
    generate_scene,
    read_geotiff,
    rs_toyworld_band_stats,
    scene_class_name,
    write_rs_toyworld_classes,
)
from vlzoo.remote_sensing.data.toyworld import POSITIONS, SIGNATURES

S2 = ("B02", "B03", "B04", "B08")


def _captions(name: str, n: int = 5) -> list[dict]:
    return [{"raw": f"{name} caption {i}", "tokens": [name, "caption", str(i)]} for i in range(n)]


@pytest.fixture
def rs_json(tmp_path, write_tif) -> Path:
    """An RSITMD-like Karpathy JSON over GeoTIFFs: 5 images in 3 splits, classes in the filenames."""
    layout = [
        ("forest_1.tif", "train"),
        ("airport_7.tif", "train"),
        ("lake_2.tif", "val"),
        ("forest_9.tif", "test"),
        ("lake_4.tif", "test"),
    ]
    images = []
    for i, (filename, split) in enumerate(layout):
        pixels = np.full((4, 8, 8), 100 + i, np.uint16)
        transform = rasterio.transform.from_origin(600_000 + 80 * i, 4_000_000, 10, 10)
        write_tif(tmp_path / "images" / filename, pixels, transform=transform, nodata=0, descriptions=S2)
        images.append(
            {
                "filename": filename,
                "filepath": "images",
                "split": split,
                "imgid": i,
                "sentences": _captions(filename),
            }
        )
    path = tmp_path / "rsitmd_like.json"
    path.write_text(json.dumps({"images": images}))
    return path


def test_class_from_filename_takes_the_prefix_before_the_first_underscore():
    assert class_from_filename("denseresidential_12.jpg") == "denseresidential"
    assert class_from_filename("storage_tanks_3.tif") == "storage"  # the first `_`, as PriorCLIP splits
    assert class_from_filename("sub/dir/airport_1.tif") == "airport"
    assert class_from_filename("agricultural07.tif") == "agricultural"  # UCM: no `_`, trailing digits
    assert class_from_filename("00012.jpg") == "unlabelled"


def test_rs_karpathy_samples_carry_class_ids_geo_and_five_captions(rs_json):
    test = RSKarpathySplits(rs_json, "test")
    assert test.classes == ["airport", "forest", "lake"]  # sorted over the whole file, not the split
    sample = test[1]
    assert sample["class_name"] == "lake" and sample["class_id"] == 2
    assert sample["texts"] == [f"lake_4.tif caption {i}" for i in range(5)]
    assert sample["geo"] == {
        "crs": "EPSG:32633",
        "transform": (10.0, 0.0, 600_320.0, 0.0, -10.0, 4_000_000.0),
    }
    assert type(sample["image"]) is np.ndarray and sample["image"].shape == (8, 8, 4)
    assert float(sample["image"][0, 0, 0]) == 104.0

    train = RSKarpathySplits(rs_json, "train", captions="each")
    assert len(train) == 10 and train[0]["text"] == "forest_1.tif caption 0" and train[9]["class_id"] == 0
    assert train.class_ids.tolist() == [1, 0]


def test_class_ids_reach_the_batch_as_a_long_tensor(rs_json, rs_model):
    collate = ImageTextCollator(get_transforms(rs_model, train=False), get_tokenizer(rs_model))
    train = RSKarpathySplits(rs_json, "train", captions="first")
    batch = collate([train[0], train[1]])
    assert batch["class_id"].dtype == torch.long and batch["class_id"].tolist() == [1, 0]
    assert batch["image"].shape == (2, 4, 64, 64)
    assert [g["transform"][2] for g in batch["geo"]] == [600_000.0, 600_080.0]


def test_a_corrupt_geotiff_is_skipped_and_counted(rs_json, rs_model):
    (rs_json.parent / "images" / "forest_9.tif").write_bytes(b"II*\x00" + b"\x00" * 64)  # broken header
    test = RSKarpathySplits(rs_json, "test")
    marker = test[0]
    assert marker["__skipped__"] and marker["path"].endswith("forest_9.tif")
    collate = ImageTextCollator(get_transforms(rs_model, train=False), get_tokenizer(rs_model))
    batch = collate([test[0], test[1]])
    assert batch["image"].shape[0] == 1 and len(batch["skipped"]) == 1
    assert (
        batch["skipped"][0][0].endswith("forest_9.tif") and "not a readable GeoTIFF" in batch["skipped"][0][1]
    )
    counter = SkipCounter()
    counter.update_from_batch(batch)
    assert (counter.seen, counter.skipped) == (2, 1)
    with pytest.raises(DataError, match=r"forest_9\.tif"):
        counter.check(threshold=0.1)


def test_bands_selected_by_name_and_a_file_missing_one_is_skipped(rs_json, write_tif):
    test = RSKarpathySplits(rs_json, "test", bands=("red", "B03", "B02"))
    rgb = test[1]["image"]
    assert rgb.shape == (8, 8, 3) and type(rgb) is np.ndarray
    pixels = np.stack([np.full((8, 8), v, np.uint16) for v in (11, 12, 13, 14)])  # B02..B08 = 11..14
    write_tif(rs_json.parent / "images" / "lake_4.tif", pixels, descriptions=S2)
    assert test[1]["image"][0, 0].tolist() == [13.0, 12.0, 11.0]  # B04, B03, B02
    write_tif(rs_json.parent / "images" / "lake_4.tif", pixels[[0, 2, 3]], descriptions=("B02", "B04", "B08"))
    marker = test[1]
    assert marker["__skipped__"] and marker["path"].endswith("lake_4.tif")
    assert "no band named 'B03'" in marker["reason"]


def _multilingual(tmp_path: Path, write_tif) -> Path:
    write_tif(tmp_path / "port_1.tif", np.ones((4, 8, 8), np.uint16))
    sentences = [
        {"raw": "many boats in a harbour"},
        {"raw": "muitos barcos num porto", "lang": "pt"},
        {"raw": "muchos barcos en un puerto", "lang": "es"},
        {"raw": "boats moored at a pier", "lang": "en"},
        {"raw": "barcos atracados num cais", "lang": "PT"},
    ]
    path = tmp_path / "multi.json"
    path.write_text(
        json.dumps({"images": [{"filename": "port_1.tif", "split": "test", "sentences": sentences}]})
    )
    return path


def test_multilingual_captions_filtered_by_language(tmp_path, write_tif):
    path = _multilingual(tmp_path, write_tif)
    assert caption_languages(path) == {"en": 2, "es": 1, "pt": 2}
    everything = RSKarpathySplits(path, "test")[0]["texts"]
    assert len(everything) == 5
    assert RSKarpathySplits(path, "test", languages="pt")[0]["texts"] == [
        "muitos barcos num porto",
        "barcos atracados num cais",
    ]
    assert RSKarpathySplits(path, "test", languages=["en", "es"])[0]["texts"] == [
        "many boats in a harbour",
        "muchos barcos en un puerto",
        "boats moored at a pier",
    ]
    with pytest.raises(DataError, match=r"no caption in languages \('zh',\).*'en', 'es', 'pt'"):
        RSKarpathySplits(path, "test", languages="zh")


def test_data_kinds_read_languages_from_the_path_and_default_to_english_for_evaluation(tmp_path, write_tif):
    path = str(_multilingual(tmp_path, write_tif))
    assert get_data_kind("rs-karpathy").has_splits and get_data_kind("rs-multilingual").has_splits
    assert len(build_source(path, "rs-karpathy", "test", "all", {})[0]["texts"]) == 5
    assert len(build_source(path, "rs-multilingual", "test", "all", {})[0]["texts"]) == 2  # English
    assert len(build_source(path, "rs-multilingual", "test", "each", {})) == 5  # training: every language
    spanish = build_source(path + "::es", "rs-multilingual", "test", "all", {})
    assert spanish[0]["texts"] == ["muchos barcos en un puerto"]
    spec = get_generated_dataset("rs-toyworld")
    assert spec.kind == "rs-karpathy" and spec.filename == "rs-toyworld.json"


def test_scene_folder_names_classes_for_prompts(tmp_path, write_tif):
    assert scene_class_name("AnnualCrop") == "annual crop"
    assert scene_class_name("ground_track_field") == "ground track field"
    assert scene_class_name("denseresidential") == "dense residential area"
    assert scene_class_name("SeaLake") == "sea or lake"
    for cls, value in (("HerbaceousVegetation", 5), ("SeaLake", 9)):  # EuroSAT layout, multispectral tifs
        write_tif(tmp_path / "eurosat" / cls / f"{cls}_1.tif", np.full((4, 8, 8), value, np.uint16))
    folder = SceneFolder(tmp_path / "eurosat")
    assert folder.class_names == ["herbaceous vegetation", "sea or lake"]
    sample = folder[1]
    assert sample["label"] == 1 and sample["class_name"] == "sea or lake"
    assert sample["image"].shape == (8, 8, 4) and float(sample["image"][0, 0, 0]) == 9.0


# ------------------------------------------------------------------------------------------- rs-toyworld


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_rs_toyworld_is_deterministic_for_a_seed(tmp_path):
    kwargs = {"n_train": 6, "n_val": 2, "n_test": 2, "image_size": 32, "bands": 4}
    write_rs_toyworld(tmp_path / "a", seed=5, **kwargs)
    write_rs_toyworld(tmp_path / "b", seed=5, **kwargs)
    write_rs_toyworld(tmp_path / "c", seed=6, **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_rs_toyworld_files_are_georeferenced_multispectral_geotiffs(rs_toyworld):
    data = json.loads(rs_toyworld.read_text())
    assert data["classes"] == list(CLASSES) and data["bands"] == ["B02", "B03", "B04", "B08"]
    entries = [e for e in data["images"] if e["split"] == "train"]
    with rasterio.open(rs_toyworld.parent / "train" / entries[0]["filename"]) as src:
        assert src.driver == "GTiff" and src.count == 4 and src.dtypes == ("uint16",) * 4
        assert src.crs.to_epsg() == 32633 and src.nodata == 0
        assert src.descriptions == ("B02", "B03", "B04", "B08")
        assert src.res == (10.0, 10.0)
        first = src.transform
    with rasterio.open(rs_toyworld.parent / "train" / entries[1]["filename"]) as src:
        # the next scene of the grid lies right next to it: 64 px × 10 m to the east, same row
        assert (src.transform.c - first.c, src.transform.f - first.f) == (640.0, 0.0)
    nodata_scenes = [e for e in data["images"] if e["scene"]["nodata_edge"] is not None]
    assert nodata_scenes  # a quarter of the scenes lose an edge strip
    entry = nodata_scenes[0]
    image = read_geotiff(rs_toyworld.parent / entry["filepath"] / entry["filename"])
    edge = {
        "top": image.valid[0],
        "bottom": image.valid[-1],
        "left": image.valid[:, 0],
        "right": image.valid[:, -1],
    }
    assert not edge[entry["scene"]["nodata_edge"]].any() and image.valid.mean() > 0.85


def test_rs_toyworld_classes_captions_and_pixels_agree(rs_toyworld):
    test = RSKarpathySplits(rs_toyworld, "test")
    data = {e["imgid"]: e for e in json.loads(rs_toyworld.read_text())["images"]}
    assert test.classes == sorted(CLASSES)
    for index in range(len(test)):
        sample = test[index]
        scene = data[sample["id"]]["scene"]
        assert Path(sample["path"]).name.split("_")[0] == sample["class_name"] == scene["class_name"]
        assert sample["class_id"] == sorted(CLASSES).index(scene["class_name"])
        assert len(sample["texts"]) == 5
        for text in sample["texts"]:  # every caption names the main class and where it is
            assert scene["class_name"] in text and scene["position"] in text
    # the main patch's centre pixel has its surface's spectrum: water is dark in NIR, vegetation bright
    for cls, surface in (("lake", "water"), ("forest", "forest")):
        pixels, scene, _ = generate_scene(3, "test", CLASSES.index(cls), image_size=64, bands=4)
        x, y = (int(v) for v in scene.centre)
        expected = np.asarray(SIGNATURES[surface][:4], np.float64)
        np.testing.assert_allclose(pixels[:, y, x], expected, rtol=0.3)
        assert scene.position in POSITIONS


def test_rs_toyworld_band_stats_describe_its_pixels():
    pixels = np.concatenate(
        [generate_scene(2, "train", i, image_size=64, bands=4)[0].reshape(4, -1) for i in range(240)], axis=1
    ).astype(np.float64)
    valid = (pixels != 0).all(axis=0)  # nodata 0 in every band
    stats = rs_toyworld_band_stats(4)
    np.testing.assert_allclose(pixels[:, valid].mean(axis=1), stats.mean, rtol=0.05)
    np.testing.assert_allclose(pixels[:, valid].std(axis=1), stats.std, rtol=0.05)


def test_rs_toyworld_scene_folder_for_zero_shot(tmp_path):
    root = write_rs_toyworld_classes(tmp_path / "scenes", n_per_class=2, image_size=32, bands=3)
    folder = SceneFolder(root)
    assert folder.classes == sorted(CLASSES) and len(folder) == 2 * len(CLASSES)
    sample = folder[3]
    assert Path(sample["path"]).name.startswith(folder.classes[sample["label"]] + "_")
    assert sample["image"].shape == (32, 32, 3)


def test_datamodule_generates_and_reads_rs_toyworld(tmp_path, rs_model):
    data = ImageTextDataModule(
        "rs-toyworld",
        model=rs_model,
        batch_size=4,
        num_workers=0,
        data_dir=str(tmp_path / "rs"),
        generate={"n_train": 8, "n_val": 4, "n_test": 4},
    )
    data.prepare_data()
    assert (tmp_path / "rs" / "rs-toyworld.json").is_file()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (4, 4, 64, 64) and batch["image"].dtype == torch.float32
    assert torch.isfinite(batch["image"]).all()  # nodata filled by the model's geo_transform
    assert batch["class_id"].dtype == torch.long and len(batch["geo"]) == 4
    val = next(iter(data.val_dataloader()))
    assert len(val["captions"]) == 5 * val["image"].shape[0]


@pytest.mark.slow
def test_rs_toyworld_is_learnable_on_the_cpu(tmp_path, rs_model):
    """A plain CLIP of two 64-wide layers per tower, 4-band input through `geo_transform`, learns
    rs-toyworld's classes and positions in 120 steps: mR on 100 test scenes well above chance."""
    # One intra-op thread: on a shared 2-core machine OpenMP's spinning threads made this run 6x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics, chance, n_test = _train_and_test_on_rs_toyworld(tmp_path, rs_model)
    finally:
        torch.set_num_threads(threads)
    assert metrics["test/mean_recall"] >= 2.5 * chance, (metrics, chance)
    assert metrics["test/text_to_image_R@10"] >= 2 * 100 * 10 / n_test, metrics


def _train_and_test_on_rs_toyworld(tmp_path: Path, rs_model: str) -> tuple[dict, float, int]:
    import lightning as L

    from vlzoo.core.train import ZooModule

    L.seed_everything(0)
    n_test = 100
    data = ImageTextDataModule(
        "rs-toyworld",
        model=rs_model,
        batch_size=32,
        num_workers=0,
        data_dir=str(tmp_path / "rs"),
        generate={"n_train": 384, "n_val": 8, "n_test": n_test, "seed": 1},
    )
    module = ZooModule(rs_model, lr=3e-3, warmup_steps=10, weight_decay=0.05, export_weights=False)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=10,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, data)
    metrics = trainer.test(module, data, verbose=False)[0]
    # chance: a caption finds its image in the top k with probability k/N; an image one of its five
    # captions among the top k of 5N with probability 1 - C(5N-5, k) / C(5N, k)
    captions = 5 * n_test
    chance_i2t = [
        100 * (1 - np.prod([(captions - 5 - j) / (captions - j) for j in range(k)])) for k in (1, 5, 10)
    ]
    chance = (sum(chance_i2t) + sum(100 * k / n_test for k in (1, 5, 10))) / 6
    return metrics, chance, n_test
