"""Nodules: inside the lungs, labelled by instance, sizes and densities as reported."""

from __future__ import annotations

import numpy as np
from semgen_ray.phantoms.anatomy import sample_params
from semgen_ray.phantoms.nodules import KINDS
from semgen_ray.phantoms.tissues import Tissue


def test_counts_kinds_and_sizes_are_in_range():
    counts = []
    for i in range(40):
        p = sample_params(3, i)
        counts.append(len(p.nodules))
        for n in p.nodules:
            assert n.kind in KINDS
            assert 3.0 <= n.diameter_mm <= 30.0
    assert max(counts) <= 3 and min(counts) == 0 and max(counts) >= 2


def test_nodules_lie_in_the_lungs_and_match_labels(cohort):
    seen = 0
    for params, r in cohort:
        ids = set(np.unique(r.label)) - {0}
        assert ids == set(range(1, len(params.nodules) + 1))
        assert np.all(r.tissues[r.label > 0] == Tissue.LUNG)
        vox_mm3 = float(np.prod(r.grid.spacing))
        for info, nod in zip(r.nodules, params.nodules):
            seen += 1
            assert r.label[tuple(info["center_voxel"])] == info["id"]
            assert info["n_voxels"] == np.count_nonzero(r.label == info["id"])
            if nod.diameter_mm > 3 * max(r.grid.spacing):
                d_eq = 2 * (3 * info["n_voxels"] * vox_mm3 / (4 * np.pi)) ** (1 / 3)
                assert 0.5 < d_eq / nod.diameter_mm < 1.7
                if nod.kind == "solid":
                    assert info["median_hu"] > -250
                elif nod.kind == "ground-glass":
                    assert -850 < info["median_hu"] < -150
    assert seen >= 3


def test_default_grid_nodules(default_patient):
    params, r = default_patient
    assert len(params.nodules) >= 1
    assert r.label.max() == len(params.nodules)
    for info in r.nodules:
        assert info["n_voxels"] > 0
        if info["kind"] == "solid" and info["diameter_mm"] > 8:
            # partial volume lowers the rim; the bulk of a solid nodule is soft tissue
            assert np.percentile(r.hu[r.label == info["id"]], 75) > -50
