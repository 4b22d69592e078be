"""Preprocessing and tokenizer come from the config the weights were saved with, everywhere: a model
fine-tuned with another image size, normalization or context length is fed as it was trained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlzoo.core as vz
from vlzoo.core.data import write_toyworld
from vlzoo.core.eval import evaluate_retrieval
from vlzoo.core.train import ImageTextDataModule
from vlzoo.core.weights import save

FINE_TUNED = {
    "vision": {"image_size": 48, "mean": (0.5, 0.25, 0.125), "std": (0.1, 0.2, 0.4)},
    "text": {"context_length": 20},
}


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """clip-vit-tiny saved with another image size, mean/std and context length than the registered ones."""
    model = vz.create_model("clip-vit-tiny", **FINE_TUNED)
    return save(model, tmp_path_factory.mktemp("weights") / "model.safetensors")


def _expected_pixels(value: int, size: int) -> torch.Tensor:
    mean, std = (torch.tensor(FINE_TUNED["vision"][k]).view(3, 1, 1) for k in ("mean", "std"))
    return ((torch.full((3, size, size), value / 255.0) - mean) / std).float()


def _grey(value: int, size: int = 96) -> Image.Image:
    return Image.fromarray(np.full((size, size, 3), value, np.uint8))


def test_transforms_and_tokenizer_follow_the_saved_config(fine_tuned):
    registered = vz.get_model_config("clip-vit-tiny")
    assert registered.vision.image_size != 48 and registered.text.context_length != 20
    for train in (False, True):
        pixels = vz.get_transforms("clip-vit-tiny", train=train, pretrained=fine_tuned)(_grey(200))
        assert pixels.shape == (3, 48, 48)
        torch.testing.assert_close(pixels, _expected_pixels(200, 48), atol=1e-5, rtol=0)
    tokens = vz.get_tokenizer("clip-vit-tiny", pretrained=fine_tuned)(["a red circle"])
    assert tokens.input_ids.shape == (1, 20)


def test_a_built_model_gives_its_own_preprocessing(fine_tuned):
    model = vz.create_model("clip-vit-tiny", pretrained=fine_tuned)
    assert vz.get_transforms(model, train=False)(_grey(10)).shape == (3, 48, 48)
    assert vz.get_tokenizer(model)(["x"]).input_ids.shape == (1, 20)
    with pytest.raises(vz.ConfigError, match="create_model"):
        vz.get_tokenizer(model, context_length=32)


def test_the_datamodule_prepares_batches_for_the_weights_it_trains(tmp_path, fine_tuned):
    data = write_toyworld(tmp_path / "toyworld", n_train=8, n_val=4, n_test=4, seed=1)
    module = ImageTextDataModule(
        str(data), model="clip-vit-tiny", pretrained=str(fine_tuned), batch_size=4, num_workers=0
    )
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (4, 3, 48, 48)
    assert batch["text"].input_ids.shape == (4, 20)
    model = vz.create_model("clip-vit-tiny", pretrained=fine_tuned)
    assert torch.isfinite(model(batch)["loss"])


def test_evaluating_fine_tuned_weights_uses_their_preprocessing(tmp_path, fine_tuned):
    """With the registered 64 px the fine-tuned 48 px ViT refuses the images (timm's size assertion)."""
    data = write_toyworld(tmp_path / "toyworld", n_train=4, n_val=4, n_test=6, seed=2)
    metrics = evaluate_retrieval(
        "clip-vit-tiny", data=str(data), pretrained=str(fine_tuned), workers=0, out=str(tmp_path / "r")
    )
    assert metrics["images"] == 6
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["images"] == 6
