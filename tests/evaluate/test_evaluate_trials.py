"""Target tasks from a labelled phantom store and the Tune trial grid (local Ray, tiniest sizes)."""

import numpy as np
import pytest

from semgen_ray.evaluate.report import write_report
from semgen_ray.evaluate.tasks import TaskData, build_tasks, subsample
from semgen_ray.evaluate.trials import run_trials

pytestmark = pytest.mark.usefixtures("ray_local")

CUBE = (16, 16, 8)
MODEL = {"width": 4, "depth": 4, "norm": "batch", "head": "torch", "in_channels": 1, "out_channels": 1,
         "embed_dim": None, "out_activation": "sigmoid"}


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory) -> str:
    """12 phantoms of 96×96×48 with nodule labels: patients 0-5 train, 6-8 val, 9-11 test."""
    from semgen_ray.phantoms import generate_patient
    from semgen_ray.store import open_store

    path = tmp_path_factory.mktemp("target") / "store.zarr"
    store = open_store(str(path), mode="w")
    rows = []
    for i in range(12):
        volume, label, _ = generate_patient(i, cohort_seed=7, shape=(96, 96, 48))
        split = "train" if i < 6 else "val" if i < 9 else "test"
        rows.append(store.write(f"target_{i:02d}", volume, label=label, split=split))
    store.update_manifest(rows)
    return str(path)


def test_tasks_keep_patients_in_their_split(labelled_store, tmp_path):
    tasks = build_tasks(labelled_store, CUBE, seed=0, min_voxels=4)
    cls, seg = tasks["classification"], tasks["segmentation"]
    for split, part in cls.splits.items():
        assert part["x"].shape[1:] == (1, *CUBE) and 0 <= part["x"].min() and part["x"].max() <= 1
        assert set(part["y"].tolist()) == {0, 1}  # nodule and non-nodule cubes in every split
    assert set(cls.splits["test"]["patient"]) <= {"target_09", "target_10", "target_11"}
    assert not set(cls.splits["train"]["patient"]) & set(cls.splits["test"]["patient"])
    assert all(m.any() for m in seg.splits["train"]["y"])  # every segmentation cube holds its nodule
    assert seg.splits["train"]["y"].shape == seg.splits["train"]["x"].shape
    cls.save(tmp_path / "c.npz")
    again = TaskData.load(tmp_path / "c.npz")
    assert again.sizes() == cls.sizes() and np.array_equal(again.splits["val"]["x"], cls.splits["val"]["x"])
    half = subsample(cls, 0.5, seed=0)
    assert len(set(half.splits["train"]["patient"])) < len(set(cls.splits["train"]["patient"]))


def test_two_arm_two_trial_grid_reports_and_resumes(labelled_store, tmp_path):
    """An arm whose weights are missing fails its trials; once they exist, a re-run resumes the
    experiment: finished trials are kept, only the failed ones run."""
    import torch

    from semgen_ray.models import build_model, export_weights

    data = build_tasks(labelled_store, CUBE, seed=0, min_voxels=4)
    weights = tmp_path / "pretrained"
    arms = {"scratch": None, "given": str(weights)}
    settings = {"model": MODEL, "lr": 1e-3, "batch_size": 4, "max_epochs": 1, "patience": 1,
                "label_fraction": 1.0, "threads": 1}
    logs = []
    rows, failed = run_trials(data, arms, settings, tmp_path / "eval", trials=2, log=logs.append)
    assert len(rows) == 4 and {r["arm"] for r in rows} == {"scratch"} and len(failed) == 4
    torch.manual_seed(0)
    export_weights(build_model(MODEL, num_classes=3), weights, {"input_size": list(CUBE)})
    again, failed = run_trials(data, arms, settings, tmp_path / "eval", trials=2, log=logs.append)
    assert not failed and len(again) == 8
    assert any("resuming" in line for line in logs)
    kept = [r for r in again if r["arm"] == "scratch"]
    assert [r["seconds"] for r in kept] == [r["seconds"] for r in rows]  # not re-run
    for r in again:
        if r["task"] == "classification":
            assert 0 <= r["auc"] <= 1
        else:
            assert 0 <= r["iou"] <= 1 and 0 <= r["dice"] <= 1 and 0 <= r["mean_iou"] <= 1
    summary = write_report(tmp_path / "report", again, alpha=0.05, header="test")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Student t" in text and "Mann-Whitney" in text and "**" in text
    assert summary["classification"]["comparisons"]["best"] in arms
    for name in ("results.csv", "box_classification.png", "bars_segmentation.png"):
        assert (tmp_path / "report" / name).stat().st_size > 100
