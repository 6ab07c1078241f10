"""The smallest cohort self-discovery runs on, and the errors that say how to run a smaller one."""

from __future__ import annotations

import pytest

from semgen_ray.config import load_config
from semgen_ray.stages.discovery import DiscoveryError, _check_cohort_size, _split_ids


def test_too_few_patients_name_the_settings_that_fit():
    d = load_config("cpu-tiny", []).discovery                  # K = 6 train, 2 val neighbours, C = 5
    _check_cohort_size(d, max(d.k_train, d.num_classes), d.k_val, "s.zarr")   # the minimum runs
    with pytest.raises(DiscoveryError) as err:
        _check_cohort_size(d, 4, 1, "s.zarr")
    text = str(err.value)
    assert "4 train patients in s.zarr, fewer than discovery.k_train=6" in text
    assert "fewer than discovery.num_classes=5" in text and "1 validation patients" in text
    assert "--set discovery.k_train=4 --set discovery.num_classes=4 --set discovery.k_val=1" in text
    with pytest.raises(DiscoveryError, match="split_fractions"):
        _check_cohort_size(d, 4, 0, "s.zarr")                  # no validation patient: no K fits


def test_mixed_modalities_are_counted_and_the_fix_named():
    rows = [{"status": "ok", "modality": m, "split": "train", "patient_id": f"p{i}"}
            for i, m in enumerate(["CT", "CT", "MR"])]
    with pytest.raises(DiscoveryError) as err:
        _split_ids(rows)
    assert "mixes modalities ['CT', 'MR'] (2 CT, 1 MR patients)" in str(err.value)
    assert "store of their own" in str(err.value)


def test_2d_images_beside_the_volumes_are_not_discovery_patients():
    rows = [{"status": "ok", "modality": m, "split": s, "patient_id": p, "kind": k}
            for p, m, s, k in [("p0", "CT", "train", "3d"), ("p1", "CT", "val", "3d"), ("x0", "DX", "train", "2d")]]
    assert _split_ids(rows) == (["p0"], ["p1"])
