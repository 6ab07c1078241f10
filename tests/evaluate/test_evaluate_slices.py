"""2D slice-based arms of the 3D target tasks (docs/method.md §6.4): the slices, the way back to cubes,
a trial of a 2D network scored per cube, and the arms side by side through ``python -m semgen_ray.evaluate``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from semgen_ray.evaluate import finetune
from semgen_ray.evaluate.finetune import run_trial
from semgen_ray.evaluate.slices import CENTRAL_SLICES, axial_slices, slice_indices, to_cubes

from test_evaluate_finetune import FAST, MODEL, make_data


def test_classification_takes_the_central_slices_with_the_cubes_label():
    data = make_data("classification")  # cubes of 16 × 16 × 8
    flat = axial_slices(data)
    test, cubes = flat.splits["test"], data.splits["test"]
    assert list(slice_indices("classification", 8)) == [3, 4, 5] and CENTRAL_SLICES == 3
    assert test["x"].shape == (len(cubes["x"]) * 3, 1, 16, 16)
    assert np.array_equal(test["x"][4], cubes["x"][1, :, :, :, 4])  # cube 1's second kept slice (z = 4)
    assert np.array_equal(test["y"], np.repeat(cubes["y"], 3))
    assert np.array_equal(test["patient"], np.repeat(cubes["patient"], 3))
    assert flat.info["slices_per_cube"] == 3
    # a cube's probability is the mean of its slices'
    pred = np.arange(len(test["x"]), dtype=np.float64)
    assert np.array_equal(to_cubes("classification", pred, len(cubes["x"])), pred.reshape(-1, 3).mean(1))


def test_segmentation_slices_stack_back_into_the_cube():
    data = make_data("segmentation")
    flat = axial_slices(data)
    test, cubes = flat.splits["test"], data.splits["test"]
    assert test["x"].shape == (len(cubes["x"]) * 8, 1, 16, 16) and test["y"].shape == test["x"].shape
    for split in ("x", "y"):  # every slice, in order: stacking them gives the cubes back
        assert np.array_equal(to_cubes("segmentation", test[split], len(cubes["x"])), cubes[split])


def _spy_inputs(monkeypatch):
    seen, real = [], finetune._forward

    def spy(model, task, x):
        seen.append((model.spatial_dims, tuple(x.shape[1:])))
        return real(model, task, x)

    monkeypatch.setattr(finetune, "_forward", spy)
    return seen


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_a_2d_trial_fine_tunes_on_slices_and_is_scored_per_cube(task, monkeypatch, tmp_path):
    """spatial_dims=2: a 2D network sees (1, X, Y) slices and starts from a 2D export; the row counts
    and scores the same test cubes as a 3D trial's."""
    from semgen_ray.models import build_model, export_weights

    seen = _spy_inputs(monkeypatch)
    export = export_weights(build_model({**MODEL, "head": "torch"}, num_classes=3, spatial_dims=2), tmp_path / "2d",
                            {"input_size": [16, 16]})
    data = make_data(task)
    flat = run_trial(data, task, "sg_2d", str(export), 0, MODEL, max_steps=4, spatial_dims=2, **FAST)
    cube = run_trial(data, task, "scratch", None, 0, MODEL, max_steps=4, **FAST)
    assert {s for s in seen if s[0] == 2} == {(2, (1, 16, 16))} and (3, (1, 16, 16, 8)) in seen
    for key in ("test_cases", "test_pos", "test_neg", "train_cases", "train_patients"):
        assert flat[key] == cube[key], key
    metric = "auc" if task == "classification" else "dice"
    assert math.isfinite(flat[metric]) and 0 <= flat[metric] <= 1


def test_a_3d_export_in_a_2d_arm_is_refused_with_the_reason(tmp_path):
    from semgen_ray.models import build_model, export_weights
    from semgen_ray.models.weights import WeightsError

    export = export_weights(build_model(MODEL, num_classes=3), tmp_path / "3d", {"input_size": [16, 16, 8]})
    with pytest.raises(WeightsError, match="the file holds a 3D network and the model is 2D"):
        run_trial(make_data("classification"), "classification", "x", str(export), 0, MODEL, max_steps=2,
                  spatial_dims=2, **FAST)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_2d_arms_run_beside_the_3d_ones_through_the_command(tmp_path, capsys):
    """``evaluate.arms=[scratch, scratch_2d, sg_2d]`` with ``sg_2d`` a 2D export: the 2D arms are found
    (by name, and by the export's model card), fine-tune 2D networks on slices, and stand in the same
    results, report and statistics as the 3D arm, on the same test cubes."""
    from semgen_ray.evaluate.__main__ import main
    from semgen_ray.evaluate.report import read_csv
    from semgen_ray.models import build_model, export_weights

    from test_evaluate_cli import TINY

    torch.manual_seed(0)
    export = export_weights(build_model({"width": 4}, num_classes=3, spatial_dims=2), tmp_path / "sg_2d",
                            {"input_size": [16, 16]})
    run = tmp_path / "run"
    args = ["--run-dir", str(run)]
    for item in [*TINY, "evaluate.target_patients=16", "evaluate.arms=[scratch, scratch_2d, sg_2d]",
                 f"evaluate.weights={{sg_2d: {export}}}"]:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[evaluate] 12 trials: 2 tasks × 3 arms" in out
    rows = read_csv(run / "evaluate" / "results.csv")
    assert sorted({r["arm"] for r in rows}) == ["scratch", "scratch_2d", "sg_2d"]
    for task in ("classification", "segmentation"):
        cases = {r["arm"]: r["test_cases"] for r in rows if r["task"] == task}
        assert len(set(cases.values())) == 1  # every arm scored on the same test cubes
    report = (run / "evaluate" / "report.md").read_text()
    assert "`scratch_2d` (random init, 2D on axial slices)" in report
    assert "`sg_2d` (" in report and report.count("2D on axial slices") == 2
    record = json.loads((run / "evaluate" / "evaluate.json").read_text())
    assert set(record["means"]["classification"]) == {"scratch", "scratch_2d", "sg_2d"}


def test_a_2d_run_refuses_3d_weights_before_it_makes_its_target_films(tmp_path, capsys):
    """On a 2D run every arm fine-tunes a 2D network on film patches: a 3D export named in
    ``evaluate.weights`` is refused through the command, before the target cohort is generated."""
    from semgen_ray.evaluate.__main__ import main
    from semgen_ray.models import build_model, export_weights

    export = export_weights(build_model({"width": 4}, num_classes=3), tmp_path / "ct", {"input_size": [16, 16, 8]})
    run = tmp_path / "run"
    sets = ["data.volume_shape=[32, 64, 1]", "data.cube_size=[16, 16, 1]", "evaluate.arms=[scratch, ct]",
            f"evaluate.weights={{ct: {export}}}", "evaluate.cube_mm=null", "evaluate.negatives=matched"]
    assert main(["--run-dir", str(run), *[a for s in sets for a in ("--set", s)]]) == 1
    assert "only 2D networks fine-tune: arm(s) ['ct'] hold 3D weights" in capsys.readouterr().err
    assert not (run / "target.zarr").exists()
