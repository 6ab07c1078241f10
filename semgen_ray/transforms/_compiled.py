"""Compiled loops (numba) of the numpy corruption back end, where whole-array passes are the bottleneck.

* Elastic deformation (:func:`resample`): the vectorised resampling
  (:func:`.elastic_deformation._resample_numpy`) makes about 40 passes over every chunk and 4
  gathers; on a 224 × 224 image that was most of the ``sg`` corruption's time. Here it is two passes
  over the voxels: one folds the displaced coordinates into the volume and splits them into a corner
  index and two fractions (branch-free, so it vectorises), the other gathers the 4 corners and
  interpolates, reading and writing the volume where it lies (no transposed copies of cubes). It
  covers the reference's displacement, two displaced axes; other axis sets use the numpy code.
* Local pixel shuffle (:func:`shown_blocks`, :func:`place_blocks`): the blocks a voxel shows are
  found by painting each sample's blocks in drawing order, and the blocks are then placed in drawing
  order, as the reference loop does, with the permutations that numpy's vectorised row sort computed
  (:func:`.local_pixel_shuffle._ranks`; a compiled sort is 5× slower than numpy's SIMD one). The
  result is the scatter-of-codes result, exactly.
* Non-linear intensity (:func:`bezier_cells`, :func:`map_intensity`): the per-sample tables per knot
  and the map per voxel, one pass each.

Every float32/float64 operation is the numpy code's, in the same order, without fast-math, so the
outputs are bit-identical; ``tests/transforms/`` pins each against the numpy code. Machines without
numba (the GPU check's) run the numpy code: the callers import this module lazily and fall back.
Kernels are compiled on first use (about a second each) or loaded from numba's on-disk cache
(``__pycache__``).
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
def _fold(disp, strides, index, frac1, frac2):
    """``disp`` (n, 2, P0, P1, P2) in the resampling layout → for each voxel (in that layout order), the
    index of its low corner in the chunk's volumes, whose axes P0, P1, P2 lie at ``strides`` (within
    a sample), and its fractions along P1 and P2."""
    n, _, p0, p1, p2 = disp.shape
    plane = p1 * p2
    flat = disp.reshape(-1)
    s0, s1, s2 = np.int32(strides[0]), np.int32(strides[1]), np.int32(strides[2])
    for s in range(n):
        for k in range(p0):
            base = (s * p0 + k) * plane
            row1 = (2 * s * p0 + k) * plane              # this slice's P1 displacement
            row2 = ((2 * s + 1) * p0 + k) * plane        # and its P2 displacement
            start = np.int32(s * p0 * plane) + np.int32(k) * s0
            for i in range(p1):
                for j in range(p2):
                    v = i * p2 + j
                    l1, f1 = _fold_axis(flat[row1 + v], i, p1)
                    l2, f2 = _fold_axis(flat[row2 + v], j, p2)
                    index[base + v] = start + np.int32(l1) * s1 + np.int32(l2) * s2
                    frac1[base + v] = f1
                    frac2[base + v] = f2


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _interpolate(values, index, frac1, frac2, strides, dims, step1, step2, out):
    """Bilinear, along P2 in both rows then along P1 (``_resample_numpy``'s order): ``values`` and
    ``out`` (n · V,) volumes whose layout axes (sizes ``dims``) lie at ``strides``; ``index``,
    ``frac1``, ``frac2`` per voxel in layout order (:func:`_fold`)."""
    s0, s1, s2 = strides[0], strides[1], strides[2]
    nvox = dims[0] * dims[1] * dims[2]
    v = 0
    for s in range(out.size // nvox):
        for k in range(dims[0]):
            for i in range(dims[1]):
                row = s * nvox + k * s0 + i * s1
                for j in range(dims[2]):
                    c = index[v]
                    v00 = values[c]
                    v01 = values[c + step2]
                    v10 = values[c + step1]
                    v11 = values[c + step1 + step2]
                    f2 = frac2[v]
                    r0 = (v01 - v00) * f2 + v00
                    r1 = (v11 - v10) * f2 + v10
                    out[row + j * s2] = (r1 - r0) * frac1[v] + r0
                    v += 1


def resample(batch: np.ndarray, disp: np.ndarray, order, scratch, out: np.ndarray) -> bool:
    """``batch`` (n, C, X, Y, Z) resampled into ``out`` (the same shape, C-contiguous; may be
    ``batch``) at ``disp`` (n, 2, P0, P1, P2) in the layout ``order``
    (:func:`.elastic_deformation.layout`: the last two axes displaced), reading and writing the
    volumes where they lie. Returns ``False``, doing nothing, for a chunk of 2^31 voxels or more and
    where a displacement may reach beyond one reflection period (more than an axis's length: never
    at the reference's α = 991, σ = 8), which the numpy code folds with a remainder first.
    """
    n, ch = batch.shape[:2]
    shape = batch.shape[2:]
    dims = np.array([shape[a] for a in order], dtype=np.int64)
    p0, p1, p2 = (int(d) for d in dims)
    nvox = p0 * p1 * p2
    if n * nvox >= 1 << 31 or max(float(disp.max()), -float(disp.min())) > min(p1, p2):
        return False
    natural = (shape[1] * shape[2], shape[2], 1)
    strides = np.array([natural[a] for a in order], dtype=np.int64)     # where each layout axis lies
    index = scratch("index", (n * nvox,), np.int32)
    frac1 = scratch("frac1", (n * nvox,))
    frac2 = scratch("frac2", (n * nvox,))
    _fold(disp, strides, index, frac1, frac2)
    step1, step2 = (int(strides[1]) if p1 > 1 else 0), (int(strides[2]) if p2 > 1 else 0)
    for k in range(ch):
        src = batch[:, k].reshape(-1)
        if np.may_share_memory(src, out):                  # in place: read from a copy
            copy = scratch("source", (n * nvox,))
            np.copyto(copy, src)
            src = copy
        dst = out[:, k].reshape(-1) if ch == 1 else scratch("channel", (n * nvox,))
        _interpolate(src, index, frac1, frac2, strides, dims, step1, step2, dst)
        if ch > 1:
            out[:, k] = dst.reshape(n, *shape)
    return True


# ---- local pixel shuffle ----------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True, boundscheck=False)
def shown_blocks(boxes, used, shape, b, seen):
    """Mark in ``seen`` the blocks of ``used`` (flat block numbers, ascending) that some voxel shows:
    each sample's blocks are painted in drawing order onto a map of owners, the last one wins."""
    X, Y, Z = shape
    owner = np.empty(X * Y * Z, np.int64)
    k = 0
    while k < used.size:
        s = used[k] // b
        owner[:] = -1
        while k < used.size and used[k] // b == s:
            g = used[k]
            x0, y0, z0 = np.int64(boxes[g, 0]), np.int64(boxes[g, 1]), np.int64(boxes[g, 2])
            sx, sy, sz = np.int64(boxes[g, 3]), np.int64(boxes[g, 4]), np.int64(boxes[g, 5])
            if Z == 1:                              # an image: each x is one run of sy voxels
                for i in range(x0, x0 + sx):
                    row = i * Y + y0
                    for v in range(row, row + sy):
                        owner[v] = g
            else:
                for i in range(x0, x0 + sx):
                    for j in range(y0, y0 + sy):
                        row = (i * Y + j) * Z + z0
                        for v in range(row, row + sz):
                            owner[v] = g
            k += 1
        for v in range(owner.size):
            if owner[v] >= 0:
                seen[owner[v]] = True


@numba.njit(cache=True, nogil=True, boundscheck=False)
def place_blocks(boxes, used, ranks, start, shape, b, source, out):
    """The reference loop with the permutations given: for each block of ``used`` in drawing order,
    output position ``l`` (C order in the block) of every channel takes, from ``source`` (N, C, V), the
    block's voxel at position ``ranks[start[g] + l]``; written to ``out`` (N, C, V), so a later block
    overwrites an earlier one."""
    X, Y, Z = shape
    channels = source.shape[1]
    offset = np.empty(0, np.int64)
    for k in range(used.size):
        g = used[k]
        s = g // b
        sx, sy, sz = np.int64(boxes[g, 3]), np.int64(boxes[g, 4]), np.int64(boxes[g, 5])
        corner = (np.int64(boxes[g, 0]) * Y + np.int64(boxes[g, 1])) * Z + np.int64(boxes[g, 2])
        volume = sx * sy * sz
        if offset.size < volume:
            offset = np.empty(volume, np.int64)
        p = 0
        for i in range(sx):                     # the block's voxels in C order, from its corner
            for j in range(sy):
                row = corner + (i * Y + j) * Z
                for v in range(row, row + sz):
                    offset[p] = v
                    p += 1
        rank = ranks[start[g]:start[g] + volume]
        for c in range(channels):
            src, dst = source[s, c], out[s, c]
            for l in range(volume):
                dst[offset[l]] = src[offset[rank[l]]]


# ---- non-linear intensity -----------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True, boundscheck=False)
def bezier_cells(points, invert, knots, samples, newton_steps, cells):
    """:func:`.nonlinear_intensity.bezier_lut` then :func:`~.nonlinear_intensity.cell_table` (numpy),
    the same float64 operations per knot: ``cells`` (N, L, 2) float32 receives each cell's (value,
    slope); ``knots`` (L + 1,) float64 ascending."""
    k = samples
    bx = np.empty(k, np.float64)
    out = np.empty(knots.size, np.float32)
    step = 1.0 / float(k - 1)
    for n in range(points.shape[0]):
        a, b, c, d = points[n, 0], points[n, 1], points[n, 2], points[n, 3]
        p1, p2, p3 = 3.0 * a, 3.0 * c - 6.0 * a, 1.0 + 3.0 * a - 3.0 * c
        top = -np.inf
        for i in range(k):                                  # Bx on the curve samples, made monotone
            s = float(i) / float(k - 1)
            top = max(top, s * (p1 + s * (p2 + s * p3)))
            bx[i] = top
        hi = 0
        for j in range(knots.size):
            v = knots[j]
            while hi < k and bx[hi] <= v:                    # count of samples <= v (knots ascend)
                hi += 1
            h = min(max(hi, 1), k - 1)
            x0 = bx[h - 1]
            span = bx[h] - x0
            lo_s = float(h - 1) / float(k - 1)
            hi_s = lo_s + step
            sv = lo_s + min(max((v - x0) / max(span, 1e-300), 0.0), 1.0) / float(k - 1)
            for _ in range(newton_steps):                    # inside [lo_s, hi_s]
                f = sv * (p1 + sv * (p2 + sv * p3)) - v
                slope = max(p1 + sv * (2.0 * p2 + 3.0 * p3 * sv), 1e-300)
                sv = min(max(sv - f / slope, lo_s), hi_s)
            if v <= 0.0:
                sv = 0.0
            elif v >= 1.0:
                sv = 1.0
            if invert[n]:
                sv = 1.0 - sv
            out[j] = np.float32(sv * (3.0 * b + sv * (3.0 * d - 6.0 * b + sv * (1.0 + 3.0 * b - 3.0 * d))))
        for j in range(knots.size - 1):
            width = knots[j + 1] - knots[j]
            cells[n, j, 0] = out[j]
            cells[n, j, 1] = np.float32((float(out[j + 1]) - float(out[j])) / width) if width > 0 else np.float32(0.0)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def map_intensity(x, cells, knots, cell):
    """:func:`.nonlinear_intensity._map_numpy` in place: ``x`` (N, V) float32, ``cells`` (N, L, 2)
    float32 (value, slope) per cell, ``knots`` (L + 1,) float32, ``cell`` (V,) int32 work space. Per
    sample, a pass that finds every voxel's cell (it vectorises), then one that interpolates."""
    size = cells.shape[1]
    scale = np.float32(0.5 * size)
    last = np.float32(size - 1)
    for n in range(x.shape[0]):
        row = x[n]
        for i in range(row.size):
            v = min(max(row[i], np.float32(0.0)), np.float32(1.0))
            u = np.sqrt(v)
            w = np.sqrt(np.float32(1.0) - v)
            u = u - w
            u = u + np.float32(1.0)
            u = u * scale
            cell[i] = np.int32(min(np.floor(u), last))
            row[i] = v
        table = cells[n]
        for i in range(row.size):
            c = cell[i]
            row[i] = (row[i] - knots[c]) * table[c, 1] + table[c, 0]
