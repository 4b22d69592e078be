"""Fixtures of the ocr tests: generated data is written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def ocr_words(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered word crops (recognition): `train/` and `test/`, each with its `labels.txt`."""
    from vlzoo.ocr.data.crops import write_ocr_words

    root = tmp_path_factory.mktemp("ocr-words")
    write_ocr_words(root, n_train=300, n_test=60, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained, seeded) clip-vit-tiny saved as vlzoo weights: DPTR's frozen text memory in tests."""
    from vlzoo.core import create_model
    from vlzoo.core.weights import save

    torch.manual_seed(0)
    return save(create_model("clip-vit-tiny"), tmp_path_factory.mktemp("clip") / "clip.safetensors")


@pytest.fixture(scope="session")
def toyworld(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ocr-toyworld (128² scenes, up to 4 words): its index JSON."""
    from vlzoo.ocr.data import write_ocr_toyworld

    return write_ocr_toyworld(tmp_path_factory.mktemp("ocr-toyworld"), n_train=48, n_val=8, n_test=16, seed=0)
