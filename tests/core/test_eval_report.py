"""Reports: the rich table, the JSON file and the PNG plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from rich.console import Console

from vlzoo.core.errors import ConfigError
from vlzoo.core.eval import (
    plot_query_grid,
    plot_recall_curves,
    print_table,
    retrieval_metrics,
    write_json,
    write_report,
)

GREEN = np.array([0x1A, 0x98, 0x50])


def retrieval_set(n_images: int = 12, noise: float = 0.3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(n_images, 16, generator=gen), dim=-1)
    t2i = torch.arange(n_images).repeat_interleave(3)
    texts = F.normalize(images[t2i] + noise * torch.randn(t2i.numel(), 16, generator=gen), dim=-1)
    captions = [f"caption {j} of image {int(i)}" for j, i in enumerate(t2i)]
    return images, texts, t2i, captions


def assert_png(path) -> Image.Image:
    assert path.exists()
    assert path.stat().st_size > 0
    with Image.open(path) as img:
        img.verify()  # a truncated or non-PNG file raises here
    img = Image.open(path)
    assert img.format == "PNG"
    assert img.width > 50
    assert img.height > 50
    return img.convert("RGB")


def test_write_report_writes_every_file(tmp_path):
    images, texts, t2i, captions = retrieval_set()
    pixels = torch.full((12, 3, 24, 24), 128, dtype=torch.uint8)  # gray: no green except the borders
    metrics = retrieval_metrics(images, texts, t2i)
    console = Console(record=True, width=120)
    paths = write_report(
        tmp_path / "report",
        metrics,
        title="toy retrieval",
        image_features=images,
        text_features=texts,
        text_to_image=t2i,
        captions=captions,
        images=pixels,
        console=console,
    )
    assert set(paths) == {"json", "recall_curves", "similarity_heatmap", "query_grid"}
    for name in ("recall_curves", "similarity_heatmap", "query_grid"):
        assert_png(paths[name])
    assert json.loads(paths["json"].read_text()) == pytest.approx(metrics)
    text = console.export_text()
    assert "toy retrieval" in text
    for key in metrics:
        assert key in text


def test_report_without_features_writes_only_json(tmp_path):
    paths = write_report(tmp_path, {"accuracy": 50.0}, console=Console(record=True))
    assert list(paths) == ["json"]
    with pytest.raises(ConfigError):
        write_report(tmp_path, {"a": 1.0}, image_features=torch.randn(2, 4), console=Console(record=True))


def test_json_handles_tensors_numpy_nested_and_nan(tmp_path):
    metrics = {
        "top1": torch.tensor(71.5),
        "per_class": {0: np.float32(50.0), "dog": torch.tensor([1.0, 2.0])},
        "count": np.int64(3),
        "validation": {1e-3: 10.0},
        "missing": float("nan"),
        "ranks": np.arange(3),
    }
    path = write_json(metrics, tmp_path / "sub" / "m.json")
    loaded = json.loads(path.read_text())  # strict JSON: no NaN token
    assert loaded == {
        "top1": 71.5,
        "per_class": {"0": 50.0, "dog": [1.0, 2.0]},
        "count": 3,
        "validation": {"0.001": 10.0},
        "missing": None,
        "ranks": [0, 1, 2],
    }
    assert "NaN" not in path.read_text()
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write cleaned up


def test_print_table_lists_metrics_and_nested_rows():
    console = Console(record=True, width=120)
    table = print_table(
        {
            "accuracy": 93.25,
            "per_class_accuracy": {"cat": 90.0, "dog": 96.5},
            "big": dict.fromkeys(range(50), 1.0),
        },
        title="probe",
        console=console,
    )
    text = console.export_text()
    assert table.row_count == 4
    for needle in ("probe", "accuracy", "93.25", "per_class_accuracy/cat", "96.50", "50 entries"):
        assert needle in text


def test_query_grid_marks_hits_in_green(tmp_path):
    images, texts, t2i, captions = retrieval_set(noise=0.01)  # every query's top-1 is its own image
    pil_images = [Image.new("RGB", (20, 20), (128, 128, 128)) for _ in range(12)]
    img = np.asarray(
        assert_png(
            plot_query_grid(captions, pil_images, images, texts, t2i, tmp_path / "hit.png", n_queries=3)
        )
    )
    green = np.abs(img.astype(int) - GREEN).sum(-1) < 30
    assert green.sum() > 100

    # Queries whose own image is never in the top 5: no green at all.
    far = -images[t2i]
    img = np.asarray(
        assert_png(
            plot_query_grid(captions, pil_images, images, far, t2i, tmp_path / "miss.png", n_queries=3)
        )
    )
    assert (np.abs(img.astype(int) - GREEN).sum(-1) < 30).sum() == 0


def test_query_grid_accepts_float_tensors_outside_unit_range(tmp_path):
    images, texts, t2i, captions = retrieval_set()
    normalized_pixels = torch.randn(12, 3, 16, 16)  # like an ImageNet-normalized batch
    assert_png(
        plot_query_grid(captions, normalized_pixels, images, texts, t2i, tmp_path / "q.png", n_queries=2)
    )


def test_recall_curve_is_written_for_chunked_ranks(tmp_path):
    images, texts, t2i, _ = retrieval_set(n_images=60)
    path = plot_recall_curves(images, texts, t2i, tmp_path / "r.png", ks=range(1, 51), chunk_size=7)
    assert_png(path)
    assert math.isfinite(path.stat().st_size)
