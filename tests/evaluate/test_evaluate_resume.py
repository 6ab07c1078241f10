"""The trial experiment's settings record (no Ray): the same settings resume, other settings set the
earlier trials aside (moved, never deleted) and say so."""


def test_changed_settings_set_the_earlier_trials_aside_with_a_reason(tmp_path):
    """A trial folder of other settings is moved (not deleted) to tune/superseded/evaluate-<time>,
    with superseded.json naming what changed, and a log line says so; the same settings keep it."""
    import json

    from semgen_ray.evaluate.trials import claim

    storage = str(tmp_path / "tune")
    old = {"settings": {"lr": 1e-3, "model": {"width": 4}}, "trials": 3, "tasks": ["classification"]}
    new = {"settings": {"lr": 1e-2, "model": {"width": 8}}, "trials": 3, "tasks": ["classification"]}
    logs = []
    assert claim(storage, json.dumps(old), logs.append) is None and not logs
    for i in range(2):  # two finished trials as Tune leaves them
        (tmp_path / "tune" / "evaluate" / f"_trial_{i}").mkdir(parents=True)
        (tmp_path / "tune" / "evaluate" / f"_trial_{i}" / "result.json").write_text("{}\n")
    assert claim(storage, json.dumps(old), logs.append) is None and not logs  # same settings: resumed
    moved = claim(storage, json.dumps(new), logs.append)
    assert moved and moved.startswith(f"{storage}/superseded/evaluate-")
    assert not (tmp_path / "tune" / "evaluate").exists()
    assert sorted(p.name for p in (tmp_path / moved).iterdir()) == ["_trial_0", "_trial_1", "superseded.json"]
    record = json.loads((tmp_path / moved / "superseded.json").read_text())
    assert record["changed"] == ["settings.lr", "settings.model.width"] and record["settings"] == old
    assert record["trial_folders"] == 2
    assert len(logs) == 1 and "settings.lr, settings.model.width" in logs[0] and "2 trial folder(s)" in logs[0]
    assert moved in logs[0] and "kept, not resumed" in logs[0]
    assert json.loads((tmp_path / "tune" / "experiment.json").read_text()) == new
