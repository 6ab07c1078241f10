"""Pretraining with Ray Train + DeepSpeed on CPU (local Ray, tiny sizes, 2 workers over gloo)."""

import json

import pytest
from safetensors.torch import load_file

from semgen_ray.config import load_config
from semgen_ray.train import run_pretraining

from train_helpers import TINY

pytestmark = pytest.mark.usefixtures("ray_local")


def _run(store, manifest, out, extra=(), **kwargs):
    config = load_config("cpu-tiny", [*TINY, *extra])
    return run_pretraining(config, store, manifest, str(out), log=lambda *_: None, **kwargs)


def test_two_workers_zero2_bf16_learn_export_and_report(train_store, train_manifest, tmp_path):
    """ZeRO-2 bf16 on two gloo workers: the loss on the fixed validation corruptions falls."""
    rec = _run(train_store, train_manifest, tmp_path / "run",
               ["train.max_epochs=3", "train.lr=0.003", "train.corrupt_on=device"])
    hist = rec["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3] and rec["workers"] == 2
    assert hist[-1]["val_rec_loss"] < hist[0]["val_rec_loss"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(0 <= h["data_wait_fraction"] <= 1 and h["cubes_per_s"] > 0 for h in hist)
    # export: fp32 weights with the reference names and a card with the discovery lineage
    weights = load_file(f"{rec['export']}/model.safetensors")
    assert "down_tr64.ops.0.bn1.weight" in weights and any(k.startswith("clc_out.") for k in weights)
    assert {str(v.dtype) for v in weights.values()} == {"torch.float32", "torch.int64"}  # int: BN counters
    card = json.loads((tmp_path / "run" / "export" / "model_card.json").read_text())
    assert card["lineage"]["pattern_manifest_config_hash"] == "test"
    assert card["lineage"]["training_config"]["train"]["zero_stage"] == 2
    for name in ("loss_curves.png", "samples.png", "history.json"):
        assert (tmp_path / "run" / "report" / name).stat().st_size > 100
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_continues_from_the_checkpoint_with_its_optimizer_state(train_store, train_manifest, tmp_path):
    first = _run(train_store, train_manifest, tmp_path / "run", ["train.max_epochs=1"])
    assert first["steps"] == 4 and first["epochs"] == 1 and first["resumes"] == []
    again = _run(train_store, train_manifest, tmp_path / "run", ["train.max_epochs=2"])
    assert again["epochs"] == 2 and again["steps"] == 8
    (resume,) = again["resumes"]
    assert resume["resumed_at_step"] == 4 and resume["epoch"] == 1
    assert resume["loaded_optimizer_fingerprint"] == pytest.approx(resume["saved_optimizer_fingerprint"], rel=1e-9)
    assert resume["saved_optimizer_fingerprint"] != 0
    assert [h["epoch"] for h in again["history"]] == [1, 2]


def test_a_killed_worker_costs_only_the_steps_since_the_last_checkpoint(train_store, train_manifest, tmp_path):
    """Rank 1's process dies at step 3; Ray Train restarts the group from the step-2 checkpoint."""
    marker = tmp_path / "killed"
    rec = _run(train_store, train_manifest, tmp_path / "run",
               ["train.max_epochs=2", "train.checkpoint_every=2", "train.max_failures=1"],
               fault_injection={"rank": 1, "step": 3, "marker": str(marker)})
    assert marker.read_text() == "killed rank 1 at step 3"
    (resume,) = rec["resumes"]
    assert resume["resumed_at_step"] == 2 and resume["batch_in_epoch"] == 2
    assert rec["steps"] == 8 and rec["epochs"] == 2  # the planned steps, none repeated or lost
    assert rec["history"][0]["resumed_at_batch"] == 2


@pytest.mark.parametrize("objective,extra", [
    ("restoration", ["train.corrupt_on=device"]),
    ("classification", []),
    ("inpainting_classification", []),
])
def test_objectives_run(train_store, train_manifest, tmp_path, objective, extra):
    rec = _run(train_store, train_manifest, tmp_path / "run",
               [f"train.objective={objective}", "train.num_workers=1", "train.max_steps=2",
                "train.zero_stage=1", *extra])
    h = rec["history"][-1]
    assert rec["steps"] == 2 and rec["stopped"] == "max_steps"
    assert (h["train_rec_loss"] > 0) == (objective != "classification")
    assert (h["train_cls_loss"] > 0) == (objective != "restoration")
