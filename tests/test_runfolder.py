"""Run folders on a local path, ``file://``, ``memory://`` and ``s3://`` (a local S3-API server)."""

import uuid

import pytest

from semgen_ray import runfolder
from semgen_ray.runfolder import RunFolderError


def _roundtrip(base: str) -> None:
    """What the stages do with a run folder, the same for every kind of location."""
    runfolder.prepare(base)
    record = runfolder.join(base, "discovery", "discovery.json")
    assert runfolder.read_json(record) is None and not runfolder.exists(record)
    runfolder.write_json(record, {"config_hash": "abc", "n": 1})
    assert runfolder.read_json(record) == {"config_hash": "abc", "n": 1} and runfolder.isfile(record)
    assert len(runfolder.sha256(record)) == 64

    # a library that needs a POSIX path writes into a working folder that ends up under the run folder
    with runfolder.workdir(runfolder.join(base, "discovery"), fetch=["discovery.json"]) as local:
        assert (local / "discovery.json").is_file()  # fetched for reuse
        (local / "montages").mkdir(exist_ok=True)
        (local / "montages" / "class_000.png").write_bytes(b"png")
    assert runfolder.read_bytes(runfolder.join(base, "discovery", "montages", "class_000.png")) == b"png"
    with runfolder.local_copy(runfolder.join(base, "discovery", "montages")) as d:
        assert (__import__("pathlib").Path(d) / "class_000.png").read_bytes() == b"png"
    with runfolder.local_copy(record) as f:
        assert open(f).read().startswith("{")
    runfolder.remove(runfolder.join(base, "discovery"))
    assert not runfolder.exists(record)


def test_local_and_file_uri_folders(tmp_path):
    _roundtrip(str(tmp_path / "run"))
    _roundtrip(f"file://{tmp_path}/run2")
    assert runfolder.join(str(tmp_path), "a") == f"{tmp_path}/a"
    assert not runfolder.is_remote(f"file://{tmp_path}") and runfolder.is_remote("s3://b/run")


def test_memory_folder():
    _roundtrip(f"memory://semgen-{uuid.uuid4().hex}/run")


def test_s3_folder_and_its_errors(s3):
    bucket = s3.create_bucket(f"rf-{uuid.uuid4().hex[:8]}")
    _roundtrip(f"{bucket}/runs/a")
    assert runfolder.join(f"{bucket}/runs/", "x", "y.json") == f"{bucket}/runs/x/y.json"
    # a mistyped bucket fails, naming the URI, and is never created
    with pytest.raises(RunFolderError, match=r"s3://no-such-bucket/run: the bucket 'no-such-bucket' does not exist"):
        runfolder.prepare("s3://no-such-bucket/run")
    with pytest.raises(RunFolderError, match="does not exist"):
        runfolder.check_readable("s3://no-such-bucket/store.zarr")
    assert "no-such-bucket" not in s3.buckets()


def test_s3_without_credentials_says_so(s3, monkeypatch, tmp_path):
    import fsspec

    bucket = s3.create_bucket(f"rf-{uuid.uuid4().hex[:8]}")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    fsspec.get_filesystem_class("s3").clear_instance_cache()
    with pytest.raises(RunFolderError, match=rf"{bucket}/run: no credentials found to write to it"):
        runfolder.prepare(f"{bucket}/run")
    with pytest.raises(RunFolderError, match="no credentials found to read it"):
        runfolder.check_readable(f"{bucket}/store.zarr")


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(RunFolderError, match="nosuch://b/run: unknown storage protocol 'nosuch'"):
        runfolder.prepare("nosuch://b/run")


def test_one_resolver_for_every_configured_path(tmp_path, monkeypatch):
    """Issue 16: the stages' artefacts, the store, Ray Train's storage and the evaluation's paths are
    resolved by one function: relative ones inside the run folder (absolute on request, for Ray Train
    and Tune), absolute paths and URIs as given, and nothing climbs out with ``..``."""
    import os

    from semgen_ray.config import ConfigError, load_config
    from semgen_ray.stages.layout import train_storage

    monkeypatch.chdir(tmp_path)
    assert runfolder.inside("runs/a", "store.zarr") == "runs/a/store.zarr"
    assert runfolder.inside("runs/a", "checkpoints", absolute=True) == str(tmp_path / "runs" / "a" / "checkpoints")
    assert runfolder.inside("s3://b/run/", "checkpoints", absolute=True) == "s3://b/run/checkpoints"
    assert runfolder.inside("runs/a", "/data/s.zarr") == "/data/s.zarr"
    assert runfolder.inside("runs/a", "gs://b/s.zarr", absolute=True) == "gs://b/s.zarr"
    with pytest.raises(RunFolderError, match="leaves the run folder runs/a"):
        runfolder.inside("runs/a", "x/../../y")
    config = load_config(None, ["train.storage_path=ckpt"])
    expected = os.path.join(str(tmp_path), "runs", "a", "train", "ckpt")
    assert train_storage("runs/a/train", config.train.storage_path) == expected
    assert train_storage("s3://b/run/train", "ckpt") == "s3://b/run/train/ckpt"
    with pytest.raises(ConfigError, match="train.storage_path: '../x' leaves the run folder"):
        load_config(None, ["train.storage_path=../x"])
