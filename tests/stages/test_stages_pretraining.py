"""Pretraining with Ray Train + DeepSpeed on CPU (local Ray, tiny sizes, 2 workers over gloo)."""

import json
import logging
import math
from pathlib import Path

import pytest
from safetensors.torch import load_file

from semgen_ray.config import load_config
from semgen_ray.stages.pretraining import run_pretraining

from train_helpers import TINY

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def _run(store, manifest, out, extra=(), **kwargs):
    config = load_config("cpu-tiny", [*TINY, *extra])
    return run_pretraining(config, store, manifest, str(out), **kwargs)


@pytest.mark.parametrize("objective,zero,precision,extra", [
    ("restoration", 0, "fp32", ["train.corrupt_on=device", "train.cls_warmup_epochs=1"]),  # no CE: W ignored
    ("classification", 3, "bf16", []),
    ("inpainting_classification", 1, "bf16", []),
])
def test_objectives_run(train_store, train_manifest, tmp_path, objective, zero, precision, extra, caplog):
    """Each objective, and with them the training loop at ZeRO 0 (fp32), 1 and 3 (bf16): both
    losses as the objective says, finite, and fp32 exports at every stage."""
    caplog.set_level(logging.INFO, logger="semgen_ray")
    rec = _run(train_store, train_manifest, tmp_path / "run",
               [f"train.objective={objective}", "train.num_workers=1", "train.max_steps=2",
                f"train.zero_stage={zero}", f"train.precision={precision}", *extra])
    h = rec["history"][-1]
    assert rec["steps"] == 2 and rec["stopped"] == "max_steps"
    # the epoch line, from Ray Train's controller to the driver's log (issue 16)
    assert any(m.startswith("[train] epoch 1/") and "stopping: max_steps" in m for m in caplog.messages)
    assert (h["train_rec_loss"] > 0) == (objective != "classification")
    assert h["phase"] == "joint" and rec["cls_warmup_epochs"] == 0
    assert (h["train_cls_loss"] > 0) == (objective != "restoration")
    assert all(math.isfinite(h[k]) for k in ("train_loss", "val_loss"))
    card = json.loads((tmp_path / "run" / "export" / "model_card.json").read_text())
    assert card["lineage"]["training_config"]["train"]["zero_stage"] == zero
    assert card["lineage"]["training_config"]["train"]["precision"] == precision
    weights = load_file(f"{rec['export']}/model.safetensors")
    assert {str(v.dtype) for v in weights.values() if v.is_floating_point()} == {"torch.float32"}


def _decoder_and_encoder(weights: dict) -> tuple[dict, dict]:
    decoder = {k: v for k, v in weights.items() if k.startswith(("up_tr", "out_tr"))}
    encoder = {k: v for k, v in weights.items() if k.startswith("down_tr") and v.is_floating_point()}
    assert decoder and encoder
    return decoder, encoder


def test_warmup_leaves_the_decoder_untouched_and_resumes_mid_warmup(train_store, train_manifest, tmp_path):
    """Semantic Genesis §2, W=2 classification-only epochs on uncorrupted cubes, then the joint loss:
    a run stopped after epoch 1 has trained encoder and head only; resumed, it continues the warm-up
    (epoch 2) and then trains jointly (epoch 3).

    Warm-up epochs record phase "warmup" with no restoration loss (the loss is λ_cls·CE alone), the
    joint epoch both terms; only a joint epoch can be the best one (the warm-up validation loss is
    another loss, far smaller, and must not win the comparison).
    """
    import torch

    from semgen_ray.config import load_config
    from semgen_ray.models import build_model
    from semgen_ray.stages.pretraining import loop_config

    first = _run(train_store, train_manifest, tmp_path / "run", ["train.cls_warmup_epochs=2", "train.max_epochs=1"])
    assert [h["phase"] for h in first["history"]] == ["warmup"] and first["best_epoch"] == 0
    state = json.loads((Path(first["latest_checkpoint"]) / "state.json").read_text())
    assert state["cls_warmup_epochs"] == 2 and state["phase"] == "warmup"  # the next epoch is still warm-up
    # the loop's initial weights: torch.manual_seed(seed), then the model cast to bf16
    cfg = loop_config(load_config("cpu-tiny", [*TINY, "train.cls_warmup_epochs=2"]), 2, False, None)
    torch.manual_seed(0)
    init = {k: v.to(torch.bfloat16).float() for k, v in build_model(cfg["model"]).state_dict().items()}
    decoder, encoder = _decoder_and_encoder(load_file(f"{first['export']}/model.safetensors"))
    for k, v in decoder.items():
        assert torch.equal(v.to(init[k].dtype), init[k]), k  # weights and BatchNorm statistics unchanged
    assert any(not torch.equal(v, init[k]) for k, v in encoder.items())
    again = _run(train_store, train_manifest, tmp_path / "run", ["train.cls_warmup_epochs=2", "train.max_epochs=3"])
    assert [h["phase"] for h in again["history"]] == ["warmup", "warmup", "joint"]
    assert [r["epoch"] for r in again["resumes"]] == [1] and again["best_epoch"] == 3
    *warm, joint = again["history"]
    for w in warm:
        assert w["train_rec_loss"] == 0 and w["val_rec_loss"] == 0
        assert w["train_loss"] == pytest.approx(0.01 * w["train_cls_loss"], rel=1e-6)  # λ_cls = 0.01
        assert w["val_loss"] == pytest.approx(0.01 * w["val_cls_loss"], rel=1e-6)
    assert joint["train_rec_loss"] > 0 and joint["val_rec_loss"] > 0 and joint["val_loss"] > warm[-1]["val_loss"]
    assert again["best_val_loss"] == pytest.approx(joint["val_loss"]) and again["cls_warmup_epochs"] == 2
    assert joint["bad_epochs"] == 0 and joint["lr"] == warm[-1]["lr"]
    saved = json.loads((tmp_path / "run" / "train.json").read_text())
    assert [h["phase"] for h in saved["history"]] == ["warmup", "warmup", "joint"]
    decoder, _ = _decoder_and_encoder(load_file(f"{again['export']}/model.safetensors"))
    assert any(not torch.equal(v.to(init[k].dtype), init[k]) for k, v in decoder.items())


def test_retention_keeps_the_best_epoch_end_and_the_export_takes_it(tmp_path):
    """Default retention (2) over mid-epoch checkpoints and epoch ends: the best by validation loss
    (step 4) survives the later mid-epoch ones and is the one exported; the latest is kept too."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from semgen_ray.config.schema import TrainConfig
    from semgen_ray.stages.pretraining import _best_checkpoint, checkpoint_config

    def report_scenario():  # a closure: pickled by value for the Ray worker
        """Ray Train worker: checkpoints at steps 2 and 6 (mid-epoch) and 4 and 8 (epoch ends, validation
        losses 0.05 and 0.09), with the loop's ``select_loss``; each folder records its step."""
        import tempfile

        import ray.train

        from semgen_ray.train.loop import select_loss
        from semgen_ray.train.objectives import JOINT

        for step, val_loss in [(2, None), (4, 0.05), (6, None), (8, 0.09)]:
            metrics = {"step": step, "phase": JOINT, "select_loss": select_loss(JOINT, val_loss)}
            if val_loss is not None:
                metrics.update(val_loss=val_loss, epoch_end=True)
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "step.txt").write_text(str(step))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                                 checkpoint_dir_name=f"step_{step:08d}")

    run = RunConfig(name="scenario", storage_path=str(tmp_path), checkpoint_config=checkpoint_config(TrainConfig()))
    result = TorchTrainer(report_scenario, run_config=run,
                          scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5})).fit()
    assert sorted(p.name for p in (tmp_path / "scenario").glob("step_*")) == ["step_00000004", "step_00000008"]
    best = _best_checkpoint(result)
    assert Path(best.path, "step.txt").read_text() == "4"
    assert Path(result.checkpoint.path, "step.txt").read_text() == "8"
