"""Shared fixtures for the self-discovery tests (the session's ``ray_local`` is in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, make_phantom_store) -> str:
    """Six 64×64×32 phantom patients, shared by the discovery tests (read-only)."""
    return make_phantom_store(tmp_path_factory.mktemp("tiny") / "store.zarr")


@pytest.fixture(scope="session")
def ten_phantoms(tmp_path_factory, make_phantom_store) -> str:
    """Ten 64×64×32 phantom patients (hash splits: enough train and val patients for tiny K)."""
    return make_phantom_store(tmp_path_factory.mktemp("ten") / "store.zarr", n=10)
