"""``read_volumes``: whole scans resampled to one fixed grid (the self-discovery auto-encoder input),
or, with a 2D ``shape``, whole 2D images (radiographs) resampled to one fixed size."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from semgen_ray.data import _source
from semgen_ray.data.resize import resize


def _volume_task(store_uri: str, patient_ids: Sequence[str], shape, normalize, antialias,
                 columns) -> Iterator:
    """Read task body: read each whole volume, window it, resize it, emit one row per patient."""
    from ray.data.block import BlockAccessor

    store = _source.cached_store(store_uri)
    for pid in patient_ids:
        raw, meta = store.read(pid, normalize=False)
        window = store.intensity_window(pid, normalize, meta)
        vol = window.apply(raw) if window is not None else raw.astype(np.float32)
        del raw
        src = np.asarray(meta["shape"], np.int64)
        if len(shape) == 2:  # a 2D image: resized as an (X, Y, 1) volume
            resized = resize(vol[..., None], (*shape, 1), antialias=antialias)[..., 0]
        else:
            resized = resize(vol, shape, antialias=antialias)
        row = {
            "volume": resized[None],
            "patient_id": np.array([pid], dtype=object),
            "spacing": np.asarray(meta["spacing"], np.float64)[None],
            "original_shape": src[None],
            "scale": (np.asarray(shape, np.float64) / src)[None],
        }
        yield BlockAccessor.batch_to_block(
            {k: v for k, v in row.items() if columns is None or k in columns})


VOLUME_COLUMNS = ("volume", "patient_id", "spacing", "original_shape", "scale")


def read_volumes(store_uri: str, shape: Sequence[int] = (128, 128, 64),
                 patient_ids: Sequence[str] | None = None, normalize=True, *, antialias: bool = True,
                 columns: Sequence[str] | None = None, num_cpus: float = 1.0,
                 concurrency: int | None = None, ray_remote_args: dict | None = None):
    """A ``ray.data.Dataset`` with one row per patient: the whole scan resampled to ``shape``; with a
    2D ``shape`` (rows, columns), one row per 2D image of the store (:attr:`VolumeStore.image_ids`),
    its [0, 1] display values resized bilinearly (as an (X, Y, 1) volume).

    The scan is windowed first (as the reference normalises before resizing), then resized with
    :func:`~semgen_ray.data.resize.resize` (trilinear; box-averaged along axes that shrink by 2× or
    more). One read task per patient; it holds the stored volume, its float32 copy and the resize
    buffers (about 4× the float32 volume at peak, ~1.2 GB for a 512×512×300 CT): on a cluster pass
    ``ray_remote_args={"memory": ...}`` or a ``concurrency`` cap accordingly.

    Args:
        store_uri: volume store path or fsspec URI.
        shape: output grid ``(X, Y, Z)``.
        patient_ids: which patients (default: every complete patient of the store, sorted).
        normalize: as :func:`~semgen_ray.data.crops.read_crops`.
        antialias: see :mod:`semgen_ray.data.resize`.
        columns: emit only these of ``volume, patient_id, spacing, original_shape, scale``.
        num_cpus, concurrency, ray_remote_args: resources of each read task (see ``read_crops``).

    Returns:
        Rows: ``volume`` float32 ``shape``; ``patient_id``; ``spacing`` float64 (3,), the stored voxel
        size in mm; ``original_shape`` int64 (3,); ``scale`` float64 (3,) = ``shape / original_shape``,
        so the resampled grid's spacing is ``spacing / scale``.
    """
    from semgen_ray.data.boxes import BoxError
    from semgen_ray.data.resize import target_shape
    from semgen_ray.store import open_store

    planar = len(tuple(shape)) == 2
    target = target_shape((*shape, 1))[:2] if planar else target_shape(shape)
    shapes = open_store(store_uri).shapes(images=planar)
    pids = sorted(shapes) if patient_ids is None else [str(p) for p in patient_ids]
    unknown = [p for p in pids if p not in shapes]
    if unknown:
        raise BoxError(f"patient(s) {unknown[:5]} are not complete {'2D images' if planar else 'patients'} of "
                       f"store {store_uri}")
    cols = None if columns is None else tuple(columns)
    if cols is not None and (bad := [c for c in cols if c not in VOLUME_COLUMNS]):
        raise ValueError(f"unknown column(s) {bad}; available: {list(VOLUME_COLUMNS)}")
    out_bytes = int(np.prod(target)) * 4 + 128
    specs = [_source.ReadSpec(_volume_task,
                              {"store_uri": store_uri, "patient_ids": [p], "shape": target,
                               "normalize": normalize, "antialias": antialias, "columns": cols},
                              num_rows=1, size_bytes=out_bytes)
             for p in pids]
    return _source.build_dataset(specs, "StoreVolumes", num_cpus=num_cpus, concurrency=concurrency,
                                 ray_remote_args=ray_remote_args)
