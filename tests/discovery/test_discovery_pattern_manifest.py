"""Pattern manifest: schema, round trip with lineage metadata, errors, hash, summary."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semgen_ray.data.boxes import as_box_table
from semgen_ray.discovery.pattern_manifest import (
    COLUMNS,
    SCHEMA,
    ManifestError,
    config_hash,
    manifest_metadata,
    read_manifest,
    summary,
    write_manifest,
)
from semgen_ray.discovery.patterns import class_boxes


def rows():
    shapes = {f"p{i}": (128, 128, 64) for i in range(4)}
    rng = np.random.default_rng(0)
    out = []
    for cid in range(2):
        for split, names, res in (("train", ["p0", "p1", "p2"], 3), ("val", ["p3"], 1)):
            r, _ = class_boxes(cid, "p0", (40, 40, 10), names, [0.5] * len(names), shapes, rng,
                               cube=(32, 32, 16), resolutions=res, min_patch=25, max_patch=40,
                               max_offset=5, split=split)
            out += r
    return out


def test_config_hash_is_canonical():
    a = config_hash({"k_train": 8, "lung_max": 0.15}, {"cube": [32, 32, 16]})
    b = config_hash({"lung_max": 0.15, "k_train": 8}, {"cube": [32, 32, 16]})
    assert a == b and len(a) == 64
    assert a != config_hash({"k_train": 9, "lung_max": 0.15}, {"cube": [32, 32, 16]})


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "patterns.parquet"
    h = config_hash({"k": 1})
    written = write_manifest(rows(), str(path), {"store": "store.zarr", "index": {"method": "exact"}},
                             config_hash=h)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    table = read_manifest(str(path))
    assert table.schema.equals(SCHEMA, check_metadata=False) and table.num_rows == 2 * (9 + 1)
    assert table.column("row_id").to_pylist() == list(range(20))
    assert set(table.column("config_hash").to_pylist()) == {h}
    assert table.to_pylist() == written.to_pylist()
    meta = manifest_metadata(table)
    assert meta["store"] == "store.zarr" and meta["index"] == {"method": "exact"} and meta["format_version"] == 1
    s = summary(table)
    assert s["cubes"] == 20 and s["classes"] == 2
    assert s["per_split"] == {"train": 18, "val": 2}
    assert s["per_split_resolution"] == {"train/1": 6, "train/2": 6, "train/3": 6, "val/1": 2}
    assert s["per_class_split"]["1/train"] == 9
    as_box_table(table)  # readable by the crop readers as is


def test_schema_errors(tmp_path):
    good = rows()
    with pytest.raises(ManifestError, match="config_hash"):
        write_manifest(good, str(tmp_path / "a.parquet"))  # no hash given
    bad = [dict(r) for r in good]
    bad[0]["x1"] = bad[0]["x0"]
    with pytest.raises(ManifestError, match="empty or negative box"):
        write_manifest(bad, str(tmp_path / "b.parquet"), config_hash="h")
    bad = [dict(r) for r in good]
    bad[0]["split"] = "test"
    with pytest.raises(ManifestError, match="split"):
        write_manifest(bad, str(tmp_path / "c.parquet"), config_hash="h")
    with pytest.raises(ManifestError, match="no pattern manifest"):
        read_manifest(str(tmp_path / "missing.parquet"))
    table = write_manifest(good, str(tmp_path / "d.parquet"), config_hash="h")
    pq.write_table(table.drop(["resolution"]), tmp_path / "e.parquet")
    with pytest.raises(ManifestError, match="resolution"):
        read_manifest(str(tmp_path / "e.parquet"))
    pq.write_table(table.set_column(COLUMNS.index("class_id"), "class_id",
                                    table.column("class_id").cast(pa.string())), tmp_path / "f.parquet")
    with pytest.raises(ManifestError, match="class_id"):
        read_manifest(str(tmp_path / "f.parquet"))
    (tmp_path / "g.parquet").write_text("not parquet")
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        read_manifest(str(tmp_path / "g.parquet"))


def test_memory_uri_and_empty():
    write_manifest([], "memory://pm/empty.parquet", {"classes": 0}, config_hash="h")
    assert read_manifest("memory://pm/empty.parquet").num_rows == 0
