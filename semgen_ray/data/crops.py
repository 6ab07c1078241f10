"""``read_crops``: stream the cubes of a crop-box table from the volume store (crop-on-read)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from semgen_ray.data import _source
from semgen_ray.data.boxes import (
    BOX_COLUMNS,
    as_box_table,
    box_arrays,
    check_in_bounds,
    group_by_patient,
)
from semgen_ray.data.patient_crops import read_patient_crops


def _crop_task(store_uri: str, patient_id: str, rows, cube_size, normalize, antialias,
               columns, rows_per_block: int) -> Iterator:
    """Read task body: one region read for ``rows`` (this patient's box sub-table) → Arrow blocks."""
    import pyarrow as pa
    from ray.data.block import BlockAccessor

    store = _source.cached_store(store_uri)
    lo, hi = box_arrays(rows)
    for idx, cubes, meta in read_patient_crops(store, patient_id, lo, hi, cube_size, normalize,
                                               antialias, rows_per_block):
        n = len(idx)
        part = rows.take(pa.array(idx)) if n != rows.num_rows else rows
        if columns is not None:
            part = part.select([c for c in columns if c in part.column_names])
        spacing = np.asarray(meta["spacing"], np.float64)
        spacing = np.pad(spacing, (0, 3 - len(spacing)), constant_values=np.nan)  # a 2D image has no z spacing
        tensors = {"cube": cubes, "spacing": np.tile(spacing, (n, 1))}
        tensors = {k: v for k, v in tensors.items() if columns is None or k in columns}
        block = part
        if tensors:
            arrow = BlockAccessor.batch_to_block(tensors)  # Arrow tensor columns
            for name in arrow.column_names:
                block = block.append_column(name, arrow.column(name))
        if columns is not None:
            block = block.select(list(columns))
        yield block


def crop_specs(store_uri: str, boxes, cube_size: Sequence[int] = (64, 64, 32), normalize=True,
               antialias: bool = True, columns: Sequence[str] | None = None,
               max_boxes_per_task: int | None = None, validate: bool = True) -> list:
    """Plan the read tasks of :func:`read_crops` (one per patient, or per ``max_boxes_per_task``)."""
    import pyarrow as pa

    from semgen_ray.store import open_store

    cube = tuple(int(c) for c in cube_size)
    if len(cube) != 3 or min(cube) < 1:
        raise ValueError(f"cube_size must be 3 positive ints, got {tuple(cube_size)!r}")
    table = as_box_table(boxes)
    table = table.append_column("box_index", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    cols = None
    if columns is not None:
        cols = tuple(columns)
        known = {"cube", "spacing", *table.column_names}
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; available: {sorted(known)}")
    if validate:
        store = open_store(store_uri)
        check_in_bounds(table, {**store.box_shapes(images=True), **store.box_shapes()}, store_uri)
    cube_bytes = int(np.prod(cube)) * 4
    rows_per_block = max(1, _source.BLOCK_BYTES // cube_bytes)
    specs = []
    for pid, idx in group_by_patient(table, max_boxes_per_task):
        specs.append(_source.ReadSpec(
            _crop_task,
            {"store_uri": store_uri, "patient_id": pid, "rows": table.take(pa.array(idx)),
             "cube_size": cube, "normalize": normalize, "antialias": antialias, "columns": cols,
             "rows_per_block": rows_per_block},
            num_rows=len(idx), size_bytes=len(idx) * (cube_bytes + 24 + 64)))
    return specs


def read_crops(store_uri: str, boxes, cube_size: Sequence[int] = (64, 64, 32), normalize=True, *,
               antialias: bool = True, columns: Sequence[str] | None = None,
               max_boxes_per_task: int | None = None, num_cpus: float = 1.0,
               concurrency: int | None = None, ray_remote_args: dict | None = None,
               validate: bool = True, order: tuple[int, str] | None = None):
    """A ``ray.data.Dataset`` of the cubes named by a crop-box table, cut from the store on read.

    Each read task takes all boxes of one patient (or ``max_boxes_per_task`` of them), reads the
    bounding region of those boxes once, cuts them in memory, applies the intensity window and resizes
    the crops whose size is not ``cube_size`` (one batched trilinear call per box shape;
    :func:`~semgen_ray.data.resize.resize`). Output order follows patients, not the table: shuffle
    downstream (``random_shuffle`` / ``local_shuffle_buffer_size``).

    Args:
        store_uri: volume store path or fsspec URI, readable from every node.
        boxes: the box table (:mod:`semgen_ray.data.boxes`): ``patient_id``, ``x0 y0 z0 x1 y1 z1``
            and pass-through columns.
        cube_size: output cube ``(X, Y, Z)``.
        normalize: True applies the modality's window (CT HU [-1000, 1000] → [0, 1]); an
            :class:`~semgen_ray.store.IntensityWindow` applies that one; False gives stored values
            (as float32).
        antialias: box-average when a crop shrinks by 2× or more (resize module docstring).
        columns: emit only these columns (projection at the source: e.g. ``["cube", "class_id"]``
            for ``iter_torch_batches``; a later ``select_columns`` costs an extra unfused pass).
        max_boxes_per_task: split patients with more boxes into several tasks (each reads its own
            bounding region once). None: one task per patient.
        num_cpus: CPUs reserved per read task (default 1). With Ray Train on the same small node,
            leave CPUs to Data (docs/operations.md §2: train workers at 0.5 CPU, or logical ``num_cpus``).
        concurrency: cap on concurrent read tasks (each holds one patient region in memory).
        ray_remote_args: extra ``ray.remote`` options for read tasks (memory, label_selector, …).
        validate: check patients and bounds against the store manifest in the driver (default);
            tasks check bounds against the array again in any case.
        order: ``(run_seed, epoch_clock_name)``: read the patients in a new order every pass, seeded
            by (run seed, the clock's epoch) (:mod:`semgen_ray.data.epoch_clock`; with Ray Data's
            ``preserve_order`` the rows then arrive in that order). ``None``: task order.

    Returns:
        A lazy Dataset, one row per box: ``cube`` float32 ``cube_size``; ``spacing`` float64 (3,),
        the patient's stored voxel size in mm (x, y, z; z NaN for a 2D image, read as an (X, Y, 1)
        volume), not that of the resized cube; ``patient_id``;
        the box columns; ``box_index`` (the row's position in ``boxes``); pass-through columns.

    Raises:
        BoxError: malformed, empty or out-of-volume boxes, or unknown patients (before any read).

    Example:
        >>> ds = read_crops("store.zarr", [{"patient_id": "P1", "x0": 0, "y0": 0, "z0": 0,
        ...                  "x1": 64, "y1": 64, "z1": 32}], columns=["cube"])  # doctest: +SKIP
        >>> next(ds.iter_torch_batches(batch_size=1))["cube"].shape  # doctest: +SKIP
        torch.Size([1, 64, 64, 32])
    """
    specs = crop_specs(store_uri, boxes, cube_size, normalize, antialias, columns,
                       max_boxes_per_task, validate)
    return _source.build_dataset(specs, "StoreCrops", num_cpus=num_cpus, concurrency=concurrency,
                                 ray_remote_args=ray_remote_args, order=order)


__all__ = ["BOX_COLUMNS", "crop_specs", "read_crops"]
