"""Flip: random axis flips of input *and* target (Models Genesis, docs/method.md §3.1 step 1).

The reference flips up to 3 times, each while ``random() < 0.4``, along an axis drawn from {0, 1, 2}
of the ``(1, X, Y, Z)`` sample. Axis 0 is the channel axis, so that draw changes nothing: only x and y
are ever flipped, never z. Two flips of one axis cancel, so the parameters are the net flip per
spatial axis. The restoration target is flipped too: apply the same parameters to it
(``Flip().apply(target, params)``, or ``Corruption.target``).
"""

from __future__ import annotations

import numpy as np

from semgen_ray.transforms._operation import RandomOperation


class Flip(RandomOperation):
    """Random flips of rows/columns, applied identically to input and target (docs/method.md §3.1).

    Args:
        rate: each flip, up to ``max_flips``, happens while ``random() < rate`` (0.4).
        max_flips: most flips (3).
        axes: axes of the ``(C, X, Y, Z)`` sample drawn uniformly per flip; 0 (channel) is a no-op,
            as in the reference (default ``(0, 1, 2)``).

    Parameters drawn per sample: ``flip`` (3,) bool, the net flip of spatial axes x, y, z.

    Example:
        >>> x = np.arange(8, dtype=np.float32).reshape(1, 1, 2, 2, 2)
        >>> Flip().apply(x, {"flip": np.array([[True, False, False]])})[0, 0, :, 0, 0]
        array([4., 0.], dtype=float32)
    """

    name = "flip"

    def __init__(self, rate: float = 0.4, max_flips: int = 3, axes=(0, 1, 2)) -> None:
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        if int(max_flips) < 0:
            raise ValueError(f"max_flips must be >= 0, got {max_flips}")
        if not axes or any(a not in (0, 1, 2, 3) for a in axes):
            raise ValueError(f"axes must be axes of the (C, X, Y, Z) sample (0-3), got {axes!r}")
        self.rate, self.max_flips, self.axes = float(rate), int(max_flips), tuple(axes)

    def sample(self, rng: np.random.Generator, shape) -> dict:
        flip = np.zeros(3, dtype=bool)
        for _ in range(self.max_flips):
            if rng.random() >= self.rate:
                break
            axis = self.axes[int(rng.integers(len(self.axes)))]
            if axis > 0:  # axis 0 is the channel axis: flipping a singleton is a no-op
                flip[axis - 1] ^= True
        return {"flip": flip}

    def empty(self, shape) -> dict:
        return {"flip": np.zeros(3, dtype=bool)}

    def _apply(self, x, params: dict):
        """Flip each sample's spatial axes where ``params["flip"]`` (N, 3) is True."""
        xp = self._xp(x)
        flip = np.asarray(params["flip"], dtype=bool).reshape(-1, 3)
        for axis in range(3):
            if not flip[:, axis].any():
                continue
            if flip[:, axis].all():
                x = xp.flip(x, 2 + axis)
                continue
            idx = xp.param(np.flatnonzero(flip[:, axis]))
            x[idx] = xp.flip(x[idx], 2 + axis)
        return x
