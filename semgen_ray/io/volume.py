"""The in-memory image every reader returns and every writer takes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MODALITIES = ("CT", "MR", "OT")


class ReadError(Exception):
    """A source could not be turned into a valid volume; ``str(err)`` is a one-line reason."""


@dataclass
class Volume:
    """A 3D image in semgen_ray's canonical layout.

    Attributes:
        array: voxel values, shape (X, Y, Z), axes in canonical LPS order (x → patient Left,
            y → Posterior, z → Superior). CT in Hounsfield units (any numeric dtype here; the store
            keeps int16), MR in scanner units.
        spacing: voxel size in mm along (x, y, z).
        origin: world (LPS, mm) position of voxel (0, 0, 0).
        direction: 3×3 row-major direction cosines, flattened to 9 floats; column j is the world
            direction of array axis j (the ITK / SimpleITK convention). The identity after
            reorientation unless the scan is oblique.
        modality: "CT", "MR" or "OT" (other / unknown).
        source: where it came from (a path or URI).
        warnings: one-line notes about anything unusual the reader handled (gantry tilt, uneven
            slice spacing, …).
        extra: reader-specific provenance (DICOM series UID, …); JSON-serialisable values only.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    modality: str = "OT"
    source: str = ""
    warnings: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = tuple(float(d) for d in self.direction)
        if len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise ValueError("Volume needs 3 spacings, 3 origin coordinates and 9 direction cosines")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)
