"""The trial experiment's settings record (no Ray): the same settings resume, other settings set the
earlier trials aside (moved, never deleted) and say so."""

import logging


def test_changed_settings_set_the_earlier_trials_aside_with_a_reason(tmp_path, caplog):
    """A trial folder of other settings is moved (not deleted) to tune/superseded/evaluate-<time>,
    with superseded.json naming what changed, and a log line says so; the same settings keep it."""
    import json

    from semgen_ray.evaluate.trials import claim

    storage = str(tmp_path / "tune")
    old = {"settings": {"lr": 1e-3, "model": {"width": 4}}, "trials": 3, "tasks": ["classification"]}
    new = {"settings": {"lr": 1e-2, "model": {"width": 8}}, "trials": 3, "tasks": ["classification"]}
    caplog.set_level(logging.INFO, logger="semgen_ray")
    assert claim(storage, json.dumps(old)) is None and not caplog.messages
    for i in range(2):  # two finished trials as Tune leaves them
        (tmp_path / "tune" / "evaluate" / f"_trial_{i}").mkdir(parents=True)
        (tmp_path / "tune" / "evaluate" / f"_trial_{i}" / "result.json").write_text("{}\n")
    assert claim(storage, json.dumps(old)) is None and not caplog.messages  # same settings: resumed
    moved = claim(storage, json.dumps(new))
    assert moved and moved.startswith(f"{storage}/superseded/evaluate-")
    assert not (tmp_path / "tune" / "evaluate").exists()
    assert sorted(p.name for p in (tmp_path / moved).iterdir()) == ["_trial_0", "_trial_1", "superseded.json"]
    record = json.loads((tmp_path / moved / "superseded.json").read_text())
    assert record["changed"] == ["settings.lr", "settings.model.width"] and record["settings"] == old
    assert record["trial_folders"] == 2
    (said,) = caplog.messages
    assert "settings.lr, settings.model.width" in said and "2 trial folder(s)" in said
    assert moved in said and "kept, not resumed" in said
    assert json.loads((tmp_path / "tune" / "experiment.json").read_text()) == new


def test_changed_settings_set_the_earlier_trials_aside_on_s3(s3, caplog):
    """The same move on an ``s3://`` run folder (the local S3-API server, tests/s3_server.py): the trial
    objects, written by another client as Tune's pyarrow writer does, end up under
    ``superseded/evaluate-<time>/`` with the record, and nothing is left under ``evaluate/``."""
    import json
    import logging
    import uuid

    import boto3

    from semgen_ray import runfolder
    from semgen_ray.evaluate.trials import claim

    bucket = s3.create_bucket(f"sup-{uuid.uuid4().hex[:8]}")
    name = bucket.removeprefix("s3://")
    storage = f"{bucket}/runs/a/evaluate/tune"
    old = {"settings": {"lr": 1e-3}, "trials": 3}
    new = {"settings": {"lr": 1e-2}, "trials": 3}
    caplog.set_level(logging.INFO, logger="semgen_ray.evaluate.trials")
    assert claim(storage, json.dumps(old)) is None
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    trial_files = {f"_trial_{i}/{f}": f"{i}-{f}".encode() for i in range(2) for f in ("result.json", "params.json")}
    trial_files["_trial_2/params.json"] = b"unfinished"  # a trial that never reported
    for rel, body in trial_files.items():
        client.put_object(Bucket=name, Key=f"runs/a/evaluate/tune/evaluate/{rel}", Body=body)
    assert claim(storage, json.dumps(old)) is None  # same settings: resumed

    moved = claim(storage, json.dumps(new))
    logs = [r.getMessage() for r in caplog.records if "trial settings changed" in r.getMessage()]
    assert moved and moved.startswith(f"{storage}/superseded/evaluate-")
    assert not runfolder.exists(f"{storage}/evaluate")
    prefix = moved.removeprefix(f"{bucket}/")
    objects = s3.objects(name)
    assert not [k for k in objects if k.startswith("runs/a/evaluate/tune/evaluate/")]
    kept = {k.removeprefix(f"{prefix}/"): v for k, v in objects.items() if k.startswith(f"{prefix}/")}
    record = json.loads(kept.pop("superseded.json"))
    assert kept == trial_files  # every object moved, contents unchanged
    assert record["changed"] == ["settings.lr"] and record["settings"] == old and record["trial_folders"] == 2
    assert len(logs) == 1 and moved in logs[0] and "2 trial folder(s)" in logs[0]
    assert json.loads(runfolder.read_text(f"{storage}/experiment.json")) == new
