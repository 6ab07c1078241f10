"""The array shim: counter-based randomness is bit-identical on numpy and torch; primitives agree."""

import numpy as np
import torch

from semgen_ray.transforms._backend import (
    NUMPY,
    TorchBackend,
    backend_for,
    hash_bits,
    hash_bits_split,
    lowbias32,
    uniform,
)

TORCH = TorchBackend("cpu")


def test_hash_is_bit_identical_across_back_ends_and_matches_the_plain_int32_formula():
    counter = np.arange(-3000, 300_000, dtype=np.int64).reshape(1, -1)
    key = np.array([[0], [1], [-2_000_000_000], [123456789]], dtype=np.int32)
    a = hash_bits(NUMPY, counter, key)
    b = hash_bits(TORCH, torch.from_numpy(counter), torch.from_numpy(key)).numpy()
    plain = lowbias32(counter.astype(np.int32) * np.int32(-1640531527) + key)   # wrapping int32 arithmetic
    assert a.dtype == np.int32 and np.array_equal(a, b) and np.array_equal(a, plain)
    head = np.array([[0], [128], [4096]], dtype=np.int32)
    pos = np.arange(100, dtype=np.int32).reshape(1, -1)
    k = np.array([[5], [6], [7]], dtype=np.int32)
    np.testing.assert_array_equal(hash_bits_split(NUMPY, head, k, pos), hash_bits(NUMPY, head + pos, k))
    np.testing.assert_array_equal(
        hash_bits_split(TORCH, torch.from_numpy(head), torch.from_numpy(k), torch.from_numpy(pos)).numpy(),
        hash_bits(NUMPY, head + pos, k))


def test_uniform_noise_is_uniform_and_identical_on_both_back_ends():
    counter = np.arange(1 << 18, dtype=np.int32).reshape(1, -1)
    key = np.array([[42], [43]], dtype=np.int32)
    u = uniform(NUMPY, counter, key)
    ut = uniform(TORCH, torch.from_numpy(counter), torch.from_numpy(key)).numpy()
    assert u.dtype == np.float32 and np.array_equal(u, ut)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.002
    hist = np.histogram(u, bins=16, range=(0, 1))[0] / u.size
    assert np.all(np.abs(hist - 1 / 16) < 0.003)
    assert abs(np.corrcoef(u[0, :-1], u[0, 1:])[0, 1]) < 0.01      # neighbours independent
    assert abs(np.corrcoef(u[0], u[1])[0, 1]) < 0.01                 # different keys independent
    np.testing.assert_array_equal(u * 2 ** 24, np.floor(u * 2 ** 24))   # 24-bit grid, exact in float32


def test_row_primitives_agree():
    rng = np.random.default_rng(0)
    rows = np.sort(rng.random((5, 50)), axis=1)
    rows[0, 10:13] = rows[0, 10]                                    # ties
    values = np.sort(np.concatenate([rng.random(30), rows[0, [10, 20]], [0.0, 1.0]]))
    want = np.stack([np.searchsorted(r, values, side="right") for r in rows])
    np.testing.assert_array_equal(NUMPY.count_le(rows, values), want)
    np.testing.assert_array_equal(TORCH.count_le(torch.from_numpy(rows), torch.from_numpy(values)).numpy(), want)
    idx = rng.integers(0, 50, (5, 30))
    np.testing.assert_array_equal(NUMPY.take_rows(rows, idx), np.take_along_axis(rows, idx, 1))
    assert backend_for(np.zeros(1)) is NUMPY and backend_for(torch.zeros(1)).name == "torch"
