"""Anatomy: tissue HU, orientation (LPS) and positions that are consistent across patients."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from semgen_ray.phantoms.geometry import layout, to_world
from semgen_ray.phantoms.tissues import Tissue

SMALL = (128, 128, 64)  # the grid of the `cohort` fixture (conftest.py)


def _centroid(mask):
    return np.argwhere(mask).mean(axis=0)


def test_tissue_hu_ranges(cohort):
    for params, r in cohort:
        hu, t = r.hu, r.tissues
        lung = t == Tissue.LUNG
        eroded = ndimage.binary_erosion(lung, iterations=2)
        assert np.median(hu[eroded]) < -600
        spine = np.isin(t, [Tissue.BONE_TRABECULAR, Tissue.BONE_CORTICAL])
        assert np.median(hu[spine]) > 150
        fat = ndimage.binary_erosion(t == Tissue.FAT)
        if fat.sum() > 50:
            assert -160 < np.median(hu[fat]) < -40
        heart = ndimage.binary_erosion(t == Tissue.HEART, iterations=2)
        assert 0 < np.median(hu[heart]) < 80
        # air outside the body: the grid's corners
        corner = hu[:8, :8, :].astype(np.float32)
        assert abs(np.median(corner) + 1000) < 15
        assert corner.max() < -850 and corner.std() < 30


def test_orientation_lps(default_patient):
    """x → patient left (heart), y → posterior (spine), z → superior (trachea, apices)."""
    params, r = default_patient
    t = r.tissues
    lung_c = _centroid(t == Tissue.LUNG)
    heart_c = _centroid(t == Tissue.HEART)
    spine_c = _centroid(t == Tissue.DISC)
    trachea_c = _centroid(t == Tissue.AIRWAY_LUMEN)
    assert heart_c[0] > lung_c[0] + 5  # heart on the patient's left
    assert heart_c[1] < lung_c[1]  # heart anterior
    assert spine_c[1] > lung_c[1] + 10  # spine posterior
    assert trachea_c[2] > lung_c[2] + 10  # trachea superior
    # right lung (low x) is the bigger one (the heart takes room on the left) ...
    comps, n = ndimage.label(t == Tissue.LUNG)
    sizes = np.bincount(comps.ravel())[1:]
    big = np.argsort(sizes)[::-1][:2] + 1
    right, left = sorted(big, key=lambda k: _centroid(comps == k)[0])
    assert sizes[right - 1] > sizes[left - 1]
    # ... and its diaphragm dome is higher: compare the lung bases in columns mirrored about the body's
    # midline, lateral and posterior to the heart (which sits on the left dome)
    lay = layout(params)
    pts = np.array([[-0.7 * lay.cav_a, lay.cav_yc + 0.3 * lay.cav_b, 0.0],
                    [0.7 * lay.cav_a, lay.cav_yc + 0.3 * lay.cav_b, 0.0]])
    (xr, yr, _), (xl, yl, _) = np.rint(r.grid.to_voxel(to_world(params, pts))).astype(int)
    assert xr < xl  # patient right at low x

    def base(k, x, y):
        cols = comps[x - 2:x + 3, y - 2:y + 3, :] == k
        return np.median(np.argmax(cols, axis=2)[cols.any(axis=2)])

    assert base(right, xr, yr) > base(left, xl, yl)


def test_positions_consistent_across_patients(cohort):
    shape = np.array(SMALL)
    cents, right_x, left_x = [], [], []
    for params, r in cohort:
        lung = r.tissues == Tissue.LUNG
        cents.append(_centroid(lung) / shape)
        comps, _ = ndimage.label(lung)
        sizes = np.bincount(comps.ravel())[1:]
        two = np.argsort(sizes)[::-1][:2] + 1
        xs = sorted(_centroid(comps == k)[0] / shape[0] for k in two)
        right_x.append(xs[0])
        left_x.append(xs[1])
    cents = np.array(cents)
    assert np.all(cents.max(axis=0) - cents.min(axis=0) < 0.12)  # < 12% of the field of view
    assert np.all(np.array(left_x) - np.array(right_x) > 0.25)  # two lungs, either side
    assert np.all(np.array(right_x) < 0.5) and np.all(np.array(left_x) > 0.5)


def test_same_coordinates_hit_lung_in_other_patients(cohort):
    """Self-discovery crops every neighbour at the reference's voxel coordinate: a lung window in one
    patient should mostly be lung in the others."""
    params, ref = cohort[0]
    lung_ref = (ref.tissues == Tissue.LUNG).astype(np.float32)
    size = (32, 32, 16)  # 64×64×32 at the default resolution
    best = None
    for x in range(0, SMALL[0] - size[0], 8):
        for y in range(0, SMALL[1] - size[1], 8):
            for z in range(0, SMALL[2] - size[2], 8):
                f = lung_ref[x:x + size[0], y:y + size[1], z:z + size[2]].mean()
                if best is None or f > best[0]:
                    best = (f, (x, y, z))
    x, y, z = best[1]
    fractions = [np.mean(r.tissues[x:x + size[0], y:y + size[1], z:z + size[2]] == Tissue.LUNG)
                 for _, r in cohort[1:]]
    assert best[0] > 0.9
    assert min(fractions) > 0.5
