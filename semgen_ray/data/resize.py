"""Resize one volume, or a batch of same-shaped crops, to a target grid (trilinear, float32).

Why torch: on this 2-core CPU with one thread (``benchmarks/crop_read.py``, resize section),
``torch.nn.functional.interpolate(mode="trilinear")`` resized 32 crops of 72×72×40 → 64×64×32 in
34-59 ms against 450-530 ms for ``scipy.ndimage.zoom(order=1)`` per crop, and one 512×512×300 →
128×128×64 volume in 23-28 ms against 90-180 ms. torch is deterministic on CPU for this op.

Geometry: half-pixel centres (``align_corners=False``), the mapping of skimage's
``resize(order=1, preserve_range=True)``: output voxel ``i`` samples input coordinate
``(i + 0.5) * in / out - 0.5``. Differences from skimage, documented here once:

* Edges: coordinates that fall within half a voxel outside the input are clamped to the edge voxel
  (skimage reflects them); only the outermost output voxels of an up-sampled axis can differ.
* Anti-aliasing: skimage blurs with a Gaussian of sigma ``(factor - 1) / 2`` before shrinking.
  Here, with ``antialias=True``, an axis that shrinks by a factor ``f >= 2`` is first resampled
  linearly to ``k * out`` voxels (``k = floor(f)``) and then box-averaged by ``k``: every output voxel
  is the mean over its own footprint. That is exact in geometry, removes the frequencies the coarse
  grid cannot hold, and is cheaper than the Gaussian: 230-370 ms for a 512×512×300 CT to
  128×128×64 (``benchmarks/crop_read.py``; 23-28 ms without anti-aliasing), against about 6 s for a
  separable Gaussian with scipy. Axes that shrink by less than 2× (the 50-79 voxel crops resized to
  64) are plain trilinear, where skimage's sigma would be below 0.5 voxel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def target_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """``shape`` as three positive ints (the resize target), else a ``ValueError``."""
    out = tuple(int(s) for s in shape)
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"target shape must be 3 positive ints, got {tuple(shape)!r}")
    return out


def resize(array: np.ndarray, shape: Sequence[int], antialias: bool = True) -> np.ndarray:
    """Resize a volume ``(X, Y, Z)`` or a batch of crops ``(N, X, Y, Z)`` to ``shape`` (float32).

    Args:
        array: the voxels; any real dtype (computed in float32).
        shape: the target ``(X, Y, Z)``.
        antialias: box-average axes that shrink by 2× or more (see the module docstring).

    Returns:
        float32 array of shape ``shape`` or ``(N, *shape)``. An input already of that shape is
        returned as float32 unchanged (bit for bit).

    Example:
        >>> resize(np.zeros((50, 70, 40), np.int16), (64, 64, 32)).shape
        (64, 64, 32)
    """
    import torch
    import torch.nn.functional as F

    target = target_shape(shape)
    x = np.asarray(array)
    if x.ndim not in (3, 4):
        raise ValueError(f"resize takes (X, Y, Z) or (N, X, Y, Z), got shape {x.shape}")
    single = x.ndim == 3
    batch = x[None] if single else x
    if batch.shape[0] == 0 or batch.shape[1:] == target:
        out = batch.astype(np.float32, copy=False)
        return out[0] if single else out

    src = batch.shape[1:]
    if min(src) < 1:
        raise ValueError(f"cannot resize an empty array of shape {x.shape}")
    # Box factor per axis: k >= 2 only where the axis shrinks by at least 2x. The result is
    # "resample linearly to k * out, then average blocks of k" on every axis; these per-axis linear
    # operators commute, so axes whose length is already k * out are pooled first (a 512 -> 128
    # in-plane shrink then costs one pass over the input instead of an interpolation at full size).
    k = tuple(max(1, s // t) if antialias else 1 for s, t in zip(src, target))
    inter = tuple(t * f for t, f in zip(target, k))
    exact = tuple(i == s for i, s in zip(inter, src))

    t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).unsqueeze(1)
    first = tuple(f if e else 1 for f, e in zip(k, exact))
    if first != (1, 1, 1):
        t = F.avg_pool3d(t, kernel_size=first, stride=first)
    if not all(exact):
        t = F.interpolate(t, size=tuple(o if e else i for o, i, e in zip(target, inter, exact)),
                          mode="trilinear", align_corners=False)
        last = tuple(1 if e else f for f, e in zip(k, exact))
        if last != (1, 1, 1):
            t = F.avg_pool3d(t, kernel_size=last, stride=last)
    out = t.squeeze(1).numpy()
    return out[0] if single else out


def resize_crops(crops: Sequence[np.ndarray], shape: Sequence[int], antialias: bool = True) -> np.ndarray:
    """Resize crops of possibly different shapes to one ``shape``; one batched call per input shape.

    Returns a float32 array ``(len(crops), *shape)`` in the order of ``crops``.
    """
    target = target_shape(shape)
    out = np.empty((len(crops), *target), dtype=np.float32)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, c in enumerate(crops):
        by_shape.setdefault(tuple(c.shape), []).append(i)
    for idx in by_shape.values():
        out[idx] = resize(np.stack([crops[i] for i in idx]), target, antialias=antialias)
    return out
