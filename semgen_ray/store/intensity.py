"""Intensity windowing applied when volumes are read (the store keeps raw HU / scanner units).

Semantic Genesis clips CT to the HU window [-1000, 1000] and maps it linearly to [0, 1]
(SPEC.md §1.1); Models Genesis advises clipping MR to [0, 4000] for the same mapping (SPEC.md §6.2).
Keeping raw values on disk lets one store serve every window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IntensityWindow:
    """Clip to [lo, hi] and map linearly onto [0, 1] (float32)."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not np.isfinite([self.lo, self.hi]).all() or self.hi <= self.lo:
            raise ValueError(f"intensity window needs finite lo < hi, got [{self.lo}, {self.hi}]")

    def apply(self, array: np.ndarray) -> np.ndarray:
        out = np.asarray(array, dtype=np.float32)
        scale = np.float32(1.0 / (self.hi - self.lo))
        out = (out - np.float32(self.lo)) * scale
        return np.clip(out, 0.0, 1.0, out=out)


CT_WINDOW = IntensityWindow(-1000.0, 1000.0)
MR_WINDOW = IntensityWindow(0.0, 4000.0)


def default_window(modality: str) -> IntensityWindow:
    """The reference window for a modality: CT HU [-1000, 1000]; MR and other [0, 4000]."""
    return CT_WINDOW if modality == "CT" else MR_WINDOW
