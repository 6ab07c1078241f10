"""The class coordinate in a reference volume, and its correspondence in the neighbours (docs/method.md §2.1).

:func:`draw_coordinate` follows ``get_random_coordinate`` of the reference with its defects fixed
(docs/method.md §10.13):

- candidates are inclusive uniform integers ``x ∈ [bxy, X-cx-1-bxy]``, ``y ∈ [bxy, Y-cy-1-bxy]``,
  ``z ∈ [bz, Z-cz-len_depth-1-bz]`` (the paper: 100, 30 voxels; 64×64×32 cubes, ``len_depth=3``);
- a candidate closer than ``min_distance`` (Euclidean, voxels) to a coordinate already chosen (the
  discovery run passes those of every earlier class) is rejected **for that try only** (the
  reference never resets its collision flag, so after one collision every later try failed);
- the foreground test of :mod:`semgen_ray.discovery.foreground` (``lung`` for CT, ``fraction`` for
  other modalities unless ``rule`` says otherwise);
- ``None`` when no try succeeds or when the volume is too small for the margins (the reference
  returned ``None``/-1 and the caller crashed): the caller takes another reference.

All ``max_tries`` candidates are drawn at once and the foreground test evaluates them in one
vectorised call; the first candidate (in draw order) that passes both tests is returned, which is the
same rule as drawing them one after the other.

Coordinate correspondence (``DiscoveryConfig.coordinates``): ``voxel`` (the paper: the same raw
voxel index in every neighbour, no alignment) or ``body_box``: the coordinate is expressed relative to
the reference's body bounding box (voxels > -500 HU) and mapped into each neighbour's body box by
:func:`map_coordinate` (the cube centre is mapped, so the cube stays centred on the same relative
anatomy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from semgen_ray.discovery.foreground import LEN_DEPTH, hu_to_unit, make_foreground_test

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
#: Body = voxels above this HU value (air and lung are below).
BODY_HU = -500.0

_DEFAULTS = {"border_xy": 100, "border_z": 30, "lung_threshold_hu": -150.0, "lung_max": 0.15,
             "min_distance": 5.0, "max_tries": 200}


def _param(name: str, config: Any, overrides: dict) -> Any:
    if overrides.get(name) is not None:
        return overrides[name]
    if config is not None:
        if isinstance(config, dict):
            if name in config:
                return config[name]
        elif hasattr(config, name):
            return getattr(config, name)
    return _DEFAULTS[name]


def candidate_ranges(shape: Sequence[int], cube: Sequence[int], border_xy: int, border_z: int,
                     len_depth: int = LEN_DEPTH) -> tuple[tuple[int, int], ...] | None:
    """Inclusive (lo, hi) ranges of x, y, z for the draw, or None when a range is empty (docs/method.md §2.1)."""
    X, Y, Z = (int(s) for s in shape)
    cx, cy, cz = (int(c) for c in cube)
    ranges = ((border_xy, X - cx - 1 - border_xy),
              (border_xy, Y - cy - 1 - border_xy),
              # a flat image (a 2D image as an (X, Y, 1) volume) has its one z
              (0, 0) if Z == cz == 1 else (border_z, Z - cz - len_depth - 1 - border_z))
    if any(hi < lo for lo, hi in ranges):
        return None
    return ranges


def draw_coordinate(volume: np.ndarray, rng: np.random.Generator, previous: Sequence[Sequence[int]] = (),
                    *, cube: Sequence[int] = (64, 64, 32), config: Any = None, modality: str = "CT",
                    normalized: bool = False, rule: str | None = None, len_depth: int = LEN_DEPTH,
                    rule_params: dict | None = None, border_xy: int | None = None,
                    border_z: int | None = None, lung_threshold_hu: float | None = None,
                    lung_max: float | None = None, min_distance: float | None = None,
                    max_tries: int | None = None) -> tuple[int, int, int] | None:
    """Draw the class coordinate (x, y, z) of a cube corner in ``volume`` (x, y, z order).

    Args:
        volume: the reference volume, HU (``normalized=False``, the store's CT arrays) or the [0, 1]
            CT window (``normalized=True``: the HU threshold is converted with ``hu_to_unit``).
        rng: a ``numpy.random.Generator`` (all draws come from it: a fixed seed gives a fixed result).
        previous: coordinates already chosen (the earlier classes'; kept ``min_distance`` apart).
        cube: cube size (X, Y, Z) in voxels.
        config: a ``DiscoveryConfig`` (or dict) for border_xy, border_z, lung_threshold_hu,
            lung_max, min_distance, max_tries; keyword arguments override it.
        modality: ``CT`` selects the ``lung`` rule, anything else the ``fraction`` rule.
        rule: force a foreground rule by name (``lung``, ``fraction``, or ``none`` for no test).
        rule_params: extra parameters of the rule (e.g. ``lo``/``hi`` of ``fraction``).

    Returns:
        ``(x, y, z)`` as ints, or None when no candidate passed within ``max_tries``.
    """
    ov = {"border_xy": border_xy, "border_z": border_z, "lung_threshold_hu": lung_threshold_hu,
          "lung_max": lung_max, "min_distance": min_distance, "max_tries": max_tries}
    p = {k: _param(k, config, ov) for k in _DEFAULTS}
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (x, y, z), got shape {volume.shape}")
    ranges = candidate_ranges(volume.shape, cube, int(p["border_xy"]), int(p["border_z"]), len_depth)
    if ranges is None:
        return None
    n = int(p["max_tries"])
    cand = np.stack([rng.integers(lo, hi, size=n, endpoint=True) for lo, hi in ranges], axis=1)

    ok = np.ones(n, dtype=bool)
    prev = np.asarray([c for c in previous if c is not None], dtype=np.float64).reshape(-1, 3)
    if len(prev) and p["min_distance"] > 0:
        d2 = ((cand[:, None, :].astype(np.float64) - prev[None, :, :]) ** 2).sum(-1)
        ok &= (d2 >= float(p["min_distance"]) ** 2).all(axis=1)

    name = rule or ("lung" if str(modality).upper() == "CT" else "fraction")
    if name != "none" and ok.any():
        params = dict(rule_params or {})
        if name in ("lung", "mostly_lung"):
            thr = float(p["lung_threshold_hu"])
            params.setdefault("threshold", hu_to_unit(thr) if normalized else thr)
            params.setdefault("lung_max", float(p["lung_max"]))
            params.setdefault("len_depth", len_depth)
        accept = make_foreground_test(name, cube, **params).prepare(volume)
        idx = np.flatnonzero(ok)
        ok[idx] = accept(cand[idx])
    hits = np.flatnonzero(ok)
    if not len(hits):
        return None
    return tuple(int(c) for c in cand[hits[0]])


# ------------------------------------------------------------------------------- correspondence
def body_box(volume: np.ndarray, threshold: float = BODY_HU, normalized: bool = False) -> Box:
    """Half-open bounding box ``((x0, x1), (y0, y1), (z0, z1))`` of voxels > threshold (HU).

    With ``normalized=True`` the HU threshold is converted to the [0, 1] CT window. A volume with no
    body voxel gives the whole volume.
    """
    v = np.asarray(volume)
    thr = hu_to_unit(threshold) if normalized else threshold
    mask = v > thr
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append((int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, int(v.shape[axis])))
    return tuple(box)  # type: ignore[return-value]


def patient_body_box(volume: np.ndarray, modality: str = "CT") -> Box:
    """The body box used by ``coordinates: body_box`` for a stored (un-normalised) volume: voxels
    > -500 HU for CT, above Otsu's threshold of the volume for other modalities (any intensity scale)."""
    if str(modality).upper() == "CT":
        return body_box(volume, BODY_HU)
    from semgen_ray.discovery.foreground import otsu_threshold

    return body_box(volume, otsu_threshold(np.asarray(volume, dtype=np.float32)))


def map_coordinate(coord: Sequence[int], ref_box: Box, nbr_box: Box,
                   cube: Sequence[int] | None = None) -> tuple[int, int, int]:
    """Map a coordinate from the reference's body box into a neighbour's body box.

    Each axis: ``r = (c - ref0) / (ref1 - ref0)``, ``c' = nbr0 + round(r * (nbr1 - nbr0))``. With
    ``cube`` the cube centre ``c + cube/2`` is mapped and the corner returned. The result may lie
    outside the neighbour's volume; box generation checks bounds.
    """
    out = []
    for a in range(3):
        half = 0.0 if cube is None else cube[a] / 2.0
        (r0, r1), (n0, n1) = ref_box[a], nbr_box[a]
        rel = (coord[a] + half - r0) / max(r1 - r0, 1)
        out.append(round(n0 + rel * (n1 - n0) - half))
    return tuple(out)  # type: ignore[return-value]


def correspond(coord: Sequence[int], mode: str = "voxel", ref_box: Box | None = None,
               nbr_box: Box | None = None, cube: Sequence[int] | None = None) -> tuple[int, int, int]:
    """The neighbour's coordinate: identity for ``voxel``, :func:`map_coordinate` for ``body_box``."""
    if mode == "voxel":
        return tuple(int(c) for c in coord)  # type: ignore[return-value]
    if mode == "body_box":
        if ref_box is None or nbr_box is None:
            raise ValueError("coordinates='body_box' needs the reference's and the neighbour's body boxes")
        return map_coordinate(coord, ref_box, nbr_box, cube)
    raise ValueError(f"unknown coordinate mode {mode!r}: use 'voxel' or 'body_box'")
