"""Sanity checks that reject a volume with a one-line reason before it reaches the store."""

from __future__ import annotations

import numpy as np

from semgen_ray.config.schema import IngestConfig
from semgen_ray.io.volume import ReadError, Volume


def check_volume(volume: Volume, config: IngestConfig) -> None:
    """Raise :class:`ReadError` when ``volume`` is not a usable 3D scan.

    Rejected: not 3D, empty or thinner than ``min_extent`` along an axis, more than ``max_voxels``,
    non-finite or absurd spacing, NaN/inf voxels, a constant image, CT values outside int16.
    """
    a = volume.array
    if a.ndim != 3:
        raise ReadError(f"image is {a.ndim}D with shape {tuple(a.shape)}; a 3D volume is needed")
    if a.size == 0:
        raise ReadError(f"image is empty (shape {tuple(a.shape)})")
    if min(a.shape) < config.min_extent:
        raise ReadError(
            f"image shape {tuple(a.shape)} has fewer than {config.min_extent} voxels along an axis "
            "(ingest.min_extent)"
        )
    if a.size > config.max_voxels:
        raise ReadError(f"image of {a.size} voxels exceeds ingest.max_voxels={config.max_voxels}")
    sp = np.asarray(volume.spacing, dtype=np.float64)
    if not np.isfinite(sp).all() or (sp <= 0).any() or (sp > config.max_spacing_mm).any():
        raise ReadError(
            f"spacing {tuple(volume.spacing)} mm is not positive and <= {config.max_spacing_mm} mm "
            "(ingest.max_spacing_mm; a broken header?)"
        )
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ReadError(f"pixel type {a.dtype} is not a real scalar")
    if np.issubdtype(a.dtype, np.floating):
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ReadError(f"{bad} of {a.size} voxels are NaN or infinite")
    lo, hi = a.min(), a.max()
    if lo == hi:
        raise ReadError(f"image is constant (every voxel is {lo}): nothing to learn from")
    if volume.modality == "CT" and (lo < -32768 or hi > 32767):
        raise ReadError(f"CT values span [{lo}, {hi}], outside the int16 range of Hounsfield units")


def check_image(image, config: IngestConfig) -> None:
    """Raise :class:`ReadError` when a 2D ``image`` (:class:`~semgen_ray.io.image2d.Image2D`) is not
    usable: thinner than ``min_extent`` pixels, more than ``max_voxels``, spacing above
    ``max_spacing_mm``, non-finite or constant values."""
    a = np.asarray(image.array)
    if min(a.shape) < config.min_extent:
        raise ReadError(f"image shape {tuple(a.shape)} has fewer than {config.min_extent} pixels along an axis "
                        "(ingest.min_extent)")
    if a.size > config.max_voxels:
        raise ReadError(f"image of {a.size} pixels exceeds ingest.max_voxels={config.max_voxels}")
    if max(image.pixel_spacing) > config.max_spacing_mm:
        raise ReadError(f"pixel spacing {tuple(image.pixel_spacing)} mm is above ingest.max_spacing_mm="
                        f"{config.max_spacing_mm} (a broken header?)")
    if not np.isfinite(a).all():
        raise ReadError("the image has NaN or infinite pixels")
    if a.min() == a.max():
        raise ReadError(f"image is constant (every pixel is {a.min()}): nothing to learn from")
