"""The corruption policy: which perturbations run, with which probabilities and sizes (docs/method.md §3).

One frozen, self-validating dataclass, :class:`CorruptionPolicy`, holds every probability and size;
three presets reproduce the reference variants:

========== =================================================================================
``sg``     Semantic Genesis, PyTorch (docs/method.md §3.2; the default): elastic deformation of the
           input, then exactly one of shuffle (5 blocks) / non-linear / in-painting (1 hole,
           noise fill) / out-painting (1 window, noise background), p = 0.25 each; no flips.
``mg``     Models Genesis (docs/method.md §3.1): flip (input and target), then shuffle (p 0.5,
           10,000 blocks), non-linear (p 0.9), painting (p 0.9: in 0.2 with up to 5 holes,
           out 0.8 with up to 5 windows), chained; no elastic deformation.
``sg_keras`` Semantic Genesis, Keras (docs/method.md §3.3): as ``sg`` but constant fills, hole sides
           U{10..20} voxels on all axes, kept window D − U{10..20}.
========== =================================================================================

Sizes are ranges ``(lo, hi)``, both inclusive (the reference draws them with Python ``randint``).
Each bound is either an int (voxels) or a string relative to the cube side ``D`` of the axis,
``"D/k"`` or ``"nD/k"`` = ``floor(n * D / k)`` (the reference's integer division); relative bounds
resolve to at least 1 voxel, so cubes under 10 voxels still get 1-voxel shuffle blocks.

Example:
    >>> p = policy_from_preset("mg", shuffle_rate=0.7)
    >>> p.shuffle_blocks, p.shuffle_rate
    (10000, 0.7)
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from functools import lru_cache

#: The four corruptions, in the order they are applied (and of ``one_of_weights``).
CORRUPTIONS = ("local_pixel_shuffle", "nonlinear_intensity", "in_painting", "out_painting")

_RELATIVE = re.compile(r"^\s*(\d*)\s*D\s*(?:/\s*(\d+))?\s*$")


class PolicyError(ValueError):
    """A corruption policy field is unknown or out of range; the message says which and why."""


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise PolicyError(msg)


def _parse_bound(name: str, spec) -> tuple[int, int] | int:
    """An int (voxels) or ``(n, k)`` for a relative ``"nD/k"`` bound."""
    if isinstance(spec, bool):
        raise PolicyError(f"{name}: a bound must be an int or a string like 'D/6', got {spec!r}")
    if isinstance(spec, int):
        _require(spec >= 0, f"{name}: bounds must be >= 0 voxels, got {spec}")
        return spec
    if isinstance(spec, str):
        m = _RELATIVE.match(spec)
        _require(m is not None, f"{name}: cannot parse bound {spec!r}; use voxels (an int) or 'D', 'D/k', 'nD/k'")
        n, k = int(m.group(1) or 1), int(m.group(2) or 1)
        _require(k >= 1 and n >= 1, f"{name}: bound {spec!r} must have n >= 1 and k >= 1")
        return (n, k)
    raise PolicyError(f"{name}: a bound must be an int or a string like 'D/6', got {spec!r}")


def resolve_bound(spec, side: int) -> int:
    """Voxels of one size bound for a cube side ``side`` (see the module docstring)."""
    parsed = _parse_bound("size", spec)
    if isinstance(parsed, int):
        return parsed
    n, k = parsed
    return max(1, n * side // k)


def resolve_range(spec, shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per-axis inclusive ``(lo, hi)`` voxels of a size range for a cube ``shape`` (X, Y, Z)."""
    return _resolve_range(tuple(spec), tuple(int(d) for d in shape))


@lru_cache(maxsize=256)
def _resolve_range(spec: tuple, shape: tuple) -> tuple[tuple[int, ...], tuple[int, ...]]:
    # cached: every sample of every batch asks for the same few ranges, and parsing costs ~40 µs
    lo = tuple(resolve_bound(spec[0], d) for d in shape)
    hi = tuple(resolve_bound(spec[1], d) for d in shape)
    return lo, hi


def _size_range(name: str, value) -> tuple:
    _require(isinstance(value, (tuple, list)) and len(value) == 2,
             f"{name} must be a pair (lo, hi) of ints or 'D/k' strings, got {value!r}")
    lo, hi = (_parse_bound(name, v) for v in value)
    if isinstance(lo, int) and isinstance(hi, int):
        _require(lo <= hi, f"{name}: lo must be <= hi, got {value!r}")
    return tuple(value)


def _prob(name: str, value) -> float:
    _require(isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0,
             f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _count(name: str, value, minimum: int) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
             f"{name} must be an int >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class CorruptionPolicy:
    """Every switch, probability and size of the self-restoration corruptions (docs/method.md §3).

    The defaults are the ``sg`` preset (docs/method.md §3.2). The input is transformed in this order:
    flip → elastic deformation → local pixel shuffle → non-linear intensity → in-painting →
    out-painting. The restoration target is the (flipped) original: flips apply to input and target,
    everything else only to the input.

    Args:
        name: a label recorded with the parameters (the preset name, or ``"custom"``).
        flip: flip input and target (Models Genesis, docs/method.md §3.1 step 1).
        flip_rate: each flip, up to ``flip_max`` of them, happens while ``random() < flip_rate``.
        flip_max: most flips per sample.
        flip_axes: axes of the ``(C, X, Y, Z)`` sample drawn uniformly for each flip, as the reference
            draws them: 0 is the channel axis (a no-op), so ``(0, 1, 2)`` flips x or y with
            probability 1/3 each and never z.
        elastic: elastically deform the input (Semantic Genesis, docs/method.md §3.2 step 2).
        elastic_alpha: displacement scale α (the reference's 991).
        elastic_sigma: Gaussian smoothing σ of the displacement noise in voxels (8).
        elastic_axes: spatial axes displaced (0 = x, 1 = y, 2 = z); the reference moves x and y.
        mode: ``"one_of"``: exactly one corruption per sample, drawn with ``one_of_weights``
            (Semantic Genesis); ``"chain"``: shuffle, non-linear and painting each with its own
            probability, in that order (Models Genesis).
        one_of_weights: relative weights of (shuffle, non-linear, in-painting, out-painting).
        shuffle_rate: chain mode: probability of local pixel shuffling (0.5).
        nonlinear_rate: chain mode: probability of the non-linear intensity map (0.9).
        paint_rate: chain mode: probability of painting (0.9) ...
        inpaint_rate: ... and of in-painting rather than out-painting when painting (0.2).
        shuffle_blocks: blocks per shuffle (10,000 Models Genesis, 5 Semantic Genesis).
        shuffle_block_size: block side per axis, inclusive (``(1, "D/10")``).
        nonlinear_invert_rate: probability of the inverted (decreasing) Bézier map (0.5).
        inpaint_holes: most holes.
        inpaint_hole_rate: each hole, the first included, is cut while ``random() < rate``
            (0.95 Models Genesis; 1.0 with one hole = exactly one hole).
        inpaint_size: hole side per axis, inclusive (``("D/6", "D/3")``; Keras ``(10, 20)``).
        outpaint_windows: most kept windows (the first is always kept).
        outpaint_window_rate: each window after the first is kept while ``random() < rate`` (0.95).
        outpaint_shrink: a kept window's side is D − U{lo..hi} per axis (``("3D/7", "4D/7")``;
            Keras ``(10, 20)``).
        paint_margin: holes and windows start at U{margin .. D − size − margin} (3).
        paint_fill: ``"noise"`` (i.i.d. U[0, 1) voxels) or ``"constant"`` (one U[0, 1) value per
            hole / per background, Keras).

    Raises:
        PolicyError: a field is out of range (the message names it).
    """

    name: str = "custom"
    flip: bool = False
    flip_rate: float = 0.4
    flip_max: int = 3
    flip_axes: tuple[int, ...] = (0, 1, 2)
    elastic: bool = True
    elastic_alpha: float = 991.0
    elastic_sigma: float = 8.0
    elastic_axes: tuple[int, ...] = (0, 1)
    mode: str = "one_of"
    one_of_weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    shuffle_rate: float = 0.5
    nonlinear_rate: float = 0.9
    paint_rate: float = 0.9
    inpaint_rate: float = 0.2
    shuffle_blocks: int = 5
    shuffle_block_size: tuple = (1, "D/10")
    nonlinear_invert_rate: float = 0.5
    inpaint_holes: int = 1
    inpaint_hole_rate: float = 1.0
    inpaint_size: tuple = ("D/6", "D/3")
    outpaint_windows: int = 1
    outpaint_window_rate: float = 0.95
    outpaint_shrink: tuple = ("3D/7", "4D/7")
    paint_margin: int = 3
    paint_fill: str = "noise"

    def __post_init__(self) -> None:
        def put(field: str, value) -> None:
            object.__setattr__(self, field, value)

        _require(isinstance(self.name, str) and bool(self.name), f"name must be a non-empty string, got {self.name!r}")
        for field in ("flip", "elastic"):
            value = getattr(self, field)
            _require(isinstance(value, bool), f"{field} must be True or False, got {value!r}")
        for field in ("flip_rate", "shuffle_rate", "nonlinear_rate", "paint_rate", "inpaint_rate",
                      "nonlinear_invert_rate", "inpaint_hole_rate", "outpaint_window_rate"):
            put(field, _prob(field, getattr(self, field)))
        _count("flip_max", self.flip_max, 0)
        _count("shuffle_blocks", self.shuffle_blocks, 0)
        _require(self.shuffle_blocks <= 1_000_000, f"shuffle_blocks must be <= 1,000,000, got {self.shuffle_blocks}")
        _count("inpaint_holes", self.inpaint_holes, 0)
        _count("outpaint_windows", self.outpaint_windows, 1)
        _count("paint_margin", self.paint_margin, 0)
        _require(isinstance(self.flip_axes, (tuple, list)) and len(self.flip_axes) > 0
                 and all(a in (0, 1, 2, 3) and not isinstance(a, bool) for a in self.flip_axes),
                 f"flip_axes must be a non-empty list of axes of the (C, X, Y, Z) sample (0-3), got {self.flip_axes!r}")
        put("flip_axes", tuple(self.flip_axes))
        _require(isinstance(self.elastic_axes, (tuple, list)) and len(self.elastic_axes) > 0
                 and len(set(self.elastic_axes)) == len(self.elastic_axes)
                 and all(a in (0, 1, 2) and not isinstance(a, bool) for a in self.elastic_axes),
                 f"elastic_axes must be distinct spatial axes (0 = x, 1 = y, 2 = z), got {self.elastic_axes!r}")
        put("elastic_axes", tuple(sorted(self.elastic_axes)))
        for field in ("elastic_alpha", "elastic_sigma"):
            v = getattr(self, field)
            _require(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
                     f"{field} must be a number >= 0, got {v!r}")
            put(field, float(v))
        _require(self.elastic_sigma > 0, f"elastic_sigma must be > 0, got {self.elastic_sigma}")
        _require(self.mode in ("one_of", "chain"), f"mode must be 'one_of' or 'chain', got {self.mode!r}")
        w = self.one_of_weights
        _require(isinstance(w, (tuple, list)) and len(w) == 4
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in w)
                 and sum(w) > 0,
                 f"one_of_weights must be 4 weights >= 0 (shuffle, nonlinear, inpaint, outpaint) with a "
                 f"positive sum, got {w!r}")
        put("one_of_weights", tuple(float(v) for v in w))
        for field in ("shuffle_block_size", "inpaint_size", "outpaint_shrink"):
            put(field, _size_range(field, getattr(self, field)))
        lo = self.shuffle_block_size[0]
        _require(not isinstance(lo, int) or lo >= 1, f"shuffle_block_size: blocks need >= 1 voxel, got {lo}")
        _require(self.paint_fill in ("noise", "constant"),
                 f"paint_fill must be 'noise' or 'constant', got {self.paint_fill!r}")

    def probabilities(self) -> dict[str, float]:
        """Probability that each corruption is applied to a sample (flip/elastic not included)."""
        if self.mode == "one_of":
            total = sum(self.one_of_weights)
            return {n: w / total for n, w in zip(CORRUPTIONS, self.one_of_weights)}
        return {"local_pixel_shuffle": self.shuffle_rate, "nonlinear_intensity": self.nonlinear_rate,
                "in_painting": self.paint_rate * self.inpaint_rate,
                "out_painting": self.paint_rate * (1.0 - self.inpaint_rate)}

    def to_dict(self) -> dict:
        """Plain fields (tuples as lists), e.g. for a run's config record."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}


_SG = CorruptionPolicy(name="sg")

#: The reference variants (docs/method.md §3.1-3.3).
PRESETS: dict[str, CorruptionPolicy] = {
    "sg": _SG,
    "mg": CorruptionPolicy(
        name="mg", flip=True, elastic=False, mode="chain", shuffle_blocks=10_000,
        inpaint_holes=5, inpaint_hole_rate=0.95, outpaint_windows=5, outpaint_window_rate=0.95),
    "sg_keras": dataclasses.replace(
        _SG, name="sg_keras", inpaint_size=(10, 20), outpaint_shrink=(10, 20), paint_fill="constant"),
}


def policy_from_preset(preset: str | CorruptionPolicy = "sg", **overrides) -> CorruptionPolicy:
    """A preset (by name, or a policy) with fields overridden.

    Args:
        preset: ``"sg"``, ``"mg"``, ``"sg_keras"`` or a :class:`CorruptionPolicy`.
        **overrides: policy fields to replace (validated).

    Raises:
        PolicyError: unknown preset or field, or an invalid value.
    """
    if isinstance(preset, CorruptionPolicy):
        base = preset
    elif isinstance(preset, str) and preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise PolicyError(f"unknown corruption preset {preset!r}; choose one of {sorted(PRESETS)} "
                          "or pass a CorruptionPolicy")
    if not overrides:
        return base
    fields = {f.name for f in dataclasses.fields(CorruptionPolicy)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        hints = {u: difflib.get_close_matches(u, fields, n=1) for u in unknown}
        said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items())
        raise PolicyError(f"unknown corruption policy field(s) {said}; valid fields: {sorted(fields)}")
    if "name" not in overrides and base.name != "custom":
        overrides = {**overrides, "name": f"{base.name}+custom"}
    return dataclasses.replace(base, **overrides)


@lru_cache(maxsize=64)
def check_geometry(policy: CorruptionPolicy, shape: tuple[int, int, int]) -> None:
    """Raise :class:`PolicyError` when ``policy``'s sizes cannot be drawn in a cube of ``shape``."""
    _require(len(shape) == 3 and all(isinstance(d, int) and 1 <= d <= 32767 for d in shape),
             f"cube shape must be 3 sides in 1..32767 (X, Y, Z), got {shape!r}")
    used = {name for name, p in policy.probabilities().items() if p > 0}
    lo, hi = resolve_range(policy.shuffle_block_size, shape)
    for a, d in enumerate(shape if "local_pixel_shuffle" in used else ()):
        if d == 1:  # a 2D image's singleton axis: spanned whole (transforms._boxes.flat_axes)
            continue
        _require(1 <= lo[a] <= hi[a] <= d,
                 f"shuffle_block_size {policy.shuffle_block_size!r} resolves to {lo[a]}..{hi[a]} voxels on "
                 f"axis {a} of a {shape} cube; need 1 <= lo <= hi <= {d}")
    m = policy.paint_margin
    lo, hi = resolve_range(policy.inpaint_size, shape)
    for a, d in enumerate(shape if "in_painting" in used and policy.inpaint_holes else ()):
        if d == 1:
            continue
        _require(1 <= lo[a] <= hi[a] and hi[a] <= d - 2 * m,
                 f"inpaint_size {policy.inpaint_size!r} resolves to {lo[a]}..{hi[a]} voxels on axis {a} of a "
                 f"{shape} cube; with paint_margin {m} holes need 1 <= lo <= hi <= {d - 2 * m}: use smaller "
                 "sizes (e.g. relative ones like 'D/6') or a larger cube")
    lo, hi = resolve_range(policy.outpaint_shrink, shape)
    for a, d in enumerate(shape if "out_painting" in used else ()):
        if d == 1:
            continue
        _require(lo[a] <= hi[a] and d - hi[a] >= 1 and d - lo[a] <= d - 2 * m,
                 f"outpaint_shrink {policy.outpaint_shrink!r} resolves to {lo[a]}..{hi[a]} voxels on axis {a} "
                 f"of a {shape} cube, i.e. kept windows of {d - hi[a]}..{d - lo[a]}; with paint_margin {m} "
                 f"they need 1 <= size <= {d - 2 * m}: use a larger cube or other sizes")
