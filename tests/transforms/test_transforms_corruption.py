"""make_corruption: policies, golden outputs, back-end agreement, seeding, replay, targets."""

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch

from semgen_ray.transforms import (
    CORRUPTIONS,
    PRESETS,
    Corruption,
    CorruptionParams,
    PolicyError,
    make_corruption,
    sample_seed,
)

CUBE32 = (32, 32, 32)
# mg with 300 shuffle blocks keeps these fast; every other number is the preset's
OVERRIDES = {"sg": {}, "mg": {"shuffle_blocks": 300}, "sg_keras": {}}

# f(make_batch(6, (32, 32, 32), seed=1), seed=7): names, sum, sum of squares, y[:, 0, 5, 7, 3], y[:, 0, 20, 11, 9].
# They pin the whole chain (numpy Generator streams, hash, kernels); a numpy release that changes a
# Generator method's stream would change them (NEP 19), and they must then be re-derived.
GOLDEN = {
    "sg": (["elastic_deformation+local_pixel_shuffle", "elastic_deformation+out_painting",
            "elastic_deformation+out_painting", "elastic_deformation+out_painting",
            "elastic_deformation+local_pixel_shuffle", "elastic_deformation+nonlinear_intensity"],
           90744.28600786254, 57433.82212962765,
           [0.923995, 0.912997, 0.400836, 0.752443, 0.457342, 0.090712],
           [0.446536, 0.041631, 0.083735, 0.434143, 0.792077, 0.026229]),
    "mg": (["nonlinear_intensity+out_painting", "local_pixel_shuffle+nonlinear_intensity+out_painting",
            "nonlinear_intensity+in_painting", "nonlinear_intensity+out_painting",
            "flip+nonlinear_intensity+in_painting", "flip+local_pixel_shuffle+nonlinear_intensity+out_painting"],
           94699.90695978142, 63033.49341481533,
           [0.358054, 0.367531, 0.116986, 0.71383, 0.866999, 0.228131],
           [0.616432, 0.358705, 0.028499, 0.849431, 0.184987, 0.368704]),
    "sg_keras": (["elastic_deformation+local_pixel_shuffle", "elastic_deformation+out_painting",
                  "elastic_deformation+out_painting", "elastic_deformation+out_painting",
                  "elastic_deformation+local_pixel_shuffle", "elastic_deformation+nonlinear_intensity"],
                 81303.94292138144, 45961.15622312799,
                 [0.923995, 0.291841, 0.689719, 0.183409, 0.457342, 0.090712],
                 [0.446536, 0.291841, 0.689719, 0.434143, 0.792077, 0.026229]),
}


@pytest.fixture(scope="module")
def cubes32(make_batch):
    return make_batch(6, shape=CUBE32, seed=1)


@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_golden_outputs(cubes32, preset):
    names, total, squares, a, b = GOLDEN[preset]
    y, params = make_corruption(preset, **OVERRIDES[preset])(cubes32, seed=7)
    assert params.names() == names
    assert y.dtype == np.float32 and y.shape == cubes32.shape
    assert float(y.astype(np.float64).sum()) == pytest.approx(total, rel=1e-6)
    assert float((y.astype(np.float64) ** 2).sum()) == pytest.approx(squares, rel=1e-6)
    np.testing.assert_allclose(y[:, 0, 5, 7, 3], a, atol=2e-6)
    np.testing.assert_allclose(y[:, 0, 20, 11, 9], b, atol=2e-6)


@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_numpy_and_torch_back_ends_agree(cubes32, preset):
    f = make_corruption(preset, **OVERRIDES[preset])
    ft = make_corruption(preset, backend="torch", **OVERRIDES[preset])
    y, params = f(cubes32, seed=3)
    yt, params_t = ft(torch.from_numpy(cubes32), seed=3)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32
    assert params_t.names() == params.names()
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-5)
    np.testing.assert_allclose(ft.apply(cubes32, params).numpy(), y, atol=1e-5)   # numpy input too
    np.testing.assert_allclose(ft.target(cubes32, params).numpy(), f.target(cubes32, params), atol=0)


def test_full_size_presets_agree_across_back_ends(make_batch):
    x = make_batch(3, shape=(64, 64, 32), seed=4)
    for preset in PRESETS:
        y, params = make_corruption(preset)(x, seed=11)
        yt = make_corruption(preset, backend="torch").apply(torch.from_numpy(x), params).numpy()
        np.testing.assert_allclose(yt, y, atol=1e-5)


def test_same_seed_same_output_different_seed_differs(cubes32):
    f = make_corruption("mg", **OVERRIDES["mg"])
    y1, p1 = f(cubes32, seed=5)
    y2, p2 = f(cubes32, seed=5)
    np.testing.assert_array_equal(y1, y2)
    assert p1.names() == p2.names()
    y3, _ = f(cubes32, seed=6)
    assert not np.array_equal(y1, y3)
    assert all(not np.array_equal(y1[i], y3[i]) for i in range(len(y1)))


@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_per_sample_seeds_make_samples_independent_of_the_batch(cubes32, preset):
    f = make_corruption(preset, **OVERRIDES[preset])
    seeds = np.array([sample_seed(run_seed=9, epoch=2, sample_id=i) for i in range(6)], dtype=np.uint64)
    y, _ = f(cubes32, seeds)
    perm = np.array([4, 1, 5, 0, 3, 2])
    y_perm, _ = f(cubes32[perm], seeds[perm])
    np.testing.assert_array_equal(y_perm, y[perm])                 # order of the batch is irrelevant
    alone, _ = f(cubes32[2:3], seeds[2:3])
    np.testing.assert_array_equal(alone[0], y[2])                  # ... and so is its company
    pair, _ = f(cubes32[[5, 2]], seeds[[5, 2]])
    np.testing.assert_array_equal(pair, y[[5, 2]])
    # an int seed is the same as the seed rows (seed, i)
    rows = np.stack([np.full(6, 7, np.uint64), np.arange(6, dtype=np.uint64)], axis=1)
    np.testing.assert_array_equal(f(cubes32, rows)[0], f(cubes32, 7)[0])


def test_sample_then_apply_is_replayable(cubes32):
    f = make_corruption("sg")
    y, params = f(cubes32, seed=21)
    again = f.sample(cubes32.shape, params.entropy)
    np.testing.assert_array_equal(f.apply(cubes32, again), y)
    np.testing.assert_array_equal(f.apply(cubes32, f.sample(CUBE32, params.entropy)), y)   # (X, Y, Z) + seeds
    np.testing.assert_array_equal(f.apply(cubes32, params), y)
    # a subset of the parameters replays a subset of the batch; concat puts batches together
    sub = params.select([1, 4])
    np.testing.assert_array_equal(f.apply(cubes32[[1, 4]], sub), y[[1, 4]])
    both = CorruptionParams.concat([params.select(slice(0, 3)), params.select(slice(3, 6))])
    np.testing.assert_array_equal(f.apply(cubes32, both), y)
    # parameters carry their policy: another corruption object replays them the same
    np.testing.assert_array_equal(make_corruption("mg").apply(cubes32, params), y)


def test_one_of_four_frequencies_and_elastic_always():
    f = make_corruption("sg")
    p = f.sample((2000, 1, 32, 32, 16), seed=0)
    applied = np.stack([p.applied[k] for k in CORRUPTIONS], axis=1)
    assert np.all(applied.sum(axis=1) == 1)                        # exactly one corruption each
    assert p.applied["elastic_deformation"].all() and not p.applied["flip"].any()
    sd = np.sqrt(0.25 * 0.75 / 2000)
    assert np.all(np.abs(applied.mean(axis=0) - 0.25) < 5 * sd)


def test_chain_frequencies_of_models_genesis():
    f = make_corruption("mg", shuffle_blocks=10)
    n = 4000
    p = f.sample((n, 1, 32, 32, 16), seed=1)
    want = PRESETS["mg"].probabilities()
    for name in CORRUPTIONS:
        rate = p.applied[name].mean()
        assert abs(rate - want[name]) < 5 * np.sqrt(want[name] * (1 - want[name]) / n), name
    assert not (p.applied["in_painting"] & p.applied["out_painting"]).any()
    assert not p.applied["elastic_deformation"].any()
    # P(x or y flipped an odd number of times): k flips w.p. 0.4^k 0.6 (k < 3) or 0.4^3, axes uniform in {0, 1, 2}
    law = 0.0
    for k, pk in enumerate([0.6, 0.4 * 0.6, 0.4 ** 2 * 0.6, 0.4 ** 3]):
        draws = list(itertools.product(range(3), repeat=k))
        law += pk * sum(1 for d in draws if d.count(1) % 2 or d.count(2) % 2) / len(draws)
    assert abs(p.applied["flip"].mean() - law) < 5 * np.sqrt(law * (1 - law) / n)    # law = 0.2768


def test_target_is_the_flipped_original(cubes32):
    f = make_corruption("mg", **OVERRIDES["mg"])
    _, params = f(cubes32, seed=7)
    target = f.target(cubes32, params)
    for i, flip in enumerate(params.ops["flip"]["flip"]):
        want = cubes32[i]
        for axis in np.flatnonzero(flip):
            want = np.flip(want, 1 + axis)
        np.testing.assert_array_equal(target[i], want)
    assert params.applied["flip"].any()
    g = make_corruption("sg")
    _, params = g(cubes32, seed=7)
    np.testing.assert_array_equal(g.target(cubes32, params), cubes32)          # un-deformed original
    deformed = g.target(cubes32, params, deformed=True)
    elastic_only = make_corruption("sg", one_of_weights=(1, 0, 0, 0), shuffle_blocks=0)
    np.testing.assert_array_equal(deformed, elastic_only.apply(cubes32, elastic_only.sample(cubes32.shape, 7)))


def test_torch_back_end_on_a_device(cubes32):
    f = make_corruption("sg", backend="torch", device="cpu")
    y, params = f(cubes32, seed=2)                                  # numpy in, tensor on the device out
    assert isinstance(y, torch.Tensor) and y.device.type == "cpu"
    x = torch.from_numpy(cubes32).requires_grad_(False)
    np.testing.assert_array_equal(f.apply(x, params).numpy(), y.numpy())
    with pytest.raises(ValueError, match="device is only meaningful"):
        make_corruption("sg", device="cpu")


def test_inputs_outputs_and_errors(cubes32):
    f = make_corruption("sg")
    y, _ = f(cubes32.astype(np.float64), seed=1)
    assert y.dtype == np.float32
    with pytest.raises(ValueError, match=r"\(N, C, X, Y, Z\)"):
        f(cubes32[0], seed=1)
    with pytest.raises(TypeError, match="backend='numpy'"):
        f(torch.from_numpy(cubes32), seed=1)
    with pytest.raises(ValueError, match="params are for 6 cubes"):
        f.apply(cubes32[:2], f.sample(cubes32.shape, 0))
    with pytest.raises(ValueError, match="backend must be"):
        make_corruption("sg", backend="jax")
    with pytest.raises(PolicyError, match="did you mean 'shuffle_blocks'"):
        make_corruption("mg", shuffle_block=3)
    with pytest.raises(PolicyError, match="inpaint_size"):
        make_corruption("sg_keras")(np.zeros((1, 1, 32, 32, 16), np.float32), seed=0)
    with pytest.raises(ValueError, match="empty batch"):
        f(np.zeros((0, 1, 32, 32, 32), np.float32), seed=0)
    assert "sg" in repr(f) and isinstance(f, Corruption)


def test_import_is_light():
    code = ("import sys, semgen_ray.transforms as t; t.make_corruption('mg'); "
            "print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- 2D images (Semantic Genesis 2D) ----------------------------------------------------------------

@pytest.fixture(scope="module")
def films():
    """Six smooth 2D images in [0, 1] (N, 1, 96, 80)."""
    from scipy.ndimage import zoom

    coarse = np.random.default_rng(3).random((6, 1, 12, 10))
    return np.clip(zoom(coarse, (1, 1, 8, 8), order=1), 0, 1).astype(np.float32)


@pytest.mark.parametrize("preset", ["sg", "mg", "sg_keras"])
def test_2d_batches_are_corrupted_as_flat_cubes_on_both_back_ends(films, preset):
    f, g = make_corruption(preset, spatial_dims=2), make_corruption(preset, backend="torch", spatial_dims=2)
    seeds = np.arange(6, dtype=np.uint64) + 40
    y, params = f(films, seeds)
    assert y.shape == films.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    assert params.shape == (96, 80, 1) and (y != films).any()
    flat, _ = make_corruption(preset)(films[..., None], seeds)                 # the (X, Y, 1) cubes
    np.testing.assert_array_equal(y, flat[..., 0])
    yt, _ = g(torch.from_numpy(films), seeds)
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-4)
    np.testing.assert_array_equal(f.apply(films, params), y)
    assert f.target(films, params).shape == films.shape
    one, _ = f(films[3:4], seeds[3:4])                                          # seeded per sample
    np.testing.assert_array_equal(one, y[3:4])


def test_2d_boxes_span_the_flat_axis_and_painting_stays_in_the_image(films):
    f = make_corruption("mg", spatial_dims=2)
    params = f.sample(films.shape, np.arange(6, dtype=np.uint64))
    for name in ("in_painting", "out_painting", "local_pixel_shuffle"):
        boxes = params.ops[name]["boxes"]
        used = boxes[..., 3:].any(axis=-1)
        assert used.any(), name
        assert (boxes[used][:, 2] == 0).all() and (boxes[used][:, 5] == 1).all(), name   # z: corner 0, side 1
        assert (boxes[used][:, 0] + boxes[used][:, 3] <= 96).all() and (boxes[used][:, 1] + boxes[used][:, 4] <= 80).all()
    with pytest.raises(ValueError, match=r"\(N, C, X, Y\)"):
        f(films[..., None], seed=0)
    with pytest.raises(ValueError, match="spatial_dims"):
        make_corruption("sg", spatial_dims=1)
