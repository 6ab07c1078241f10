"""Properties every corruption must have, checked without the implementation's own helpers.

The golden outputs of ``test_transforms_corruption.py`` pin this implementation; these checks hold
for any correct one (docs/method.md §3): a flip is an involution that reverses its axes; in-/out-painting
touch only the inside / outside of the drawn boxes (boxes rebuilt here by slicing); the local shuffle
moves every voxel within the last block covering it, permuting whole blocks; the Bézier map is
monotone with fixed end points and lies on its curve; a policy whose probabilities are all 0 is the
identity; the same seed gives the same output whatever the global random state. Every check runs on
the numpy and the torch back end (both kernels of the shuffle).
"""

import random

import numpy as np
import pytest
import torch

import semgen_ray.transforms.local_pixel_shuffle as lps
from semgen_ray.transforms import (
    Flip,
    InPainting,
    LocalPixelShuffle,
    NonlinearIntensity,
    OutPainting,
    make_corruption,
)

BACKENDS = ["numpy", "torch"]


def run(op, x, params, backend):
    """``op.apply`` on a numpy array or a CPU tensor, returned as numpy."""
    if backend == "torch":
        out = op.apply(torch.from_numpy(x), params)
        assert isinstance(out, torch.Tensor)
        return out.numpy()
    out = op.apply(x, params)
    assert isinstance(out, np.ndarray)
    return out


def union_of_boxes(boxes, shape):
    """(X, Y, Z) bool: the union of one sample's boxes ``(x0, y0, z0, sx, sy, sz)`` (zero sides: none)."""
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, z0, sx, sy, sz in np.asarray(boxes).astype(int).tolist():
        mask[x0:x0 + sx, y0:y0 + sy, z0:z0 + sz] = True
    return mask


# ---- flip -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_flip_is_an_involution_that_reverses_exactly_the_flipped_axes(backend):
    shape = (5, 4, 3)
    X, Y, Z = shape
    combos = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=bool)   # all 8
    n = len(combos)
    i, j, k = np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij")
    code = ((i * Y + j) * Z + k).astype(np.float32)                  # each voxel's value names its place
    x = np.stack([np.stack([code, code + 1000.0]) for _ in range(n)])   # (8, 2, X, Y, Z), 2 channels
    x += (np.arange(n, dtype=np.float32) * 10000.0).reshape(n, 1, 1, 1, 1)
    params = {"flip": combos}
    y = run(Flip(), x, params, backend)
    for s, flip in enumerate(combos):
        for ch in range(2):
            src = (y[s, ch] - s * 10000.0 - ch * 1000.0).astype(int)
            si, sj, sk = src // (Y * Z), (src // Z) % Y, src % Z
            for got, idx, d, flipped in ((si, i, X, flip[0]), (sj, j, Y, flip[1]), (sk, k, Z, flip[2])):
                np.testing.assert_array_equal(got, d - 1 - idx if flipped else idx)
    np.testing.assert_array_equal(run(Flip(), y, params, backend), x)     # twice: the input again


@pytest.mark.parametrize("backend", BACKENDS)
def test_drawn_flips_are_involutions(make_batch, backend):
    x = make_batch(40, shape=(6, 5, 4))
    op = Flip(rate=0.7, axes=(1, 2, 3))
    params = op.sample_batch(x.shape, seed=3)
    assert params["flip"].any(axis=1).mean() > 0.3
    y = run(op, x, params, backend)
    np.testing.assert_array_equal(run(op, y, params, backend), x)
    unflipped = ~params["flip"].any(axis=1)
    np.testing.assert_array_equal(y[unflipped], x[unflipped])
    assert all(not np.array_equal(y[s], x[s]) for s in np.flatnonzero(~unflipped))


# ---- in-painting and out-painting ----------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fill", ["noise", "constant"])
def test_in_painting_changes_exactly_the_voxels_inside_its_holes(make_batch, backend, fill):
    shape = (24, 20, 16)
    x = make_batch(12, shape=shape, channels=2) + 5.0          # outside [0, 1): every filled voxel differs
    op = InPainting(max_holes=5, hole_rate=0.8, fill=fill)
    params = op.sample_batch(x.shape, seed=11)
    y = run(op, x, params, backend)
    holes = 0
    for s in range(len(x)):
        inside = union_of_boxes(params["boxes"][s], shape)
        holes += int((params["boxes"][s, :, 3:] > 0).all(axis=1).sum())
        np.testing.assert_array_equal(y[s][:, ~inside], x[s][:, ~inside])        # outside: untouched
        filled = y[s][:, inside]
        assert np.all((filled >= 0) & (filled < 1))                               # inside: all refilled
        np.testing.assert_array_equal(y[s, 0][inside], y[s, 1][inside])           # channels share the fill
        if fill == "constant" and inside.any():
            used = params["values"][s][(params["boxes"][s, :, 3:] > 0).all(axis=1)]
            assert np.isin(filled, used).all()
    assert holes >= 12                                     # the draws did cut holes to check


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fill", ["noise", "constant"])
def test_out_painting_keeps_exactly_the_voxels_inside_its_windows(make_batch, backend, fill):
    shape = (24, 20, 16)
    x = make_batch(12, shape=shape, channels=2) + 5.0
    op = OutPainting(max_windows=5, window_rate=0.8, fill=fill)
    params = op.sample_batch(x.shape, seed=12)
    y = run(op, x, params, backend)
    for s in range(len(x)):
        kept = union_of_boxes(params["boxes"][s], shape)
        assert kept.any() and not kept.all()
        np.testing.assert_array_equal(y[s][:, kept], x[s][:, kept])               # inside: untouched
        outside = y[s][:, ~kept]
        assert np.all((outside >= 0) & (outside < 1))                             # outside: all replaced
        np.testing.assert_array_equal(y[s, 0][~kept], y[s, 1][~kept])
        if fill == "constant":
            assert np.all(outside == params["value"][s])
        else:
            assert np.unique(outside).size > outside.size // 4                   # noise, not a constant


# ---- local pixel shuffle --------------------------------------------------------------------------

@pytest.fixture(params=["numpy", "torch-cpu-kernel", "torch-device-kernel"])
def shuffle_backend(request, monkeypatch):
    monkeypatch.setattr(lps, "TORCH_CPU_USES_NUMPY", request.param != "torch-device-kernel")
    return request.param.split("-")[0]


def check_shuffle(x, y, boxes):
    """Every voxel takes its value from inside the last block covering it (or keeps its own); the
    voxels a block owns (no later block covers them) take distinct voxels; a block no later block
    touches is permuted as a whole. ``x`` holds distinct values, so each value names its voxel."""
    shape = x.shape
    owner = np.full(shape, -1)
    for b, (x0, y0, z0, sx, sy, sz) in enumerate(np.asarray(boxes).astype(int).tolist()):
        owner[x0:x0 + sx, y0:y0 + sy, z0:z0 + sz] = b                         # the last block wins
    where = {v: i for i, v in enumerate(x.ravel().tolist())}
    src = np.array([where[v] for v in y.ravel().tolist()]).reshape(shape)     # KeyError: a new value
    np.testing.assert_array_equal(y[owner < 0], x[owner < 0])                 # outside every block
    moved = owned = whole = 0
    for b, (x0, y0, z0, sx, sy, sz) in enumerate(np.asarray(boxes).astype(int).tolist()):
        own = owner == b
        if not own.any():
            continue
        block = np.zeros(shape, bool)
        block[x0:x0 + sx, y0:y0 + sy, z0:z0 + sz] = True
        sources = src[own]
        assert block.ravel()[sources].all(), f"block {b} took voxels from outside itself"
        assert np.unique(sources).size == sources.size, f"block {b} repeats a voxel"
        if own.sum() == block.sum():                                          # untouched by later blocks
            whole += 1
            np.testing.assert_array_equal(np.sort(y[block]), np.sort(x[block]))
        if block.sum() > 1:
            moved += int((sources != np.flatnonzero(own)).sum())
            owned += sources.size
    return moved, owned, whole


def test_shuffle_of_fixed_blocks_permutes_within_blocks(shuffle_backend):
    shape = (10, 9, 8)
    x = np.random.default_rng(5).permutation(np.prod(shape)).astype(np.float32).reshape(1, 1, *shape)
    boxes = np.array([[[0, 0, 0, 4, 4, 4], [2, 2, 2, 4, 4, 4], [6, 5, 4, 4, 4, 4], [0, 5, 0, 3, 3, 1],
                       [9, 0, 7, 1, 1, 1]]], dtype=np.int16)
    params = {"boxes": boxes, "key": np.array([17], np.int32)}
    y = run(LocalPixelShuffle(blocks=5), x, params, shuffle_backend)
    moved, owned, whole = check_shuffle(x[0, 0], y[0, 0], boxes[0])
    assert whole == 4 and owned == 64 - 8 + 64 + 64 + 9   # all but block 0, which block 1 overlaps
    assert moved > 0.7 * owned                            # a uniform permutation fixes ~1 voxel per block


def test_drawn_shuffles_permute_within_blocks(shuffle_backend):
    shape = (20, 16, 12)
    n = 3
    rng = np.random.default_rng(6)
    x = np.stack([rng.permutation(np.prod(shape)).astype(np.float32).reshape(1, *shape) + s * 1e5
                  for s in range(n)])
    op = LocalPixelShuffle(blocks=60, block_size=(1, "D/4"))
    params = op.sample_batch(x.shape, seed=8)
    y = run(op, x, params, shuffle_backend)
    moved = owned = whole = 0
    for s in range(n):
        m, o, w = check_shuffle(x[s, 0], y[s, 0], params["boxes"][s])
        moved, owned, whole = moved + m, owned + o, whole + w
    assert whole > 20 and owned > 1000 and moved > 0.6 * owned


# ---- non-linear intensity -------------------------------------------------------------------------

def bernstein(s, p1, p2):
    """A coordinate of the cubic Bézier with end points 0 and 1 and inner control values p1, p2."""
    return 3 * s * (1 - s) ** 2 * p1 + 3 * s ** 2 * (1 - s) * p2 + s ** 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_bezier_map_is_monotone_with_fixed_end_points_and_lies_on_its_curve(backend):
    n = 64
    op = NonlinearIntensity()
    params = op.sample_batch((n, 1, 1, 1, 1), seed=13)
    inv = params["invert"]
    assert 0 < inv.sum() < n
    grid = np.concatenate([[-0.5, 0.0], np.logspace(-7, -1, 40), np.linspace(0, 1, 2001),
                           1 - np.logspace(-7, -1, 40), [1.0, 1.5]])
    grid = np.sort(grid).astype(np.float32)
    x = np.broadcast_to(grid, (n, grid.size)).reshape(n, 1, grid.size, 1, 1).copy()
    g = run(op, x, params, backend).reshape(n, -1).astype(np.float64)
    assert np.all((g >= 0) & (g <= 1))                                        # [0, 1] into [0, 1]
    step = np.diff(g, axis=1)
    assert np.all(step[~inv] >= -1e-6) and np.all(step[inv] <= 1e-6)          # monotone
    lo, hi = g[:, :2], g[:, -2:]                                              # -0.5, 0 and 1, 1.5
    np.testing.assert_allclose(lo[~inv], 0.0, atol=1e-6)
    np.testing.assert_allclose(hi[~inv], 1.0, atol=1e-6)
    np.testing.assert_allclose(lo[inv], 1.0, atol=1e-6)
    np.testing.assert_allclose(hi[inv], 0.0, atol=1e-6)
    assert np.all(g[:, -2] - g[:, 1] != 0)
    # the curve itself: the point (Bx(s), By(s)) of P0=(0,0), P1=(a,b), P2=(c,d), P3=(1,1) maps
    # Bx(s) to By(s), or to By(1 - s) for the inverted map (the reference sorts only x)
    s = np.linspace(0.02, 0.98, 49)
    a, b, c, d = (params["points"][:, i:i + 1] for i in range(4))
    v = bernstein(s, a, c).astype(np.float32)                                # (n, 49)
    want = np.where(inv[:, None], bernstein(1 - s, b, d), bernstein(s, b, d))
    got = run(op, v.reshape(n, 1, -1, 1, 1), params, backend).reshape(n, -1)
    # a float32 voxel value moves by up to 3e-8, times the curve's slope dBy/dBx (bounded well away
    # from the end points unless a control point is degenerate; these draws are not)
    slope = np.abs(np.gradient(want, axis=1) / np.gradient(v.astype(np.float64), axis=1))
    np.testing.assert_array_less(np.abs(got - want), 2e-5 + 1e-7 * slope)


# ---- the composed corruption ----------------------------------------------------------------------

NOTHING = {"flip": True, "flip_rate": 0.0, "elastic": False, "mode": "chain", "shuffle_rate": 0.0,
           "nonlinear_rate": 0.0, "paint_rate": 0.0}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", ["sg", "mg", "sg_keras"])
def test_all_probabilities_zero_is_the_identity(make_batch, backend, preset):
    x = make_batch(4, shape=(32, 32, 32) if preset == "sg_keras" else (32, 32, 16))
    f = make_corruption(preset, backend=backend, **NOTHING)
    y, params = f(x, seed=5)
    y = y.numpy() if backend == "torch" else y
    np.testing.assert_array_equal(y, x)
    assert params.names() == ["identity"] * 4
    t = f.target(x, params)
    np.testing.assert_array_equal(t.numpy() if backend == "torch" else t, x)
    # and each corruption alone, switched on, does change every sample
    for rate in ("shuffle_rate", "nonlinear_rate", "paint_rate"):
        g = make_corruption(preset, backend=backend, **{**NOTHING, rate: 1.0, "shuffle_blocks": 200})
        z, _ = g(x, seed=5)
        z = z.numpy() if backend == "torch" else z
        assert all(not np.array_equal(z[s], x[s]) for s in range(4)), rate


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", ["sg", "mg", "sg_keras"])
def test_same_seed_same_output_whatever_the_global_random_state(make_batch, backend, preset):
    x = make_batch(3, shape=(32, 32, 32), seed=2)
    kwargs = {"shuffle_blocks": 300} if preset == "mg" else {}

    def corrupt(seed, state):
        np.random.seed(state)
        random.seed(state)
        torch.manual_seed(state)
        y, params = make_corruption(preset, backend=backend, **kwargs)(x, seed=seed)   # a fresh object
        return (y.numpy() if backend == "torch" else y), params.names()

    y1, n1 = corrupt(7, 0)
    y2, n2 = corrupt(7, 12345)
    np.testing.assert_array_equal(y1, y2)
    assert n1 == n2
    y3, _ = corrupt(8, 0)
    assert all(not np.array_equal(y1[s], y3[s]) for s in range(3))
