"""Objectives, LR schedules and the DeepSpeed config (no Ray)."""

import math

import pytest
import torch

from semgen_ray.config import load_config
from semgen_ray.config.schema import OBJECTIVES
from semgen_ray.engine.deepspeed_config import deepspeed_config, native_bf16, resolve_precision
from semgen_ray.train.objectives import loss_terms, objective
from semgen_ray.transforms import policy_from_preset


def test_loss_terms_match_the_reference_formula():
    torch.manual_seed(0)
    restored, target = torch.rand(2, 1, 4, 4, 4), torch.rand(2, 1, 4, 4, 4)
    logits, labels = torch.randn(2, 3), torch.tensor([0, 2])
    mse = ((restored - target) ** 2).mean()
    ce = -torch.log_softmax(logits, 1)[torch.arange(2), labels].mean()
    loss, parts = loss_terms(objective("semantic_genesis"), restored, target, logits, labels, 0.01, 1.0)
    assert float(loss) == pytest.approx(float(0.01 * ce + mse), rel=1e-6)
    assert int(parts["correct"]) == int((logits.argmax(1) == labels).sum())
    loss, _ = loss_terms(objective("restoration"), restored, target, logits, labels, 0.01, 1.0)
    assert float(loss) == pytest.approx(float(mse), rel=1e-6)
    loss, parts = loss_terms(objective("classification"), restored, target, logits, labels, 0.01, 1.0)
    assert float(loss) == pytest.approx(float(0.01 * ce), rel=1e-6) and float(parts["rec_loss"]) == 0


def test_add_on_objectives_force_one_corruption():
    policy = load_config(None, ["train.objective=inpainting_classification",
                                "train.corruption_overrides={paint_margin: 1, mode: chain}"]).train.corruption_policy
    assert (policy.paint_margin, policy.mode, policy.one_of_weights) == (1, "one_of", (0.0, 0.0, 1.0, 0.0))
    shuffling = load_config(None, ["train.objective=shuffling_classification"]).train.corruption_policy
    assert shuffling.one_of_weights == (1.0, 0.0, 0.0, 0.0)
    assert load_config(None, []).train.corruption_policy == policy_from_preset("sg")
    assert not objective("classification").corrupts and objective("restoration").corrupts
    assert set(OBJECTIVES) == {"semantic_genesis", "restoration", "classification",
                               "inpainting_classification", "shuffling_classification"}
    with pytest.raises(ValueError, match="unknown objective"):
        objective("jigsaw")


def test_one_policy_object_travels_to_the_training_workers():
    """Issue 16: the policy is built once, with the config (the objective's fields merged there), and
    every worker's ``train_loop_config`` holds that object (pickled whole), not strings to rebuild it."""
    import pickle

    from semgen_ray.stages.pretraining import loop_config

    config = load_config(None, ["train.objective=inpainting_classification",
                                "train.corruption_overrides={paint_margin: 1}"])
    policy = config.train.corruption_policy
    assert config.train.corruption_policy is policy
    cfg = loop_config(config, num_classes=3, gpu=False, tensorboard_dir=None)
    assert cfg["corruption_policy"] is policy and not {"corruption", "corruption_overrides"} & set(cfg)
    travelled = pickle.loads(pickle.dumps(cfg))
    assert travelled["corruption_policy"] == policy == travelled["train_config"].corruption_policy
    assert travelled["corruption_policy"].one_of_weights == (0.0, 0.0, 1.0, 0.0)


def test_deepspeed_config_from_train_config():
    t = load_config("cpu-tiny", ["train.zero_stage=2", "train.grad_accum=2", "train.precision=bf16"]).train
    cfg = deepspeed_config(t, gpu=False)
    assert cfg["zero_optimization"]["stage"] == 2 and cfg["bf16"] == {"enabled": True}
    assert cfg["gradient_accumulation_steps"] == 2 and cfg["train_micro_batch_size_per_gpu"] == t.batch_size
    assert "optimizer" not in cfg  # a torch optimizer is passed: no JIT-built FusedAdam
    fp16 = load_config("cpu-tiny", ["train.precision=fp16"]).train
    assert deepspeed_config(fp16, gpu=True)["fp16"]["loss_scale"] == 0
    with pytest.raises(ValueError, match="fp16 needs GPUs"):
        deepspeed_config(fp16, gpu=False)
    assert math.isfinite(t.lr)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_device_computes_it_natively(native):
    """``auto`` (the default) resolves to bf16 on a device with native bf16 and to fp32 elsewhere; an
    explicit precision is kept either way; the DeepSpeed config follows the resolved precision."""
    assert resolve_precision("auto", native) == ("bf16" if native else "fp32")
    assert [resolve_precision(p, native) for p in ("bf16", "fp16", "fp32")] == ["bf16", "fp16", "fp32"]
    t = load_config("cpu-tiny", ["train.precision=auto"]).train
    assert ("bf16" in deepspeed_config(t, gpu=False, precision=resolve_precision("auto", native))) is native
    # without a resolved precision the config resolves auto on this machine's CPU
    assert ("bf16" in deepspeed_config(t, gpu=False)) is native_bf16(gpu=False)
