"""What every figure of the project shares: matplotlib without a display, and the slice a crop is shown by.

The discovery montages, the training report, the evaluation report and the phantom preview draw
with :func:`pyplot` (the Agg back end: PNG files, no window, works on a head node without a
display) and show a 3D crop by its central axial slice (:func:`axial_slice`). matplotlib is imported
when a figure is drawn, never at import time.
"""

from __future__ import annotations

import numpy as np

__all__ = ["axial_slice", "pyplot"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg back end (unless a back end was chosen already)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def axial_slice(crop) -> np.ndarray:
    """The central axial slice (z = depth // 2) of a ``(x, y, z)`` or ``(1, x, y, z)`` crop, or a 2D
    ``(x, y)`` image as it is, transposed for ``imshow``: rows are y, columns are x.

    Raises:
        ValueError: a crop that is not 2D or 3D (a single channel in front allowed).
    """
    a = np.asarray(crop)
    if a.ndim == 4 and a.shape[0] == 1:  # (1, X, Y, Z) channel-first
        a = a[0]
    if a.ndim == 3:
        a = a[:, :, a.shape[2] // 2]
    if a.ndim != 2:
        raise ValueError(f"a crop must be 2-D or 3-D (x, y, z), got shape {np.shape(crop)}")
    return a.T
