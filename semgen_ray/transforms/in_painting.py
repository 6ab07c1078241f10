"""In-painting: cut random holes and fill them (docs/method.md §3.1 step 4, §3.2, §3.3).

Reference (Models Genesis): up to 5 holes, each (the first included) cut while ``random() < 0.95``;
side per axis U{D/6..D/3} (x, y 10–21 and z 5–10 for 64×64×32), corner U{3..D−side−3}; each hole is
filled with fresh i.i.d. U[0, 1) noise (a later hole overwrites an earlier one). Semantic Genesis
(PyTorch) cuts exactly one such hole; the Keras variant one hole with sides U{10..20} on all axes,
filled with one constant U[0, 1) value.

The noise is a counter-based hash of (per-sample key, hole, voxel) (:mod:`._backend`), so it is the
same on numpy and torch and needs no per-voxel parameters; it is evaluated only inside the holes.
"""

from __future__ import annotations

import numpy as np

from semgen_ray.transforms._backend import uniform
from semgen_ray.transforms._boxes import box_mask, draw_box
from semgen_ray.transforms._operation import RandomOperation
from semgen_ray.transforms.policy import resolve_range


class InPainting(RandomOperation):
    """Fill random boxes with noise or a constant (docs/method.md §3.1 step 4).

    Args:
        max_holes: most holes (5 Models Genesis, 1 Semantic Genesis).
        hole_rate: each hole, the first included, is cut while ``random() < hole_rate``
            (0.95 Models Genesis; 1.0 = always ``max_holes`` holes).
        size: inclusive hole side range per axis (``("D/6", "D/3")``; Keras ``(10, 20)``).
        margin: corners are drawn in U{margin .. D − side − margin} (3).
        fill: ``"noise"`` (i.i.d. U[0, 1) per voxel) or ``"constant"`` (one U[0, 1) value per hole).

    Parameters drawn per sample: ``boxes`` (max_holes, 6) int16 ``(x0, y0, z0, sx, sy, sz)``, unused
    holes with zero sides; ``values`` (max_holes,) float32, the constants; ``key`` () int32, the noise.

    Example:
        >>> x = np.zeros((1, 1, 16, 16, 16), np.float32)
        >>> y, p = InPainting(max_holes=1, hole_rate=1.0)(x, seed=0)
        >>> int((y != 0).sum()) == int(np.prod(p["boxes"][0, 0, 3:]))
        True
    """

    name = "in_painting"

    def __init__(self, max_holes: int = 5, hole_rate: float = 0.95, size=("D/6", "D/3"), margin: int = 3,
                 fill: str = "noise") -> None:
        if int(max_holes) < 0 or not 0.0 <= float(hole_rate) <= 1.0 or int(margin) < 0:
            raise ValueError(f"need max_holes >= 0, hole_rate in [0, 1], margin >= 0; got {max_holes}, "
                             f"{hole_rate}, {margin}")
        if fill not in ("noise", "constant"):
            raise ValueError(f"fill must be 'noise' or 'constant', got {fill!r}")
        self.max_holes, self.hole_rate, self.size = int(max_holes), float(hole_rate), tuple(size)
        self.margin, self.fill = int(margin), fill

    def sample(self, rng: np.random.Generator, shape) -> dict:
        lo, hi = resolve_range(self.size, shape)
        if any(h > d - 2 * self.margin or l_ < 1 or l_ > h for l_, h, d in zip(lo, hi, shape) if d > 1):
            raise ValueError(f"hole sides {lo}..{hi} do not fit a {tuple(shape)} cube with margin {self.margin}")
        boxes = np.zeros((self.max_holes, 6), dtype=np.int16)
        for h in range(self.max_holes):
            if rng.random() >= self.hole_rate:
                break
            boxes[h] = draw_box(rng, shape, lo, hi, self.margin)
        values = rng.random(self.max_holes, dtype=np.float32)
        key = np.int32(rng.integers(-(1 << 31), 1 << 31))
        return {"boxes": boxes, "values": values, "key": key}

    def empty(self, shape) -> dict:
        return {"boxes": np.zeros((self.max_holes, 6), dtype=np.int16),
                "values": np.zeros(self.max_holes, dtype=np.float32), "key": np.int32(0)}

    def check(self, batch, params: dict) -> None:
        super().check(batch, params)
        boxes = np.asarray(params["boxes"])
        if boxes.ndim != 3 or boxes.shape[2] != 6:
            raise ValueError(f"boxes must be (N, H, 6), got {boxes.shape}")

    def _apply(self, x, params: dict):
        """Fill each sample's holes; later holes overwrite earlier ones (``x`` is overwritten)."""
        xp = self._xp(x)
        shape = tuple(int(s) for s in x.shape[2:])
        boxes = np.asarray(params["boxes"])
        n, c = int(x.shape[0]), int(x.shape[1])
        nvox = shape[0] * shape[1] * shape[2]
        owner = None  # index of the last hole covering each voxel, -1 outside
        for h in range(boxes.shape[1]):
            if not boxes[:, h, 3:].all(axis=1).any():
                continue
            inside = box_mask(boxes[:, h], shape, xp)
            if owner is None:
                owner = xp.full((n, *shape), -1, xp.int8)
            if xp.name == "numpy":
                np.copyto(owner, np.int8(h), where=inside)
            else:
                owner.masked_fill_(inside, h)
        if owner is None:
            return x
        flat_owner = owner.reshape(-1)
        where = xp.nonzero(flat_owner >= 0)                   # (sample, voxel) positions in holes
        hole = xp.astype(flat_owner[where], xp.int64)
        sample = where // nvox
        voxel = where - sample * nvox
        if self.fill == "noise":
            key = xp.param(np.asarray(params["key"], dtype=np.int32))[sample]
            fill = uniform(xp, hole * nvox + voxel, key)
        else:
            values = xp.param(np.asarray(params["values"], dtype=np.float32), xp.float32)
            fill = values[sample, hole]
        flat = x.reshape(n, c, nvox)
        for ch in range(c):  # channels share the holes and the fill
            flat[sample, ch, voxel] = fill
        return x
