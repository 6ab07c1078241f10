"""Guessing CT vs MR from voxel values, for formats that do not say (NIfTI, MetaImage, NRRD)."""

from __future__ import annotations

import numpy as np

AIR_HU = -500.0
"""Values at or below this are taken as air / outside-the-body in Hounsfield units."""
MIN_AIR_FRACTION = 0.01
"""CT needs at least this fraction of voxels at or below ``AIR_HU``."""


def detect_modality(array: np.ndarray) -> str:
    """Return "CT" when the values look like Hounsfield units, else "MR".

    The rule: a CT scan always contains air (about -1000 HU around the body, in the lungs and bowel)
    or scanner padding (-2048, -3024) outside the field of view, so its minimum is at most -500 and at
    least 1 % of voxels are at or below -500. MR magnitude images are non-negative (or slightly
    negative after filtering). The rule can be fooled by MR phase maps or by CT already normalised to
    [0, 1]; pass ``modality=`` to the reader for those. An empty array gives "OT".

    The test runs on every second voxel along each axis, which is plenty for the fraction.
    """
    arr = np.asarray(array)
    if arr.size == 0:
        return "OT"
    sample = arr[::2, ::2, ::2] if arr.ndim == 3 else arr
    if sample.min() > AIR_HU:
        return "MR"
    return "CT" if np.count_nonzero(sample <= AIR_HU) >= MIN_AIR_FRACTION * sample.size else "MR"
