"""The in-memory 2D image (a radiograph) every 2D reader returns (docs/method.md, Semantic Genesis 2D)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Modalities of 2D images: DICOM's computed and digital radiography, "XR" for a radiograph from a
#: format without a modality (PNG, JPEG, NIfTI) when the user says so, "OT" when nobody does.
MODALITIES_2D = ("CR", "DX", "XR", "OT")


@dataclass
class Image2D:
    """A 2D image as it is displayed.

    Attributes:
        array: (rows, columns) float32 in [0, 1], higher is brighter (on a radiograph, more
            attenuation): the display window (VOI) applied and MONOCHROME1 inverted for DICOM, the
            full bit range for PNG and JPEG, the minimum-maximum range for NIfTI.
        pixel_spacing: (between rows, between columns) in mm; (1, 1) with a warning when the file
            does not say.
        modality: one of :data:`MODALITIES_2D`.
        source: where it came from.
        warnings: one-line notes on what the reader handled (no spacing, colour channels, ...).
        extra: reader-specific provenance (bits, photometric interpretation, window, UIDs).
    """

    array: np.ndarray
    pixel_spacing: tuple[float, float]
    modality: str = "OT"
    source: str = ""
    warnings: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pixel_spacing = tuple(float(s) for s in self.pixel_spacing)
        if self.array.ndim != 2 or 0 in self.array.shape:
            raise ValueError(f"an Image2D needs a non-empty (rows, columns) array, got shape {self.array.shape}")
        if len(self.pixel_spacing) != 2 or not all(np.isfinite(s) and s > 0 for s in self.pixel_spacing):
            raise ValueError(f"pixel_spacing must be 2 finite positive numbers, got {self.pixel_spacing}")
        if self.modality not in MODALITIES_2D:
            raise ValueError(f"modality must be one of {MODALITIES_2D}, got {self.modality!r}")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.array.shape)


__all__ = ["MODALITIES_2D", "Image2D"]
