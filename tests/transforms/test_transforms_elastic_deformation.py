"""Elastic deformation: the resampling equals scipy's, the random field has the reference's law."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, gaussian_filter1d, map_coordinates

from semgen_ray.transforms import ElasticDeformation
from semgen_ray.transforms._backend import NUMPY, TorchBackend
from semgen_ray.transforms import elastic_deformation
from semgen_ray.transforms.elastic_deformation import displacement, field_ranks, resample, smoothing_basis

CUBE = (64, 64, 32)


def scipy_resample(x, disp, axes):
    """The reference: map_coordinates(order=1, mode='reflect') per sample, in float64."""
    out = np.empty(x.shape, dtype=np.float64)
    grid = np.meshgrid(*(np.arange(s) for s in x.shape[2:]), indexing="ij")
    for n in range(x.shape[0]):
        coords = [g.astype(np.float64) for g in grid]
        for j, a in enumerate(axes):
            coords[a] = coords[a] + disp[n, j]
        for c in range(x.shape[1]):
            out[n, c] = map_coordinates(x[n, c].astype(np.float64), coords, order=1, mode="reflect")
    return out


@pytest.mark.parametrize("axes", [(0, 1), (0, 1, 2), (1,), (2,)])
def test_resample_equals_scipy_map_coordinates_reflect(make_batch, axes):
    x = make_batch(3, shape=(12, 10, 8), channels=2)
    rng = np.random.default_rng(1)
    disp = (rng.standard_normal((3, len(axes), 12, 10, 8)) * 5).astype(np.float32)
    disp[0, 0, 0, 0, 0] = 37.3            # several periods away: folded like scipy
    disp[1, -1, 3, 3, 3] = -25.6
    want = scipy_resample(x, disp, axes)
    got = resample(x, disp.copy(), axes, NUMPY)
    np.testing.assert_allclose(got, want, atol=2e-6)
    got_t = resample(torch.from_numpy(x), torch.from_numpy(disp), axes, TorchBackend("cpu")).numpy()
    np.testing.assert_allclose(got_t, want, atol=1e-5)


@pytest.mark.parametrize("shape, channels", [((224, 224, 1), 1), ((20, 18, 8), 2)], ids=["image", "cube-2-channels"])
def test_the_compiled_kernel_gives_the_numpy_code_bit_for_bit(make_batch, monkeypatch, shape, channels):
    """The numpy back end resamples with the compiled kernel (numba is a dependency); every output
    value is the vectorised numpy code's, exactly."""
    kernel = elastic_deformation.compiled_kernels().resample
    ran = []

    def spy(*args):
        out = kernel(*args)
        ran.append(out)
        return out

    x = make_batch(3, shape=shape, channels=channels)
    op = ElasticDeformation()
    params = op.sample_batch(x.shape, seed=4)
    monkeypatch.setattr(elastic_deformation, "compiled_kernels", lambda: SimpleNamespace(resample=spy))
    got = op.apply(x, params)
    assert ran and all(ran)
    monkeypatch.setattr(elastic_deformation, "compiled_kernels", lambda: None)
    want = op.apply(x, params)
    np.testing.assert_array_equal(got, want)
    assert np.abs(got - x).mean() > 1e-3


def test_the_compiled_kernel_on_single_voxel_axes_and_far_displacements(make_batch, monkeypatch):
    """An in-plane axis of one voxel (no neighbour to interpolate with) equals the numpy code; a
    displacement that may pass a reflection period is left to the numpy code (the kernel declines)."""
    kernel = elastic_deformation.compiled_kernels().resample
    ran = []

    def spy(*args):
        ran.append(kernel(*args))
        return ran[-1]

    x = make_batch(2, shape=(9, 1, 5))                      # y has one voxel
    disp = np.random.default_rng(3).uniform(-0.9, 0.9, (2, 2, 9, 1, 5)).astype(np.float32)
    far = disp.copy()
    far[1, 0, 4, 0, 2] = 30.0                                # beyond the 9-voxel x axis
    monkeypatch.setattr(elastic_deformation, "compiled_kernels", lambda: SimpleNamespace(resample=spy))
    got = [resample(x, d.copy(), (0, 1), NUMPY) for d in (disp, far)]
    assert ran == [True, False]
    monkeypatch.setattr(elastic_deformation, "compiled_kernels", lambda: None)
    for g, d in zip(got, (disp, far)):
        np.testing.assert_array_equal(g, resample(x, d.copy(), (0, 1), NUMPY))
    assert not np.array_equal(got[0], x)


def test_zero_field_is_the_identity_and_z_is_never_moved(make_batch):
    x = make_batch(2, shape=(16, 16, 8))
    op = ElasticDeformation()
    zero = op.empty((16, 16, 8))["coef"][None].repeat(2, 0)
    np.testing.assert_allclose(op.apply(x, {"coef": zero}), x, atol=1e-6)
    # a cube that varies only along z is unchanged by an in-plane deformation
    z_only = np.broadcast_to(np.linspace(0, 1, 8, dtype=np.float32), (2, 1, 16, 16, 8)).copy()
    y, _ = op(z_only, seed=3)
    np.testing.assert_allclose(y, z_only, atol=1e-6)


def test_basis_reproduces_the_reference_covariance():
    for d in CUBE:
        g = gaussian_filter1d(np.eye(d), 8.0, axis=0, mode="constant", truncate=4.0)
        b = smoothing_basis(d, 8.0)
        np.testing.assert_allclose(b @ b.T, g @ g.T, atol=2e-6 * np.abs(g @ g.T).max())
    assert field_ranks(CUBE, 8.0) == (11, 11, 6)


def test_field_variance_is_the_reference_variance():
    # exact: Var d(x, y, z) = alpha^2 / 3 * (G G^T)_xx (G G^T)_yy (G G^T)_zz for the reference field
    ref, ours = [], []
    for d in CUBE:
        g = gaussian_filter1d(np.eye(d), 8.0, axis=0, mode="constant", truncate=4.0)
        ref.append(np.diag(g @ g.T))
        ours.append((smoothing_basis(d, 8.0) ** 2).sum(axis=1))
    def var(v):
        return 991.0 ** 2 / 3 * v[0][:, None, None] * v[1][None, :, None] * v[2][None, None, :]

    np.testing.assert_allclose(var(ours), var(ref), rtol=1e-5)
    assert 3.2 < np.sqrt(var(ref).mean()) < 3.35                 # RMS 3.27 voxels per axis on 64x64x32


def test_2d_field_variance_is_the_reference_algorithm_run_on_a_2d_image():
    """A 2D image is an (X, Y, 1) cube whose z has the basis [1]: the field's variance is that of the
    reference's smoothing of 2D noise (a 2D Gaussian, σ = 8, × 991): about 20 pixels RMS on 224 × 224."""
    shape = (224, 224, 1)
    assert field_ranks(shape, 8.0)[2] == 1 and smoothing_basis(1, 8.0).tolist() == [[1.0]]
    g = [gaussian_filter1d(np.eye(d), 8.0, axis=0, mode="constant", truncate=4.0) for d in shape[:2]]
    ref = 991.0 ** 2 / 3 * np.outer(np.diag(g[0] @ g[0].T), np.diag(g[1] @ g[1].T))
    b = [(smoothing_basis(d, 8.0) ** 2).sum(axis=1) for d in shape[:2]]
    np.testing.assert_allclose(991.0 ** 2 / 3 * np.outer(b[0], b[1]), ref, rtol=2e-5)  # the truncation, at the corners
    assert 19 < np.sqrt(ref.mean()) < 21
    op = ElasticDeformation()
    field = op.displacement(op.sample_batch((16, 1, *shape), seed=3), shape)       # (16, 2, 224, 224, 1)
    assert abs(np.sqrt(np.mean(field ** 2)) / np.sqrt(ref.mean()) - 1) < 0.15


def test_field_statistics_match_the_reference_draws():
    # reference: U(-1, 1) noise smoothed with sigma 8 (mode constant), times 991
    rng = np.random.default_rng(0)
    ref = np.stack([gaussian_filter(rng.uniform(-1, 1, CUBE), 8, mode="constant") * 991 for _ in range(12)])
    op = ElasticDeformation()
    params = op.sample_batch((48, 1, *CUBE), seed=5)
    ours = op.displacement(params, CUBE)                         # (48, 2, X, Y, Z)
    ref_rms, our_rms = np.sqrt(np.mean(ref ** 2)), np.sqrt(np.mean(ours ** 2))
    assert 2.8 < ref_rms < 3.6 and abs(our_rms / ref_rms - 1) < 0.15      # ~3.3 voxels
    # the constant padding makes the field weaker at the border than in the middle, alike
    def profile(f):
        return np.sqrt(np.mean(f[..., 0, :, :] ** 2)) / np.sqrt(np.mean(f[..., 32, :, :] ** 2))
    assert abs(profile(ours) - profile(ref)) < 0.12
    # smoothness: correlation of displacements 8 voxels apart along x
    def corr(f):
        a, b = f[..., 20:40, :, :], f[..., 28:48, :, :]
        return np.mean(a * b) / np.sqrt(np.mean(a * a) * np.mean(b * b))
    assert abs(corr(ours) - corr(ref)) < 0.08
    assert 5 < np.abs(ours).max(axis=(2, 3, 4)).mean() < 15                 # typical max ~9
    assert abs(np.mean(ours[:, 0] * ours[:, 1])) < 0.2 * our_rms ** 2       # x and y uncorrelated


def test_numpy_and_torch_agree(make_batch):
    x = make_batch(3, shape=(32, 32, 16))
    op = ElasticDeformation()
    y, params = op(x, seed=11)
    yt = op.apply(torch.from_numpy(x), params).numpy()
    np.testing.assert_allclose(yt, y, atol=1e-5)
    d = displacement(params["coef"], (32, 32, 16), 8.0, 991.0, NUMPY)
    dt = displacement(params["coef"], (32, 32, 16), 8.0, 991.0, TorchBackend("cpu")).numpy()
    np.testing.assert_allclose(dt, d, atol=1e-4)


def test_coefficients_are_standard_normal_over_three():
    c = ElasticDeformation().sample_batch((40, 1, *CUBE), seed=1)["coef"]
    assert c.shape == (40, 2, 11, 11, 6) and c.dtype == np.float32
    assert abs(c.mean()) < 0.01 and abs(c.var() - 1 / 3) < 0.01


def test_validation(make_batch):
    with pytest.raises(ValueError, match="sigma"):
        ElasticDeformation(sigma=0)
    with pytest.raises(ValueError, match="coef has shape"):
        ElasticDeformation().apply(make_batch(1), {"coef": np.zeros((1, 2, 3, 3, 3), np.float32)})
