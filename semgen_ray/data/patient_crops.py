"""Crop-on-read for one patient, without Ray: read the bounding region of its boxes once, cut every
box in memory, window the intensities and resize the crops whose size differs from the cube size.

Measured (docs/operations.md §2): many small unaligned Zarr reads are about 13× slower than one read of a
volume or slab followed by in-memory cropping, so a read task handles all boxes of a patient together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from semgen_ray.data.boxes import BoxError
from semgen_ray.data.resize import resize


def bounding_region(lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The smallest half-open region ``((x0, x1), (y0, y1), (z0, z1))`` holding every box."""
    a, b = lo.min(axis=0), hi.max(axis=0)
    return tuple((int(s), int(e)) for s, e in zip(a, b))


def cut_crops(region: np.ndarray, origin: Sequence[int], lo: np.ndarray, hi: np.ndarray,
              cube_size: Sequence[int], window=None, antialias: bool = True) -> np.ndarray:
    """Cut boxes ``[lo, hi)`` (volume coordinates) out of ``region`` (which starts at ``origin``).

    Crops of exactly ``cube_size`` are copied voxel for voxel; the others are resized in one batched
    call per box shape (:func:`~semgen_ray.data.resize.resize`). The window, if any, is applied to
    the cut voxels before resizing (the reference normalises the scan, then crops and resizes).

    Returns:
        float32 ``(N, *cube_size)``.
    """
    cube = tuple(int(c) for c in cube_size)
    org = np.asarray(origin, dtype=np.int64)
    rlo, rhi = lo - org, hi - org
    if len(lo) and ((rlo < 0).any() or (rhi > np.asarray(region.shape)).any()):
        raise BoxError(f"a box lies outside the region read (origin {tuple(org)}, shape {region.shape})")
    sizes = rhi - rlo
    out = np.empty((len(lo), *cube), dtype=np.float32)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(map(tuple, sizes.tolist())):
        by_size.setdefault(s, []).append(i)
    for size, idx in by_size.items():
        stack = np.empty((len(idx), *size), dtype=np.float32)
        for j, i in enumerate(idx):
            (x0, y0, z0), (x1, y1, z1) = rlo[i], rhi[i]
            stack[j] = region[x0:x1, y0:y1, z0:z1]
        if window is not None:
            stack = window.apply(stack)
        out[idx] = resize(stack, cube, antialias=antialias) if size != cube else stack
    return out


def read_patient_crops(store, patient_id: str, lo: np.ndarray, hi: np.ndarray,
                       cube_size: Sequence[int], normalize=True, antialias: bool = True,
                       rows_per_chunk: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """Read a patient's boxes with one store read; yield ``(row_indices, cubes, meta)`` chunks. A 2D
    image is read as an (X, Y, 1) volume, its boxes flat (z0, z1 = 0, 1).

    The region is read in the stored dtype (int16 for CT, half the memory of float32) and only the
    cut voxels are windowed. ``rows_per_chunk`` bounds the memory of one yielded chunk of cubes.

    Raises:
        BoxError: a box runs past the volume (message names the patient and the box).
    """
    from semgen_ray.store import StoreError

    if not len(lo):
        return
    meta = store.meta(patient_id)
    flat = len(meta["shape"]) == 2  # a 2D image, cut as an (X, Y, 1) volume (Semantic Genesis 2D)
    shape = np.asarray((*meta["shape"], 1) if flat else meta["shape"], dtype=np.int64)
    bad = np.flatnonzero((lo < 0).any(axis=1) | (hi > shape).any(axis=1) | (hi <= lo).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise BoxError(f"patient {patient_id!r}: box x0,y0,z0={tuple(lo[i].tolist())} "
                       f"x1,y1,z1={tuple(hi[i].tolist())} is empty or outside the volume of shape "
                       f"{tuple(shape.tolist())} in store {store.uri}")
    region_box = bounding_region(lo, hi)
    try:
        region, meta = (store.read_flat if flat else store.read)(patient_id, region=region_box, normalize=False)
    except StoreError as err:  # e.g. the array changed since the manifest was read
        raise BoxError(f"patient {patient_id!r}: {err}") from err
    window = store.intensity_window(patient_id, normalize, meta)  # the patient's recorded mapping
    origin = [r[0] for r in region_box]
    step = rows_per_chunk or len(lo)
    for s in range(0, len(lo), step):
        rows = np.arange(s, min(s + step, len(lo)))
        yield rows, cut_crops(region, origin, lo[rows], hi[rows], cube_size, window, antialias), meta
