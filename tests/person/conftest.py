"""Fixtures of the person tests: person-toyworld written once per session (a small one for data and
evaluation tests, a larger one for the training tests), and TBPS annotation files written per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlzoo.person.data import write_person_toyworld


@pytest.fixture(scope="session")
def person_toyworld(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reid_raw.json of a small person-toyworld: 24 train, 4 val and 8 test identities × 3 images."""
    root = tmp_path_factory.mktemp("person-toyworld")
    return write_person_toyworld(root, n_train=24, n_val=4, n_test=8, images_per_id=3, seed=0)
