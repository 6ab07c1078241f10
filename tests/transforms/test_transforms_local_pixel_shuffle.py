"""Local pixel shuffle: per-block reference loop, block distributions, uniform permutations."""

import itertools
import math

import numpy as np
import pytest
import torch

import semgen_ray.transforms.local_pixel_shuffle as lps
from semgen_ray.transforms import LocalPixelShuffle
from semgen_ray.transforms._backend import NUMPY, hash_bits


def block_permutation(number, volume, key):
    """The permutation the parameters define for block ``number`` of a sample with ``key``: output
    position l of the block (C order) takes the block voxel at position perm[l]."""
    bits = max(1, (volume - 1).bit_length())
    pos = np.arange(volume)
    keys = hash_bits(NUMPY, (number << bits) + pos, np.int32(key)).astype(np.int64)
    keys = (keys & ~((1 << bits) - 1)) | pos
    return np.argsort(keys.astype(np.int32), kind="stable")


def reference_shuffle(x, boxes, keys):
    """The reference loop (docs/method.md §3.1): blocks in order, voxels read from the unmodified input,
    permuted, written to the output; later blocks overwrite earlier ones."""
    out = x.copy()
    for n in range(x.shape[0]):
        for b, (x0, y0, z0, sx, sy, sz) in enumerate(boxes[n].tolist()):
            if sx * sy * sz == 0:
                continue
            window = x[n, :, x0:x0 + sx, y0:y0 + sy, z0:z0 + sz].reshape(x.shape[1], -1)
            perm = block_permutation(b, sx * sy * sz, keys[n])
            out[n, :, x0:x0 + sx, y0:y0 + sy, z0:z0 + sz] = window[:, perm].reshape(x.shape[1], sx, sy, sz)
    return out


@pytest.fixture(params=[True, False], ids=["torch-cpu-kernel", "torch-device-kernel"])
def torch_path(request, monkeypatch):
    monkeypatch.setattr(lps, "TORCH_CPU_USES_NUMPY", request.param)


@pytest.fixture(params=["compiled", "vectorised"])
def numpy_kernel(request, monkeypatch):
    """The numpy back end with numba (a dependency: the compiled kernels must be there) and without
    (the vectorised code, which the GPU check's machine runs)."""
    if request.param == "compiled":
        assert lps.compiled_kernels() is not None
    else:
        monkeypatch.setattr(lps, "compiled_kernels", lambda: None)


def test_fixed_blocks_equal_the_reference_loop(make_batch, torch_path, numpy_kernel):
    x = make_batch(3, shape=(12, 10, 8), channels=2)
    boxes = np.array([
        [[0, 0, 0, 4, 4, 2], [2, 2, 1, 4, 4, 2], [1, 1, 0, 2, 3, 2], [8, 6, 5, 4, 4, 3]],   # overlapping
        [[5, 5, 5, 1, 1, 1], [0, 0, 0, 12, 10, 8], [3, 3, 3, 2, 2, 2], [0, 0, 0, 0, 0, 0]],  # whole cube
        [[0, 0, 0, 0, 0, 0]] * 4,                                                          # no blocks
    ], dtype=np.int16)
    keys = np.array([11, -7, 3], dtype=np.int32)
    params = {"boxes": boxes, "key": keys}
    want = reference_shuffle(x, boxes, keys)
    op = LocalPixelShuffle(blocks=4)
    np.testing.assert_array_equal(op.apply(x, params), want)
    np.testing.assert_array_equal(op.apply(torch.from_numpy(x), params).numpy(), want)
    np.testing.assert_array_equal(want[2], x[2])


def test_drawn_blocks_equal_the_reference_loop(make_batch, torch_path, numpy_kernel):
    x = make_batch(3, shape=(20, 20, 10), channels=2)
    op = LocalPixelShuffle(blocks=400)
    y, params = op(x, seed=5)
    want = reference_shuffle(x, params["boxes"], params["key"])
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(op.apply(torch.from_numpy(x), params).numpy(), want)
    assert (y != x).mean() > 0.05


@pytest.mark.parametrize("coverage", [0, 1e9], ids=["visible-blocks-first", "every-block"])
def test_dense_blocks_on_a_flat_image_equal_the_reference_loop(make_batch, torch_path, numpy_kernel, monkeypatch, coverage):
    """2D images under ``mg``'s many blocks: most blocks are covered by later ones. Thinning them to
    the visible ones first (:data:`VISIBLE_PASS_COVERAGE`) leaves the result exact."""
    monkeypatch.setattr(lps, "VISIBLE_PASS_COVERAGE", coverage)
    x = make_batch(2, shape=(60, 50, 1))
    op = LocalPixelShuffle(blocks=2000)
    y, params = op(x, seed=9)
    assert (params["boxes"][..., 2] == 0).all() and (params["boxes"][..., 5] == 1).all()
    want = reference_shuffle(x, params["boxes"], params["key"])
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(op.apply(torch.from_numpy(x), params).numpy(), want)


def test_visible_blocks_of_a_cube_batch_equal_the_reference_loop(make_batch, numpy_kernel, monkeypatch):
    """The visible-block pass on cubes, one sample without blocks."""
    monkeypatch.setattr(lps, "VISIBLE_PASS_COVERAGE", 0)
    x = make_batch(5, shape=(20, 18, 10))
    op = LocalPixelShuffle(blocks=600, block_size=(1, 5))
    params = op.sample_batch(x.shape, seed=12)
    params["boxes"][3] = 0                                   # a sample the shuffle leaves alone
    want = reference_shuffle(x, params["boxes"], params["key"])
    np.testing.assert_array_equal(op.apply(x, params), want)
    np.testing.assert_array_equal(want[3], x[3])


def test_many_blocks_in_a_large_cube_use_wide_codes_and_stay_exact(torch_path, numpy_kernel):
    # 3000 blocks x 2^20 voxels do not fit the int32 codes (block << 20 | voxel): the int64 path
    x = np.random.default_rng(2).random((1, 1, 128, 128, 64), dtype=np.float32)
    op = LocalPixelShuffle(blocks=3000)
    y, params = op(x, seed=4)
    want = reference_shuffle(x, params["boxes"], params["key"])
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(op.apply(torch.from_numpy(x), params).numpy(), want)


def test_block_sizes_and_positions_follow_the_reference_draws():
    shape = (64, 64, 32)
    boxes = LocalPixelShuffle(blocks=10_000).sample_batch((2, 1, *shape), seed=0)["boxes"].reshape(-1, 6).astype(int)
    assert boxes.shape == (20_000, 6)
    for a, (d, hi) in enumerate(zip(shape, (6, 6, 3))):
        size, corner = boxes[:, 3 + a], boxes[:, a]
        counts = np.bincount(size, minlength=hi + 1)[1:]
        assert size.min() == 1 and size.max() == hi                     # U{1..D/10}, inclusive
        assert np.all(np.abs(counts / len(size) - 1 / hi) < 5 * math.sqrt((1 / hi) / len(size)))
        assert corner.min() == 0 and np.all(corner + size <= d)          # U{0..D-size}, inclusive
        assert np.any(corner + size == d)
        # given the size, the corner is uniform: its mean is (D - size) / 2
        for s in range(1, hi + 1):
            c = corner[size == s]
            assert abs(c.mean() - (d - s) / 2) < 5 * (d - s + 1) / math.sqrt(12 * len(c))


def test_permutations_are_uniform():
    # one 2x2x1 block in many samples: all 4! orders equally likely
    n = 4800
    op = LocalPixelShuffle(blocks=1, block_size=("D", "D"))
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2, 1).repeat(n, 0)
    y, params = op(x, seed=9)
    assert np.all(params["boxes"][:, 0] == [0, 0, 0, 2, 2, 1])
    perms = [tuple(v) for v in y.reshape(n, 4).astype(int)]
    counts = np.array([perms.count(p) for p in itertools.permutations(range(4))])
    assert counts.sum() == n and np.all(np.abs(counts - n / 24) < 5 * math.sqrt(n / 24))


def test_block_count_and_empty_shuffle(make_batch):
    x = make_batch(2)
    y, p = LocalPixelShuffle(blocks=0)(x, seed=1)
    assert p["boxes"].shape == (2, 0, 6)
    np.testing.assert_array_equal(y, x)
    with pytest.raises(ValueError, match="blocks"):
        LocalPixelShuffle(blocks=-1)
    with pytest.raises(ValueError, match="block_size"):
        LocalPixelShuffle(block_size=(3, 40)).sample_batch((1, 1, 8, 8, 8), 0)
