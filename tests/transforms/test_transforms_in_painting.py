"""In-painting: per-hole reference loop, hole count/size/position laws, noise and constant fills."""

import math

import numpy as np
import pytest
import torch

from semgen_ray.transforms import InPainting
from semgen_ray.transforms._backend import NUMPY, uniform


def reference_inpaint(x, boxes, values, key, fill):
    """Holes in order; each voxel of hole h gets noise(counter = h·V + voxel, key) or values[h]."""
    out = x.copy()
    n, _, X, Y, Z = x.shape
    for s in range(n):
        for h, (x0, y0, z0, sx, sy, sz) in enumerate(boxes[s].tolist()):
            for i in range(x0, x0 + sx):
                for j in range(y0, y0 + sy):
                    for k in range(z0, z0 + sz):
                        voxel = (i * Y + j) * Z + k
                        v = (uniform(NUMPY, np.array([h * X * Y * Z + voxel]), np.int32(key[s]))[0]
                             if fill == "noise" else values[s, h])
                        out[s, :, i, j, k] = v
    return out


@pytest.mark.parametrize("fill", ["noise", "constant"])
def test_fixed_holes_equal_the_reference_loop(make_batch, fill):
    x = make_batch(2, shape=(12, 10, 8), channels=2)
    boxes = np.array([[[3, 3, 3, 4, 3, 2], [4, 3, 3, 3, 2, 2], [0, 0, 0, 0, 0, 0]],
                      [[3, 3, 3, 5, 4, 2], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]], dtype=np.int16)
    params = {"boxes": boxes, "values": np.array([[0.25, 0.75, 0.5], [0.1, 0.2, 0.3]], np.float32),
              "key": np.array([5, -9], np.int32)}
    op = InPainting(max_holes=3, fill=fill)
    want = reference_inpaint(x, boxes, params["values"], params["key"], fill)
    np.testing.assert_array_equal(op.apply(x, params), want)
    np.testing.assert_array_equal(op.apply(torch.from_numpy(x), params).numpy(), want)


def test_models_genesis_hole_count_sizes_and_positions():
    shape = (64, 64, 32)
    n = 4000
    boxes = InPainting().sample_batch((n, 1, *shape), seed=4)["boxes"].astype(int)   # up to 5 holes
    count = (boxes[..., 3] > 0).sum(axis=1)
    law = [0.95 ** k * 0.05 for k in range(5)] + [0.95 ** 5]     # while random() < 0.95, at most 5
    freq = np.bincount(count, minlength=6) / n
    assert np.all(np.abs(freq - law) < 5 * np.sqrt(np.array(law) * (1 - np.array(law)) / n) + 1e-3)
    holes = boxes[boxes[..., 3] > 0]
    for a, (d, lo, hi) in enumerate(zip(shape, (10, 10, 5), (21, 21, 10))):   # U{D/6..D/3}
        size, corner = holes[:, 3 + a], holes[:, a]
        assert size.min() == lo and size.max() == hi
        k = hi - lo + 1
        freq = np.bincount(size - lo, minlength=k) / len(size)
        assert np.all(np.abs(freq - 1 / k) < 5 * math.sqrt(1 / k / len(size)))
        assert corner.min() == 3 and np.all(corner + size <= d - 3)               # U{3..D-size-3}
        assert np.any(corner + size == d - 3)


def test_semantic_genesis_cuts_exactly_one_hole(make_batch):
    x = make_batch(200, shape=(24, 24, 16))
    y, p = InPainting(max_holes=1, hole_rate=1.0)(x, seed=3)
    assert np.all(p["boxes"][:, 0, 3:] > 0)
    changed = (y != x).reshape(200, -1).sum(axis=1)
    assert np.all(changed <= np.prod(p["boxes"][:, 0, 3:].astype(int), axis=1))
    filled = y[y != x]
    assert 0 <= filled.min() and filled.max() < 1 and abs(filled.mean() - 0.5) < 0.01   # U[0, 1) noise


def test_keras_holes_are_constant(make_batch):
    x = make_batch(5, shape=(64, 64, 32))
    y, p = InPainting(max_holes=1, hole_rate=1.0, size=(10, 20), fill="constant")(x, seed=8)
    for s in range(5):
        x0, y0, z0, sx, sy, sz = p["boxes"][s, 0].tolist()
        assert all(10 <= v <= 20 for v in (sx, sy, sz))
        assert np.all(y[s, :, x0:x0 + sx, y0:y0 + sy, z0:z0 + sz] == p["values"][s, 0])


def test_validation():
    with pytest.raises(ValueError, match="fill"):
        InPainting(fill="zeros")
    with pytest.raises(ValueError, match="do not fit"):
        InPainting(size=(10, 20)).sample_batch((1, 1, 16, 16, 16), 0)
