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


def test_cli_radiographs_store_2d_images_beside_nothing_3d_and_skip_on_rerun(tmp_path, capsys):
    """``--radiographs``: each patient's PA film as a 2D image (``xray_<i>``, kind 2d) with its nodule
    ids as the label; a 3D reader of the store sees no patients."""
    from semgen_ray.phantoms.radiograph import BITS, phantom_radiograph

    args = ["--radiographs", "--n", "2", "--out", str(tmp_path / "x.zarr"), "--shape", "64", "64", "32",
            "--seed", "7", "--no-progress"]
    assert main(args) == 0
    store = open_store(tmp_path / "x.zarr")
    assert store.image_ids == ["xray_00000", "xray_00001"] and store.patient_ids == [] and store.shapes() == {}
    film = phantom_radiograph(1, cohort_seed=7, shape=(64, 64, 32))
    array, meta = store.read("xray_00001", normalize=True)
    np.testing.assert_allclose(array, film.image / (2 ** BITS - 1), atol=0.5 / 65535 + 1e-7)
    assert meta["kind"] == "2d" and meta["modality"] == "DX" and meta["spacing"] == film.pixel_spacing
    assert np.array_equal(store.read_label("xray_00001"), film.mask)
    assert meta["extra"]["nodule_boxes"] == film.boxes and meta["source"] == "phantom-radiograph://seed7/1"
    assert meta["extra"]["habitus_name"] == generate_patient(1, cohort_seed=7, shape=(4, 4, 4))[0].extra["habitus_name"]
    rows = {r["patient_id"]: r for r in store.manifest_rows()}
    assert rows["xray_00001"]["kind"] == "2d" and rows["xray_00001"]["shape"] == list(film.image.shape)
    assert "2 written" in capsys.readouterr().out
    assert main(args) == 0
    assert "2 unchanged (skipped)" in capsys.readouterr().out
