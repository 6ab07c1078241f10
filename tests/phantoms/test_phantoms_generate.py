"""generate_patient: determinism, the Volume it returns, and the JSON-serialisable parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semgen_ray.io.volume import Volume
from semgen_ray.phantoms import PatientParams, generate_patient, render, sample_params

TINY = (64, 64, 32)


def test_same_seed_gives_identical_patient():
    a = generate_patient(3, cohort_seed=7, shape=TINY)
    b = generate_patient(3, cohort_seed=7, shape=TINY)
    np.testing.assert_array_equal(a[0].array, b[0].array)
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert a[0].extra == b[0].extra


def test_different_index_or_cohort_gives_different_patient():
    base = generate_patient(0, shape=TINY)[0].array
    other_index = generate_patient(1, shape=TINY)[0].array
    other_cohort = generate_patient(0, cohort_seed=1, shape=TINY)[0].array
    assert np.mean(base != other_index) > 0.5
    assert np.mean(base != other_cohort) > 0.5
    assert sample_params(0, 0) != sample_params(0, 1)


def test_volume_contract():
    vol, label, nodules = generate_patient(2, cohort_seed=5, shape=TINY)
    assert isinstance(vol, Volume)
    assert vol.modality == "CT" and vol.array.dtype == np.int16 and vol.shape == TINY
    assert vol.source == "phantom://seed5/2"
    assert vol.spacing == pytest.approx((360 / 64, 360 / 64, 320 / 32))
    # grid centred on the isocentre
    assert np.allclose(np.array(vol.origin) + (np.array(TINY) - 1) / 2 * np.array(vol.spacing), 0.0)
    assert vol.array.min() >= -1024 and vol.array.max() <= 3071
    assert label.dtype == np.uint8 and label.shape == TINY
    json.dumps(vol.extra)  # JSON-serialisable
    json.dumps(nodules)
    assert nodules["label_kind"] == "instance"
    assert nodules["count"] == len(nodules["nodules"])


def test_spacing_follows_shape_and_can_be_given():
    vol = generate_patient(0, shape=(32, 32, 16))[0]
    assert vol.spacing == pytest.approx((11.25, 11.25, 20.0))
    vol = generate_patient(0, shape=(32, 32, 16), spacing=(4.0, 4.0, 8.0))[0]
    assert vol.spacing == (4.0, 4.0, 8.0)


def test_params_json_round_trip_renders_the_same():
    params = sample_params(0, 4)
    again = PatientParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert again == params
    hu_a, lab_a = render(params, TINY)
    hu_b, lab_b = render(again, TINY)
    np.testing.assert_array_equal(hu_a, hu_b)
    np.testing.assert_array_equal(lab_a, lab_b)


def test_render_matches_generate_patient():
    vol, label, _ = generate_patient(6, shape=TINY)
    hu, lab = render(sample_params(0, 6), TINY)
    np.testing.assert_array_equal(vol.array, hu)
    np.testing.assert_array_equal(label, lab)
    params = sample_params(0, 6)
    assert PatientParams.from_dict(vol.extra["phantom"]) == params
    assert vol.extra["habitus"] == params.habitus and vol.extra["habitus_name"] == params.habitus_name
    assert (vol.extra["cohort_seed"], vol.extra["index"]) == (0, 6)


def test_rejects_negative_index():
    with pytest.raises(ValueError, match="index"):
        generate_patient(-1, shape=TINY)
