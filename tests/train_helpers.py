"""Helpers of the pretraining tests: tiny config overrides and a hand-made pattern manifest."""

from __future__ import annotations

from pathlib import Path

CUBE = (16, 16, 8)
TINY = ["model.width=4", f"data.cube_size={list(CUBE)}", "train.batch_size=4", "train.max_epochs=2",
        "train.shuffle_buffer=8", "train.num_workers=2", "train.zero_stage=2", "train.precision=bf16",
        "data.read_cpus=0.5", "train.corruption_overrides={paint_margin: 1}"]


def tiny_manifest(store_uri: str, path: Path, classes: int = 2, per_patient: int = 2) -> str:
    """Crop boxes at ``classes`` fixed coordinates in every patient (two rescaled crops per class too)."""
    from semgen_ray.discovery.pattern_manifest import write_manifest
    from semgen_ray.store import open_store

    store = open_store(store_uri)
    rows = []
    for pid in store.patient_ids:
        split = "val" if store.meta(pid).get("split") == "val" else "train"
        for c in range(classes):
            x, y, z = 10 + 20 * c, 20 + 8 * c, 8 + 4 * c
            for r in range(1, per_patient + 1):  # resolution 1 native, 2 a 1.5× larger box resized
                s = 1.0 if r == 1 else 1.5
                dx, dy, dz = (int(CUBE[0] * s), int(CUBE[1] * s), int(CUBE[2] * s))
                rows.append({"row_id": len(rows), "class_id": c, "reference_id": "phantom_00000",
                             "patient_id": pid, "x0": x, "y0": y, "z0": z, "x1": x + dx, "y1": y + dy,
                             "z1": z + dz, "resolution": r, "split": split, "rank": 0, "distance": 0.0})
    write_manifest(rows, str(path), {"store": store_uri}, config_hash="test")
    return str(path)
