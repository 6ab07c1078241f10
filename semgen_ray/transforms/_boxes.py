"""Axis-aligned boxes of the painting operations: drawing them and turning them into masks."""

from __future__ import annotations

import numpy as np


def flat_axes(shape, lo, hi, shrink: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` of a size range with every axis of length 1 spanned whole (side 1, i.e. a shrink
    of 0). A 2D image is corrupted as an (X, Y, 1) cube: its singleton axis is not drawn on, and the
    draws of a cube without one are unchanged."""
    dims = np.asarray(shape, dtype=np.int64)
    lo, hi = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)
    flat = dims == 1
    lo[flat] = hi[flat] = 0 if shrink else 1
    return lo, hi


def draw_box(rng: np.random.Generator, shape, size_lo, size_hi, margin: int, shrink: bool = False) -> np.ndarray:
    """One box ``(x0, y0, z0, sx, sy, sz)`` (int16), all draws inclusive (Python ``randint``).

    Side per axis U{lo..hi} (or, with ``shrink``, D − U{lo..hi}); corner U{margin .. D − side − margin}.
    An axis of length 1 is spanned whole, without margin (:func:`flat_axes`).
    """
    dims = np.asarray(shape, dtype=np.int64)
    lo, hi = flat_axes(shape, size_lo, size_hi, shrink)
    u = rng.integers(lo, hi + 1)
    size = dims - u if shrink else u
    margins = np.where(dims == 1, 0, margin) if (dims == 1).any() else margin
    corner = rng.integers(margins, dims - size - margins + 1)
    return np.concatenate([corner, size]).astype(np.int16)


def box_mask(boxes, shape, xp):
    """(N, X, Y, Z) bool: inside each sample's box; ``boxes`` (N, 6) numpy, zero sides = empty."""
    b = xp.param(np.asarray(boxes, dtype=np.int64).reshape(-1, 6), xp.int64)
    n = int(b.shape[0])
    parts = []
    for axis, d in enumerate(shape):
        grid = xp.arange(d, xp.int64).reshape(1, d)
        lo = b[:, axis:axis + 1]
        inside = (grid >= lo) & (grid < lo + b[:, 3 + axis:4 + axis])           # (N, d)
        parts.append(inside)
    return (parts[0].reshape(n, shape[0], 1, 1) & parts[1].reshape(n, 1, shape[1], 1)
            & parts[2].reshape(n, 1, 1, shape[2]))
