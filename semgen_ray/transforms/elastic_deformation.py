"""Elastic deformation of the input (Semantic Genesis, docs/method.md §3.2 step 2).

Reference: per displaced axis (x and y), a field ``α · G_σ * w`` with ``w`` i.i.d. U(−1, 1) voxel
noise and ``G_σ`` a 3D Gaussian filter (σ = 8, ``mode="constant"``, truncated at 4σ), α = 991; no z
displacement; the cube is resampled at ``(x + dx, y + dy, z)`` with linear interpolation and
``mode="reflect"``. On 64×64×32 that gives 3.27 voxels RMS per axis (exact, from the covariance
below; the largest displacement of a cube is typically 9-10 voxels); smoothing two full-size noise
cubes costs tens of milliseconds per sample.

Here, the same random field, drawn cheaply. ``G_σ`` with constant padding is separable,
``G = Gx ⊗ Gy ⊗ Gz`` (one ``D × D`` matrix per axis), so the field's covariance is
``α²/3 · (GxGxᵀ ⊗ GyGyᵀ ⊗ GzGzᵀ)``. With the SVD ``G = U S Vᵀ`` per axis, ``Vᵀw`` is again white
noise of variance 1/3 and, each entry being a weighted sum of ~10^5 uniforms, Gaussian. So the field
is drawn as ``α · (Bx ⊗ By ⊗ Bz) c`` with ``B = U S`` truncated to the singular values that carry all
but 1e-6 of the variance per axis (11 × 11 × 6 for 64×64×32) and ``c`` i.i.d. N(0, 1/3): the
reference's covariance, border fall-off of the constant padding included, to ~3e-6 of the variance.
The only departures are that truncation and Gaussian instead of near-Gaussian coefficients
(``tests/transforms/test_transforms_elastic_deformation.py`` checks the per-voxel variance against
the reference's exactly, and RMS, border fall-off, spatial correlation and maxima against reference
draws). The coefficients (726 numbers per axis for 64×64×32) are the recorded parameters; the sign of
each basis vector is fixed by convention, so the same coefficients give the same field whatever
LAPACK computed the SVD.

Applying: three small matrix products expand the coefficients (0.5 ms per cube); the resampling is
bilinear in the displaced axes with half-sample-symmetric reflection at the borders, which is scipy's
``map_coordinates(order=1, mode="reflect")`` (checked to 2e-6). numpy: coordinates folded and floored
in place, then one gather per corner (4) for the whole group of samples, with the cube laid out as
(z, x, y) so that each gather stays within a 64×64 slice (fetching a voxel and its y neighbour in
one 8-byte gather measured 10% slower); for the reference's two in-plane axes the same float32
operations run as two compiled passes (:mod:`._compiled`, numba; bit-identical, about 2×
faster). torch: one 2D ``grid_sample`` over all z slices of the batch (3D ``grid_sample`` when z is
displaced too), on any device.

A 2D image is an (X, Y, 1) cube (:mod:`semgen_ray.transforms.corruption`): its singleton z has the
basis [1], so the field is the reference algorithm's in 2D, ``α · G_σ * w`` with a 2D Gaussian (about
20 pixels RMS on 224 × 224 for α = 991, σ = 8: the same α spread over two axes instead of three).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from semgen_ray.transforms._backend import NUMPY, backend_for
from semgen_ray.transforms._operation import RandomOperation, Scratch, chunks, compiled_kernels

#: Per-axis variance left out by truncating the smoothing operator's SVD.
RANK_TOLERANCE = 1e-6


@lru_cache(maxsize=32)
def _svd_basis(length: int, sigma: float) -> np.ndarray:
    if length == 1:  # a 2D image's z: nothing to smooth along, the field is the 2D one (module docstring)
        basis = np.ones((1, 1))
        basis.setflags(write=False)
        return basis
    from scipy.ndimage import gaussian_filter1d

    g = gaussian_filter1d(np.eye(length), sigma, axis=0, mode="constant", truncate=4.0)
    u, s, _ = np.linalg.svd(g)
    tail = np.cumsum((s ** 2)[::-1])[::-1] / np.sum(s ** 2)  # variance fraction of components >= k
    rank = max(1, int(np.sum(tail >= RANK_TOLERANCE)))
    basis = u[:, :rank] * s[:rank]
    # singular vectors have arbitrary signs (LAPACK builds differ); fix them so that the same
    # coefficients give the same field everywhere: positive projection on a fixed generic vector
    probe = np.cos(0.7 * np.arange(length) + 0.3) + np.arange(length) / length
    basis *= np.where(probe @ basis < 0, -1.0, 1.0)
    basis.setflags(write=False)
    return basis


def smoothing_basis(length: int, sigma: float) -> np.ndarray:
    """``U S`` (length, rank) of the 1D constant-padded Gaussian filter matrix, truncated (read-only)."""
    return _svd_basis(int(length), float(sigma))


def field_ranks(shape, sigma: float) -> tuple[int, int, int]:
    """Coefficients per axis of the displacement field of a cube ``shape``."""
    return tuple(smoothing_basis(d, sigma).shape[1] for d in shape)


def layout(axes) -> tuple[int, ...]:
    """Axis order used for resampling: undisplaced spatial axes first, displaced ones last.

    With the reference's (x, y) displacement the cube is resampled as (z, x, y): each gather then
    stays inside one 64×64 slice (16 KiB), which is several times faster than gathering across the
    whole (x, y, z) cube.
    """
    return tuple([a for a in range(3) if a not in axes] + sorted(axes))


def displacement(coef, shape, sigma: float, alpha: float, xp, order=(0, 1, 2), out=None):
    """Displacement fields in voxels from coefficients (N, A, kx, ky, kz).

    Returns (N, A, D[order[0]], D[order[1]], D[order[2]]) float32: the spatial axes in ``order``,
    written into ``out`` (that shape, C-contiguous) when given.
    """
    n, a = int(coef.shape[0]), int(coef.shape[1])
    order = tuple(order)
    k = tuple(int(coef.shape[2 + i]) for i in order)
    d = tuple(int(shape[i]) for i in order)
    b0, b1, b2 = (xp.param(np.ascontiguousarray(smoothing_basis(shape[i], sigma)[:, :r] * (alpha if j == 0 else 1.0)),
                           xp.float32) for j, (i, r) in enumerate(zip(order, k)))
    c = xp.param(np.ascontiguousarray(np.asarray(coef, dtype=np.float32).transpose(0, 1, *(2 + i for i in order))),
                 xp.float32).reshape(n * a, *k)
    t = xp.matmul(c, b2.T)                               # (NA, k0, k1, D2)
    if d[0] == 1:  # a 2D image's z (basis [α]): a scale, where a 1 × 1 matrix product costs 8× more
        t = xp.matmul(b1, t, out=None if out is None else out.reshape(n * a, 1, *d[1:]))   # (NA, 1, D1, D2)
        t *= b0.reshape(())                              # in place: t is this call's own
        return t.reshape(n, a, *d)
    t = xp.matmul(b1, t)                                 # (NA, k0, D1, D2)
    t = xp.matmul(b0, t.reshape(n * a, k[0], d[1] * d[2]),
                  out=None if out is None else out.reshape(n * a, *d[:1], d[1] * d[2]))  # (NA, D0, D1*D2)
    return t.reshape(n, a, *d)


def _resample_numpy(batch: np.ndarray, disp: np.ndarray, axes, scratch: Scratch) -> np.ndarray:
    """``batch`` (N, C, P0, P1, P2) and ``disp`` (N, A, P0, P1, P2) in :func:`layout` order; the
    displaced axes are the last A. Returns the resampled batch in the same layout (a ``scratch``
    buffer: read it before the next call).

    In-place float32 arithmetic throughout (one chunk of the batch stays in cache, its work arrays
    come from ``scratch``): coordinates are folded into the cube by half-sample-symmetric reflection
    (scipy ``reflect``: about −0.5 and D − 0.5, period 2D), clamped to the voxel centres (where linear
    interpolation of the reflected signal is constant anyway), then interpolated from 2^A gathers of
    shifted views.
    """
    n, ch = batch.shape[:2]
    shape = batch.shape[2:]
    nd = len(axes)
    strides = (shape[1] * shape[2], shape[2], 1)
    nvox = shape[0] * shape[1] * shape[2]
    index = scratch("index", (n, *shape))   # flat index within the sample of every voxel's low corner,
    low = scratch("low", (n, *shape))       # float32 (exact below 2^24)
    fracs, steps = [], []
    for j in range(nd):
        q = 3 - nd + j
        size = shape[q]
        period = 2.0 * size
        c = disp[:, j]
        c += (np.arange(size, dtype=np.float32) + np.float32(0.5)).reshape([size if i == q else 1 for i in range(3)])
        np.abs(c, out=c)                          # reflect about -0.5 (c is relative to -0.5 here)
        if float(c.max()) > period:               # beyond one period: rare
            np.remainder(c, period, out=c)
        np.subtract(size, c, out=c)
        np.abs(c, out=c)
        np.subtract(size - 0.5, c, out=c)         # reflect about size - 0.5, back to voxel units
        np.clip(c, 0.0, size - 1.0, out=c)
        corner = index if j == 0 else low
        np.floor(c, out=corner)
        if size > 1:
            np.clip(corner, 0.0, size - 2.0, out=corner)   # low + 1 stays inside; the fraction reaches 1 at the end
        c -= corner                               # c is now the fraction
        if strides[q] != 1:
            corner *= strides[q]
        if j > 0:
            index += low
        fracs.append(c)
        steps.append(strides[q] if size > 1 else 0)
    for q in range(3 - nd):                        # undisplaced axes
        index += (np.arange(shape[q], dtype=np.float32) * strides[q]).reshape(
            [shape[q] if i == q else 1 for i in range(3)])
    flat = scratch("flat", index.shape, np.int64)
    np.copyto(flat, index, casting="unsafe")
    if n > 1:
        flat += (np.arange(n, dtype=np.int64) * nvox).reshape(n, 1, 1, 1)
    flat = flat.reshape(-1)

    def corner_value(j, plane, key):
        if j == nd:
            # in range by construction; any mode but the default "raise" writes to ``out`` unbuffered
            return np.take(plane, flat, out=scratch(key, flat.shape), mode="clip").reshape(n, *shape)
        lo = corner_value(j + 1, plane, key + "0")
        hi = corner_value(j + 1, plane[steps[j]:], key + "1")     # the neighbour along this axis: a shifted view
        hi -= lo
        hi *= fracs[j]
        hi += lo
        return hi

    if ch == 1:
        return corner_value(0, batch.reshape(-1), "corner").reshape(batch.shape)
    out = np.empty_like(batch)
    for k in range(ch):
        out[:, k] = corner_value(0, np.ascontiguousarray(batch[:, k]).reshape(-1), "corner")
    return out


def _resample_chunk(batch: np.ndarray, disp: np.ndarray, axes, scratch: Scratch, out: np.ndarray) -> None:
    """numpy: ``batch`` (n, C, X, Y, Z) resampled at ``disp`` (n, A, ...) in :func:`layout` order,
    into ``out`` (n, C, X, Y, Z; may be ``batch``). The compiled kernel (:mod:`._compiled`,
    bit-identical) for two displaced axes where numba is installed reads and writes the volume where
    it lies; else :func:`_resample_numpy` on a copy in layout order."""
    order = layout(axes)
    kernels = compiled_kernels() if len(axes) == 2 else None
    if kernels is not None and kernels.resample(batch, disp, order, scratch, out):
        return
    perm = (0, 1, *(2 + i for i in order))
    src = batch.transpose(perm)
    if not src.flags.c_contiguous:                # 3D: (x, y, z) -> (z, x, y)
        buf = scratch("input", src.shape)
        np.copyto(buf, src)
        src = buf
    out[...] = _resample_numpy(src, disp, axes, scratch).transpose(tuple(int(i) for i in np.argsort(perm)))


def _resample_torch(batch, disp, axes):
    """``grid_sample`` (bilinear/trilinear, ``reflection`` padding, half-pixel centres) in
    :func:`layout` order: 2D over the slices of the undisplaced axis when at most two axes move
    (much faster than 3D ``grid_sample`` on CPU), 3D otherwise."""
    import torch
    import torch.nn.functional as F

    n, ch = int(batch.shape[0]), int(batch.shape[1])
    shape = tuple(int(s) for s in batch.shape[2:])
    nd = len(axes)
    planes = 3 if nd == 3 else 2
    lead = 3 - planes
    coords = []
    for q in range(lead, 3):
        size = shape[q]
        c = torch.arange(size, dtype=torch.float32, device=batch.device).reshape(
            [1] + [size if i == q else 1 for i in range(3)])
        j = q - (3 - nd)
        if j >= 0:
            c = c + disp[:, j]
        coords.append(((2.0 * c + 1.0) / size - 1.0).expand(n, *shape))
    grid = torch.stack(coords[::-1], dim=-1)               # grid_sample wants the last axis first
    if planes == 3:
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    slices = batch.transpose(1, 2).reshape(n * shape[0], ch, shape[1], shape[2])
    out = F.grid_sample(slices, grid.reshape(n * shape[0], shape[1], shape[2], 2), mode="bilinear",
                        padding_mode="reflection", align_corners=False)
    return out.reshape(n, shape[0], ch, shape[1], shape[2]).transpose(1, 2)


def resample(batch, disp, axes, xp):
    """``out[v] = batch(v + disp(v))``: linear interpolation along ``axes``, reflect at the borders.

    numpy: one vectorised gather per interpolation corner for the whole batch; torch: one
    ``grid_sample`` call (same mapping; the round trip through normalised coordinates costs ~1e-6).

    Args:
        batch: (N, C, X, Y, Z) float32.
        disp: (N, len(axes), X, Y, Z) float32 displacements in voxels (x, y, z order).
        axes: the displaced spatial axes (0 = x, 1 = y, 2 = z).
        xp: the back end.
    """
    axes = tuple(sorted(axes))
    order = layout(axes)
    perm = (0, 1, *(2 + i for i in order))
    inverse = tuple(int(i) for i in np.argsort(perm))
    if xp.name == "numpy":
        out = np.empty(batch.shape, dtype=np.float32)
        _resample_chunk(np.ascontiguousarray(batch), np.ascontiguousarray(disp.transpose(perm)), axes, Scratch(), out)
        return out
    out = _resample_torch(batch.permute(perm), disp.permute(perm), axes)
    return out.permute(inverse).contiguous()


def deform(batch, coef, sigma: float, alpha: float, axes, xp, overwrite: bool = False):
    """Elastically deform ``batch`` (N, C, X, Y, Z) float32 with field coefficients ``coef``.

    numpy: with ``overwrite`` the result goes into ``batch`` itself (each cache-sized chunk is
    resampled from a transposed copy, so nothing is read after it is written), saving a copy.
    """
    axes = tuple(sorted(axes))
    order = layout(axes)
    perm = (0, 1, *(2 + i for i in order))
    inverse = tuple(int(i) for i in np.argsort(perm))
    shape = tuple(int(s) for s in batch.shape[2:])
    if xp.name == "numpy":
        out = batch if overwrite else np.empty_like(batch)
        scratch = Scratch()
        planes = tuple(shape[i] for i in order)
        for sl in chunks(int(batch.shape[0]), int(np.prod(shape))):   # cache blocking (see chunks)
            disp = displacement(coef[sl], shape, sigma, alpha, xp, order,
                                out=scratch("disp", (sl.stop - sl.start, len(axes), *planes)))   # in layout order
            _resample_chunk(batch[sl], disp, axes, scratch, out[sl])
        return out
    disp = displacement(coef, shape, sigma, alpha, xp, order)
    out = _resample_torch(batch.permute(perm), disp, axes)
    return out.permute(inverse).contiguous()


class ElasticDeformation(RandomOperation):
    """Smooth random displacement of the in-plane axes (docs/method.md §3.2 step 2; see the module docstring).

    Args:
        alpha: displacement scale α (991).
        sigma: smoothing σ in voxels (8).
        axes: displaced spatial axes (``(0, 1)``: x and y; z is never moved in the reference).

    Parameters drawn per sample: ``coef`` (A, kx, ky, kz) float32, i.i.d. N(0, 1/3), the field's
    coefficients in the truncated SVD basis (:func:`smoothing_basis`).
    """

    name = "elastic_deformation"

    def __init__(self, alpha: float = 991.0, sigma: float = 8.0, axes=(0, 1)) -> None:
        if float(sigma) <= 0 or float(alpha) < 0:
            raise ValueError(f"need sigma > 0 and alpha >= 0, got sigma={sigma}, alpha={alpha}")
        if not axes or len(set(axes)) != len(axes) or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"axes must be distinct spatial axes (0, 1, 2), got {axes!r}")
        self.alpha, self.sigma, self.axes = float(alpha), float(sigma), tuple(sorted(axes))

    def sample(self, rng: np.random.Generator, shape) -> dict:
        k = field_ranks(shape, self.sigma)
        coef = rng.standard_normal((len(self.axes), *k), dtype=np.float32) * np.float32(1.0 / np.sqrt(3.0))
        return {"coef": coef}

    def empty(self, shape) -> dict:
        return {"coef": np.zeros((len(self.axes), *field_ranks(shape, self.sigma)), dtype=np.float32)}

    def displacement(self, params: dict, shape, like=None):
        """The displacement fields (N, A, X, Y, Z) in voxels (numpy, or torch on ``like``'s device)."""
        xp = NUMPY if like is None else backend_for(like)
        return displacement(np.asarray(params["coef"]), tuple(shape), self.sigma, self.alpha, xp)

    def check(self, batch, params: dict) -> None:
        super().check(batch, params)
        k = field_ranks(tuple(int(v) for v in batch.shape[2:]), self.sigma)
        coef = np.asarray(params["coef"])
        if coef.shape[1:] != (len(self.axes), *k):
            raise ValueError(f"coef has shape {coef.shape}; need (N, {len(self.axes)}, {k[0]}, {k[1]}, {k[2]})")

    def _apply(self, x, params: dict):
        """Resample every sample at its displaced coordinates (see :func:`deform`)."""
        return deform(x, np.asarray(params["coef"]), self.sigma, self.alpha, self.axes, self._xp(x), overwrite=True)
