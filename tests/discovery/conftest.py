"""Shared fixtures for the self-discovery tests (the session's ``ray_local`` is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_tiny_store(path: Path, n: int = 6, shape=(64, 64, 32)) -> str:
    """``n`` phantom patients written straight into a store (no Ray), with ingest's hash splits."""
    from semgen_ray.ingest.split import assign_split
    from semgen_ray.phantoms import generate_patient
    from semgen_ray.store import open_store

    store = open_store(str(path), mode="w")
    ids = [f"phantom_{i:05d}" for i in range(n)]
    rows = [store.write(pid, generate_patient(i, cohort_seed=0, shape=shape)[0],
                        split=assign_split(pid, (0.7, 0.15, 0.15)))
            for i, pid in enumerate(ids)]
    store.update_manifest(rows)
    return str(path)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> str:
    """Six 64×64×32 phantom patients, shared by the discovery tests (read-only)."""
    return make_tiny_store(tmp_path_factory.mktemp("tiny") / "store.zarr")


@pytest.fixture(scope="session")
def ten_phantoms(tmp_path_factory) -> str:
    """Ten 64×64×32 phantom patients (hash splits: enough train and val patients for tiny K)."""
    return make_tiny_store(tmp_path_factory.mktemp("ten") / "store.zarr", n=10)
