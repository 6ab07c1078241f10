"""The voxel grid a phantom is rendered on: shape, spacing and world coordinates of voxel centres."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Field of view (mm, x y z) of a phantom when no spacing is given: the default 256×256×128 grid has
#: a spacing of 1.40625 × 1.40625 × 2.5 mm.
DEFAULT_FOV_MM = (360.0, 360.0, 320.0)


def default_spacing(shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """Spacing (mm) that keeps the default field of view for any grid shape."""
    return tuple(float(f / n) for f, n in zip(DEFAULT_FOV_MM, shape))


@dataclass(frozen=True)
class Grid:
    """Voxel grid centred on the scanner isocentre (world LPS mm).

    Voxel (i, j, k) has its centre at ``origin + (i, j, k) * spacing``; the grid is centred, so the
    origin is ``-(n - 1) / 2 * spacing`` per axis.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be 3 positive ints, got {self.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"spacing must be 3 positive floats, got {self.spacing}")

    @property
    def origin(self) -> tuple[float, float, float]:
        return tuple(-(n - 1) / 2.0 * s for n, s in zip(self.shape, self.spacing))

    def axis(self, dim: int) -> np.ndarray:
        """World coordinates (mm) of the voxel centres along one axis (float64)."""
        return self.origin[dim] + np.arange(self.shape[dim]) * self.spacing[dim]

    @property
    def voxel_size(self) -> float:
        """Edge of the cube with the voxel's volume (mm); the scale of partial-volume blending."""
        return float(np.prod(self.spacing) ** (1.0 / 3.0))

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels whose centres lie in the world box [lo, hi]; None if empty."""
        out = []
        for d in range(3):
            f0 = np.clip((lo[d] - self.origin[d]) / self.spacing[d], -1.0, self.shape[d] + 1.0)
            f1 = np.clip((hi[d] - self.origin[d]) / self.spacing[d], -1.0, self.shape[d] + 1.0)
            i0 = max(int(np.ceil(f0)), 0)
            i1 = min(int(np.floor(f1)) + 1, self.shape[d])
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)

    def box_coords(self, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates of a box's voxels as broadcastable (n,1,1), (1,n,1), (1,1,n) arrays."""
        x = self.axis(0)[box[0]][:, None, None]
        y = self.axis(1)[box[1]][None, :, None]
        z = self.axis(2)[box[2]][None, None, :]
        return x, y, z

    def to_voxel(self, pts) -> np.ndarray:
        """World points (N, 3) → fractional voxel indices (N, 3)."""
        return (np.asarray(pts, dtype=np.float64) - np.array(self.origin)) / np.array(self.spacing)
