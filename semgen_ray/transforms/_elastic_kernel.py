"""The elastic deformation's resampling as compiled loops (numba), for the numpy back end.

The vectorised numpy resampling (:func:`.elastic_deformation._resample_numpy`) makes about 40 passes
over every chunk and 4 gathers; on a 224 × 224 image that is most of the ``sg`` corruption's time.
Here the same work is two compiled passes over the pixels: one folds the displaced coordinates into
the image and splits them into a corner index and two fractions (branch-free, so it vectorises), the
other gathers the 4 corners and interpolates.

Every float32 operation is the numpy code's, in the same order, without fast-math: the output is
bit-identical (``tests/transforms/test_transforms_elastic_deformation.py`` pins it). It covers the
reference's displacement, the two in-plane axes (the last two of the resampling layout); other axis
sets, and machines without numba (the GPU check's), use the numpy code. This module imports numba:
it is imported on first use, and its kernels are compiled then (about a second) or loaded from
numba's on-disk cache (``__pycache__``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _fold_axis(c, i, size):
    """One coordinate: displacement ``c`` of voxel ``i`` on an axis of ``size`` → (low, fraction), as
    ``_resample_numpy`` computes it within one period (half-sample-symmetric reflection, clamped to
    the voxel centres)."""
    c = c + (np.float32(i) + np.float32(0.5))
    c = abs(c)
    c = np.float32(size) - c
    c = abs(c)
    c = np.float32(size - 0.5) - c
    c = min(max(c, np.float32(0.0)), np.float32(size - 1.0))
    low = np.floor(c)
    low = min(low, np.float32(max(size - 2, 0)))   # low + 1 stays inside; the fraction reaches 1 at the end
    return low, c - low


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _fold(disp, index, frac1, frac2):
    """``disp`` (n, 2, P0, P1, P2) → the flat index (int32) of each voxel's low corner in the chunk and
    its fractions along P1 and P2, into (n · P0 · P1 · P2,) arrays."""
    n, _, p0, p1, p2 = disp.shape
    plane = p1 * p2
    flat = disp.reshape(-1)
    for s in range(n):
        for k in range(p0):
            base = (s * p0 + k) * plane
            row1 = (2 * s * p0 + k) * plane              # this slice's P1 displacement
            row2 = ((2 * s + 1) * p0 + k) * plane        # and its P2 displacement
            for i in range(p1):
                for j in range(p2):
                    v = i * p2 + j
                    l1, f1 = _fold_axis(flat[row1 + v], i, p1)
                    l2, f2 = _fold_axis(flat[row2 + v], j, p2)
                    index[base + v] = np.int32(base) + np.int32(l1) * np.int32(p2) + np.int32(l2)
                    frac1[base + v] = f1
                    frac2[base + v] = f2


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _interpolate(values, index, frac1, frac2, step1, step2, out):
    """Bilinear: along P2 in both rows, then along P1 (``_resample_numpy``'s order)."""
    for v in range(out.size):
        i = index[v]
        v00 = values[i]
        v01 = values[i + step2]
        v10 = values[i + step1]
        v11 = values[i + step1 + step2]
        f2 = frac2[v]
        r0 = (v01 - v00) * f2 + v00
        r1 = (v11 - v10) * f2 + v10
        out[v] = (r1 - r0) * frac1[v] + r0


def resample(batch: np.ndarray, disp: np.ndarray, scratch) -> np.ndarray | None:
    """``batch`` (n, C, P0, P1, P2) resampled at ``disp`` (n, 2, P0, P1, P2), in :func:`.layout` order
    with the last two axes displaced; the result is a ``scratch`` buffer.

    ``None`` (the caller uses the numpy code) for a chunk of 2^31 voxels or more, and where a
    displacement may reach beyond one reflection period (more than an axis's length: never at the
    reference's α = 991, σ = 8), which the numpy code folds with a remainder first.
    """
    n, ch, p0, p1, p2 = batch.shape
    size = n * p0 * p1 * p2
    if size >= 1 << 31 or max(float(disp.max()), -float(disp.min())) > min(p1, p2):
        return None
    index = scratch("index", (size,), np.int32)
    frac1 = scratch("frac1", (size,))
    frac2 = scratch("frac2", (size,))
    _fold(disp, index, frac1, frac2)
    out = scratch("resampled", batch.shape)
    step1, step2 = (p2 if p1 > 1 else 0), (1 if p2 > 1 else 0)
    for k in range(ch):
        plane = np.ascontiguousarray(batch[:, k]).reshape(-1)
        target = out[:, k].reshape(-1) if ch == 1 else scratch("channel", (size,))
        _interpolate(plane, index, frac1, frac2, step1, step2, target)
        if ch > 1:
            out[:, k] = target.reshape(n, p0, p1, p2)
    return out
