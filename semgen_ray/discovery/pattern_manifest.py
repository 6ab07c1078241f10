"""The pattern manifest: Parquet, one row per training or validation cube (docs/design.md, "Artefact formats").

=============== ======= ================================================================
column          type    meaning
=============== ======= ================================================================
row_id          int64   stable id of the cube (position in generation order unless given)
class_id        int32   pseudo-class label
reference_id    string  the class's reference patient
patient_id      string  patient the crop is cut from (volume store id)
x0, y0, z0      int64   first voxel of the crop box (inclusive), stored (x, y, z) order
x1, y1, z1      int64   end of the box (exclusive); the box contract of :mod:`semgen_ray.data.boxes`
resolution      int8    1 = native cube-size crop, 2-3 = rescaled crops (resized on read)
split           string  ``train`` or ``val``
rank            int32   neighbour rank of the patient for this class (0 = nearest)
distance        float64 embedding distance of the patient to the reference
config_hash     string  :func:`config_hash` of the discovery config that made the row
=============== ======= ================================================================

File-level key-value metadata (``semgen_ray.pattern_manifest`` → JSON) holds the lineage given to
:func:`write_manifest` (store URI, embedding/index info, config) plus the format version. The file is
written to a temporary name beside the target and moved over it (fsspec), so readers never see a
partial manifest.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = 1
METADATA_KEY = b"semgen_ray.pattern_manifest"

SCHEMA = pa.schema([
    ("row_id", pa.int64()),
    ("class_id", pa.int32()),
    ("reference_id", pa.string()),
    ("patient_id", pa.string()),
    ("x0", pa.int64()), ("y0", pa.int64()), ("z0", pa.int64()),
    ("x1", pa.int64()), ("y1", pa.int64()), ("z1", pa.int64()),
    ("resolution", pa.int8()),
    ("split", pa.string()),
    ("rank", pa.int32()),
    ("distance", pa.float64()),
    ("config_hash", pa.string()),
])
COLUMNS = tuple(SCHEMA.names)
SPLITS = ("train", "val")


class ManifestError(ValueError):
    """A pattern manifest is missing, has the wrong schema or holds invalid rows."""


def config_hash(discovery_cfg: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> str:
    """sha256 (hex) of the canonical JSON (sorted keys, no spaces) of the config and ``extra``: the
    reuse key scheme of every stage (:func:`semgen_ray.reuse.digest`)."""
    from semgen_ray.reuse import digest

    return digest({"discovery": dict(discovery_cfg), "extra": dict(extra or {})})


def to_table(rows: Any, config_hash: str | None = None) -> pa.Table:
    """Rows (list of dicts, dict of columns or Table) → a validated Table with :data:`SCHEMA`.

    ``row_id`` defaults to the row position; ``config_hash`` fills rows that lack one.
    """
    if isinstance(rows, pa.Table):
        cols = {name: rows.column(name).to_pylist() for name in rows.column_names}
    elif isinstance(rows, Mapping):
        cols = {k: list(v) for k, v in rows.items()}
    else:
        rows = list(rows)
        names = set(COLUMNS).union(*(r.keys() for r in rows)) if rows else set(COLUMNS)
        cols = {k: [r.get(k) for r in rows] for k in names}
    n = len(next(iter(cols.values()))) if cols else 0
    if not cols.get("row_id") or all(v is None for v in cols["row_id"]):
        cols["row_id"] = list(range(n))
    if config_hash is not None:
        cols["config_hash"] = [config_hash if v is None else v for v in cols.get("config_hash", [None] * n)]
    missing = [c for c in COLUMNS
               if c not in cols or (n and c != "distance" and all(v is None for v in cols[c]))]
    if missing:
        raise ManifestError(f"pattern manifest rows lack column(s) {missing}")
    try:
        table = pa.table({c: pa.array(cols[c], type=SCHEMA.field(c).type) for c in COLUMNS}, schema=SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise ManifestError(f"pattern manifest rows do not fit the schema: {exc}") from exc
    validate(table)
    return table


def validate(table: pa.Table) -> None:
    """Raise :class:`ManifestError` unless ``table`` has the schema and valid values."""
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ManifestError(f"pattern manifest lacks column(s) {missing}")
    wrong = [f"{c}: {table.schema.field(c).type} (expected {SCHEMA.field(c).type})"
             for c in COLUMNS if not table.schema.field(c).type.equals(SCHEMA.field(c).type)]
    if wrong:
        raise ManifestError(f"pattern manifest column types differ: {'; '.join(wrong)}")
    nulls = [c for c in COLUMNS if c != "distance" and table.column(c).null_count]
    if nulls:
        raise ManifestError(f"pattern manifest has null values in column(s) {nulls}")
    if table.num_rows == 0:
        return
    import numpy as np

    col = {c: table.column(c).to_numpy() for c in ("x0", "y0", "z0", "x1", "y1", "z1", "resolution", "row_id")}
    bad = np.zeros(table.num_rows, dtype=bool)
    for a in "xyz":
        bad |= (col[f"{a}0"] < 0) | (col[f"{a}1"] <= col[f"{a}0"])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ManifestError(f"{int(bad.sum())} row(s) hold an empty or negative box, e.g. row {i}: "
                            f"{table.slice(i, 1).to_pylist()[0]}")
    if ((col["resolution"] < 1) | (col["resolution"] > 3)).any():
        raise ManifestError("pattern manifest resolution must be 1..3")
    splits = set(table.column("split").unique().to_pylist())
    if not splits <= set(SPLITS):
        raise ManifestError(f"pattern manifest split must be one of {SPLITS}, got {sorted(splits)}")
    if len(np.unique(col["row_id"])) != table.num_rows:
        raise ManifestError("pattern manifest row_id values are not unique")


def write_manifest(rows: Any, path_or_uri: str, metadata: Mapping[str, Any] | None = None,
                   config_hash: str | None = None) -> pa.Table:
    """Write the manifest atomically (temp file + move, fsspec) with lineage ``metadata``; returns it."""
    import fsspec

    table = to_table(rows, config_hash=config_hash)
    meta = {"format_version": FORMAT_VERSION, **dict(metadata or {})}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True, default=str)})
    fs, path = fsspec.core.url_to_fs(str(path_or_uri))
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)
    return table


def read_manifest(path_or_uri: str) -> pa.Table:
    """Read and validate a pattern manifest (:class:`ManifestError` when missing or malformed)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(str(path_or_uri))
    if not fs.exists(path):
        raise ManifestError(f"no pattern manifest at {path_or_uri}")
    try:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"{path_or_uri} is not a readable Parquet file: {exc}") from exc
    try:
        validate(table)
    except ManifestError as exc:
        raise ManifestError(f"{path_or_uri}: {exc}") from exc
    return table.select(list(COLUMNS)).replace_schema_metadata(table.schema.metadata)


def manifest_metadata(table_or_path: Any) -> dict:
    """The lineage metadata dict of a manifest table (or of the file at a path)."""
    table = table_or_path if isinstance(table_or_path, pa.Table) else read_manifest(table_or_path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def summary(table: pa.Table | Iterable[dict]) -> dict:
    """Cube counts: total, per split, per (split, resolution), per class and per (class, split)."""
    rows = table.select(["class_id", "split", "resolution"]).to_pylist() if isinstance(table, pa.Table) \
        else [{k: r[k] for k in ("class_id", "split", "resolution")} for r in table]
    by_split = Counter(r["split"] for r in rows)
    by_res = Counter((r["split"], int(r["resolution"])) for r in rows)
    by_class = Counter(int(r["class_id"]) for r in rows)
    by_cs = Counter((int(r["class_id"]), r["split"]) for r in rows)
    return {
        "cubes": len(rows),
        "classes": len(by_class),
        "per_split": dict(sorted(by_split.items())),
        "per_split_resolution": {f"{s}/{r}": n for (s, r), n in sorted(by_res.items())},
        "per_class": dict(sorted(by_class.items())),
        "per_class_split": {f"{c}/{s}": n for (c, s), n in sorted(by_cs.items())},
    }
