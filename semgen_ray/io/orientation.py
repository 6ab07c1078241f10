"""Bringing an (x, y, z) array to the canonical LPS axis order by flips and axis permutations only.

This is the numpy twin of ``SimpleITK.DICOMOrient(img, "LPS")`` (used by the DICOM reader, which does
not go through SimpleITK): no interpolation, each array axis is flipped and/or moved so that it points
as closely as possible along +L, +P, +S. Whatever obliquity remains stays in ``direction``.
"""

from __future__ import annotations

import numpy as np


def closest_lps_axes(direction) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """For a 3×3 direction (column j = world direction of array axis j), the axis permutation and signs.

    Returns:
        ``(perm, signs)``: world axis ``w`` (L, P, S) is served by array axis ``perm[w]``; ``signs[a]``
        is -1 when array axis ``a`` runs against its world axis (it must be flipped).

    Each array axis is matched to the world axis of its largest direction cosine, taking the largest
    cosines first so the result is always a permutation (an exactly 45° oblique scan is the only case
    where the choice is arbitrary).
    """
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    perm = [-1, -1, -1]
    used: set[int] = set()
    for flat in np.argsort(-np.abs(d), axis=None, kind="stable"):
        w, a = divmod(int(flat), 3)
        if perm[w] == -1 and a not in used:
            perm[w] = a
            used.add(a)
    signs = [1, 1, 1]
    for w, a in enumerate(perm):
        signs[a] = -1 if d[w, a] < 0 else 1
    return tuple(perm), tuple(signs)


def reorient_to_lps(array: np.ndarray, spacing, origin, direction):
    """Flip and permute ``array`` (axes x, y, z) so that its axes run along +L, +P, +S.

    Args:
        array: 3D array indexed (i, j, k), the ITK index order.
        spacing: voxel size along the array's axes (mm).
        origin: world (LPS) position of voxel (0, 0, 0).
        direction: 3×3 direction matrix (or its 9 row-major values); column j is axis j's direction.

    Returns:
        ``(array, spacing, origin, direction)`` of the reoriented image: a C-contiguous array, a
        3-tuple, a 3-tuple and a 9-tuple (row-major), describing the same voxels in the same world
        positions.
    """
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3).copy()
    spacing = np.asarray(spacing, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64).copy()
    perm, signs = closest_lps_axes(d)
    for a in range(3):
        if signs[a] < 0:
            array = np.flip(array, axis=a)
            origin = origin + d[:, a] * spacing[a] * (array.shape[a] - 1)
            d[:, a] = -d[:, a]
    array = np.ascontiguousarray(np.transpose(array, perm))
    d = d[:, list(perm)]
    spacing = spacing[list(perm)]
    return (array, tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
            tuple(float(v) for v in d.ravel()))
