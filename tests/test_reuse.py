"""Reuse records (issue 16): keyed by settings and content, never by timestamps or a file's existence."""

import json
import logging
import os

import pytest

from semgen_ray import reuse


def _finished(folder, text="weights"):
    (folder / "export").mkdir(parents=True, exist_ok=True)
    (folder / "export" / "model.bin").write_text(text)
    key = reuse.digest({"settings": {"lr": 0.1}, "input": "abc"})
    reuse.save(str(folder / "step.json"), key, {"steps": 60}, outputs=["export"])
    return key


def test_a_record_is_reused_for_its_key_only(tmp_path):
    key = _finished(tmp_path)
    assert reuse.load(str(tmp_path / "step.json"), key)["steps"] == 60
    assert reuse.load(str(tmp_path / "step.json"), reuse.digest({"settings": {"lr": 0.2}, "input": "abc"})) is None
    assert reuse.load(str(tmp_path / "nothing.json"), key) is None
    assert reuse.digest({"a": 1, "b": (2, 3)}) == reuse.digest({"b": [2, 3], "a": 1})  # canonical JSON
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []  # written atomically


def test_timestamps_do_not_count_content_does(tmp_path):
    key = _finished(tmp_path)
    os.utime(tmp_path / "export" / "model.bin", (1, 1))  # touched: same content, still reused
    assert reuse.load(str(tmp_path / "step.json"), key) is not None
    (tmp_path / "export" / "model.bin").write_text("other weights")  # replaced behind the record's back
    assert reuse.load(str(tmp_path / "step.json"), key) is None
    _finished(tmp_path)
    (tmp_path / "export" / "model.bin").unlink()  # an output gone: the record is not trusted
    assert reuse.load(str(tmp_path / "step.json"), key) is None


def test_records_on_a_uri_and_outputs_outside_the_folder_are_refused(tmp_path):
    from semgen_ray import runfolder

    uri = "memory://reuse-test/run"
    runfolder.write_text(f"{uri}/export/model.bin", "weights")
    key = reuse.digest({"lr": 0.1})
    reuse.save(f"{uri}/step.json", key, {"steps": 1}, outputs=["export"])
    assert reuse.load(f"{uri}/step.json", key)["steps"] == 1
    runfolder.write_text(f"{uri}/export/model.bin", "changed")
    assert reuse.load(f"{uri}/step.json", key) is None
    reuse.clear(f"{uri}/step.json")
    assert not runfolder.exists(f"{uri}/step.json")
    assert reuse.relative(str(tmp_path / "a" / "r.json"), str(tmp_path / "a" / "b" / "c")) == os.path.join("b", "c")
    with pytest.raises(ValueError, match="is not inside"):
        reuse.relative(str(tmp_path / "a" / "r.json"), str(tmp_path / "elsewhere"))


def test_a_baseline_trained_with_other_settings_is_not_reused(tmp_path, caplog):
    """Evaluation's objective baselines (``<run>/train_<objective>``) were reused whenever an export
    was there; now only when the folder's record holds the settings the evaluation asks for."""
    from dataclasses import replace

    from semgen_ray.config import load_config
    from semgen_ray.stages.evaluation import arm_weights
    from semgen_ray.stages.pretraining import finished_pretraining, pretraining_key

    run = tmp_path / "run"
    manifest = run / "discovery" / "patterns.parquet"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(b"a pattern manifest")
    folder = run / "train_restoration"
    (folder / "export").mkdir(parents=True)
    (folder / "export" / "model.safetensors").write_bytes(b"weights")
    # use_gpu false: train.corrupt_on auto is resolved without asking a cluster
    config = load_config(None, [f"run_dir={run}", "evaluate.arms=[scratch, restoration]", "train.use_gpu=false"])

    def baseline(c):
        return replace(c, train=replace(c.train, objective="restoration"))

    # an export without a record (as earlier versions left a baseline) says nothing of its settings
    assert finished_pretraining(baseline(config), str(manifest), str(folder)) is None
    reuse.save(str(folder / "train.json"), pretraining_key(baseline(config), str(manifest)),
               {"export": str(folder / "export")}, outputs=["export"])
    assert finished_pretraining(baseline(config), str(manifest), str(folder)) is not None
    caplog.set_level(logging.INFO, logger="semgen_ray")
    assert arm_weights(config) == {"scratch": None, "restoration": str(folder / "export")}
    assert any("already holds this pretraining" in line for line in caplog.messages)  # reused, nothing trained
    for other in (["train.lr=0.5"], ["data.cube_size=[32, 32, 32]"], ["model.width=4"]):
        changed = load_config(None, [f"run_dir={run}", "train.use_gpu=false", *other])
        assert finished_pretraining(baseline(changed), str(manifest), str(folder)) is None, other
    assert finished_pretraining(config, str(manifest), str(folder)) is None  # the semantic_genesis arm
    manifest.write_bytes(b"another pattern manifest")  # rediscovered patterns: other inputs
    assert finished_pretraining(baseline(config), str(manifest), str(folder)) is None


_GPU_CLUSTER = """
import json, sys
import ray
ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False)  # declares one GPU
from semgen_ray.config import load_config
from semgen_ray.stages.pretraining import pretraining_key, with_corruption_site
key = lambda on: pretraining_key(load_config(None, [f"train.corrupt_on={on}"]), sys.argv[1])
print(json.dumps({"site": with_corruption_site(load_config(None, [])).train.corrupt_on,
                  "auto_is_device": key("auto") == key("device") != key("data")}))
ray.shutdown()
"""


def test_corrupt_on_auto_is_keyed_as_where_the_corruptions_run(tmp_path):
    """``train.corrupt_on: auto`` (the default) resolves before the run is keyed: without GPUs it is
    the ``data`` run of earlier versions (which is therefore reused), on a cluster with GPUs the
    ``device`` run (issue 17: the corruptions go to the training device there)."""
    import subprocess
    import sys

    from semgen_ray.config import load_config
    from semgen_ray.stages.pretraining import pretraining_key

    manifest = tmp_path / "patterns.parquet"
    manifest.write_bytes(b"a pattern manifest")
    key = lambda on: pretraining_key(load_config(None, ["train.use_gpu=false", f"train.corrupt_on={on}"]),  # noqa: E731
                                     str(manifest))
    assert key("auto") == key("data") != key("device")
    assert load_config(None, []).train.corrupt_on == "auto"
    # a cluster with a GPU: Ray in a process of its own, told it has one
    out = subprocess.run([sys.executable, "-c", _GPU_CLUSTER, str(manifest)], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"site": "device", "auto_is_device": True}
