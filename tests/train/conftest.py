"""Fixtures for the pretraining tests: a tiny phantom store and a hand-made pattern manifest."""

from __future__ import annotations

import pytest
from train_helpers import tiny_manifest


@pytest.fixture(scope="session")
def train_store(tmp_path_factory, make_phantom_store) -> str:
    """Ten 64×64×32 phantoms (hash splits give train and validation patients)."""
    return make_phantom_store(tmp_path_factory.mktemp("train") / "store.zarr", n=10)


@pytest.fixture(scope="session")
def train_manifest(train_store, tmp_path_factory) -> str:
    return tiny_manifest(train_store, tmp_path_factory.mktemp("manifest") / "patterns.parquet")
