"""GPU use per stage (``use_gpu: auto | true | false``) on a machine without GPUs (local Ray)."""

import logging
import time

import pytest

from semgen_ray.config import ConfigError, load_config
from semgen_ray.gpus import GpuUnavailableError, decide_gpus


@pytest.mark.parametrize("value, expected", [(True, "true"), (False, "false"), (None, "auto"), ("auto", "auto"),
                                             ("True", "true")])
def test_every_stage_normalises_its_setting(value, expected):
    config = load_config("cpu-tiny", [f"{s}.use_gpu={'null' if value is None else value}"
                                      for s in ("discovery", "train", "evaluate")])
    assert config.discovery.use_gpu == config.train.use_gpu == config.evaluate.use_gpu == expected


def test_an_unknown_setting_is_refused():
    with pytest.raises(ConfigError, match=r"train.use_gpu: use_gpu must be one of \['auto', 'true', 'false'\]"):
        load_config("cpu-tiny", ["train.use_gpu=sometimes"])


@pytest.mark.usefixtures("ray_local")
def test_auto_without_gpus_runs_on_cpus_and_says_why(caplog):
    caplog.set_level(logging.INFO, logger="semgen_ray")
    decision = decide_gpus("auto", "train", 2, wait_s=60)
    assert not decision.use and decision.setting == "auto"
    assert "no GPU in the cluster and no GPU node type" in decision.reason
    said = [r.getMessage() for r in caplog.records if r.name == "semgen_ray.gpus"]
    assert said == [f"[train] CPUs only: {decision.reason} (train.use_gpu: auto)"]
    assert not decide_gpus(False, "evaluate", 1, wait_s=60).use


@pytest.mark.usefixtures("ray_local")
def test_required_gpus_are_waited_for_then_refused_with_the_setting_named(caplog):
    caplog.set_level(logging.INFO, logger="semgen_ray")
    t0 = time.monotonic()
    with pytest.raises(GpuUnavailableError, match=r"train.use_gpu: true: 2 GPU\(s\) needed, the cluster has 0 "
                                                   r"after waiting 1 s \(ray.gpu_wait_s\)"):
        decide_gpus("true", "train", 2, wait_s=1, poll_s=0.2)
    assert 1 <= time.monotonic() - t0 < 10
    said = [r.getMessage() for r in caplog.records if r.name == "semgen_ray.gpus"]
    assert "waiting up to 1 s (ray.gpu_wait_s) for 2 GPU(s)" in said[0]


@pytest.mark.usefixtures("ray_local")
def test_pretrain_with_gpus_required_fails_clearly_instead_of_training_on_cpus(tmp_path, capsys):
    from semgen_ray.pretrain import main

    sets = ["phantoms.n=8", "phantoms.shape=[64, 64, 32]", "data.volume_shape=[32, 32, 16]",
            "discovery.num_classes=2", "discovery.k_train=3", "discovery.k_val=1",
            "discovery.use_gpu=true", "ray.gpu_wait_s=1"]
    args = ["--run-dir", str(tmp_path / "run"), *[a for s in sets for a in ("--set", s)]]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "error: discovery.use_gpu: true: 1 GPU(s) needed, the cluster has 0 after waiting 1 s" in err
    assert "discovery.use_gpu: false to run on CPUs" in err
    assert not (tmp_path / "run" / "discovery" / "autoencoder.json").exists()  # nothing trained on CPUs
