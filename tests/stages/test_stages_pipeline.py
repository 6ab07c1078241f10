"""The stage chain: every run path resolved once (relative ones inside the run folder), and
configuration errors that stop a run before anything is written."""

import os

import pytest

from semgen_ray.stages.layout import RunLayout
from semgen_ray.stages.pipeline import StageError


def test_one_layout_resolves_every_path_of_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = RunLayout("runs/a", "runs/a/store.zarr", objective="restoration")
    assert (local.config_file, local.stream_record, local.discovery, local.patterns, local.evaluate) == (
        "runs/a/config.yaml", "runs/a/stream.json", "runs/a/discovery", "runs/a/discovery/patterns.parquet",
        "runs/a/evaluate")
    assert local.train() == local.train("restoration") == "runs/a/train"
    assert local.train("semantic_genesis") == "runs/a/train_semantic_genesis"
    assert local.absolute("target.zarr") == os.path.join(str(tmp_path), "runs", "a", "target.zarr")
    assert local.absolute("/data/w.pt") == "/data/w.pt" and local.absolute("s3://b/w") == "s3://b/w"
    remote = RunLayout("s3://bucket/run/", "s3://bucket/run/store.zarr")
    assert remote.patterns == "s3://bucket/run/discovery/patterns.parquet"
    assert remote.absolute("target.zarr") == "s3://bucket/run/target.zarr"


def test_the_layout_of_a_config_resolves_its_store():
    from semgen_ray.config import load_config

    assert RunLayout.of(load_config(None, ["run_dir=runs/a"])).store == "runs/a/store.zarr"
    assert RunLayout.of(load_config(None, ["run_dir=runs/a", "store.uri=/data/s.zarr"])).store == "/data/s.zarr"
    assert RunLayout.of(load_config(None, ["run_dir=runs/a", "store.uri=s3://b/s.zarr"])).store == "s3://b/s.zarr"


@pytest.mark.parametrize("escaping", ["../store.zarr", "a/../../x", "..", "a\\..\\..\\x"])
def test_relative_paths_that_climb_out_are_refused(escaping):
    with pytest.raises(StageError, match="leaves the run folder"):
        RunLayout("runs/a", "runs/a/store.zarr").absolute(escaping)
    with pytest.raises(StageError, match="leaves the run folder"):
        RunLayout("runs/a", "runs/a/store.zarr").path(escaping)


# Configuration errors stop `pretrain` before anything is written (issue 15). None of these start Ray.

def _block_s3fs(monkeypatch):
    """As if s3fs were not installed: its import fails and fsspec has not cached its class."""
    import sys

    monkeypatch.setitem(sys.modules, "s3fs", None)  # `import s3fs` raises ImportError
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)


@pytest.mark.parametrize("args, message", [
    (["--config", "paper", "--store", "s3://bucket/luna16.zarr"],
     "s3:// needs a package that is not installed: Install s3fs"),
    (["--config", "paper", "--run-dir", "s3://bucket/runs/paper"], "s3:// needs a package that is not installed"),
    (["--store", "nosuchproto://bucket/s.zarr"], "unknown storage protocol 'nosuchproto'"),
    (["--run-dir", "nosuchproto://bucket/run"], "unknown storage protocol 'nosuchproto'"),
    (["--set", "train.storage_path=nosuchproto://bucket/ckpt"], "unknown storage protocol 'nosuchproto'"),
    (["--stages", "data,finetune"], "unknown stage(s) ['finetune']"),
    (["--store", "missing.zarr"], "has no patients"),  # a named store is never filled
    (["--resume", "nosuchproto://bucket/run"], "unknown storage protocol 'nosuchproto'"),
])
def test_configuration_errors_leave_no_files_behind(args, message, tmp_path, monkeypatch, capsys):
    from semgen_ray.pretrain import main

    monkeypatch.chdir(tmp_path)  # presets put run_dir under ./runs/: nothing may appear here
    _block_s3fs(monkeypatch)
    assert main(args) in (1, 2)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == []


def test_runfolder_names_the_missing_package_without_contacting_anything(monkeypatch):
    from semgen_ray import runfolder

    _block_s3fs(monkeypatch)
    with pytest.raises(runfolder.RunFolderError, match="Install s3fs to access S3"):
        runfolder.check_backend("s3://bucket/x")
    with pytest.raises(runfolder.RunFolderError, match="unknown storage protocol 'nosuchproto'"):
        runfolder.check_backend("simplecache::nosuchproto://bucket/x")
    for fine in ("/abs/path", "rel/path", "file:///tmp/x", "memory://x"):
        runfolder.check_backend(fine)


# An interrupted training run is never reported complete (issue 15).

def _state(**kw):
    return {"step": 60, "epoch": 10, "batch_in_epoch": 0, "bad_epochs": 0, "stopped": "max_epochs", "log": []} | kw


def test_only_a_checkpoint_that_ends_the_run_counts_as_finished():
    from semgen_ray.config import load_config
    from semgen_ray.stages.pretraining import finished

    t = load_config(None, ["train.max_epochs=10"]).train
    assert finished(_state(), t)
    assert not finished(_state(step=24, epoch=4, stopped=None), t)  # aborted at an epoch end
    assert not finished(_state(step=24, epoch=4, batch_in_epoch=3, stopped=None), t)  # mid-epoch
    # resumed with a larger budget, then aborted: the state still carries the earlier "stopped"
    t20 = load_config(None, ["train.max_epochs=20"]).train
    assert not finished(_state(step=70, epoch=11, batch_in_epoch=2), t20)
    assert not finished(_state(step=72, epoch=12), t20)
    steps = load_config(None, ["train.max_steps=24"]).train
    assert not finished(_state(step=24, epoch=4, batch_in_epoch=5, stopped=None), steps)
    assert finished(_state(step=24, epoch=4, stopped="max_steps"), steps)


def test_an_aborted_fit_exports_nothing_and_writes_no_record(tmp_path):
    """Ctrl-C under Ray Train: fit() returns normally with the last checkpoint (step 24 of 60)."""
    import json

    from ray.train import Checkpoint, Result

    from semgen_ray.config import load_config
    from semgen_ray.stages.pretraining import PretrainError
    from semgen_ray.engine.checkpoint import STATE_FILE
    from semgen_ray.stages.pretraining import _finish

    ckpt = tmp_path / "step_24"
    ckpt.mkdir()
    (ckpt / STATE_FILE).write_text(json.dumps(_state(step=24, epoch=4, batch_in_epoch=3, stopped=None)))
    result = Result(metrics={}, checkpoint=Checkpoint.from_directory(str(ckpt)), error=None, path=str(tmp_path))
    out = tmp_path / "train"
    out.mkdir()
    config = load_config(None, ["train.max_epochs=10"])
    with pytest.raises(PretrainError, match="interrupted at step 24"):
        _finish(config, {}, None, result, 1.0, "store", "manifest", out, str(tmp_path), None)
    assert list(out.iterdir()) == []
