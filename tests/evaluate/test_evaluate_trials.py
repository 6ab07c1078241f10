"""Target tasks from a labelled phantom store and the Tune trial grid (local Ray, tiniest sizes)."""

import logging

import numpy as np
import pytest
from ray.tune import Callback

from semgen_ray.evaluate.report import write_report
from semgen_ray.evaluate.tasks import TaskData, build_tasks, subsample
from semgen_ray.evaluate.trials import run_trials

from figures import check_evaluation_figures

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

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


class _Recorder(Callback):
    """Counts the trials that end in this session (a Tune callback, as the evaluation's progress lines),
    the resources each trial started with, and the most trials running at once."""

    def __init__(self):
        self.ended, self.resources, self.running, self.most = [], [], 0, 0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.resources.append(dict(trial.placement_group_factory.required_resources))
        self.running += 1
        self.most = max(self.most, self.running)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended.append("done")
        self.running -= 1

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended.append("error")
        self.running -= 1


def test_two_arm_two_trial_grid_reports_and_resumes(labelled_store, tmp_path, caplog):
    """Grid task × arm × label fraction × seed (3 seeds at the primary fraction 1.0, 2 on the curve
    fraction 0.5) with per-task overrides. An arm whose weights are missing
    fails its trials; once they exist, a re-run resumes the experiment: finished trials are kept, only
    the failed ones run (and this session's callbacks see them)."""
    import torch

    from semgen_ray.evaluate.finetune import ROW_KEYS
    from semgen_ray.models import build_model, export_weights

    data = build_tasks(labelled_store, CUBE, seed=0, min_voxels=4)
    weights = tmp_path / "pretrained"
    arms = {"scratch": None, "given": str(weights)}
    settings = {"model": MODEL, "head": "linear", "lr": 1e-3, "batch_size": 4, "max_steps": 4, "eval_every": 2,
                "patience": 2, "lr_patience": 1, "per_task": {"segmentation": {"max_steps": 2, "eval_every": 1}},
                "label_fractions": [1.0, 0.5], "primary_fraction": 1.0, "curve_trials": 2, "threads": 1}
    with pytest.raises(ValueError, match="lr_patience"):
        run_trials(data, arms, {**settings, "per_task": {"classification": {"lr_patience": 2}}},
                   tmp_path / "bad", trials=3)
    caplog.set_level(logging.INFO, logger="semgen_ray")
    first = _Recorder()
    rows, failed = run_trials(data, arms, settings, tmp_path / "eval", trials=3, cpus_per_trial=2,
                              callbacks=[first])
    assert len(rows) == 10 and {r["arm"] for r in rows} == {"scratch"} and len(failed) == 10
    assert sorted(first.ended) == ["done"] * 10 + ["error"] * 10
    # cpus_per_trial: each trial asks Ray for 2 CPUs (default 1), so the 4 CPUs run at most 2 at once
    assert first.resources == [{"CPU": 2.0}] * 20 and first.most <= 2
    torch.manual_seed(0)
    export_weights(build_model(MODEL, num_classes=3), weights, {"input_size": list(CUBE)})
    second = _Recorder()
    again, failed = run_trials(data, arms, settings, tmp_path / "eval", trials=3, cpus_per_trial=2,
                               callbacks=[second])
    assert not failed and len(again) == 20
    assert any("resuming" in line for line in caplog.messages)
    assert second.ended == ["done"] * 10  # only the trials that had failed ran again
    assert second.resources == [{"CPU": 2.0}] * 10 and second.most <= 2
    kept = [r for r in again if r["arm"] == "scratch"]
    assert [r["seconds"] for r in kept] == [r["seconds"] for r in rows]  # not re-run
    assert {(r["task"], r["label_fraction"], r["seed"]) for r in again if r["arm"] == "given"} == {
        (t, f, s) for t in ("classification", "segmentation") for f, n in ((0.5, 2), (1.0, 3)) for s in range(n)}
    for r in again:
        assert set(r) == set(ROW_KEYS) - ({"dice", "iou", "mean_iou"} if r["task"] == "classification" else {"auc"})
        assert r["steps"] <= (4 if r["task"] == "classification" else 2)
        if r["task"] == "classification":
            assert 0 <= r["auc"] <= 1
        else:
            assert 0 <= r["iou"] <= 1 and 0 <= r["dice"] <= 1 and 0 <= r["mean_iou"] <= 1
    for task in ("classification", "segmentation"):
        cases = {r["label_fraction"]: r["train_cases"] for r in again if r["task"] == task and r["seed"] == 0}
        assert cases[0.5] < cases[1.0]
    summary = write_report(tmp_path / "report", again, alpha=0.05, header="test", label_fraction=1.0)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Student t" in text and "Mann-Whitney" in text and "**" in text
    assert summary["classification"]["comparisons"]["best"] in arms
    assert (tmp_path / "report" / "results.csv").stat().st_size > 100
    check_evaluation_figures(tmp_path / "report", ("classification", "segmentation"), arms=2, bars=False)
    assert all(r["subset_draws"] == (0 if r["label_fraction"] == 1.0 else 1) for r in again)
    patients = {t: len(set(d.splits["train"]["patient"])) for t, d in data.items()}
    assert all(r["train_patients"] == (patients[r["task"]] if r["label_fraction"] == 1.0
                                       else round(0.5 * patients[r["task"]])) for r in again)

    # other settings set these 20 trials aside, counted from the folders Tune wrote (no new grid run)
    import json

    from semgen_ray.evaluate.trials import claim

    storage = str((tmp_path / "eval" / "tune").resolve())
    key = json.loads((tmp_path / "eval" / "tune" / "experiment.json").read_text())
    key["settings"]["lr"] = 1e-2
    moved = claim(storage, json.dumps(key, sort_keys=True))
    assert "settings.lr" in caplog.messages[-1] and "its 20 trial folder(s) were moved" in caplog.messages[-1]
    assert json.loads((tmp_path / moved / "superseded.json").read_text())["trial_folders"] == 20

