"""Nodule-like negative candidates inside the lungs, found from intensities alone.

LUNA16's non-nodule cubes are the false-positive candidates of nodule detectors: vessels, vessel
crossings, structures at the pleura. Negatives drawn anywhere in the volume instead (a third of them
mostly air outside the body) make the task "is this lung?", which one number per cube solves. This
module finds such candidates in any CT store (real stores have no tissue map):

- :func:`body_and_lung`: the body is the largest region left once the low-density air connected to
  the in-plane border of the volume is removed; the lungs are the large low-density regions
  (HU < ``LOW_HU``) inside it, closed (a ball of ``CLOSING_MM``) and hole-filled slice by slice so
  that their vessels and juxtapleural structures are inside;
- :func:`candidate_centres`: local maxima of a smoothed image inside the lungs above ``DENSE_HU``
  (vessels, crossings, pleural and airway walls; the threshold is below soft tissue so that
  ground-glass-like spots count too), at least ``MIN_LABEL_DISTANCE_MM`` from every labelled voxel.

Thresholds are HU; the volumes are windowed, so they go through the window they were read with.
"""

from __future__ import annotations

import numpy as np

from semgen_ray.store.intensity import CT_WINDOW, IntensityWindow

#: Low density: lung parenchyma and air (HU below).
LOW_HU = -400.0
#: Candidate centres: the smoothed image above this (vessels, soft tissue, ground glass).
DENSE_HU = -500.0
#: Radius (mm) of the closing that brings vessels and juxtapleural structures into the lung mask.
CLOSING_MM = 8.0
#: The lung and body masks are made on a grid of about this voxel size (mm).
COARSE_MM = 2.5
#: Low-density regions smaller than this fraction of the largest are not lung (bowel and stomach gas).
MIN_LUNG_FRACTION = 0.05
#: Gaussian smoothing (mm) before the local maxima, and the neighbourhood (mm) they are maximal in.
SMOOTH_MM = 1.5
PEAK_MM = 6.0
#: Candidate centres keep at least this distance (mm) from every labelled voxel.
MIN_LABEL_DISTANCE_MM = 10.0


def _level(hu: float, window: IntensityWindow) -> float:
    return float((hu - window.lo) / (window.hi - window.lo))


def _ball(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """A boolean ball of ``radius_mm`` on a grid of ``spacing`` (mm), for binary morphology."""
    half = np.floor(radius_mm / spacing).astype(int)
    axes = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing)], indexing="ij")
    return sum(a * a for a in axes) <= radius_mm ** 2


def _fill_holes_in_plane(mask: np.ndarray) -> np.ndarray:
    """``mask`` with the holes of each axial slice filled: background regions (4-connected within a
    slice) that do not reach the slice's edge."""
    from scipy import ndimage

    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    comps, n = ndimage.label(~mask, structure=in_plane)
    edge = np.concatenate([comps[0].ravel(), comps[-1].ravel(), comps[:, 0].ravel(), comps[:, -1].ravel()])
    hole = np.ones(n + 1, bool)
    hole[edge] = False
    hole[0] = False
    return mask | hole[comps]


def body_and_lung(volume: np.ndarray, spacing, window: IntensityWindow = CT_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (body, lung) masks of a windowed CT volume (X, Y, Z) with voxel ``spacing`` (mm).

    Outside air is the low-density voxels connected to the x or y faces of the volume (scans cut
    through the body along z, and the trachea reaches the top slice, so the z faces do not count);
    the body is the largest connected region of the rest (not the table). The morphology runs on a
    grid of about ``COARSE_MM`` voxels (strided), so fine real scans cost no more than phantoms.
    """
    from scipy import ndimage

    spacing = np.asarray(spacing, float)
    step = np.maximum(1, np.round(COARSE_MM / spacing)).astype(int)
    coarse_spacing = spacing * step
    low = volume[::step[0], ::step[1], ::step[2]] < _level(LOW_HU, window)
    comps, n = ndimage.label(low)
    faces = np.concatenate([comps[0].ravel(), comps[-1].ravel(), comps[:, 0].ravel(), comps[:, -1].ravel()])
    is_outside = np.zeros(n + 1, bool)
    is_outside[faces[faces > 0]] = True
    parts, n_parts = ndimage.label(~is_outside[comps])
    body = parts == (np.argmax(np.bincount(parts.ravel())[1:]) + 1) if n_parts else np.zeros_like(low)
    sizes = np.bincount(comps[body], minlength=n + 1)  # low-density regions inside the body
    sizes[0] = 0
    lung = np.zeros_like(low)
    if sizes.max(initial=0) > 0:
        keep = sizes >= MIN_LUNG_FRACTION * sizes.max()
        lung = keep[comps] & body
        ball = _ball(CLOSING_MM, coarse_spacing)
        lung = ~ndimage.binary_dilation(~ndimage.binary_dilation(lung, ball), ball)  # closing
        lung = _fill_holes_in_plane(lung) & body
    index = np.ix_(*[np.minimum(np.arange(n_full) // st, n_coarse - 1)
                     for n_full, st, n_coarse in zip(volume.shape, step, low.shape)])
    return body[index], lung[index]


def candidate_centres(volume: np.ndarray, lung: np.ndarray, label: np.ndarray | None, spacing,
                      window: IntensityWindow = CT_WINDOW) -> np.ndarray:
    """Voxel indices (M, 3) of nodule-like candidates: local maxima of the smoothed image inside
    ``lung`` above ``DENSE_HU``, at least ``MIN_LABEL_DISTANCE_MM`` from every labelled voxel."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    spacing = np.asarray(spacing, float)
    smooth = ndimage.gaussian_filter(volume.astype(np.float32), SMOOTH_MM / spacing)
    size = np.maximum(1, 2 * np.round(PEAK_MM / 2 / spacing).astype(int) + 1)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=tuple(size))) & lung
    peaks &= smooth > _level(DENSE_HU, window)
    centres = np.argwhere(peaks)
    if label is not None and len(centres):
        labelled = np.argwhere(label > 0)
        if len(labelled):
            distance, _ = cKDTree(labelled * spacing).query(centres * spacing)
            centres = centres[distance >= MIN_LABEL_DISTANCE_MM]
    return centres
