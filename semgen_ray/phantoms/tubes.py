"""Rasterising tapered tubes (chains of capsule segments) onto a voxel grid.

Each segment is evaluated only inside its bounding box; no loop runs over voxels. Small segments
(most of a vessel tree) are rasterised together in vectorised batches, large ones one box at a time.
Used for the aorta and great vessels, the airways and the pulmonary vessel trees.
"""

from __future__ import annotations

import numpy as np

from semgen_ray.phantoms.geometry import segment_distance
from semgen_ray.phantoms.grid import Grid

#: Segments whose bounding box has at most this many voxels are rasterised in batches.
BATCH_BOX_VOXELS = 4096
_BATCH_VOXELS = 1 << 20


def _index_boxes(grid: Grid, starts, ends, r0, r1, pad: float):
    """Per segment: float64 (start, end, r0, r1) and the [lo, hi) voxel index box (clipped)."""
    starts = np.asarray(starts, dtype=np.float64).reshape(-1, 3)
    ends = np.asarray(ends, dtype=np.float64).reshape(-1, 3)
    r0 = np.broadcast_to(np.asarray(r0, dtype=np.float64), (len(starts),))
    r1 = np.broadcast_to(np.asarray(r1, dtype=np.float64), (len(starts),))
    reach = (np.maximum(r0, r1) + pad)[:, None]
    origin, spacing, shape = np.array(grid.origin), np.array(grid.spacing), np.array(grid.shape)
    lo = np.ceil((np.minimum(starts, ends) - reach - origin) / spacing)
    hi = np.floor((np.maximum(starts, ends) + reach - origin) / spacing) + 1
    lo = np.clip(lo, 0, shape).astype(np.int64)
    hi = np.clip(hi, 0, shape).astype(np.int64)
    return starts, ends, r0, r1, lo, hi


def _segment_boxes(grid: Grid, starts, ends, r0, r1, lo, hi, which):
    """Yield (box, dist, radius-at-closest-point) for the selected segments, one box at a time."""
    axes = [grid.axis(d).astype(np.float32) for d in range(3)]
    for n in which:
        box = tuple(slice(int(lo[n, d]), int(hi[n, d])) for d in range(3))
        x = axes[0][box[0]][:, None, None]
        y = axes[1][box[1]][None, :, None]
        z = axes[2][box[2]][None, None, :]
        dist, t = segment_distance(x, y, z, starts[n], ends[n])
        yield box, dist, float(r0[n]) + float(r1[n] - r0[n]) * t


def _alpha(dist, r, h: float) -> np.ndarray:
    """Partial-volume occupancy of a voxel at distance ``dist`` from the axis of a tube of radius r."""
    alpha = np.clip(0.5 + (r - dist) / h, 0.0, 1.0)
    # a tube thinner than a voxel fills only part of it (~ its cross-section area)
    alpha *= np.minimum(1.0, (2.0 * r / h) ** 2)
    return alpha.astype(np.float32, copy=False)


def _paint_batch(buf, grid: Grid, starts, ends, r0, r1, lo, hi, which, h: float) -> None:
    """Rasterise many segments at once: their boxes' voxels are laid end to end in one flat (ragged)
    array, distances are computed in one pass and max-composited with ``ufunc.at``."""
    size = hi[which] - lo[which]  # (n, 3)
    count = size.prod(axis=1)
    seg = np.repeat(np.arange(len(which)), count)
    local = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    sz = size[seg]
    k = local % sz[:, 2]
    rest = local // sz[:, 2]
    j = rest % sz[:, 1]
    i = rest // sz[:, 1]
    box_lo = lo[which][seg]
    ix, iy, iz = box_lo[:, 0] + i, box_lo[:, 1] + j, box_lo[:, 2] + k
    origin, spacing = grid.origin, grid.spacing
    a = starts[which].astype(np.float32)[seg]
    d = (ends[which] - starts[which]).astype(np.float32)[seg]
    ux = np.float32(origin[0]) + ix.astype(np.float32) * np.float32(spacing[0]) - a[:, 0]
    uy = np.float32(origin[1]) + iy.astype(np.float32) * np.float32(spacing[1]) - a[:, 1]
    uz = np.float32(origin[2]) + iz.astype(np.float32) * np.float32(spacing[2]) - a[:, 2]
    dd = np.maximum((d * d).sum(axis=1), np.float32(1e-12))
    t = np.clip((ux * d[:, 0] + uy * d[:, 1] + uz * d[:, 2]) / dd, 0.0, 1.0)
    ex, ey, ez = ux - t * d[:, 0], uy - t * d[:, 1], uz - t * d[:, 2]
    dist = np.sqrt(ex * ex + ey * ey + ez * ez)
    r = r0[which].astype(np.float32)[seg] + (r1[which] - r0[which]).astype(np.float32)[seg] * t
    alpha = _alpha(dist, r, h)
    keep = alpha > 0
    flat = (ix[keep] * grid.shape[1] + iy[keep]) * grid.shape[2] + iz[keep]
    np.maximum.at(buf.reshape(-1), flat, alpha[keep])


def paint_segments(buf: np.ndarray, grid: Grid, starts, ends, r0, r1, grow: float = 0.0) -> None:
    """Max-composite the partial-volume occupancy of capsule segments into ``buf`` (in place).

    Args:
        buf: (X, Y, Z) float32 C-contiguous occupancy in [0, 1].
        grid: the voxel grid of ``buf``.
        starts, ends: (N, 3) world coordinates of the segment end points (mm).
        r0, r1: (N,) radii at the start and end (mm); the radius tapers linearly.
        grow: added to every radius (e.g. a wall thickness).
    """
    if buf.dtype != np.float32 or not buf.flags.c_contiguous:
        raise ValueError("buf must be a C-contiguous float32 array")
    h = grid.voxel_size
    starts, ends, r0, r1, lo, hi = _index_boxes(grid, starts, ends, np.asarray(r0) + grow,
                                                np.asarray(r1) + grow, h)
    size = np.prod(hi - lo, axis=1)
    small = np.nonzero((size > 0) & (size <= BATCH_BOX_VOXELS))[0]
    large = np.nonzero(size > BATCH_BOX_VOXELS)[0]
    # batches of about _BATCH_VOXELS voxels
    bounds = np.searchsorted(np.cumsum(size[small]), np.arange(1, 1 + size[small].sum() // _BATCH_VOXELS)
                             * _BATCH_VOXELS)
    for part in np.split(small, np.unique(bounds)):
        if len(part):
            _paint_batch(buf, grid, starts, ends, r0, r1, lo, hi, part, h)
    for box, dist, r in _segment_boxes(grid, starts, ends, r0, r1, lo, hi, large):
        view = buf[box]
        np.maximum(view, _alpha(dist, r, h), out=view)


def mask_segments(mask: np.ndarray, grid: Grid, starts, ends, r0, r1, grow: float = 0.0,
                  value: bool = True) -> None:
    """Set ``mask`` (bool, in place) to ``value`` on voxels whose centres lie inside the segments."""
    starts, ends, r0, r1, lo, hi = _index_boxes(grid, starts, ends, np.asarray(r0) + grow,
                                                np.asarray(r1) + grow, 0.0)
    which = np.nonzero(np.all(hi > lo, axis=1))[0]
    for box, dist, r in _segment_boxes(grid, starts, ends, r0, r1, lo, hi, which):
        inside = dist <= r
        view = mask[box]
        if value:
            view |= inside
        else:
            view &= ~inside


def tube_segments(tubes, to_world) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the segments of body-frame tubes, converted to world coordinates."""
    parts = [t.segments() for t in tubes]
    starts = to_world(np.concatenate([p[0] for p in parts]))
    ends = to_world(np.concatenate([p[1] for p in parts]))
    return starts, ends, np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts])
