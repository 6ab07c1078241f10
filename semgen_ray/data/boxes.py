"""The crop-box table: which voxels of which patient make each training cube.

Contract (the pattern manifest of docs/design.md carries these columns):

=============== ======= ================================================================
column          type    meaning
=============== ======= ================================================================
patient_id      string  a patient of the volume store
x0, y0, z0      int     first voxel of the box in the stored (x, y, z) array (inclusive)
x1, y1, z1      int     end of the box (exclusive): the box is ``array[x0:x1, y0:y1, z0:z1]``
(any other)     any     pass-through (``class_id``, ``resolution``, ``split``, ``row_id``, …),
                        copied onto every output row of that box
=============== ======= ================================================================

Boxes must lie inside their volume. Semantic Genesis redraws a crop that would leave the scan, so
the code that draws boxes (discovery, :mod:`semgen_ray.data.subvolumes`) is responsible for that;
readers raise :class:`BoxError` naming the patient and the box instead of padding silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

BOX_COLUMNS = ("x0", "y0", "z0", "x1", "y1", "z1")
ID_COLUMN = "patient_id"
#: Column names the readers write themselves; a box table may not use them for pass-through data.
RESERVED_COLUMNS = ("cube", "spacing", "box_index")


class BoxError(ValueError):
    """A crop box is malformed, empty, outside its volume or names an unknown patient."""


def as_box_table(boxes: Any):
    """Return ``boxes`` as a ``pyarrow.Table`` with int64 box columns and a string ``patient_id``.

    Accepts a ``pyarrow.Table``, a pandas ``DataFrame``, a list of row dicts or a dict of columns.
    Checks the columns and that every box is non-empty and non-negative; bounds against the volumes
    are checked by :func:`check_in_bounds`.
    """
    import pyarrow as pa

    if isinstance(boxes, pa.Table):
        table = boxes
    elif hasattr(boxes, "to_dict") and hasattr(boxes, "columns"):  # pandas
        table = pa.Table.from_pandas(boxes, preserve_index=False)
    elif isinstance(boxes, Mapping):
        table = pa.table(dict(boxes))
    elif isinstance(boxes, Sequence) and not isinstance(boxes, (str, bytes)):
        table = pa.Table.from_pylist(list(boxes))
    else:
        raise BoxError(f"boxes must be a pyarrow Table, DataFrame, list of dicts or dict of columns, "
                       f"got {type(boxes).__name__}")

    missing = [c for c in (ID_COLUMN, *BOX_COLUMNS) if c not in table.column_names]
    if missing and table.num_rows == 0 and not table.column_names:
        missing = []  # an empty list of rows: nothing to read
        table = pa.table({ID_COLUMN: pa.array([], pa.string()),
                          **{c: pa.array([], pa.int64()) for c in BOX_COLUMNS}})
    if missing:
        raise BoxError(f"box table lacks column(s) {missing}; it needs {[ID_COLUMN, *BOX_COLUMNS]}")
    clash = [c for c in RESERVED_COLUMNS if c in table.column_names]
    if clash:
        raise BoxError(f"box table column(s) {clash} are written by the reader: rename them")

    for name in BOX_COLUMNS:
        col = table.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_null(col.type) and table.num_rows == 0):
            raise BoxError(f"box column {name!r} must hold integers, got {col.type}")
        if col.null_count:
            raise BoxError(f"box column {name!r} has {col.null_count} null value(s)")
        table = table.set_column(table.column_names.index(name), name, col.cast(pa.int64()))
    ids = table.column(ID_COLUMN)
    if ids.null_count:
        raise BoxError(f"column {ID_COLUMN!r} has {ids.null_count} null value(s)")
    table = table.set_column(table.column_names.index(ID_COLUMN), ID_COLUMN, ids.cast(pa.string()))

    lo, hi = box_arrays(table)
    bad = np.flatnonzero((lo < 0).any(axis=1) | (hi <= lo).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise BoxError(f"{bad.size} box(es) are empty or negative, first: row {i}, "
                       f"{_describe(table, i)}: need 0 <= start < end on every axis")
    return table


def box_arrays(table) -> tuple[np.ndarray, np.ndarray]:
    """The box starts and ends as two int64 arrays of shape (N, 3)."""
    cols = [table.column(c).to_numpy() for c in BOX_COLUMNS]
    both = np.stack(cols, axis=1).astype(np.int64, copy=False).reshape(-1, 6)
    return both[:, :3], both[:, 3:]


def check_in_bounds(table, shapes: Mapping[str, Sequence[int]], store_uri: str = "") -> None:
    """Raise :class:`BoxError` for a box of an unknown patient or one that leaves its volume.

    Args:
        table: a table from :func:`as_box_table`.
        shapes: volume shape (X, Y, Z) by patient id (e.g. from the store manifest).
        store_uri: named in the message.
    """
    ids = table.column(ID_COLUMN).to_numpy(zero_copy_only=False)
    unknown = sorted(set(ids.tolist()) - set(shapes))
    where = f" of store {store_uri}" if store_uri else ""
    if unknown:
        raise BoxError(f"{len(unknown)} patient(s) of the box table are not complete patients{where}: "
                       f"{unknown[:5]}{' …' if len(unknown) > 5 else ''}")
    if not len(ids):
        return
    uniq, inv = np.unique(ids, return_inverse=True)
    dims = np.array([tuple(shapes[p]) for p in uniq.tolist()], dtype=np.int64)[inv]
    _, hi = box_arrays(table)
    bad = np.flatnonzero((hi > dims).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise BoxError(f"{bad.size} box(es) run past their volume{where}, first: row {i}, "
                       f"{_describe(table, i)} in a volume of shape {tuple(dims[i].tolist())}; boxes must lie "
                       "inside the volume (redraw them, or clip them when you build the table)")


def group_by_patient(table, max_boxes_per_task: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Split row indices by patient: ``[(patient_id, row_indices), ...]`` in first-seen order.

    A patient with more than ``max_boxes_per_task`` boxes yields several groups (each read task
    still reads the bounding region of its own boxes once).
    """
    ids = table.column(ID_COLUMN).to_numpy(zero_copy_only=False)
    if not len(ids):
        return []
    uniq, first, inv = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv, minlength=len(uniq))
    per = np.split(order, np.cumsum(counts)[:-1])
    groups = []
    for u in np.argsort(first, kind="stable"):
        rows = per[u]
        step = max_boxes_per_task or len(rows)
        for s in range(0, len(rows), step):
            groups.append((str(uniq[u]), rows[s:s + step]))
    return groups


def _describe(table, i: int) -> str:
    row = {c: table.column(c)[i].as_py() for c in (ID_COLUMN, *BOX_COLUMNS)}
    box = ", ".join(f"{c}={row[c]}" for c in BOX_COLUMNS)
    return f"patient {row[ID_COLUMN]!r} box ({box})"
