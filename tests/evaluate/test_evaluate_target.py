"""The evaluation's phantom target cohort (``run.target_store``, the store the stage builds its target
tasks from, written through the in-process Ray): its size, cohort seed and shape follow the settings."""

from dataclasses import replace

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("ray_local")


def test_target_cohort_follows_target_patients_target_seed_and_target_shape(tmp_path):
    """evaluate.target_patients phantoms of evaluate.target_shape voxels, each the generator's patient of
    evaluate.target_seed (not of phantoms.seed, the pretraining cohort's), in ``<run>/target.zarr``;
    a target seed equal to phantoms.seed is refused."""
    from local_cluster import LOCAL_RAY

    from semgen_ray.config import load_config
    from semgen_ray.stages.evaluation import EvaluationError, target_store
    from semgen_ray.phantoms import generate_patient
    from semgen_ray.store import open_store

    def config(name, target_patients, target_seed, target_shape):
        c = load_config(None, [f"run_dir={tmp_path / name}", f"evaluate.target_patients={target_patients}",
                               f"evaluate.target_seed={target_seed}", f"evaluate.target_shape={list(target_shape)}"])
        return replace(c, ray=LOCAL_RAY)  # the tests' running Ray, as it is

    cohorts = {"a": (3, 1000, (48, 48, 24)), "b": (4, 1001, (64, 48, 32))}
    for name, (target_patients, target_seed, target_shape) in cohorts.items():
        cfg = config(name, target_patients, target_seed, target_shape)
        assert cfg.phantoms.seed == 0 and tuple(cfg.phantoms.shape) == (128, 128, 64)  # the pretraining cohort
        uri = target_store(cfg)
        assert uri == str(tmp_path / name / "target.zarr")
        store = open_store(uri)
        rows = sorted(store.manifest_rows(), key=lambda r: r["patient_id"])
        assert [r["patient_id"] for r in rows] == [f"phantom_{i:05d}" for i in range(target_patients)]
        assert all(r["status"] == "ok" for r in rows)
        for i, r in enumerate(rows):
            volume, _ = store.read(r["patient_id"])
            label = store.read_label(r["patient_id"])
            assert volume.shape == label.shape == target_shape
            want = generate_patient(i, cohort_seed=target_seed, shape=target_shape)
            pretraining = generate_patient(i, cohort_seed=cfg.phantoms.seed, shape=target_shape)
            assert np.array_equal(label, want[1]) and np.allclose(volume, want[0].array)
            assert not np.allclose(volume, pretraining[0].array)  # not the pretraining cohort's patient
    with pytest.raises(EvaluationError, match="target_seed equals phantoms.seed"):
        target_store(config("c", 3, 0, (48, 48, 24)))
    assert not (tmp_path / "c").exists()
