"""Out-painting: per-window reference loop, window count/size/position laws, backgrounds."""

import math

import numpy as np
import pytest
import torch

from semgen_ray.transforms import OutPainting
from semgen_ray.transforms._backend import NUMPY, uniform


def reference_outpaint(x, boxes, value, key, fill):
    """Background first (noise(counter = voxel, key) or the constant), then every window pasted back."""
    n, _, X, Y, Z = x.shape
    out = np.empty_like(x)
    for s in range(n):
        for i in range(X):
            for j in range(Y):
                for k in range(Z):
                    voxel = (i * Y + j) * Z + k
                    out[s, :, i, j, k] = (uniform(NUMPY, np.array([voxel]), np.int32(key[s]))[0]
                                          if fill == "noise" else value[s])
        for x0, y0, z0, sx, sy, sz in boxes[s].tolist():
            out[s, :, x0:x0 + sx, y0:y0 + sy, z0:z0 + sz] = x[s, :, x0:x0 + sx, y0:y0 + sy, z0:z0 + sz]
    return out


@pytest.mark.parametrize("fill", ["noise", "constant"])
def test_fixed_windows_equal_the_reference_loop(make_batch, fill):
    x = make_batch(2, shape=(12, 10, 8), channels=2)
    boxes = np.array([[[3, 3, 3, 4, 3, 2], [4, 2, 1, 5, 5, 4]],
                      [[3, 3, 3, 6, 4, 2], [0, 0, 0, 0, 0, 0]]], dtype=np.int16)
    params = {"boxes": boxes, "value": np.array([0.3, 0.6], np.float32), "key": np.array([77, -1], np.int32)}
    op = OutPainting(max_windows=2, fill=fill)
    want = reference_outpaint(x, boxes, params["value"], params["key"], fill)
    np.testing.assert_array_equal(op.apply(x, params), want)
    np.testing.assert_array_equal(op.apply(torch.from_numpy(x), params).numpy(), want)


def test_models_genesis_window_count_sizes_and_positions():
    shape = (64, 64, 32)
    n = 4000
    boxes = OutPainting().sample_batch((n, 1, *shape), seed=6)["boxes"].astype(int)
    count = (boxes[..., 3] > 0).sum(axis=1)
    law = [0.0] + [0.95 ** (k - 1) * 0.05 for k in range(1, 5)] + [0.95 ** 4]   # first always, 4 more
    freq = np.bincount(count, minlength=6) / n
    assert np.all(np.abs(freq - law) < 5 * np.sqrt(np.array(law) * (1 - np.array(law)) / n) + 1e-3)
    wins = boxes[boxes[..., 3] > 0]
    for a, (d, lo, hi) in enumerate(zip(shape, (28, 28, 14), (37, 37, 19))):   # D - U{3D/7..4D/7}
        size, corner = wins[:, 3 + a], wins[:, a]
        assert size.min() == lo and size.max() == hi
        k = hi - lo + 1
        freq = np.bincount(size - lo, minlength=k) / len(size)
        assert np.all(np.abs(freq - 1 / k) < 5 * math.sqrt(1 / k / len(size)))
        assert corner.min() == 3 and np.all(corner + size <= d - 3) and np.any(corner + size == d - 3)


def test_single_window_noise_background(make_batch):
    x = make_batch(50, shape=(24, 24, 16)) + 5.0       # out of [0, 1]: kept voxels are recognisable
    y, p = OutPainting(max_windows=1)(x, seed=1)
    for s in range(50):
        x0, y0, z0, sx, sy, sz = p["boxes"][s, 0].tolist()
        kept = np.zeros(x.shape[2:], bool)
        kept[x0:x0 + sx, y0:y0 + sy, z0:z0 + sz] = True
        np.testing.assert_array_equal(y[s, 0][kept], x[s, 0][kept])
        assert np.all(y[s, 0][~kept] < 1)
    noise = y[y < 1]
    assert noise.min() >= 0 and abs(noise.mean() - 0.5) < 0.01 and abs(noise.var() - 1 / 12) < 0.005


def test_keras_window_on_a_constant_background(make_batch):
    x = make_batch(6, shape=(64, 64, 32)) + 5.0
    y, p = OutPainting(max_windows=1, shrink=(10, 20), fill="constant")(x, seed=2)
    for s in range(6):
        sizes = p["boxes"][s, 0, 3:]
        assert np.all((sizes >= [44, 44, 12]) & (sizes <= [54, 54, 22]))
        bg = y[s][y[s] < 1]
        assert bg.size and np.all(bg == p["value"][s])


def test_validation():
    with pytest.raises(ValueError, match="max_windows"):
        OutPainting(max_windows=0)
    with pytest.raises(ValueError, match="do not fit"):
        OutPainting().sample_batch((1, 1, 8, 8, 8), 0)
