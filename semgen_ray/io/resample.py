"""Resampling a volume to a target voxel spacing, keeping its physical extent.

The new grid covers the same field of view: the shape along each axis is
``max(1, round(shape * spacing / target))``, the voxel *edges* of old and new grid start at the same
place, and every new voxel centre is interpolated from the old grid (voxel centres at
``(q + 0.5) * target - 0.5 * spacing`` from the old first centre). Since the grid is axis-aligned
the work is one separable ``scipy.ndimage.affine_transform`` with a diagonal matrix: no coordinate
arrays, no Python loops. ``order=0`` (nearest) is for label maps: labels keep their values.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from semgen_ray.io.volume import Volume


def resampled_shape(shape, spacing, target_spacing) -> tuple[int, int, int]:
    """Grid size that covers the same extent as ``shape`` × ``spacing`` at ``target_spacing``."""
    shape = np.asarray(shape, dtype=np.float64)
    ratio = np.asarray(spacing, dtype=np.float64) / np.asarray(target_spacing, dtype=np.float64)
    return tuple(int(max(1, round(n))) for n in shape * ratio)


def _check_spacing(name: str, spacing) -> np.ndarray:
    values = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"{name} must be 3 positive numbers (mm, x y z), got {spacing!r}")
    return values


def resample_array(array: np.ndarray, spacing, target_spacing, order: int = 1,
                   shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Resample an (x, y, z) array from ``spacing`` to ``target_spacing`` (both mm, x y z).

    Args:
        array: 3D array.
        spacing: its voxel size.
        target_spacing: the wanted voxel size.
        order: spline order, 0 (nearest: labels) to 5; 1 (linear) for images.
        shape: output shape; defaults to :func:`resampled_shape`. Pass the resampled image's shape
            to resample its label map onto exactly the same grid.

    Returns:
        The resampled array. Integer images come back in their dtype (rounded, clipped) so CT stays
        integer HU; floats come back as float32 (float64 input stays float64); ``order=0`` keeps the
        dtype and the exact set of values.
    """
    from scipy import ndimage

    if array.ndim != 3:
        raise ValueError(f"resample needs a 3D array, got shape {array.shape}")
    if not 0 <= int(order) <= 5:
        raise ValueError(f"order must be 0..5, got {order}")
    spacing = _check_spacing("spacing", spacing)
    target = _check_spacing("target spacing", target_spacing)
    out_shape = tuple(int(s) for s in shape) if shape is not None else resampled_shape(array.shape, spacing, target)
    scale = target / spacing  # old voxels per new voxel
    offset = 0.5 * scale - 0.5  # aligns the outer voxel edges of both grids
    if order == 0:
        # Nearest neighbour needs no arithmetic on values: keep the dtype (bool, uint8 labels, …).
        src = array.view(np.uint8) if array.dtype == bool else array
        out = ndimage.affine_transform(src, scale, offset=offset, output_shape=out_shape, order=0,
                                       mode="nearest", output=src.dtype)
        return out.view(bool) if array.dtype == bool else out
    work_dtype = np.float64 if array.dtype == np.float64 else np.float32
    out = ndimage.affine_transform(array.astype(work_dtype, copy=False), scale, offset=offset,
                                   output_shape=out_shape, order=int(order), mode="nearest",
                                   output=work_dtype)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(array.dtype)
    return out


def resample_labels(labels: np.ndarray, spacing, target_spacing,
                    shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Nearest-neighbour resampling of a label map (values stay in the original label set)."""
    return resample_array(labels, spacing, target_spacing, order=0, shape=shape)


def resample(volume: Volume, spacing, order: int = 1) -> Volume:
    """A copy of ``volume`` at voxel size ``spacing`` (mm, x y z), covering the same physical extent.

    Args:
        volume: the volume to resample.
        spacing: target voxel size in mm along (x, y, z).
        order: interpolation order, 1 (linear) for images, 0 (nearest) for label volumes.

    Returns:
        A new :class:`Volume` with the resampled array, the target spacing and the origin moved to the
        first new voxel centre (direction, modality, source and warnings unchanged);
        ``extra["resampled_from"]`` records the original shape and spacing.

    Example:
        >>> import numpy as np
        >>> v = Volume(np.zeros((10, 10, 4), np.int16), spacing=(1.0, 1.0, 2.5))
        >>> resample(v, (2.0, 2.0, 2.0)).shape
        (5, 5, 5)
    """
    target = _check_spacing("spacing", spacing)
    old = np.asarray(volume.spacing, dtype=np.float64)
    array = resample_array(volume.array, old, target, order=order)
    direction = np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)
    origin = np.asarray(volume.origin) + direction @ (0.5 * (target - old))
    extra = dict(volume.extra)
    extra["resampled_from"] = {"shape": list(volume.shape), "spacing": [float(s) for s in old]}
    return replace(volume, array=array, spacing=tuple(target), origin=tuple(origin), extra=extra)
