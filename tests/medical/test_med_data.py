"""2D DICOM images, report sources (ROCO, MIMIC-CXR, MedConcept), data kinds and med-toyworld."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from vlzoo.core.data import (
    ImageFolderClasses,
    KarpathySplits,
    build_source,
    data_kinds,
    decode_image,
    ensure_generated,
    generated_datasets,
    is_skipped,
)
from vlzoo.core.errors import DataError
from vlzoo.medical import CONCEPT_IDS, load_image, read_dicom_pixels, read_volume
from vlzoo.medical.data import (
    NO_TEXT,
    MedConceptPairs,
    MimicReports,
    RocoPairs,
    VolumeReports,
    radiological_view,
    report_sections,
    write_med_toyworld,
)
from vlzoo.medical.data.toyworld import HU, SIZES_MM

# ------------------------------------------------------------------------------------- 2D DICOM


def test_dicom_image_display_chain(tmp_path: Path, dicom_writer):
    stored = np.arange(0, 240, 4, dtype=np.uint16).reshape(6, 10)
    # no window: the modality values' own range is stretched to [0, 1]
    plain = read_dicom_pixels(dicom_writer(tmp_path / "plain.dcm", stored))
    np.testing.assert_allclose(plain, stored / stored.max(), atol=1e-6)
    # MONOCHROME1: the same pixels, 0 = white, so inverted
    inverted = read_dicom_pixels(dicom_writer(tmp_path / "mono1.dcm", stored, photometric="MONOCHROME1"))
    np.testing.assert_allclose(inverted, 1.0 - stored / stored.max(), atol=1e-6)
    # rescale (HU = 3·stored - 100) then DICOM's LINEAR window (c=200, w=301):
    # y = clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    path = dicom_writer(tmp_path / "win.dcm", stored, slope=3.0, intercept=-100.0, window=(200.0, 301.0))
    hu = 3.0 * stored - 100.0
    expected = np.clip((hu - 199.5) / 300.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(read_dicom_pixels(path), expected, atol=1e-6)

    image = load_image(path)
    assert image.mode == "RGB" and image.size == (10, 6)
    np.testing.assert_array_equal(np.asarray(image)[..., 0], np.round(expected * 255).astype(np.uint8))
    # the core's decoder for ".dcm" is load_image, from a path or from bytes
    np.testing.assert_array_equal(np.asarray(decode_image(path.read_bytes(), "x/win.dcm")), np.asarray(image))


def test_png_and_unreadable_images(tmp_path: Path):
    Image.fromarray(np.full((4, 5), 77, np.uint8)).save(tmp_path / "a.png")
    assert np.asarray(load_image(tmp_path / "a.png")).tolist() == [[[77] * 3] * 5] * 4
    deep = np.array([[1000, 3000], [5000, 9000]], np.uint16)  # a 16-bit PNG is stretched, not clipped
    Image.fromarray(deep).save(tmp_path / "deep.png")
    expected = np.round((deep - 1000) / 8000 * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "deep.png"))[..., 0], expected)
    (tmp_path / "bad.dcm").write_bytes(b"DICM" * 10)
    with pytest.raises(DataError, match=r"bad\.dcm: not a readable DICOM image"):
        load_image(tmp_path / "bad.dcm")


# ------------------------------------------------------------------------------------------ reports


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(folder / name)


def test_roco_pairs(tmp_path: Path):
    _images(tmp_path / "images", ["ROCO_00001.jpg", "ROCO_00002.png", "ROCO_00003.png"])
    (tmp_path / "captions.txt").write_text(
        "ROCO_00001\t Axial CT showing a hypodense lesion of the liver \n"
        "ROCO_00002\t\n"
        "ROCO_00004\tChest X-ray with a nodule\n"
        "ROCO_00003\tMRI\n"
    )
    pairs = RocoPairs(tmp_path / "captions.txt", min_words=3)
    samples = [pairs[i] for i in range(len(pairs))]
    assert samples[0]["text"] == "Axial CT showing a hypodense lesion of the liver"
    assert samples[0]["id"] == "ROCO_00001" and samples[0]["image"].size == (8, 8)
    assert [s.get("reason") for s in samples[1:]] == [
        NO_TEXT,
        f"no image named ROCO_00004.* in {tmp_path / 'images'}",
        "report has fewer than 3 words",
    ]
    (tmp_path / "broken.txt").write_text("ROCO_00001 no tab here\n")
    with pytest.raises(DataError, match=r"broken\.txt: line 1 has no tab"):
        RocoPairs(tmp_path / "broken.txt")


def test_mimic_sections_and_splits(tmp_path: Path):
    _images(tmp_path / "files", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    rows = [
        "path,findings,impression,split",
        "files/a.jpg,Heart size normal.,No acute process.,train",
        "files/b.jpg,,Small left effusion.,validate",
        "files/c.jpg,,,train",
        "files/d.jpg,Clear lungs.,,test",
    ]
    (tmp_path / "reports.csv").write_text("\n".join(rows) + "\n")
    both = MimicReports(tmp_path / "reports.csv", split="train")
    assert [s.get("text") for s in (both[0], both[1])] == ["Heart size normal. No acute process.", None]
    assert both[1]["reason"] == f"{NO_TEXT} (section 'both')"
    impression = MimicReports(tmp_path / "reports.csv", section="impression", split="val")
    assert len(impression) == 1 and impression[0]["text"] == "Small left effusion."
    findings = MimicReports(tmp_path / "reports.csv", section="findings", split="test")
    assert findings[0]["text"] == "Clear lungs."
    with pytest.raises(DataError, match="no sample in split 'extra'"):
        MimicReports(tmp_path / "reports.csv", split="extra")

    report = "EXAMINATION: CHEST PA\n\nFINDINGS: The lungs are clear.\n  No effusion.\nIMPRESSION:\n No acute disease."
    assert report_sections(report) == {
        "examination": "CHEST PA",
        "findings": "The lungs are clear. No effusion.",
        "impression": "No acute disease.",
    }
    (tmp_path / "free.csv").write_text(f'path,report\nfiles/a.jpg,"{report}"\nfiles/b.jpg,"WET READ: none"\n')
    free = MimicReports(tmp_path / "free.csv", section="findings")
    assert free[0]["text"] == "The lungs are clear. No effusion."
    assert free[1]["reason"] == f"{NO_TEXT} (section 'findings')"


def test_medconcept_spans(tmp_path: Path):
    _images(tmp_path, ["1.png", "2.png", "3.png", "4.png"])
    caption = "CT shows a hypodense lesion in the liver."
    lines = [
        {
            "image": "1.png",
            "caption": caption,
            "umls_meta_info": [
                {"umls_cui": "C0000001", "start_char": 11, "end_char": 27, "umls_similarity": 1.0},
                {"umls_cui": "C0023884", "start_char": 35, "end_char": 40},
            ],
        },
        {
            "image": "2.png",
            "caption": "  a nodule",
            "umls_meta_info": [[4, 10]],
        },  # minimal form, padded caption
        {"image": "3.png", "caption": "short", "umls_meta_info": [[2, 9]]},  # span past the caption's end
        {"image": "4.png", "caption": "", "umls_meta_info": []},
    ]
    (tmp_path / "concepts.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    pairs = MedConceptPairs(tmp_path / "concepts.jsonl")
    first = pairs[0]
    assert first["text"] == caption
    assert [(c["cui"], c["name"]) for c in first["concepts"]] == [
        ("C0000001", "hypodense lesion"),
        ("C0023884", "liver"),
    ]
    assert all(first["text"][c["start"] : c["end"]] == c["name"] for c in first["concepts"])
    second = pairs[1]
    assert second["text"] == "a nodule"
    assert second["concepts"] == [{"cui": None, "start": 2, "end": 8, "name": "nodule"}]
    assert pairs[2]["reason"] == "line 3: concept span [2, 9) lies outside the caption of length 5"
    assert pairs[3]["reason"] == f"line 4: {NO_TEXT}"


def test_medical_data_kinds_are_registered():
    assert {"roco", "mimic-cxr", "medconcept", "volume-reports"} <= set(data_kinds())
    assert {"med-toyworld", "med-toyworld-3d", "med-toyworld-concepts"} <= set(generated_datasets())


# -------------------------------------------------------------------------------------- med-toyworld


def test_med_toyworld_is_deterministic_per_seed(tmp_path: Path):
    def files(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }

    options = {
        "n_train": 4,
        "n_val": 2,
        "n_test": 3,
        "volume_shape": (8, 32, 32),
        "spacing": (10.0, 6.0, 6.0),
    }
    a = files(write_med_toyworld(tmp_path / "a", seed=5, **options).root)
    b = files(write_med_toyworld(tmp_path / "b", seed=5, **options).root)
    c = files(write_med_toyworld(tmp_path / "c", seed=6, **options).root)
    assert a == b
    assert len(a) == 4 + 2 + 3 + 4 + 2 + 3 + 3 + 3  # volumes, slices, test class copies, three index files
    assert a["volumes/train/000000.nii.gz"] != c["volumes/train/000000.nii.gz"]


def test_med_toyworld_volumes_are_real_nifti_with_spacing_and_affine(med_toyworld):
    entries = [json.loads(line) for line in med_toyworld.volume_reports.read_text().splitlines()]
    assert len(entries) == 24 + 8 + 24
    image = nib.load(med_toyworld.root / entries[0]["volume"])
    assert image.shape == (64, 64, 16) and image.get_data_dtype() == np.int16
    np.testing.assert_allclose(image.header.get_zooms(), (4.0, 4.0, 8.0))  # (x, y, z) = (w, h, d)
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")  # stored flipped: readers must reorient
    volume = read_volume(med_toyworld.root / entries[0]["volume"])
    assert volume.shape == (16, 64, 64) and volume.spacing == pytest.approx((8.0, 4.0, 4.0))
    # the volume is centred on the world origin: voxel centres at (n - 1)/2 from the middle
    centre = volume.affine @ [7.5, 31.5, 31.5, 1]
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-4)


def test_med_toyworld_findings_are_where_and_what_the_reports_say(med_toyworld):
    entries = [json.loads(line) for line in med_toyworld.volume_reports.read_text().splitlines()]
    checked, lobes = 0, {}
    for entry in entries:
        case = entry["case"]
        if case["center_index"] is None:
            assert "no focal lesion" in entry["report"][0]
            continue
        volume = read_volume(med_toyworld.root / entry["volume"])
        z, y, x = np.meshgrid(
            *(np.arange(n) * s for n, s in zip(volume.shape, volume.spacing)), indexing="ij"
        )
        centre = [i * s for i, s in zip(case["center_index"], volume.spacing)]
        radius = case["diameter_mm"] / 2
        inner = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= (radius - 4.5) ** 2
        if inner.sum() >= 3:  # the lesion's core holds its HU (± noise σ 12 / sqrt(n))
            assert abs(volume.array[inner].mean() - HU[case["finding"]]) < 20
        lo, hi = SIZES_MM[case["size"]]
        assert lo <= case["diameter_mm"] <= hi
        assert (
            entry["report"][0] == f"a {case['diameter_mm']} mm {case['finding']} in the {case['location']}."
        )
        # RAS: the patient's right is +x, i.e. the high w half of the Volume; a lung is on its side
        w = case["center_index"][2]
        if "lung" in case["location"]:
            assert (w >= 32) == case["location"].startswith("right"), case
        else:  # the liver lies right of the midline; its left lobe is the medial part
            lobes.setdefault(case["location"], []).append(w)
        # lungs in the superior half of the slices, the liver in the inferior half
        assert (case["center_index"][0] >= 8) == ("lung" in case["location"])
        checked += 1
    assert max(lobes["left lobe of the liver"]) < min(lobes["right lobe of the liver"])
    assert checked >= 10


def test_med_toyworld_2d_slices_are_the_windowed_radiological_view(med_toyworld):
    data = json.loads(med_toyworld.karpathy_2d.read_text())
    entry = next(e for e in data["images"] if e["case"]["center_index"] is not None and e["split"] == "test")
    volume = read_volume(
        med_toyworld.root / "volumes" / "test" / entry["filename"].replace(".png", ".nii.gz")
    )
    png = np.asarray(Image.open(med_toyworld.root / entry["filepath"] / entry["filename"]))
    d, _, w = entry["case"]["center_index"]
    expected = np.clip((radiological_view(volume.array[d]) - (50 - 200)) / 400, 0, 1)  # soft tissue (50, 400)
    np.testing.assert_allclose(png / 255.0, expected, atol=0.5 / 255 + 1e-6)
    # on screen the patient's right is on the left: a right-sided finding sits in the left half
    if "lung" in entry["case"]["location"]:
        assert (64 - 1 - w < 32) == entry["case"]["location"].startswith("right")


def test_med_toyworld_views_load_with_their_sources(med_toyworld):
    test_2d = KarpathySplits(med_toyworld.karpathy_2d, split="test", captions="all")
    assert len(test_2d) == 24 and len(test_2d[0]["texts"]) == 3 and test_2d[0]["image"].size == (64, 64)
    volumes = VolumeReports(med_toyworld.volume_reports, split="val", captions="random")
    assert len(volumes) == 8 and volumes[0]["image"].shape == (16, 64, 64)
    concepts = MedConceptPairs(med_toyworld.concepts, split="train")
    names = {cui: name for name, cui in CONCEPT_IDS.items()}
    for i in range(len(concepts)):
        sample = concepts[i]
        assert not is_skipped(sample) and sample["concepts"]
        for c in sample["concepts"]:
            assert sample["text"][c["start"] : c["end"]] == names[c["cui"]] == c["name"]
    classes = ImageFolderClasses(med_toyworld.classes)
    assert classes.class_names == [
        "calcified nodule",
        "hyperdense lesion",
        "hypodense lesion",
        "no focal lesion",
        "solid nodule",
    ]
    truth = sorted(
        e["case"]["finding"]
        for e in json.loads(med_toyworld.karpathy_2d.read_text())["images"]
        if e["split"] == "test"
    )
    assert sorted(classes.class_names[label] for _, label in classes.samples) == truth


def test_generated_dataset_hook_writes_med_toyworld_once(tmp_path: Path):
    options = {
        "n_train": 3,
        "n_val": 1,
        "n_test": 2,
        "volume_shape": (8, 32, 32),
        "spacing": (10.0, 6.0, 6.0),
    }
    path = ensure_generated("med-toyworld-3d", tmp_path, options)
    assert path == tmp_path / "med-toyworld-3d.jsonl" and (tmp_path / "med-toyworld-2d.json").is_file()
    stamp = path.stat().st_mtime_ns
    assert ensure_generated("med-toyworld-3d", tmp_path, options).stat().st_mtime_ns == stamp
    source = build_source(str(path), "volume-reports", "test", "all", {"train": False})
    assert len(source) == 2 and len(source[0]["texts"]) == 3
    concepts = build_source(str(tmp_path / "med-toyworld-concepts.jsonl"), "medconcept", "val", "first", {})
    assert len(concepts) == 1 and concepts[0]["concepts"]


def test_datamodule_reads_generated_volumes_and_concepts(tmp_path: Path):
    from vlzoo.core.train import ImageTextDataModule

    generate = {
        "n_train": 4,
        "n_val": 2,
        "n_test": 2,
        "volume_shape": (8, 32, 32),
        "spacing": (10.0, 6.0, 6.0),
    }
    volumes = ImageTextDataModule(
        data="med-toyworld-3d",
        model="radclip-3d-tiny",
        batch_size=2,
        num_workers=0,
        data_dir=str(tmp_path),
        generate=generate,
    )
    volumes.prepare_data()
    volumes.setup("fit")
    batch = next(iter(volumes.train_dataloader()))
    slices = 16  # radclip-3d-tiny's volume_slices; the 8 generated slices are padded to it
    assert batch["image"].shape == (2, slices, 3, 64, 64)
    assert batch["slice_mask"].tolist() == [[True] * 8 + [False] * 8] * 2
    assert len(next(iter(volumes.val_dataloader()))["captions"]) == 2 * 3  # val: every report of 2 volumes

    concepts = ImageTextDataModule(
        data="med-toyworld-concepts",
        model="conceptclip-tiny",
        batch_size=2,
        num_workers=0,
        data_dir=str(tmp_path),
        generate=generate,
    )
    concepts.setup("fit")
    batch = next(iter(concepts.train_dataloader()))
    assert len(batch["concepts"]) == 2
    for caption, spans in zip(batch["captions"], batch["concepts"]):
        assert {caption[c["start"] : c["end"]] for c in spans} <= set(CONCEPT_IDS)
