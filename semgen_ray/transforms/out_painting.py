"""Out-painting: keep random windows of the cube, replace the rest (docs/method.md §3.1 step 4, §3.2, §3.3).

Reference (Models Genesis): start from a cube of i.i.d. U[0, 1) noise; paste back one window of the
input with side D − U{3D/7..4D/7} per axis (x, y 28–37 and z 14–19 for 64×64×32) at corner
U{3..D−side−3}; then up to 4 more windows, each while ``random() < 0.95``. Semantic Genesis (PyTorch)
keeps exactly one window; the Keras variant one window of side D − U{10..20} on a constant U[0, 1)
background.

The background noise is a counter-based hash of (per-sample key, voxel) (:mod:`._backend`), the
same on numpy and torch.
"""

from __future__ import annotations

import numpy as np

from semgen_ray.transforms._backend import uniform, voxel_counter
from semgen_ray.transforms._boxes import box_mask, draw_box
from semgen_ray.transforms._operation import RandomOperation, chunks
from semgen_ray.transforms.policy import resolve_range


class OutPainting(RandomOperation):
    """Keep random windows, fill the outside with noise or a constant (docs/method.md §3.1 step 4).

    Args:
        max_windows: most kept windows (5 Models Genesis, 1 Semantic Genesis); the first is always kept.
        window_rate: each further window is kept while ``random() < window_rate`` (0.95).
        shrink: a window's side is D − U{lo..hi} per axis (``("3D/7", "4D/7")``; Keras ``(10, 20)``).
        margin: corners are drawn in U{margin .. D − side − margin} (3).
        fill: ``"noise"`` (i.i.d. U[0, 1) background) or ``"constant"`` (one U[0, 1) value).

    Parameters drawn per sample: ``boxes`` (max_windows, 6) int16 ``(x0, y0, z0, sx, sy, sz)``, unused
    windows with zero sides; ``value`` () float32, the constant; ``key`` () int32, the noise.

    Example:
        >>> x = np.full((1, 1, 16, 16, 16), 2.0, np.float32)
        >>> y, p = OutPainting(max_windows=1)(x, seed=0)
        >>> int((y == 2.0).sum()) == int(np.prod(p["boxes"][0, 0, 3:])) and bool((y < 1).sum() > 0)
        True
    """

    name = "out_painting"

    def __init__(self, max_windows: int = 5, window_rate: float = 0.95, shrink=("3D/7", "4D/7"),
                 margin: int = 3, fill: str = "noise") -> None:
        if int(max_windows) < 1 or not 0.0 <= float(window_rate) <= 1.0 or int(margin) < 0:
            raise ValueError(f"need max_windows >= 1, window_rate in [0, 1], margin >= 0; got {max_windows}, "
                             f"{window_rate}, {margin}")
        if fill not in ("noise", "constant"):
            raise ValueError(f"fill must be 'noise' or 'constant', got {fill!r}")
        self.max_windows, self.window_rate, self.shrink = int(max_windows), float(window_rate), tuple(shrink)
        self.margin, self.fill = int(margin), fill

    def sample(self, rng: np.random.Generator, shape) -> dict:
        lo, hi = resolve_range(self.shrink, shape)
        if any(l_ > h or d - h < 1 or d - l_ > d - 2 * self.margin for l_, h, d in zip(lo, hi, shape) if d > 1):
            raise ValueError(f"windows of side D - {lo}..{hi} do not fit a {tuple(shape)} cube with margin "
                             f"{self.margin}")
        boxes = np.zeros((self.max_windows, 6), dtype=np.int16)
        boxes[0] = draw_box(rng, shape, lo, hi, self.margin, shrink=True)
        for w in range(1, self.max_windows):
            if rng.random() >= self.window_rate:
                break
            boxes[w] = draw_box(rng, shape, lo, hi, self.margin, shrink=True)
        value = np.float32(rng.random(dtype=np.float32))
        key = np.int32(rng.integers(-(1 << 31), 1 << 31))
        return {"boxes": boxes, "value": value, "key": key}

    def empty(self, shape) -> dict:
        return {"boxes": np.zeros((self.max_windows, 6), dtype=np.int16), "value": np.float32(0),
                "key": np.int32(0)}

    def background(self, params: dict, batch_shape, xp):
        """The fill outside the windows: (N, 1, X, Y, Z) noise, or (N, 1, 1, 1, 1) constants."""
        n, shape = int(batch_shape[0]), tuple(int(s) for s in batch_shape[2:])
        if self.fill == "constant":
            return xp.param(np.asarray(params["value"], dtype=np.float32).reshape(n, 1, 1, 1, 1), xp.float32)
        nvox = shape[0] * shape[1] * shape[2]
        keys = np.asarray(params["key"], dtype=np.int32).reshape(n, 1)
        if xp.name == "numpy":
            out = np.empty((n, nvox), dtype=np.float32)
            for sl in chunks(n, nvox):                 # cache blocking (see _operation.chunks)
                out[sl] = uniform(xp, voxel_counter(nvox), keys[sl])
            return out.reshape(n, 1, *shape)
        return uniform(xp, xp.arange(nvox, xp.int32).reshape(1, nvox), xp.param(keys)).reshape(n, 1, *shape)

    def check(self, batch, params: dict) -> None:
        super().check(batch, params)
        boxes = np.asarray(params["boxes"])
        if boxes.ndim != 3 or boxes.shape[2] != 6:
            raise ValueError(f"boxes must be (N, W, 6), got {boxes.shape}")

    def _apply(self, x, params: dict):
        """Keep the union of each sample's windows, fill the rest."""
        xp = self._xp(x)
        shape = tuple(int(s) for s in x.shape[2:])
        boxes = np.asarray(params["boxes"])
        n, c = int(x.shape[0]), int(x.shape[1])
        keep = None
        for w in range(boxes.shape[1]):
            if not boxes[:, w, 3:].all(axis=1).any():
                continue
            inside = box_mask(boxes[:, w], shape, xp)
            keep = inside if keep is None else keep | inside
        if keep is None:
            keep = xp.full((n, *shape), False, xp.bool_)
        keep = keep.reshape(n, 1, *shape)
        fill = self.background(params, x.shape, xp)
        if xp.name != "numpy":
            return xp.where(keep, x, fill)
        if self.fill == "constant" or c > 1:
            np.copyto(x, fill, where=~keep)
            return x
        np.copyto(fill, x, where=keep)                 # the fresh noise array becomes the output
        return fill
