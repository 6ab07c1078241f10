"""Flip: per-voxel reference, the reference's flip distribution (x/y only), numpy = torch."""

import itertools

import numpy as np
import pytest
import torch

from semgen_ray.transforms import Flip


def reference_flip(x, flips):
    """Per voxel: out[n, c, i, j, k] = x[n, c, i', j', k'] with i' = X-1-i where x is flipped, etc."""
    out = np.empty_like(x)
    n, _, X, Y, Z = x.shape
    for s in range(n):
        fx, fy, fz = flips[s]
        for i, j, k in itertools.product(range(X), range(Y), range(Z)):
            out[s, :, i, j, k] = x[s, :, X - 1 - i if fx else i, Y - 1 - j if fy else j, Z - 1 - k if fz else k]
    return out


def test_apply_equals_the_per_voxel_reference(make_batch):
    x = make_batch(5, shape=(6, 5, 4), channels=2)
    flips = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 1]], dtype=bool)
    want = reference_flip(x, flips)
    np.testing.assert_array_equal(Flip().apply(x, {"flip": flips}), want)
    np.testing.assert_array_equal(Flip().apply(torch.from_numpy(x), {"flip": flips}).numpy(), want)
    np.testing.assert_array_equal(Flip().apply(x[1:2], {"flip": flips[1:2]}), want[1:2])  # all samples flipped


def test_flip_distribution_matches_the_reference_loop():
    # exact law of the reference: k flips with P(k) = 0.4^k 0.6 (k < 3), 0.4^3; axis uniform on {0, 1, 2}
    p_x = 0.0
    for k, pk in enumerate([0.6, 0.4 * 0.6, 0.4 ** 2 * 0.6, 0.4 ** 3]):
        # probability that axis 1 was drawn an odd number of times among k draws
        p_x += pk * sum(1 for draws in itertools.product(range(3), repeat=k) if draws.count(1) % 2) / 3 ** k
    op = Flip()
    n = 6000
    flips = op.sample_batch((n, 1, 4, 4, 4), seed=123)["flip"]
    assert not flips[:, 2].any()                                   # depth is never flipped
    sd = np.sqrt(p_x * (1 - p_x) / n)
    for axis in (0, 1):
        assert abs(flips[:, axis].mean() - p_x) < 5 * sd          # p_x = 0.2224
    assert abs(flips[:, 0].mean() - flips[:, 1].mean()) < 7 * sd


def test_no_flip_when_rate_is_zero_and_axes_are_configurable():
    assert not Flip(rate=0.0).sample_batch((50, 1, 4, 4, 4), 0)["flip"].any()
    f = Flip(rate=1.0, max_flips=1, axes=(3,)).sample_batch((20, 1, 4, 4, 4), 0)["flip"]
    assert f[:, 2].all() and not f[:, :2].any()


def test_validation():
    with pytest.raises(ValueError, match="rate"):
        Flip(rate=2.0)
    with pytest.raises(ValueError, match="axes"):
        Flip(axes=(4,))
    with pytest.raises(ValueError, match="leading axis of 2 samples"):
        Flip().apply(np.zeros((2, 1, 4, 4, 4), np.float32), {"flip": np.zeros((3, 3), bool)})
