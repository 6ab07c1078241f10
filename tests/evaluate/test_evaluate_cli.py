"""``python -m semgen_ray.evaluate`` end to end at the tiniest size: the options reach the outcome.

One scratch-only evaluation on a 16-phantom target cohort: progress lines, the report with paths
relative to the run folder, task validity, the label-efficiency curve; then the same folder with
``evaluate.negatives=random`` rebuilds the task cubes (the cache follows the settings), the
shortcut statistics show the difference, and the trials of the first cubes are set aside, not resumed;
that second run names one task and no curve fraction, and runs that task at the primary fraction only.
"""

import json

import pytest

from semgen_ray.evaluate.__main__ import main

from figures import check_evaluation_figures

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

TINY = ["phantoms.shape=[96, 96, 48]", "data.cube_size=[16, 16, 8]", "model.width=4",
        "evaluate.arms=[scratch]", "evaluate.trials=2", "evaluate.min_voxels=4",
        "ingest.split_fractions=[0.5, 0.25, 0.25]",
        "evaluate.label_fraction=0.5", "evaluate.max_steps=4",
        "evaluate.eval_every=2", "evaluate.patience=2", "evaluate.lr_patience=1", "evaluate.cube_mm=[40, 40, 40]"]


def _run(run_dir, extra, capsys):
    args = ["--run-dir", str(run_dir)]
    for item in TINY + extra:
        args += ["--set", item]
    assert main(args) == 0
    return capsys.readouterr().out


def test_evaluate_cli_reports_progress_relative_paths_and_follows_its_options(tmp_path, capsys):
    from semgen_ray.evaluate.report import read_csv
    from semgen_ray.store import open_store

    run = tmp_path / "run"
    target_patients, curve_fractions = 16, [1.0]  # the cohort default is 32; no curve fraction by default
    cohort = [f"evaluate.target_patients={target_patients}"]
    out = _run(run, cohort + [f"evaluate.curve_fractions={curve_fractions}"], capsys)
    assert "[evaluate] 8 trials: 2 tasks × 1 arms" in out
    assert "[evaluate] trials 8/8 done, 0 running, 0 failed" in out
    assert f"report: {run}/evaluate/report.md" in out
    target = open_store(str(run / "target.zarr")).manifest_rows()
    assert len(target) == target_patients and all(r["status"] == "ok" for r in target)
    rows = read_csv(run / "evaluate" / "results.csv")  # 2 seeds at label_fraction 0.5 and at each curve fraction
    assert sorted((r["task"], r["label_fraction"]) for r in rows) == sorted(
        (t, f) for t in ("classification", "segmentation") for f in [0.5, *curve_fractions] for _ in range(2))
    report = (run / "evaluate" / "report.md").read_text()
    assert str(tmp_path) not in report  # paths relative to the run folder
    assert "target.zarr" in report and "random init" in report
    check_evaluation_figures(run / "evaluate", ("classification", "segmentation"), arms=1, bars=False)
    record = json.loads((run / "evaluate" / "evaluate.json").read_text())
    assert record["report"] == "evaluate/report.md" and record["target_store"] == "target.zarr"
    assert set(record["valid"]) == {"classification", "segmentation"}
    info = record["task_info"]["classification"]
    assert info["settings"]["negatives"] == "candidates" and info["settings"]["cube_mm"] == [40, 40, 40]
    candidates_best = info["shortcut_auc"]["best"]

    # random negatives; evaluate.tasks names one task and evaluate.curve_fractions none: 1 task × 2 seeds
    out = _run(run, cohort + ["evaluate.negatives=random", "evaluate.tasks=[classification]",
                              "evaluate.curve_fractions=[]"], capsys)
    record = json.loads((run / "evaluate" / "evaluate.json").read_text())
    info = record["task_info"]["classification"]
    assert info["settings"]["negatives"] == "random"
    assert info["shortcut_auc"]["best"] > candidates_best  # random boxes: "is this lung?" separates them
    assert "[evaluate] 2 trials: 1 tasks × 1 arms" in out
    rows = read_csv(run / "evaluate" / "results.csv")
    assert [(r["task"], r["label_fraction"]) for r in rows] == [("classification", 0.5)] * 2
    assert set(record["task_info"]) == set(record["valid"]) == {"classification"}
    assert "  classification: " in out and "  segmentation: " not in out  # the per-task summary lines
    # other cubes, other trials: the 8 trials of the first run are set aside (not resumed, not deleted)
    assert "[evaluate] trials 2/2 done" in out and "resuming" not in out
    (aside,) = (run / "evaluate" / "tune" / "superseded").iterdir()
    record = json.loads((aside / "superseded.json").read_text())
    assert record["trial_folders"] == 8 and "cubes.classification" in record["changed"]
    assert "tasks" in record["changed"] and "settings.label_fractions" in record["changed"]
    assert f"its 8 trial folder(s) were moved to {aside}" in out
