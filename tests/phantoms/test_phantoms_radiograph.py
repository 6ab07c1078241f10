"""Digitally reconstructed radiographs of the phantoms: attenuation, film layout, detector, labels."""

from __future__ import annotations

import numpy as np
import pytest

from semgen_ray.phantoms.radiograph import (
    BITS, MU_WATER_PER_MM, Detector, line_integrals, phantom_radiograph, radiograph,
)
from semgen_ray.phantoms.tissues import Tissue

NOISELESS = Detector(photons=0.0, scatter_fraction=0.0, blur_pixels=0.0)


def test_line_integrals_are_the_attenuation_along_y():
    hu = np.full((2, 10, 3), -1000, np.int16)
    hu[0, :4] = 0                      # 4 voxels of water on the rays of x = 0
    hu[1, :] = -1024                   # below air: clipped to no attenuation
    p = line_integrals(hu, spacing_y=2.5)
    assert p.shape == (2, 3)
    np.testing.assert_allclose(p[0], 4 * 2.5 * MU_WATER_PER_MM, rtol=1e-6)
    np.testing.assert_array_equal(p[1], 0.0)


def test_film_layout_head_up_and_patient_right_on_the_viewers_left():
    """A bone block at the patient's left (high x) and top (high z) shows at the top right; its label
    and box go with it."""
    hu = np.full((40, 30, 20), -1000, np.int16)
    hu[5:35, 5:25, 2:18] = 0                 # a water body
    hu[30:34, 10:20, 14:17] = 1500           # bone: left, superior
    label = np.zeros(hu.shape, np.uint8)
    label[30:34, 10:20, 14:17] = 1
    r = radiograph(hu, label, (1.0, 2.0, 3.0), seed=None, detector=NOISELESS)
    assert r.image.shape == r.mask.shape == (20, 40) and r.pixel_spacing == (3.0, 1.0)
    assert r.image.dtype == np.uint16 and r.image.max() <= 2 ** BITS - 1
    rows, cols = np.nonzero(r.image == r.image.max())
    assert set(rows) <= {20 - 1 - z for z in range(14, 17)} and set(cols) <= set(range(30, 34))
    assert r.boxes == [{"id": 1, "row0": 3, "col0": 30, "row1": 6, "col1": 34}]
    assert r.image[0, 0] < r.image[10, 20]   # air outside the body is darker than the body


def test_more_attenuation_is_brighter_and_noise_is_seeded():
    hu = np.full((30, 20, 10), -1000, np.int16)
    for x in range(30):
        hu[x, :, :] = -1000 + 60 * x          # attenuation rising with x
    label = np.zeros(hu.shape, np.uint8)
    clean = radiograph(hu, label, (1.0, 1.0, 1.0), seed=None, detector=NOISELESS)
    assert np.all(np.diff(clean.image[5].astype(int)) >= 0) and clean.image[5, -1] > clean.image[5, 0]
    a, b = (radiograph(hu, label, (1.0, 1.0, 1.0), seed=s) for s in (1, 1))
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, radiograph(hu, label, (1.0, 1.0, 1.0), seed=2).image)
    assert a.boxes == [] and not a.mask.any()


def test_phantom_film_lungs_dark_mediastinum_white_and_every_nodule_boxed(cohort):
    for params, rendering in cohort[:4]:
        r = radiograph(rendering.hu, rendering.label, rendering.grid.spacing, seed=0)
        lung = (rendering.tissues == Tissue.LUNG).mean(axis=1).T[::-1]   # lung fraction along each ray
        bone = np.isin(rendering.tissues, [Tissue.BONE_CORTICAL, Tissue.BONE_TRABECULAR]).any(axis=1).T[::-1]
        in_lungs, central = r.image[lung > 0.3], r.image[(lung == 0) & bone]
        assert in_lungs.size and central.size
        assert np.median(in_lungs) + 500 < np.median(central), params.habitus_name
        measured = {n["id"] for n in rendering.nodules if n["n_voxels"]}
        assert {b["id"] for b in r.boxes} == measured
        for b in r.boxes:
            assert (r.mask[b["row0"]:b["row1"], b["col0"]:b["col1"]] == b["id"]).any()


def test_phantom_radiographs_are_reproducible_and_differ_between_patients():
    a, b = phantom_radiograph(3, shape=(64, 64, 32)), phantom_radiograph(3, shape=(64, 64, 32))
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, phantom_radiograph(4, shape=(64, 64, 32)).image)


@pytest.mark.parametrize("bad", [{"photons": -1.0}, {"scatter_sigma_mm": 0.0}, {"gamma": 0.0}])
def test_bad_detector_settings_and_shapes_are_refused(bad):
    with pytest.raises(ValueError, match="detector"):
        Detector(**bad)
    with pytest.raises(ValueError, match="volume"):
        radiograph(np.zeros((4, 4)), np.zeros((4, 4)), (1.0, 1.0, 1.0))
