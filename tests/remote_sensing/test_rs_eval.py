"""Remote-sensing evaluation: the RSICD/RSITMD protocol (R@K both ways, mR), its table, zero-shot scene
classification, the map figure, and the `vlzoo-remote-sensing eval` command's report."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from rich.console import Console

import vlzoo.core as vz
from vlzoo.core.eval import retrieval_metrics
from vlzoo.core.registry import get_tokenizer, get_transforms
from vlzoo.remote_sensing import RSKarpathySplits, evaluate_rs_retrieval, evaluate_rs_zeroshot, read_geotiff
from vlzoo.remote_sensing.cli import main
from vlzoo.remote_sensing.evaluation import draw_scene, print_rs_table, rs_table_markdown


def _brute_force_recalls(sim: np.ndarray, owner: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """The RSICD protocol written out: sort every query's scores, find the first correct item."""
    n_img = sim.shape[0]
    out = {}
    for k in ks:
        i2t = [
            any(owner[j] == i for j in np.argsort(-sim[i], kind="stable")[:k]) for i in range(n_img)
        ]  # an image is a hit when any of its captions is among its top k
        t2i = [owner[j] in np.argsort(-sim[:, j], kind="stable")[:k] for j in range(sim.shape[1])]
        out[f"image_to_text_R@{k}"] = 100 * np.mean(i2t)
        out[f"text_to_image_R@{k}"] = 100 * np.mean(t2i)
    out["mean_recall"] = np.mean(list(out.values()))
    return out


def test_rsicd_protocol_on_a_hand_made_similarity_matrix():
    # 3 images (A, B, C), captions a0 a1 b0 b1 c0 c1; rows: images, columns: captions
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.8, 0.2, 0.3, 0.4],  # A: its a0 is first                        → hit at 1
            [0.7, 0.6, 0.1, 0.5, 0.2, 0.3],  # B: best own caption b1 is third (rank 2)   → hit at 5
            [0.5, 0.4, 0.6, 0.3, 0.1, 0.2],  # C: best own caption c1 is fifth (rank 4)   → hit at 5
        ]
    )
    owner = torch.tensor([0, 0, 1, 1, 2, 2])
    # features whose dot products are `sim`: images are the unit vectors, captions the columns
    metrics = retrieval_metrics(torch.eye(3), sim.T.contiguous(), owner)
    # text → image: a0 ranks A first, b1 ranks B first; a1, b0, c0, c1 rank their image third of three
    expected = {
        "image_to_text_R@1": 100 / 3,
        "image_to_text_R@5": 100.0,
        "image_to_text_R@10": 100.0,
        "text_to_image_R@1": 100 * 2 / 6,
        "text_to_image_R@5": 100.0,
        "text_to_image_R@10": 100.0,
    }
    expected["mean_recall"] = sum(expected.values()) / 6  # mR = 77.78
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key
    assert metrics["mean_recall"] == pytest.approx(77.777, abs=1e-3)

    out = io.StringIO()
    print_rs_table({"hand-made": metrics}, console=Console(file=out, width=200))
    printed = out.getvalue()
    for header in ("I→T R@1", "I→T R@10", "T→I R@5", "mR"):
        assert header in printed
    assert "33.33" in printed and "77.78" in printed
    markdown = rs_table_markdown({"hand-made": metrics})
    assert "| hand-made | 33.33 | 100.00 | 100.00 | 33.33 | 100.00 | 100.00 | 77.78 |" in markdown


def test_rsicd_protocol_matches_the_brute_force_definition():
    rng = np.random.default_rng(0)
    n_img, per_image = 14, 5
    images = rng.normal(size=(n_img, 8)).astype(np.float32)
    owner = np.repeat(np.arange(n_img), per_image)
    texts = (images[owner] + rng.normal(scale=1.5, size=(n_img * per_image, 8))).astype(np.float32)
    metrics = retrieval_metrics(torch.from_numpy(images), torch.from_numpy(texts), torch.from_numpy(owner))
    expected = _brute_force_recalls(images @ texts.T, owner)
    assert 0 < expected["image_to_text_R@1"] < 100  # a case where the ks tell queries apart
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return vz.create_model(name).eval()


def test_rs_retrieval_evaluates_every_test_caption_of_the_geotiffs(rs_toyworld, rs_model):
    """The evaluation reads the GeoTIFFs through the model's own preprocessing and scores the protocol:
    recomputed here scene by scene from the files, the figures agree."""
    model = _model(rs_model)
    metrics = evaluate_rs_retrieval(
        model, data=str(rs_toyworld), batch_size=7, workers=0, console=Console(file=io.StringIO())
    )
    test = RSKarpathySplits(rs_toyworld, "test")
    assert (metrics["images"], metrics["captions"], metrics["skipped"]) == (len(test), 5 * len(test), 0)

    transform, tokenizer = get_transforms(rs_model, train=False), get_tokenizer(rs_model)
    with torch.no_grad():
        images = torch.stack([transform(read_geotiff(r.image_path).hwc()) for r in test.records])
        image_features = model.encode_image(images)
        captions = [c for r in test.records for c in r.captions]
        text_features = model.encode_text(tokenizer(captions))
    owner = np.repeat(np.arange(len(test)), 5)
    expected = _brute_force_recalls((image_features @ text_features.T).numpy(), owner)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key


def test_zero_shot_scene_classification_of_the_test_split(rs_toyworld, rs_model):
    metrics = evaluate_rs_zeroshot(
        _model(rs_model), data=str(rs_toyworld), workers=0, console=Console(file=io.StringIO())
    )
    test = RSKarpathySplits(rs_toyworld, "test")
    assert metrics["images"] == len(test)
    assert set(metrics["per_class_accuracy"]) == set(test.classes)  # every class has test scenes
    counts = np.bincount(test.class_ids, minlength=len(test.classes))
    per_class = np.array([metrics["per_class_accuracy"][c] for c in test.classes])
    # top-1 accuracy is the per-class accuracies weighted by the class sizes
    assert metrics["top1_accuracy"] == pytest.approx(float((per_class * counts).sum() / counts.sum()))
    assert metrics["top5_accuracy"] >= metrics["top1_accuracy"]


def test_map_figure_draws_a_scene_at_its_coordinates(rs_toyworld):
    record = RSKarpathySplits(rs_toyworld, "test").records[0]
    scene = read_geotiff(record.image_path)
    ax = Figure().add_subplot()
    draw_scene(ax, scene)
    left, bottom, right, top = scene.bounds
    assert ax.get_xlim() == pytest.approx((left, right)) and ax.get_ylim() == pytest.approx((bottom, top))
    assert right - left == 640.0  # 64 pixels of 10 m
    assert ax.get_xlabel() == "easting (m)" and "EPSG:32633" in ax.get_title()


def test_eval_command_prints_the_table_and_writes_the_report(rs_toyworld, rs_model, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["eval", "retrieval", "--model", rs_model, "--data", str(rs_toyworld), "--workers", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "I→T R@1" in printed and "mR" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 30 and metrics["captions"] == 150
    mean = np.mean([metrics[f"{d}_R@{k}"] for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)])
    assert metrics["mean_recall"] == pytest.approx(mean)
    assert f"{metrics['mean_recall']:.2f}" in (out / "retrieval_table.md").read_text()
    for plot in ("scene_map.png", "recall_curves.png", "similarity_heatmap.png", "query_grid.png"):
        with Image.open(out / plot) as image:
            assert image.size[0] > 200 and image.size[1] > 200, plot

    zeroshot = tmp_path / "zeroshot"
    assert (
        main(["eval", "zeroshot", "--model", rs_model, "--data", str(rs_toyworld), "--out", str(zeroshot)])
        == 0
    )
    assert "top-1 accuracy" in capsys.readouterr().out
    assert json.loads((zeroshot / "metrics.json").read_text())["images"] == 30
    with Image.open(zeroshot / "confusion_matrix.png") as image:
        assert image.size[0] > 100


def test_eval_command_reports_bad_data_as_an_error(rs_model, tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert main(["eval", "retrieval", "--model", rs_model, "--data", str(missing), "--workers", "0"]) == 2
    assert "nope.json: file not found" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["retrieval", "zeroshot"])
def test_eval_names_the_unreadable_scenes_and_fails_above_the_threshold(task, rs_model, tmp_path, capsys):
    from vlzoo.remote_sensing.data import write_rs_toyworld

    data = write_rs_toyworld(tmp_path / "rs", n_train=1, n_val=1, n_test=20, seed=3)
    test = RSKarpathySplits(data, "test")
    broken = [str(test.records[i].image_path) for i in (3, 9, 15)]
    for path in broken:
        with open(path, "r+b") as f:  # a GeoTIFF cut short: the header survives, the pixels don't
            f.truncate(200)
    argv = ["eval", task, "--model", rs_model, "--data", str(data), "--workers", "0"]
    assert main(argv) == 2  # 3 of 20 is more than the default 1%
    err = capsys.readouterr().err
    assert "3 of 20 samples (15.0%) could not be read" in err
    assert all(f"{path}: " in err for path in broken)

    out = tmp_path / "report"
    assert main([*argv, "--max-skip-rate", "0.2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["images"], metrics["skipped"], metrics["samples_seen"]) == (17, 3, 20)
    assert [e["path"] for e in metrics["skipped_examples"]] == broken
    assert all(e["reason"] for e in metrics["skipped_examples"])
    printed = capsys.readouterr().out
    assert "3 of 20 samples skipped (15.0%), the metrics are over the other 17" in printed
    assert all(path in printed for path in broken)
