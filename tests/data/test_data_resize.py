"""resize: half-pixel trilinear geometry, box anti-aliasing, batching, determinism."""

import numpy as np
import pytest

from semgen_ray.data.resize import resize, resize_crops


def _linear_1d(x, axis, n):
    """Reference: half-pixel linear interpolation along one axis, edge-clamped."""
    size = x.shape[axis]
    c = np.clip((np.arange(n) + 0.5) * size / n - 0.5, 0, size - 1)
    i0 = np.floor(c).astype(int)
    i1 = np.minimum(i0 + 1, size - 1)
    w = (c - i0).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


def _reference(x, shape):
    out = x.astype(np.float64)
    for axis, n in enumerate(shape):
        out = _linear_1d(out, axis, n)
    return out


@pytest.mark.parametrize("src,dst", [((50, 70, 40), (64, 64, 32)), ((5, 6, 7), (9, 4, 7)),
                                     ((79, 61, 32), (64, 64, 32))])
def test_matches_half_pixel_trilinear(src, dst):
    x = np.random.default_rng(0).random(src, dtype=np.float32)
    np.testing.assert_allclose(resize(x, dst), _reference(x, dst), atol=2e-6)


def test_same_shape_is_identity_and_float32():
    x = np.arange(64 * 64 * 32, dtype=np.int16).reshape(64, 64, 32) % 2000
    y = resize(x, (64, 64, 32))
    assert y.dtype == np.float32 and np.array_equal(y, x.astype(np.float32))


def test_antialias_is_block_mean_for_integer_factors():
    x = np.random.default_rng(1).random((16, 12, 8), dtype=np.float32)
    y = resize(x, (4, 6, 8))  # factors 4, 2, 1
    want = x.reshape(4, 4, 6, 2, 8, 1).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(y, want, atol=1e-6)
    # without anti-aliasing it is plain trilinear
    np.testing.assert_allclose(resize(x, (4, 6, 8), antialias=False), _reference(x, (4, 6, 8)), atol=2e-6)


def test_antialias_keeps_the_mean_of_a_large_downsample():
    x = np.random.default_rng(2).random((130, 100, 75), dtype=np.float32)
    y = resize(x, (32, 32, 16))
    assert y.shape == (32, 32, 16)
    assert abs(float(y.mean()) - float(x.mean())) < 2e-3
    assert y.std() < resize(x, (32, 32, 16), antialias=False).std()  # noise averaged, not aliased


def test_batch_equals_items_and_is_deterministic():
    xs = np.random.default_rng(3).random((5, 50, 60, 40), dtype=np.float32)
    batch = resize(xs, (64, 64, 32))
    assert batch.shape == (5, 64, 64, 32)
    for i in range(5):
        np.testing.assert_array_equal(batch[i], resize(xs[i], (64, 64, 32)))
    np.testing.assert_array_equal(batch, resize(xs, (64, 64, 32)))


def test_resize_crops_keeps_order_over_shapes():
    rng = np.random.default_rng(4)
    crops = [rng.random(s, dtype=np.float32) for s in [(50, 50, 32), (70, 70, 32), (50, 50, 32)]]
    out = resize_crops(crops, (8, 8, 4))
    assert out.shape == (3, 8, 8, 4)
    for c, o in zip(crops, out):
        np.testing.assert_array_equal(o, resize(c, (8, 8, 4)))


@pytest.mark.parametrize("bad", [(64, 64), (0, 4, 4)])
def test_bad_target(bad):
    with pytest.raises(ValueError, match="target shape"):
        resize(np.zeros((4, 4, 4)), bad)
