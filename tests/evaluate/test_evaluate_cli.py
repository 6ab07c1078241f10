"""``python -m semgen_ray.evaluate`` end to end at the tiniest size: the options reach the outcome.

One scratch-only evaluation on a 16-phantom target cohort: progress lines, the report with paths
relative to the run folder, task validity, the label-efficiency curve; then the same folder with
``evaluate.negatives=random`` rebuilds the task cubes (the cache follows the settings), the
shortcut statistics show the difference, and the trials of the first cubes are set aside, not resumed.
"""

import json

import pytest

from semgen_ray.evaluate.__main__ import main

from figures import check_evaluation_figures

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

TINY = ["phantoms.shape=[96, 96, 48]", "data.cube_size=[16, 16, 8]", "model.width=4",
        "evaluate.arms=[scratch]", "evaluate.trials=2", "evaluate.target_patients=16", "evaluate.min_voxels=4",
        "ingest.split_fractions=[0.5, 0.25, 0.25]",
        "evaluate.label_fraction=0.5", "evaluate.curve_fractions=[1.0]", "evaluate.max_steps=4",
        "evaluate.eval_every=2", "evaluate.patience=2", "evaluate.lr_patience=1", "evaluate.cube_mm=[40, 40, 40]"]


def _run(run_dir, extra, capsys):
    args = ["--run-dir", str(run_dir)]
    for item in TINY + extra:
        args += ["--set", item]
    assert main(args) == 0
    return capsys.readouterr().out


def test_evaluate_cli_reports_progress_relative_paths_and_follows_its_options(tmp_path, capsys):
    run = tmp_path / "run"
    out = _run(run, [], capsys)
    assert "[evaluate] 8 trials: 2 tasks × 1 arms" in out
    assert "[evaluate] trials 8/8 done, 0 running, 0 failed" in out
    assert f"report: {run}/evaluate/report.md" in out
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

    out = _run(run, ["evaluate.negatives=random"], capsys)
    info = json.loads((run / "evaluate" / "evaluate.json").read_text())["task_info"]["classification"]
    assert info["settings"]["negatives"] == "random"
    assert info["shortcut_auc"]["best"] > candidates_best  # random boxes: "is this lung?" separates them
    # other cubes, other trials: the 8 trials of the first run are set aside (not resumed, not deleted)
    assert "[evaluate] trials 8/8 done" in out and "resuming" not in out
    (aside,) = (run / "evaluate" / "tune" / "superseded").iterdir()
    record = json.loads((aside / "superseded.json").read_text())
    assert record["trial_folders"] == 8 and "cubes.classification" in record["changed"]
    assert f"its 8 trial folder(s) were moved to {aside}" in out
