"""Shared fixtures: one local Ray instance per test session, and the real-image folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


for _key, _value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                     "RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "RAY_DEDUP_LOGS": "1", "RAY_AUTH_MODE": "disabled"}.items():
    os.environ.setdefault(_key, _value)


def real_data_dir() -> Path | None:
    """The optional real-data folder: ``$SEMGEN_REAL_DATA``, else ``shared/data/real`` beside the
    checkout (the development machines' layout) when it exists; None otherwise.

    README, "Tests and the real-data folder", lists what it holds and which tests use it.
    """
    env = os.environ.get("SEMGEN_REAL_DATA")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    return beside if beside.is_dir() else None


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = real_data_dir()
    if path is None:
        pytest.skip("real test images: set SEMGEN_REAL_DATA to the folder holding lidc_slabs/, metaimage/ "
                    "and mri_nrrd/ (README, 'Tests and the real-data folder')")
    if not path.is_dir():
        pytest.skip(f"real test images: SEMGEN_REAL_DATA={path} is not a folder (README, 'Tests and the "
                    "real-data folder')")
    return path


@pytest.fixture(scope="session")
def ray_local():
    """A small in-process Ray (4 logical CPUs on the 2-core box, docs/operations.md §7), stopped at the
    end."""
    from local_cluster import LOCAL_RAY

    from semgen_ray.runtime import init_ray

    ray = init_ray(LOCAL_RAY)
    yield ray
    ray.shutdown()


def _make_phantom_store(path: Path, n: int = 6, shape=(64, 64, 32)) -> str:
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
def make_phantom_store():
    """``make_phantom_store(path, n=6, shape=(64, 64, 32))``: phantoms straight into a store (no Ray)."""
    return _make_phantom_store


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, make_phantom_store) -> str:
    """Six 64×64×32 phantom patients, shared by the discovery tests (read-only)."""
    return make_phantom_store(tmp_path_factory.mktemp("tiny") / "store.zarr")


@pytest.fixture(scope="session")
def ten_phantoms(tmp_path_factory, make_phantom_store) -> str:
    """Ten 64×64×32 phantom patients (hash splits: enough train and val patients for tiny K), shared by
    the discovery library's and the discovery stage's tests (read-only)."""
    return make_phantom_store(tmp_path_factory.mktemp("ten") / "store.zarr", n=10)


@pytest.fixture(scope="session")
def train_store(ten_phantoms) -> str:
    """The pretraining tests' store: the ten shared phantoms (read-only)."""
    return ten_phantoms


@pytest.fixture(scope="session")
def train_manifest(train_store, tmp_path_factory) -> str:
    """A hand-made pattern manifest over ``train_store`` (``train_helpers.tiny_manifest``)."""
    from train_helpers import tiny_manifest

    return tiny_manifest(train_store, tmp_path_factory.mktemp("manifest") / "patterns.parquet")


@pytest.fixture(scope="session")
def s3_server():
    """An S3-API server on 127.0.0.1 for the session (tests/s3_server.py), stopped at the end."""
    from s3_server import S3Server

    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """:func:`s3_server` with its endpoint and fake credentials in this process's environment, and no
    cached s3fs client from before (they read the environment when created)."""
    import fsspec

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    fsspec.get_filesystem_class("s3").clear_instance_cache()
    yield s3_server
    fsspec.get_filesystem_class("s3").clear_instance_cache()
