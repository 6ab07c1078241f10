"""Foreground tests for the coordinate draw of self-discovery (docs/method.md §2.1).

Two rules, selectable by name with :func:`make_foreground_test`:

``lung`` (alias ``mostly_lung``; CT, the reference rule inherited from Models Genesis)
    For a candidate cube of size (X, Y, Z) at (x, y, z) take the window
    ``v[x:x+X, y:y+Y, z:z+Z+len_depth-1]``. For every in-plane voxel (i, j) and output slice
    d in 0..Z-1 look at the slices d, d+1, …, d+len_depth-1; let k be the index of the first one whose
    value is >= the threshold, or ``len_depth-1`` when none is. The voxel scores ``1 - k/(len_depth-1)``
    (1, 0.5 or 0 for the reference's ``len_depth=3``). The window is **rejected** when the sum of the
    scores exceeds ``lung_max * X*Y*Z``: at most about ``lung_max`` of the window may be soft tissue
    or bone, so accepted windows are mostly lung or air.

    The reference applies the threshold (-150 HU) to the [0, 1]-normalised volume as 0.425
    (``(hu + 1000) / 2000``). Here the threshold is given in the units of the array passed in:
    callers with HU arrays pass -150 directly, callers with normalised arrays pass
    :func:`hu_to_unit` (-150) = 0.425. Since -150 HU lies inside the [-1000, 1000] window, both give
    the same decision (up to the float rounding of the normalisation exactly at the threshold).

    Vectorised: the per-voxel score is computed once per volume from the boolean ``v >= threshold``
    (one pass per depth offset), and window sums come from a 3-D integral image (summed-volume
    table), so any number of candidates cost O(1) each. Scores are kept doubled as small integers
    (0, 1, 2 for ``len_depth=3``) so sums are exact. For volumes larger than ``max_integral_voxels``
    the integral image is skipped (it would need 4 bytes/voxel) and each candidate window is summed
    with one vectorised slice of the score volume instead.

``fraction`` (alias ``mr``; modality-neutral, for MR or any intensity scale)
    Foreground = voxels above a threshold (Otsu's threshold of the volume when none is given). A
    candidate cube ``v[x:x+X, y:y+Y, z:z+Z]`` is accepted when its foreground fraction lies in
    ``[lo, hi]`` (default [0.5, 1.0]: the cube lies mostly inside the body/head). Same integral-image
    evaluation.

Usage::

    test = make_foreground_test("lung", cube=(64, 64, 32), threshold=-150, lung_max=0.15)
    accept = test.prepare(volume)          # once per volume
    ok = accept(starts)                     # starts: (N, 3) int array of (x, y, z) → (N,) bool
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: The reference's HU window for normalisation (SG ``pattern_generator_3D.py``).
HU_MIN, HU_MAX = -1000.0, 1000.0
LEN_DEPTH = 3
#: Above this many voxels the integral image is not built (memory); candidates are summed one by one.
MAX_INTEGRAL_VOXELS = 1 << 25

Accept = Callable[[np.ndarray], np.ndarray]


def hu_to_unit(hu: float, lo: float = HU_MIN, hi: float = HU_MAX) -> float:
    """Map a HU value to the [0, 1] scale of the CT window (``-150`` → ``0.425``)."""
    return float((min(max(hu, lo), hi) - lo) / (hi - lo))


# ----------------------------------------------------------------------------------------- helpers
def _as_starts(starts) -> np.ndarray:
    s = np.asarray(starts, dtype=np.int64)
    if s.ndim == 1:
        s = s.reshape(1, 3)
    if s.ndim != 2 or s.shape[1] != 3:
        raise ValueError(f"starts must have shape (N, 3), got {s.shape}")
    return s


def integral_image(a: np.ndarray, dtype=np.int64) -> np.ndarray:
    """Summed-volume table with a zero first plane on each axis: ``ii[x, y, z] = a[:x, :y, :z].sum()``."""
    ii = np.zeros(tuple(n + 1 for n in a.shape), dtype=dtype)
    np.cumsum(a, axis=0, dtype=dtype, out=ii[1:, 1:, 1:])
    np.cumsum(ii[1:, 1:, 1:], axis=1, out=ii[1:, 1:, 1:])
    np.cumsum(ii[1:, 1:, 1:], axis=2, out=ii[1:, 1:, 1:])
    return ii


def box_sums(ii: np.ndarray, starts, size: Sequence[int]) -> np.ndarray:
    """Sums of the boxes ``a[x:x+X, y:y+Y, z:z+Z]`` for every start, from ``ii = integral_image(a)``."""
    s = _as_starts(starts)
    x0, y0, z0 = s[:, 0], s[:, 1], s[:, 2]
    x1, y1, z1 = x0 + size[0], y0 + size[1], z0 + size[2]
    return (ii[x1, y1, z1] - ii[x0, y1, z1] - ii[x1, y0, z1] - ii[x1, y1, z0]
            + ii[x0, y0, z1] + ii[x0, y1, z0] + ii[x1, y0, z0] - ii[x0, y0, z0])


def _check_inside(starts: np.ndarray, size: Sequence[int], shape: Sequence[int]) -> None:
    if len(starts) and (starts.min() < 0 or np.any(starts + np.asarray(size) > np.asarray(shape))):
        raise ValueError(f"candidate window of size {tuple(size)} leaves the array of shape {tuple(shape)}")


class _WindowSummer:
    """Sums of a fixed-size box of ``a`` at many starts (integral image, or slices for huge arrays)."""

    def __init__(self, a: np.ndarray, size: Sequence[int], max_integral_voxels: int):
        self.size = tuple(int(s) for s in size)
        self.shape = a.shape
        if a.size <= max_integral_voxels:
            self.ii, self.a = integral_image(a), None
        else:
            self.ii, self.a = None, a

    def __call__(self, starts) -> np.ndarray:
        s = _as_starts(starts)
        _check_inside(s, self.size, self.shape)
        if self.ii is not None:
            return box_sums(self.ii, s, self.size)
        X, Y, Z = self.size
        return np.array([int(self.a[x:x + X, y:y + Y, z:z + Z].sum(dtype=np.int64)) for x, y, z in s],
                        dtype=np.int64)


# ------------------------------------------------------------------------------- the "lung" rule
def lung_score_volume(volume: np.ndarray, threshold: float, len_depth: int = LEN_DEPTH) -> np.ndarray:
    """Per-voxel score of the reference rule, **times** ``len_depth - 1`` (exact small integers).

    Returns an array of shape (X, Y, Z - len_depth + 1) where entry (i, j, d) is
    ``(len_depth - 1) - k`` and k the first offset t in 0..len_depth-1 with
    ``volume[i, j, d + t] >= threshold`` (``len_depth - 1`` when none).
    """
    if len_depth < 2:
        raise ValueError(f"len_depth must be >= 2, got {len_depth}")
    v = np.asarray(volume)
    nz = v.shape[2] - len_depth + 1
    if nz < 1:
        raise ValueError(f"volume depth {v.shape[2]} < len_depth {len_depth}")
    hot = v >= threshold
    m = len_depth - 1
    score = np.zeros(v.shape[:2] + (nz,), dtype=np.uint8)
    seen = np.zeros_like(score, dtype=bool)  # a hit at an earlier offset already
    for t in range(m):  # a first hit at offset t scores m - t; at offset m (or none) scores 0
        first = hot[:, :, t:t + nz] & ~seen
        score[first] = m - t
        seen |= first
    return score


def lung_window_sums(volume: np.ndarray, starts, cube: Sequence[int], threshold: float,
                     len_depth: int = LEN_DEPTH) -> np.ndarray:
    """Sum of the rule's scores (in [0, X*Y*Z]) for each candidate window; float64 array (N,)."""
    s = _as_starts(starts)
    score = lung_score_volume(volume, threshold, len_depth)
    summer = _WindowSummer(score, cube, MAX_INTEGRAL_VOXELS)
    return summer(s) / float(len_depth - 1)


def mostly_lung(volume: np.ndarray, starts, cube: Sequence[int], threshold: float,
                lung_max: float = 0.15, len_depth: int = LEN_DEPTH) -> np.ndarray:
    """Accept mask (N,) of the reference "mostly lung" test for each candidate start."""
    return make_foreground_test("lung", cube=cube, threshold=threshold, lung_max=lung_max,
                                len_depth=len_depth).prepare(volume)(starts)


# ---------------------------------------------------------------------------- the "fraction" rule
def otsu_threshold(volume: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of the intensity histogram (between-class variance maximised)."""
    v = np.asarray(volume, dtype=np.float64).ravel()
    if v.size > 1 << 22:  # a strided subsample is plenty for a histogram
        v = v[:: v.size // (1 << 22) + 1]
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist, dtype=np.float64)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centres)
    mu0 = m / np.maximum(w0, 1)
    mu1 = (m[-1] - m) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    between = between[:-1]
    best = np.flatnonzero(between >= between.max() * (1 - 1e-12))  # a plateau between separated modes
    return float(edges[round((best[0] + best[-1]) / 2) + 1])


def foreground_fraction(volume: np.ndarray, starts, cube: Sequence[int],
                        threshold: float | None = None) -> np.ndarray:
    """Fraction (N,) of voxels > threshold (Otsu when None) in each window ``v[x:x+X, y:y+Y, z:z+Z]``."""
    thr = otsu_threshold(volume) if threshold is None else threshold
    summer = _WindowSummer((np.asarray(volume) > thr).astype(np.uint8), cube, MAX_INTEGRAL_VOXELS)
    return summer(starts) / float(np.prod(cube))


# ------------------------------------------------------------------------------------ the factory
class ForegroundTest:
    """A named foreground rule for a fixed cube size; ``prepare(volume)`` returns ``accept(starts)``.

    ``window_depth`` is the number of slices the rule reads from a start z (``Z + len_depth - 1`` for
    ``lung``, ``Z`` for ``fraction``); the coordinate draw keeps candidates inside the volume.
    """

    def __init__(self, name: str, cube: Sequence[int], **params):
        self.cube = tuple(int(c) for c in cube)
        if len(self.cube) != 3 or min(self.cube) < 1:
            raise ValueError(f"cube must be three positive sizes, got {cube}")
        if name in ("lung", "mostly_lung"):
            self.name = "lung"
            self.threshold = float(params.pop("threshold", -150.0))
            self.lung_max = float(params.pop("lung_max", 0.15))
            self.len_depth = int(params.pop("len_depth", LEN_DEPTH))
            self.window_depth = self.cube[2] + self.len_depth - 1
        elif name in ("fraction", "mr"):
            self.name = "fraction"
            thr = params.pop("threshold", None)
            self.threshold = None if thr is None else float(thr)
            self.lo = float(params.pop("lo", 0.5))
            self.hi = float(params.pop("hi", 1.0))
            self.window_depth = self.cube[2]
        else:
            raise ValueError(f"unknown foreground rule {name!r}: use 'lung' (CT) or 'fraction' (MR)")
        self.max_integral_voxels = int(params.pop("max_integral_voxels", MAX_INTEGRAL_VOXELS))
        if params:
            raise TypeError(f"unknown parameter(s) for foreground rule {name!r}: {sorted(params)}")

    def prepare(self, volume: np.ndarray) -> Accept:
        volume = np.asarray(volume)
        if volume.ndim != 3:
            raise ValueError(f"volume must be 3-D (x, y, z), got shape {volume.shape}")
        n = float(np.prod(self.cube))
        if self.name == "lung":
            if volume.shape[2] < self.len_depth:
                return lambda starts: np.zeros(len(_as_starts(starts)), dtype=bool)
            summer = _WindowSummer(lung_score_volume(volume, self.threshold, self.len_depth), self.cube,
                                   self.max_integral_voxels)
            limit = self.lung_max * n * (self.len_depth - 1)  # scores are kept times (len_depth - 1)
            return lambda starts: summer(starts) <= limit
        thr = otsu_threshold(volume) if self.threshold is None else self.threshold
        summer = _WindowSummer((volume > thr).astype(np.uint8), self.cube, self.max_integral_voxels)

        def accept(starts) -> np.ndarray:
            frac = summer(starts) / n
            return (frac >= self.lo) & (frac <= self.hi)

        return accept


def make_foreground_test(name: str, cube: Sequence[int], **params) -> ForegroundTest:
    """``lung`` (threshold, lung_max, len_depth) or ``fraction`` (threshold=None → Otsu, lo, hi)."""
    return ForegroundTest(name, cube, **params)
