"""Fixtures of the geometry tests: a small geo-toyworld written once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlzoo.geometry.data import write_geo_toyworld


@pytest.fixture(scope="session")
def geo_toyworld(tmp_path_factory) -> Path:
    """`geo-toyworld.json` of a small geo-toyworld (120 / 20 / 60 problems, 128 px diagrams)."""
    return write_geo_toyworld(tmp_path_factory.mktemp("geo-toyworld"), n_train=120, n_val=20, n_test=60)


@pytest.fixture(scope="session")
def geo_records(geo_toyworld) -> dict[str, list[dict]]:
    """The toyworld's GeoQA-style records by split, as written."""
    return json.loads(geo_toyworld.read_text())
