"""Non-linear intensity mapping by a random cubic Bézier curve (docs/method.md §3.1 step 3, §3.2).

Reference: control points P0 = (0, 0), P1 = (a, b), P2 = (c, d), P3 = (1, 1) with a, b, c, d ~
U[0, 1); the curve is sampled at 100,000 parameter values (from P3 to P0); with probability 0.5 only
the x samples are sorted (an inversion-like, decreasing map), otherwise both are (an increasing map);
each voxel is mapped with ``np.interp`` (values outside [0, 1] clamp to the end points).

With control points in [0, 1] the x component ``Bx(s) = 3s(1−s)²a + 3s²(1−s)c + s³`` is
non-decreasing in s, so sorting only reverses the samples and the reference map is, up to its
piecewise-linear sampling, ``g(v) = By(s)`` (increasing) or ``g(v) = By(1 − s)`` (inverted) with
``s = Bx⁻¹(v)``. Here ``g`` is tabulated once per sample at ``LUT_SIZE + 1`` knots and each voxel is
mapped by linear interpolation between the two knots around it: a few arithmetic operations and
two gathers per voxel, vectorised over the batch, instead of a 100,000-point curve and a binary
search per voxel.

* Knots: ``v_j = w(j / LUT_SIZE)`` with ``w`` the inverse of ``u(v) = (√v − √(1 − v) + 1) / 2``, so
  they crowd quadratically towards 0 and 1, where ``g`` is steepest (a vertical tangent when
  a → 0 or c → 1). A voxel's cell is ``floor(u(v) · LUT_SIZE)``; inside it ``g`` is interpolated
  linearly in v (exact where ``g`` is locally linear, as it is near an end unless a or 1 − c is 0).
  Knots are rounded to float32, the voxels' precision, and ``g`` is computed at the rounded knots.
* ``g(v_j)`` exactly: ``Bx`` inverted by linear interpolation of ``CURVE_SAMPLES`` curve points,
  refined by 2 Newton steps kept inside the bracketing interval (more change nothing measurable);
  ``By`` evaluated in closed form (float64).

Agreement with the reference (``np.interp`` on the 100,000-point curve) is measured by
``benchmarks/bezier_error.py`` (``benchmarks/results/bezier_error.json``, quoted in the README): about
1e-5 at most on random curves, more next to an end point of near-degenerate curves (a or 1 − c below
1e-2, which a uniform draw gives 2% of the time). ``tests/transforms/test_transforms_nonlinear_intensity.py``
checks < 2e-5 on its seeded random and near-degenerate curves.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from semgen_ray.transforms._operation import RandomOperation, chunks, compiled_kernels

#: Intervals of the per-sample lookup table.
LUT_SIZE = 8192
#: Curve samples used for the initial inversion of Bx.
CURVE_SAMPLES = 1024
#: Newton steps refining Bx⁻¹ at the knots.
NEWTON_STEPS = 2


def _bezier(s, p1, p2):
    """One coordinate of the cubic Bézier with end points 0 and 1 (Horner form)."""
    # 3 s (1-s)^2 p1 + 3 s^2 (1-s) p2 + s^3  =  s (3 p1 + s (3 p2 - 6 p1 + s (1 + 3 p1 - 3 p2)))
    return s * (3.0 * p1 + s * (3.0 * p2 - 6.0 * p1 + s * (1.0 + 3.0 * p1 - 3.0 * p2)))


def _bezier_slope(s, p1, p2):
    """d/ds of :func:`_bezier` (>= 0 for control points in [0, 1])."""
    return 3.0 * p1 + s * (2.0 * (3.0 * p2 - 6.0 * p1) + s * 3.0 * (1.0 + 3.0 * p1 - 3.0 * p2))


def knot_position(v, xp=None):
    """``u(v) = (√v − √(1 − v) + 1) / 2`` in [0, 1]: where value ``v`` falls on the knot axis."""
    sq = np.sqrt if xp is None or xp.name == "numpy" else xp.torch.sqrt
    return (sq(v) - sq(1.0 - v) + 1.0) * 0.5


@lru_cache(maxsize=4)
def knots(lut_size: int = LUT_SIZE) -> np.ndarray:
    """The ``lut_size + 1`` knot values ``v_j = u⁻¹(j / lut_size)``, rounded to float32 (the voxels'
    precision, so that ``v − v_j`` is exact), as a read-only float32 array; 0 and 1 exact."""
    m = 2.0 * np.linspace(0.0, 1.0, lut_size + 1) - 1.0          # = sqrt(v) - sqrt(1 - v)
    v = ((m + np.sqrt(2.0 - m * m)) * 0.5) ** 2
    v[0], v[-1] = 0.0, 1.0
    out = v.astype(np.float32)
    out.setflags(write=False)
    return out


def bezier_lut(points, invert, xp, lut_size: int = LUT_SIZE):
    """The intensity map of each sample at the knots :func:`knots`: (N, lut_size + 1) float32.

    Args:
        points: (N, 4) control coordinates ``(a, b, c, d)`` of P1 = (a, b), P2 = (c, d).
        invert: (N,) bool, the decreasing (inverted) map.
        xp: back end.
    """
    pts = xp.param(np.asarray(points, dtype=np.float64).reshape(-1, 4), xp.float64)
    a, b, c, d = (pts[:, i:i + 1] for i in range(4))
    n, k = int(pts.shape[0]), CURVE_SAMPLES
    # Bx(s) = s (p1 + s (p2 + s p3)); Bx'(s) = p1 + s (2 p2 + 3 s p3)
    p1, p2, p3 = 3.0 * a, 3.0 * c - 6.0 * a, 1.0 + 3.0 * a - 3.0 * c
    s = xp.arange(k, xp.float64).reshape(1, -1) / float(k - 1)                    # (1, K)
    bx = xp.cummax(s * (p1 + s * (p2 + s * p3)))                                   # (N, K) ascending
    v1 = xp.param(knots(lut_size).astype(np.float64))
    hi = xp.clip(xp.count_le(bx, v1), 1, k - 1)                                   # Bx(s_hi-1) <= v < Bx(s_hi)
    v = v1.reshape(1, -1) + xp.full((n, 1), 0.0, xp.float64)
    x0 = xp.take_rows(bx, hi - 1)
    span = xp.take_rows(bx, hi) - x0
    lo_s = xp.astype(hi - 1, xp.float64) / float(k - 1)
    hi_s = lo_s + 1.0 / float(k - 1)
    sv = lo_s + xp.clip((v - x0) / xp.clip(span, 1e-300, None), 0.0, 1.0) / float(k - 1)
    for _ in range(NEWTON_STEPS):  # Bx is monotone: Newton steps kept inside [lo_s, hi_s]
        f = sv * (p1 + sv * (p2 + sv * p3)) - v
        slope = xp.clip(p1 + sv * (2.0 * p2 + 3.0 * p3 * sv), 1e-300, None)
        sv = xp.minimum(xp.maximum(sv - f / slope, lo_s), hi_s)
    sv = xp.where(v <= 0.0, 0.0, xp.where(v >= 1.0, 1.0, sv))
    inv = xp.param(np.asarray(invert, dtype=bool).reshape(-1, 1))
    sv = xp.where(inv, 1.0 - sv, sv)
    return xp.astype(_bezier(sv, b, d), xp.float32)


def cell_table(lut, xp):
    """(N, L+1) knot values → (N, L, 2) float32 ``(g_j, slope_j)`` per cell between knots."""
    kn = xp.param(knots(int(lut.shape[1]) - 1).astype(np.float64))
    width = kn[1:] - kn[:-1]
    g = xp.astype(lut, xp.float64)
    slope = xp.where(width > 0, (g[:, 1:] - g[:, :-1]) / xp.where(width > 0, width, 1.0), 0.0)
    if xp.name == "numpy":
        return np.stack([lut[:, :-1], slope.astype(np.float32)], axis=-1)
    return xp.torch.stack([lut[:, :-1], slope.to(xp.float32)], dim=-1)


def _map_numpy(x: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """In place on ``x`` (n, V) float32 with the cell tables ``cells`` (n, L, 2) of its samples."""
    n, size = x.shape[0], cells.shape[1]
    np.clip(x, 0.0, 1.0, out=x)
    u = np.sqrt(x)
    w = np.subtract(1.0, x)
    np.sqrt(w, out=w)
    u -= w
    u += 1.0
    u *= np.float32(0.5 * size)                 # position on the knot axis
    np.floor(u, out=u)
    np.minimum(u, size - 1, out=u)              # v = 1 falls in the last cell
    cell = u.astype(np.int64)
    x -= np.take(knots(size), cell)             # v - v_j: exact in float32
    if n > 1:
        cell += (np.arange(n, dtype=np.int64) * size).reshape(n, 1)
    got = np.take(cells.reshape(-1).view(np.complex64), cell).view(np.float32).reshape(*x.shape, 2)
    x *= got[..., 1]
    x += got[..., 0]
    return x


def map_intensity(batch, lut, xp):
    """Map every voxel through its sample's table: find the cell of its value on the knot axis
    (:func:`knot_position`), interpolate linearly in v between the cell's knots (exact for a map that
    is linear near an end, where a steep curve spends its few knots); clamps outside [0, 1].

    ``batch`` (N, C, X, Y, Z) float32 is overwritten (numpy) and returned.
    """
    n = int(batch.shape[0])
    size = int(lut.shape[1]) - 1
    cells = cell_table(lut, xp)
    if xp.name == "numpy":
        flat = batch.reshape(n, -1)
        for sl in chunks(n, flat.shape[1]):       # cache blocking (see _operation.chunks)
            _map_numpy(flat[sl], cells[sl])
        return batch
    torch = xp.torch
    v = batch.reshape(n, -1).clamp(0.0, 1.0)
    u = torch.sqrt(v).sub_(torch.sqrt(1.0 - v)).add_(1.0).mul_(0.5 * size)
    cell = torch.floor(u).clamp_(max=size - 1).to(torch.int64)
    v = v - xp.param(knots(size)).index_select(0, cell.reshape(-1)).reshape(cell.shape)
    cell.add_((torch.arange(n, device=batch.device) * size).reshape(n, 1))
    table = cells.reshape(-1, 2)
    got = table.index_select(0, cell.reshape(-1))
    return (got[:, 1] * v.reshape(-1) + got[:, 0]).reshape(batch.shape)


class NonlinearIntensity(RandomOperation):
    """Random monotone or inverted Bézier intensity map (docs/method.md §3.1 step 3; see the module docstring).

    Args:
        invert_rate: probability of the decreasing (inversion-like) map (0.5).

    Parameters drawn per sample: ``points`` (4,) float64 ``(a, b, c, d)``, ``invert`` () bool.

    Example:
        >>> x = np.linspace(0, 1, 5, dtype=np.float32).reshape(1, 1, 5, 1, 1)
        >>> p = {"points": np.array([[0.0, 0.0, 1.0, 1.0]]), "invert": np.array([True])}
        >>> np.round(NonlinearIntensity().apply(x, p).ravel(), 3)  # the straight line, inverted
        array([1.  , 0.75, 0.5 , 0.25, 0.  ], dtype=float32)
    """

    name = "nonlinear_intensity"

    def __init__(self, invert_rate: float = 0.5) -> None:
        if not 0.0 <= float(invert_rate) <= 1.0:
            raise ValueError(f"invert_rate must be in [0, 1], got {invert_rate}")
        self.invert_rate = float(invert_rate)

    def sample(self, rng: np.random.Generator, shape) -> dict:
        points = rng.random(4)                        # a, b, c, d ~ U[0, 1)
        return {"points": points, "invert": np.bool_(rng.random() < self.invert_rate)}

    def empty(self, shape) -> dict:
        return {"points": np.array([0.0, 0.0, 1.0, 1.0]), "invert": np.bool_(False)}  # the identity

    def _apply(self, x, params: dict):
        xp = self._xp(x)
        points = np.asarray(params["points"], dtype=np.float64).reshape(-1, 4)
        compiled = compiled_kernels() if xp.name == "numpy" else None
        if compiled is None:
            return map_intensity(x, bezier_lut(points, params["invert"], xp), xp)
        # numba (:mod:`._compiled`): the same operations, per knot and per voxel in one pass each
        n = points.shape[0]
        cells = np.empty((n, LUT_SIZE, 2), dtype=np.float32)
        compiled.bezier_cells(points, np.asarray(params["invert"], dtype=bool).reshape(-1),
                              _knots64(LUT_SIZE), CURVE_SAMPLES, NEWTON_STEPS, cells)
        flat = x.reshape(n, -1)
        compiled.map_intensity(flat, cells, knots(LUT_SIZE), np.empty(flat.shape[1], dtype=np.int32))
        return x


@lru_cache(maxsize=4)
def _knots64(lut_size: int) -> np.ndarray:
    """:func:`knots` in float64 (read-only), as :func:`cell_table` widens them."""
    out = knots(lut_size).astype(np.float64)
    out.setflags(write=False)
    return out
