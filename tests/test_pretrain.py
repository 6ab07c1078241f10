"""The main job's entry point on a tiny phantom cohort (local Ray)."""

import json

import pytest

from semgen_ray.pretrain import main
from semgen_ray.store import open_store

pytestmark = pytest.mark.usefixtures("ray_local")


def test_pretrain_runs_available_stages_and_reruns_idempotently(tmp_path, capsys):
    args = ["--run-dir", str(tmp_path / "run"), "--set", "phantoms.n=3", "--stages", "data,stream",
            "--set", "phantoms.shape=[64, 64, 32]", "--set", "data.volume_shape=[32, 32, 16]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "run directory:" in out
    store = open_store(tmp_path / "run" / "store.zarr")
    assert store.patient_ids == ["phantom_00000", "phantom_00001", "phantom_00002"]
    assert store.has_label("phantom_00000")
    stream = json.loads((tmp_path / "run" / "stream.json").read_text())
    assert stream["volumes"]["rows"] == 3 and stream["cubes"]["rows"] == 3 * 8
    assert stream["cubes"]["shape"] == [32, 32, 16]
    assert 0.0 < stream["cubes"]["mean_intensity"] < 1.0
    assert stream["restoration_pairs"]["rows"] == 24 and stream["restoration_pairs"]["preset"] == "sg"
    assert 0.0 < stream["restoration_pairs"]["fraction_voxels_changed"] <= 1.0
    assert (tmp_path / "run" / "config.yaml").is_file()
    # A second run finds every phantom unchanged.
    assert main(args + ["--stages", "data"]) == 0
    assert "3 unchanged (skipped)" in capsys.readouterr().out


def test_pretrain_streams_an_ingested_store(tmp_path, real_data, capsys):
    from semgen_ray.ingest import ingest

    assert ingest([real_data / "lidc_slabs"], tmp_path / "lidc.zarr", progress=False).ok
    assert main(["--run-dir", str(tmp_path / "run"), "--store", str(tmp_path / "lidc.zarr"),
                 "--stages", "data,stream", "--set", "data.volume_shape=[32, 32, 8]", "--set", "data.cube_size=[32, 32, 8]",
                 # 8 slices are too thin for the reference's 3-voxel painting margin
                 "--set", "train.corruption_overrides={paint_margin: 1}"]) == 0
    assert "using the existing store" in capsys.readouterr().out
    stream = json.loads((tmp_path / "run" / "stream.json").read_text())
    assert stream["patients"] == 3 and stream["cubes"]["rows"] == 24


def test_pretrain_refuses_unknown_stages_and_bad_config(tmp_path, capsys):
    assert main(["--run-dir", str(tmp_path), "--stages", "data,finetune"]) == 1
    assert "unknown stage(s) ['finetune']" in capsys.readouterr().err
    assert main(["--set", "train.lr=-1"]) == 2
    assert "train.lr must be positive" in capsys.readouterr().err


def test_pretrain_refuses_a_corruption_that_does_not_fit_the_cube(tmp_path, capsys):
    args = ["--run-dir", str(tmp_path / "run"), "--stages", "data,stream", "--set", "phantoms.n=2",
            "--set", "phantoms.shape=[64, 64, 32]",
            "--set", "data.volume_shape=[32, 32, 16]", "--set", "data.cube_size=[32, 32, 8]"]
    assert main(args) == 1
    assert "train.corruption does not fit (32, 32, 8) cubes" in capsys.readouterr().err


def test_resume_of_a_folder_without_a_run_is_refused(tmp_path, capsys):
    # the whole chain, its reuse of finished stages and --resume run end to end in
    # tests/cluster/test_object_store_run.py (run folder and store on an S3 server)
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
