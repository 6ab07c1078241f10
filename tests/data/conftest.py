"""Fixtures for semgen_ray.data: small synthetic CT stores and one local Ray instance per module."""

from __future__ import annotations

import numpy as np
import pytest

# name -> (shape, spacing); P2 is exactly one 64x64x32 cube.
VOLUMES = {
    "P0": ((96, 80, 40), (0.7, 0.75, 2.5)),
    "P1": ((70, 90, 36), (0.8, 0.8, 1.25)),
    "P2": ((64, 64, 32), (1.0, 1.0, 1.0)),
}


def make_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random int16 HU volumes inside the CT window, so every voxel normalises without clipping and
    any misplaced voxel shows."""
    rng = np.random.default_rng(seed)
    return {pid: rng.integers(-1000, 1001, size=shape, dtype=np.int16) for pid, (shape, _) in VOLUMES.items()}


def build_store(path, arrays, **store_kwargs) -> str:
    from semgen_ray.io.volume import Volume
    from semgen_ray.store import open_store

    store = open_store(str(path), mode="w", **store_kwargs)
    rows = [store.write(pid, Volume(arrays[pid], VOLUMES[pid][1], modality="CT")) for pid in arrays]
    store.update_manifest(rows)
    return str(path)


@pytest.fixture(scope="session")
def arrays():
    return make_arrays()


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory, arrays):
    """Default chunks (128, 128, 64): every volume is one chunk."""
    return build_store(tmp_path_factory.mktemp("store") / "s.zarr", arrays)


@pytest.fixture(scope="session")
def chunked_store_uri(tmp_path_factory, arrays):
    """Chunks (32, 32, 16): crops cross chunk boundaries."""
    return build_store(tmp_path_factory.mktemp("store") / "c.zarr", arrays, chunks=(32, 32, 16))


@pytest.fixture(scope="session")
def volumes():
    """Shape and spacing of each test patient."""
    return VOLUMES


@pytest.fixture(scope="module")
def data_ray(ray_local):
    """The session's local Ray (tests/conftest.py)."""
    return ray_local
