"""The vectorised foreground tests against a literal implementation of the docs/method.md §2.1 rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from semgen_ray.discovery import foreground as fg


def reference_lung_sum(vol, x, y, z, cube, threshold, len_depth=3):
    """docs/method.md §2.1 written as the reference's 4-deep loop."""
    X, Y, Z = cube
    window = vol[x:x + X, y:y + Y, z:z + Z + len_depth]
    total = 0.0
    for i in range(X):
        for j in range(Y):
            for d in range(Z):
                k = len_depth - 1
                for t in range(len_depth):
                    if window[i, j, d + t] >= threshold:
                        k = t
                        break
                total += 1 - k / (len_depth - 1)
    return total


def all_starts(shape, cube, depth):
    return np.array(list(itertools.product(range(shape[0] - cube[0] + 1), range(shape[1] - cube[1] + 1),
                                           range(shape[2] - depth + 1))))


@pytest.mark.parametrize("len_depth", [3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_lung_rule_equals_literal_loops(seed, len_depth):
    rng = np.random.default_rng(seed)
    shape, cube = (7, 6, 11), (3, 4, 5)
    vol = rng.random(shape).astype(np.float32) * rng.uniform(0.5, 1.0, size=shape)  # many values near 0.425
    thr = fg.hu_to_unit(-150)
    starts = all_starts(shape, cube, cube[2] + len_depth)  # the reference window reads Z + len_depth slices
    ref = np.array([reference_lung_sum(vol, *s, cube, thr, len_depth) for s in starts])
    got = fg.lung_window_sums(vol, starts, cube, thr, len_depth)
    np.testing.assert_allclose(got, ref, atol=1e-9)
    for lung_max in (0.05, 0.3, 0.5, 0.7):
        limit = lung_max * np.prod(cube)
        want = ref <= limit
        exact_tie = np.isclose(ref, limit, rtol=0, atol=1e-9)  # float rounding of the literal sum decides
        want[exact_tie] = True  # exact arithmetic (integer scores here): sum == limit is accepted
        test = fg.make_foreground_test("lung", cube, threshold=thr, lung_max=lung_max, len_depth=len_depth)
        np.testing.assert_array_equal(test.prepare(vol)(starts), want)
        np.testing.assert_array_equal(fg.mostly_lung(vol, starts, cube, thr, lung_max, len_depth), want)
        slow = fg.make_foreground_test("lung", cube, threshold=thr, lung_max=lung_max, len_depth=len_depth,
                                       max_integral_voxels=0)  # the per-candidate path for huge volumes
        np.testing.assert_array_equal(slow.prepare(vol)(starts), want)


def test_threshold_in_hu_or_normalised_units_agree():
    rng = np.random.default_rng(3)
    hu = rng.integers(-1100, 400, size=(12, 12, 14)).astype(np.int16)
    hu[hu == -150] = -151  # keep the float rounding at the exact threshold out of the comparison
    unit = (np.clip(hu, -1000, 1000).astype(np.float32) + 1000) / 2000
    starts = all_starts(hu.shape, (4, 4, 4), 6)
    a = fg.make_foreground_test("lung", (4, 4, 4), threshold=-150, lung_max=0.5).prepare(hu)(starts)
    b = fg.make_foreground_test("lung", (4, 4, 4), threshold=fg.hu_to_unit(-150), lung_max=0.5).prepare(unit)(starts)
    np.testing.assert_array_equal(a, b)
    assert a.any() and not a.all()
    assert fg.hu_to_unit(-150) == pytest.approx(0.425)


def test_fraction_rule_equals_brute_force():
    rng = np.random.default_rng(5)
    vol = rng.normal(size=(9, 8, 7))
    cube = (3, 3, 2)
    starts = all_starts(vol.shape, cube, cube[2])
    got = fg.foreground_fraction(vol, starts, cube, threshold=0.2)
    ref = [(vol[x:x + 3, y:y + 3, z:z + 2] > 0.2).mean() for x, y, z in starts]
    np.testing.assert_allclose(got, ref)
    accept = fg.make_foreground_test("mr", cube, threshold=0.2, lo=0.3, hi=0.6).prepare(vol)(starts)
    np.testing.assert_array_equal(accept, (np.array(ref) >= 0.3) & (np.array(ref) <= 0.6))


def test_otsu_splits_two_levels():
    vol = np.zeros((10, 10, 10))
    vol[:, :, 5:] = 100.0
    vol += np.random.default_rng(0).normal(scale=2.0, size=vol.shape)
    assert 10 < fg.otsu_threshold(vol) < 90


def test_unknown_rule_and_bad_window():
    with pytest.raises(ValueError, match="unknown foreground rule"):
        fg.make_foreground_test("bone", (4, 4, 4))
    with pytest.raises(TypeError):
        fg.make_foreground_test("lung", (4, 4, 4), lo=0.2)
    accept = fg.make_foreground_test("lung", (4, 4, 4)).prepare(np.zeros((6, 6, 6), np.int16))
    with pytest.raises(ValueError, match="leaves the array"):
        accept([[3, 0, 0]])
