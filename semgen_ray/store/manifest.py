"""The patient manifest: a Parquet table with one row per patient the store has seen.

Columns (README, "The volume store"):

=============== ============== ===============================================================
column          type           meaning
=============== ============== ===============================================================
patient_id      string         array name under ``volumes/`` (for a failure: the id it would have had)
status          string         ``ok`` or ``failed``
error           string (null)  one-line reason when ``failed``
modality        string         ``CT``, ``MR`` or ``OT``
split           string         ``train``, ``val``, ``test`` (or any label the user gives)
shape           list<int32>    (X, Y, Z)
spacing         list<float64>  mm along (x, y, z)
dtype           string         stored dtype (``int16`` for CT)
has_label       bool           a ``labels/<patient_id>`` array exists
source          string         path or URI the patient came from
source_sha256   string         hash of the source bytes, used to skip unchanged sources
warnings        string         reader notes joined by ``; `` (gantry tilt, uneven spacing, …)
intensity       string (null)  JSON: the intensity mapping reads apply (``rule``, ``window``,
                               ``fill``), its statistics and check (semgen_ray.store.intensity)
updated_at      timestamp[ms]  when the row was written (UTC)
kind            string         ``3d`` (a volume) or ``2d`` (an image, e.g. a radiograph: shape and
                               spacing (rows, columns)); manifests without the column are all ``3d``
=============== ============== ===============================================================
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterable
from functools import lru_cache

COLUMNS = ("patient_id", "status", "error", "modality", "split", "shape", "spacing", "dtype", "has_label",
           "source", "source_sha256", "warnings", "intensity", "updated_at", "kind")


@lru_cache(maxsize=1)
def schema():
    """The Parquet schema (pyarrow imported on first use: reading and writing volumes do not need it)."""
    import pyarrow as pa

    out = pa.schema(
        [
            ("patient_id", pa.string()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("modality", pa.string()),
            ("split", pa.string()),
            ("shape", pa.list_(pa.int32())),
            ("spacing", pa.list_(pa.float64())),
            ("dtype", pa.string()),
            ("has_label", pa.bool_()),
            ("source", pa.string()),
            ("source_sha256", pa.string()),
            ("warnings", pa.string()),
            ("intensity", pa.string()),
            ("updated_at", pa.timestamp("ms", tz="UTC")),
            ("kind", pa.string()),
        ]
    )
    assert tuple(out.names) == COLUMNS
    return out


def empty_row(patient_id: str) -> dict:
    """A row with every column present (None where unknown)."""
    row = dict.fromkeys(COLUMNS)
    row["patient_id"] = patient_id
    return row


def to_table(rows: Iterable[dict]):
    """The rows as a ``pyarrow.Table`` with :func:`schema`, sorted by patient id."""
    import pyarrow as pa

    rows = sorted(rows, key=lambda r: r["patient_id"])
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=schema())


def read_rows(fs, path: str) -> list[dict]:
    """All rows of the manifest at ``path`` on filesystem ``fs`` ([] when there is none yet)."""
    if not fs.exists(path):
        return []
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as f:
        table = pq.read_table(f)
    rows = table.to_pylist()
    for row in rows:  # manifests written before 2D images existed
        row["kind"] = row.get("kind") or "3d"
    return rows


def is_volume(row: dict) -> bool:
    """Whether a manifest row is a 3D volume (not a 2D image)."""
    return row.get("kind", "3d") != "2d"


def write_rows(fs, path: str, rows: Iterable[dict]) -> None:
    """Write the manifest so that readers never see a partial file.

    The table goes to a temporary name beside the target first and is then moved over it: a rename
    on local disks, a single object put on object stores.
    """
    import pyarrow.parquet as pq

    table = to_table(rows)
    tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
    with fs.open(tmp, "wb") as f:
        pq.write_table(table, f, compression="zstd")
    fs.mv(tmp, path)
