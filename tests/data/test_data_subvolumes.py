"""Random sub-volume boxes: seeded by (seed, epoch, patient), in bounds, draws separate from reads."""

import numpy as np
import pytest

from semgen_ray.data.boxes import BoxError, box_arrays
from semgen_ray.data.subvolumes import draw_subvolume_boxes

SHAPES = {"P0": (96, 80, 40), "P1": (70, 90, 36), "P2": (64, 64, 32)}


def test_deterministic_in_bounds_and_epoch_dependent():
    a = draw_subvolume_boxes(SHAPES, (32, 32, 16), per_patient=6, seed=7, epoch=0)
    b = draw_subvolume_boxes(SHAPES, (32, 32, 16), per_patient=6, seed=7, epoch=0)
    c = draw_subvolume_boxes(SHAPES, (32, 32, 16), per_patient=6, seed=7, epoch=1)
    d = draw_subvolume_boxes(SHAPES, (32, 32, 16), per_patient=6, seed=8, epoch=0)
    assert a.equals(b) and not a.equals(c) and not a.equals(d)
    lo, hi = box_arrays(a)
    dims = np.array([SHAPES[p] for p in a.column("patient_id").to_pylist()])
    assert (lo >= 0).all() and (hi <= dims).all() and (hi - lo == [32, 32, 16]).all()
    assert a.column("draw").to_pylist() == list(range(6)) * 3
    assert set(c.column("epoch").to_pylist()) == {1}


def test_patient_draw_does_not_depend_on_the_cohort():
    full = draw_subvolume_boxes(SHAPES, (32, 32, 16), per_patient=4, seed=1)
    alone = draw_subvolume_boxes({"P1": SHAPES["P1"]}, (32, 32, 16), per_patient=4, seed=1)
    mask = np.asarray(full.column("patient_id").to_pylist()) == "P1"
    np.testing.assert_array_equal(np.concatenate(box_arrays(full), 1)[mask],
                                  np.concatenate(box_arrays(alone), 1))


def test_exact_fit_and_too_small():
    t = draw_subvolume_boxes({"P2": (64, 64, 32)}, (64, 64, 32), per_patient=3)
    assert set(t.column("x0").to_pylist()) == {0}
    with pytest.raises(BoxError, match="'P2'.*smaller"):
        draw_subvolume_boxes({"P2": (64, 64, 32)}, (65, 64, 32))
