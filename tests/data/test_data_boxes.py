"""The crop-box table contract: accepted inputs, validation messages, grouping by patient."""

import numpy as np
import pyarrow as pa
import pytest

from semgen_ray.data.boxes import (
    BoxError,
    as_box_table,
    box_arrays,
    check_in_bounds,
    group_by_patient,
)


def box(pid, lo, size=(4, 4, 2), **extra):
    return {"patient_id": pid, **dict(zip(("x0", "y0", "z0"), lo)),
            **{k: v + s for k, v, s in zip(("x1", "y1", "z1"), lo, size)}, **extra}


def test_accepts_rows_columns_and_tables():
    rows = [box("A", (0, 0, 0), class_id=3), box("B", (1, 2, 3), class_id=4)]
    t1 = as_box_table(rows)
    t2 = as_box_table({k: [r[k] for r in rows] for k in rows[0]})
    t3 = as_box_table(pa.Table.from_pylist(rows).cast(pa.Table.from_pylist(rows).schema.set(
        1, pa.field("x0", pa.int32()))))
    for t in (t1, t2, t3):
        assert t.column("x0").type == pa.int64() and t.column("class_id").to_pylist() == [3, 4]
    lo, hi = box_arrays(t1)
    np.testing.assert_array_equal(lo, [[0, 0, 0], [1, 2, 3]])
    np.testing.assert_array_equal(hi, [[4, 4, 2], [5, 6, 5]])
    assert as_box_table([]).num_rows == 0


@pytest.mark.parametrize("rows,msg", [
    ([{"patient_id": "A", "x0": 0}], "lacks column"),
    ([box("A", (0, 0, 0), size=(4, 0, 2))], "empty or negative.*'A'"),
    ([box("A", (-1, 0, 0))], "empty or negative"),
    ([box("A", (0, 0, 0), cube=1)], "written by the reader"),
    ([{**box("A", (0, 0, 0)), "x0": 1.5}], "must hold integers"),
])
def test_malformed_boxes(rows, msg):
    with pytest.raises(BoxError, match=msg):
        as_box_table(rows)


def test_bounds_and_unknown_patients():
    t = as_box_table([box("A", (0, 0, 0)), box("A", (6, 0, 0))])
    check_in_bounds(t, {"A": (10, 4, 2)})
    with pytest.raises(BoxError, match=r"row 1, patient 'A' box \(x0=6.*shape \(9, 4, 2\)"):
        check_in_bounds(t, {"A": (9, 4, 2)})
    with pytest.raises(BoxError, match=r"not complete patients.*\['A'\]"):
        check_in_bounds(t, {"B": (10, 10, 10)})


def test_group_by_patient_order_and_split():
    t = as_box_table([box(p, (i, 0, 0)) for i, p in enumerate("BABBA")])
    groups = group_by_patient(t)
    assert [(p, r.tolist()) for p, r in groups] == [("B", [0, 2, 3]), ("A", [1, 4])]
    split = group_by_patient(t, max_boxes_per_task=2)
    assert [(p, r.tolist()) for p, r in split] == [("B", [0, 2]), ("B", [3]), ("A", [1, 4])]
