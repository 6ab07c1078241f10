"""Shared inputs of the corruption tests: small seeded batches in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest


def smooth_batch(n: int, shape=(16, 16, 16), seed: int = 0, channels: int = 1) -> np.ndarray:
    """Smooth-ish random cubes in [0, 1] (float32): a coarse random field plus a little noise."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, shape[0])[:, None, None]
    y = np.linspace(0, 1, shape[1])[None, :, None]
    z = np.linspace(0, 1, shape[2])[None, None, :]
    out = np.empty((n, channels, *shape), dtype=np.float32)
    for i in range(n):
        for c in range(channels):
            a, b, d, e = rng.random(4)
            field = 0.5 + 0.25 * np.sin(6 * a * x + 5 * b * y + 4 * d * z + 6 * e)
            out[i, c] = np.clip(field + 0.2 * rng.random(shape), 0, 1)
    return out


@pytest.fixture
def batch16() -> np.ndarray:
    """(4, 1, 16, 16, 16) float32 in [0, 1]."""
    return smooth_batch(4)


@pytest.fixture(scope="session")
def make_batch():
    """``make_batch(n, shape=(16, 16, 16), seed=0, channels=1)`` → a float32 batch in [0, 1]."""
    return smooth_batch
