"""Non-linear intensity: equals the reference 100,000-point Bézier + np.interp map within float tolerance."""

from math import comb

import numpy as np
import pytest
import torch

from semgen_ray.transforms import NonlinearIntensity, nonlinear_intensity


def reference_map(values, a, b, c, d, invert):
    """docs/method.md §3.1 step 3, literally: reversed Bernstein terms, 100,000 samples, sort, np.interp."""
    points = np.array([[0, 0], [a, b], [c, d], [1, 1]], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 100000)
    poly = np.array([comb(3, i) * t ** (3 - i) * (1 - t) ** i for i in range(4)])
    xs, ys = points[:, 0] @ poly, points[:, 1] @ poly
    if invert:
        xs = np.sort(xs)
    else:
        xs, ys = np.sort(xs), np.sort(ys)
    return np.interp(values, xs, ys)


def test_matches_the_reference_map_for_random_curves():
    rng = np.random.default_rng(0)
    n = 40
    tail = np.logspace(-9, -2, 60)
    values = np.concatenate([rng.random(4000), np.linspace(0, 1, 1001), tail, 1 - tail]).astype(np.float32)
    points = rng.random((n, 4))
    points[0] = [0.001, 0.9, 0.5, 0.5]               # near-vertical tangent at v = 0
    points[1] = [0.5, 0.2, 0.999, 0.7]               # ... and at v = 1
    invert = rng.random(n) < 0.5
    invert[:2] = [False, True]
    x = np.broadcast_to(values, (n, values.size)).reshape(n, 1, values.size, 1, 1).copy()
    params = {"points": points, "invert": invert}
    got = NonlinearIntensity().apply(x, params).reshape(n, -1)
    for i in range(n):
        want = reference_map(values.astype(np.float64), *points[i], invert[i])
        np.testing.assert_allclose(got[i], want, atol=2e-5, err_msg=f"curve {i}")
    got_t = NonlinearIntensity().apply(torch.from_numpy(x), params).numpy().reshape(n, -1)
    np.testing.assert_allclose(got_t, got, atol=1e-5)


def test_the_compiled_kernels_give_the_numpy_code_bit_for_bit(make_batch, monkeypatch):
    """The numpy back end maps with compiled kernels (numba is a dependency): tables and voxels are
    the vectorised code's exactly, near-degenerate curves, values outside [0, 1] and 2 channels too."""
    assert nonlinear_intensity.compiled_kernels() is not None
    x = make_batch(6, shape=(14, 12, 6), channels=2) * 1.4 - 0.2
    op = NonlinearIntensity()
    params = op.sample_batch(x.shape, seed=8)
    params["points"][:3] = [[0.0, 0.3, 1.0, 0.7], [1e-4, 0.5, 0.9999, 0.2], [0.5, 0.5, 0.5, 0.5]]
    got = op.apply(x, params)
    monkeypatch.setattr(nonlinear_intensity, "compiled_kernels", lambda: None)
    np.testing.assert_array_equal(got, op.apply(x, params))
    assert np.abs(got - np.clip(x, 0, 1)).mean() > 1e-3


def test_monotone_or_inverted_with_fixed_end_points_and_clamping():
    values = np.array([-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5], dtype=np.float32).reshape(1, 1, 7, 1, 1)
    x = np.concatenate([values, values])
    params = {"points": np.array([[0.3, 0.8, 0.6, 0.1]] * 2), "invert": np.array([False, True])}
    y = NonlinearIntensity().apply(x, params).reshape(2, 7)
    assert y[0, 0] == y[0, 1] == 0.0 and y[0, -1] == y[0, -2] == 1.0   # clamps outside [0, 1]
    assert y[1, 0] == y[1, 1] == 1.0 and y[1, -1] == y[1, -2] == 0.0
    assert np.all(np.diff(y[0]) >= 0) and np.all(np.diff(y[1]) <= 0)


def test_identity_and_straight_line_parameters():
    x = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, 1, 101, 1, 1)
    line = {"points": np.array([[0.25, 0.25, 0.75, 0.75]]), "invert": np.array([False])}
    np.testing.assert_allclose(NonlinearIntensity().apply(x, line), x, atol=1e-6)
    empty = NonlinearIntensity().empty((4, 4, 4))
    np.testing.assert_allclose(NonlinearIntensity().apply(x, {k: v[None] for k, v in empty.items()}), x, atol=1e-6)


def test_control_points_and_inversion_follow_the_reference_draws():
    p = NonlinearIntensity().sample_batch((4000, 1, 4, 4, 4), seed=2)
    pts, inv = p["points"], p["invert"]
    assert pts.shape == (4000, 4) and pts.min() >= 0 and pts.max() < 1
    assert np.all(np.abs(pts.mean(axis=0) - 0.5) < 5 * np.sqrt(1 / 12 / 4000))
    assert abs(inv.mean() - 0.5) < 5 * np.sqrt(0.25 / 4000)
    assert not NonlinearIntensity(invert_rate=0.0).sample_batch((50, 1, 4, 4, 4), 0)["invert"].any()
    with pytest.raises(ValueError):
        NonlinearIntensity(invert_rate=1.2)
