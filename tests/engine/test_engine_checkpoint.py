"""Checkpoint files: RNG state as JSON, integrity records, incomplete / corrupt / unsafe checkpoints."""

import argparse
import json
import logging
import random
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch

from semgen_ray.engine.checkpoint import (STATE_FILE, checkpoint_problem, complete_checkpoints, rng_state,
                                          set_rng_state, step_of, unused_name, verify_checkpoint, write_rank_files)


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_roundtrips_through_json():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    saved = json.loads(json.dumps(rng_state()))
    expected = _draws()
    _draws()
    set_rng_state(saved)
    assert _draws() == expected


def _fake_checkpoint(path, world=2):
    """The layout the training loop writes: rank 0's state and model file, one shard per rank."""
    for rank in range(world):
        rank_dir = path.parent.with_name(path.parent.name + "_writes") / f"{path.name}.rank{rank}"  # each rank writes its own folder
        (rank_dir / "ds").mkdir(parents=True)
        torch.save({"w": torch.arange(8.0) + rank}, rank_dir / "ds" / f"rank_{rank}_optim_states.pt")
        if rank == 0:
            torch.save({"module": {"w": torch.ones(4)}}, rank_dir / "ds" / "mp_rank_00_model_states.pt")
            (rank_dir / STATE_FILE).write_text(json.dumps({"world_size": world, "step": 4}))
        write_rank_files(rank_dir, rank)
    path.mkdir(parents=True)
    for rank in range(world):  # ... and the storage holds their union
        fsspec.filesystem("file").copy(str(path.parent.with_name(path.parent.name + "_writes") / f"{path.name}.rank{rank}") + "/",
                                       str(path), recursive=True)
    return path


def test_a_complete_checkpoint_passes_both_checks(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "step_00000004")
    assert checkpoint_problem(fsspec.filesystem("file"), str(ckpt)) is None
    assert verify_checkpoint(ckpt) is None
    assert sorted(p.name for p in (ckpt / "integrity").iterdir()) == ["rank_0.json", "rank_1.json"]
    assert sorted(p.name for p in (ckpt / "rng").iterdir()) == ["rank_0.json", "rank_1.json"]


@pytest.mark.parametrize("damage,expected", [
    (lambda c: (c / "ds" / "rank_1_optim_states.pt").write_bytes(b"short"), "has 5 bytes"),
    (lambda c: (c / "ds" / "rank_1_optim_states.pt").unlink(), "ds/rank_1_optim_states.pt is missing"),
    (lambda c: (c / "integrity" / "rank_1.json").unlink(), "incomplete: FileNotFoundError"),
    (lambda c: (c / STATE_FILE).write_text("{\"world"), "incomplete: JSONDecodeError"),
])
def test_a_crash_during_the_write_is_found_from_the_listing(tmp_path, damage, expected):
    ckpt = _fake_checkpoint(tmp_path / "step_00000004")
    damage(ckpt)
    assert expected in checkpoint_problem(fsspec.filesystem("file"), str(ckpt))


def test_changed_content_of_the_same_size_is_found_by_its_hash(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "step_00000004")
    shard = ckpt / "ds" / "rank_0_optim_states.pt"
    data = bytearray(shard.read_bytes())
    data[-20] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert checkpoint_problem(fsspec.filesystem("file"), str(ckpt)) is None  # sizes still agree
    assert "corrupt: ds/rank_0_optim_states.pt does not match its SHA-256" in verify_checkpoint(ckpt)


def test_a_torch_file_that_needs_full_pickle_is_refused(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "step_00000004")
    # a file with an arbitrary Python object (here harmless) and a matching integrity record
    torch.save({"w": torch.ones(1), "extra": argparse.Namespace(a=1)}, ckpt / "ds" / "mp_rank_00_model_states.pt")
    for rank in (0, 1):
        (ckpt / "integrity" / f"rank_{rank}.json").unlink()
    write_rank_files(ckpt, 0)
    (ckpt / "integrity" / "rank_1.json").write_text("{}")
    problem = verify_checkpoint(ckpt)
    assert problem.startswith("refused: ds/mp_rank_00_model_states.pt does not load with weights_only=True")
    assert "argparse.Namespace" in problem


def test_the_scan_skips_broken_checkpoints_with_a_warning(tmp_path, caplog):
    good = _fake_checkpoint(tmp_path / "run" / "step_00000002")
    broken = _fake_checkpoint(tmp_path / "run" / "step_00000004")
    (broken / "ds" / "mp_rank_00_model_states.pt").write_bytes(b"")
    found = complete_checkpoints(str(tmp_path / "run"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [c.path for c in found] == [str(good)]
    assert len(warnings) == 1 and "skipping checkpoint" in warnings[0] and "step_00000004" in warnings[0]


def test_a_new_checkpoint_never_reuses_a_folder(tmp_path):
    """A resumed run reaching a step it saved before writes a new folder, numbered after the old one."""
    from types import SimpleNamespace

    (tmp_path / "step_00000005").mkdir()
    assert unused_name(str(tmp_path), "step_00000005") == "step_00000005.1"
    (tmp_path / "step_00000005.1").mkdir()
    assert unused_name(str(tmp_path), "step_00000005") == "step_00000005.2"
    assert unused_name(str(tmp_path), "step_00000005_epoch_end") == "step_00000005_epoch_end"
    assert step_of(SimpleNamespace(path=str(tmp_path / "step_00000005.2"))) == 5


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_training_resumes_from_the_newest_good_checkpoint(train_store, train_manifest, tmp_path, caplog):
    """Default retention; a bit-rotten newest checkpoint and a newer one cut short by a crash (never
    registered with Ray): the run goes back to step 4 with its optimizer state, writes into no
    folder that exists, and a later run's controller finds every checkpoint it lists."""
    from semgen_ray.config import load_config
    from semgen_ray.stages.pretraining import run_pretraining
    from train_helpers import TINY

    def run(epochs):
        config = load_config("cpu-tiny", [*TINY, f"train.max_epochs={epochs}", "train.checkpoint_every=2"])
        return run_pretraining(config, train_store, train_manifest, str(tmp_path / "run"))

    first = run(1)
    assert first["steps"] == 4
    root = tmp_path / "run" / "checkpoints" / "pretrain"
    # step 4 ends the epoch: a step checkpoint and the epoch-end one; retention deleted step 2
    assert sorted(p.name for p in root.glob("step_*")) == ["step_00000004", "step_00000004_epoch_end"]
    shard = next((root / "step_00000004_epoch_end" / "ds").glob("*rank_1*optim_states.pt"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # bit rot: same size, other content
    shard.write_bytes(bytes(data))
    shutil.copytree(root / "step_00000004", root / "step_00000006")
    cut = root / "step_00000006" / "ds" / "mp_rank_00_model_states.pt"
    cut.write_bytes(cut.read_bytes()[:100])  # a crash during the write of step 6

    caplog.set_level(logging.INFO, logger="semgen_ray")
    again = run(2)
    (resume,) = again["resumes"]
    assert resume["resumed_at_step"] == 4 and resume["batch_in_epoch"] == 4
    assert resume["checkpoint"].endswith("step_00000004")
    # the optimizer state came back with the weights (its fingerprint as saved, not a fresh one)
    assert resume["loaded_optimizer_fingerprint"] == pytest.approx(resume["saved_optimizer_fingerprint"], rel=1e-9)
    assert resume["saved_optimizer_fingerprint"] != 0
    assert [h["epoch"] for h in again["history"]] == [1, 2]
    assert again["steps"] == 8 and again["epochs"] == 2  # the planned steps
    assert any("resumed at step 4" in m for m in caplog.messages)
    assert cut.stat().st_size == 100  # the resumed run wrote its step 6 elsewhere
    # what a later run's controller loads first: Ray's list of checkpoints (it fails on a missing one)
    from ray.train import Result

    listed = Result.from_path(str(root))
    assert listed.best_checkpoints and all(Path(c.path).is_dir() for c, _ in listed.best_checkpoints)
