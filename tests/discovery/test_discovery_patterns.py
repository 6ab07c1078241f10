"""Crop boxes per class: in bounds, sizes per resolution, validation = resolution 1, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from semgen_ray.data.boxes import as_box_table
from semgen_ray.discovery.patterns import ROW_COLUMNS, class_boxes, patch_range

CUBE = (32, 32, 16)
SHAPES = {"p0": (128, 128, 64), "p1": (128, 128, 64), "p2": (120, 140, 60), "small": (60, 60, 30)}
NAMES = ["p0", "p1", "p2", "small"]


def make(seed=0, split="train", coordinate=(70, 60, 20), **kw):
    params = {"cube": CUBE, "resolutions": 3, "min_patch": 25, "max_patch": 40, "max_offset": 5, "split": split}
    params.update(kw)
    return class_boxes(3, "p0", coordinate, NAMES, [0.0, 1.0, 2.0, 3.0], SHAPES,
                       np.random.default_rng(seed), **params)


def test_rows_inside_and_sized():
    rows, dropped = make()
    assert rows and all(set(r) == set(ROW_COLUMNS) for r in rows)
    for r in rows:
        X, Y, Z = SHAPES[r["patient_id"]]
        assert 0 <= r["x0"] < r["x1"] <= X and 0 <= r["y0"] < r["y1"] <= Y and 0 <= r["z0"] < r["z1"] <= Z
        assert (r["z0"], r["z1"]) == (20, 36)
        sx, sy = r["x1"] - r["x0"], r["y1"] - r["y0"]
        if r["resolution"] == 1:
            assert (r["x0"], r["y0"], sx, sy) == (70, 60, 32, 32)
        else:
            assert 25 <= sx < 40 and sx == sy
            assert -5 <= r["x0"] - 70 < 5 and -5 <= r["y0"] - 60 < 5
        assert r["class_id"] == 3 and r["reference_id"] == "p0" and r["split"] == "train"
        assert r["distance"] == float(r["rank"])
    # the small neighbour cannot hold the cube at (70, 60, 20): its 3 crops are dropped, never clipped
    assert dropped == 3 and not [r for r in rows if r["patient_id"] == "small"]
    assert sorted((r["rank"], r["resolution"]) for r in rows) == [(k, s) for k in range(3) for s in (1, 2, 3)]
    as_box_table(rows)  # the crop-box contract of semgen_ray.data.boxes


def test_rescaled_crops_redrawn_near_the_border():
    # x = 100: x + dx + s would often pass 128, the draw is redrawn until it fits (or dropped)
    rows, dropped = make(coordinate=(96, 96, 40), seed=1)
    for r in rows:
        assert r["x1"] <= SHAPES[r["patient_id"]][0] and r["y1"] <= SHAPES[r["patient_id"]][1]
    assert dropped >= 3  # the 3 crops of "small" at least
    assert any(r["resolution"] > 1 for r in rows)


def test_validation_is_resolution_one_only():
    rows, _ = make(split="val")
    assert {r["resolution"] for r in rows} == {1} and {r["split"] for r in rows} == {"val"}
    with pytest.raises(ValueError):
        make(split="test")


def test_deterministic_for_a_seed():
    assert make(seed=5) == make(seed=5)
    assert make(seed=5) != make(seed=6)


def test_patch_scale():
    assert patch_range((64, 64, 32), 50, 80, 10) == (50, 80, 10)
    assert patch_range((32, 32, 16), 50, 80, 10, patch_scale="auto") == (25, 40, 5)
    rows, _ = make(min_patch=50, max_patch=80, max_offset=10, patch_scale="auto")
    assert all(25 <= r["x1"] - r["x0"] < 40 for r in rows if r["resolution"] > 1)


def test_neighbour_coordinates_for_body_box_mode():
    coords = {"p0": (10, 10, 5), "p1": (20, 20, 5), "p2": (30, 30, 5), "small": (5, 5, 5)}
    rows, dropped = make(neighbour_coords=coords, resolutions=1)
    assert dropped == 0
    assert [(r["patient_id"], r["x0"], r["y0"]) for r in rows] == [(p, c[0], c[1]) for p, c in coords.items()]
