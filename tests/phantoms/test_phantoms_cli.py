"""``python -m semgen_ray.phantoms``: the cohort goes through the ingest writer into a store."""

import numpy as np
import pytest

from semgen_ray.phantoms import generate_patient
from semgen_ray.phantoms.__main__ import main
from semgen_ray.store import open_store

pytestmark = pytest.mark.usefixtures("ray_local")


def test_cli_writes_a_deterministic_cohort_and_skips_it_on_rerun(tmp_path, capsys):
    args = ["--n", "3", "--out", str(tmp_path / "p.zarr"), "--shape", "64", "64", "32", "--seed", "7",
            "--no-progress"]
    assert main(args) == 0
    store = open_store(tmp_path / "p.zarr")
    assert store.patient_ids == ["phantom_00000", "phantom_00001", "phantom_00002"]
    volume, label, nodules = generate_patient(1, cohort_seed=7, shape=(64, 64, 32))
    array, meta = store.read("phantom_00001")
    assert np.array_equal(array, volume.array) and meta["spacing"] == volume.spacing
    assert np.array_equal(store.read_label("phantom_00001"), label)
    assert meta["source"] == "phantom://seed7/1" and meta["extra"]["nodules"] == nodules
    assert "3 written" in capsys.readouterr().out
    assert main(args) == 0
    assert "3 unchanged (skipped)" in capsys.readouterr().out


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["--n", "0", "--out", str(tmp_path / "p.zarr")]) == 2
    assert "phantoms.n must be >= 1" in capsys.readouterr().err
