"""The DeepSpeed config of a pretraining run, from :class:`semgen_ray.config.schema.TrainConfig`.

The optimizer is a torch optimizer passed to ``deepspeed.initialize`` (no JIT-compiled FusedAdam,
docs/operations.md §1); ZeRO stage, precision and gradient accumulation come from the config. fp16 uses
dynamic loss scaling and needs GPUs (DeepSpeed refuses fp16 on CPUs without fp16 kernels).
"""

from __future__ import annotations

from semgen_ray.config.schema import TrainConfig

#: Never print DeepSpeed's periodic step logs (metrics go to Ray and TensorBoard).
QUIET_STEPS = 10**9


def deepspeed_config(train: TrainConfig, gpu: bool) -> dict:
    """The ``config`` dict for ``deepspeed.initialize``.

    Raises:
        ValueError: fp16 without GPUs.
    """
    if train.precision == "fp16" and not gpu:
        raise ValueError("train.precision=fp16 needs GPUs (DeepSpeed has no fp16 on this CPU); use bf16 or fp32")
    cfg = {
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "zero_optimization": {"stage": train.zero_stage},
        "steps_per_print": QUIET_STEPS,
        "wall_clock_breakdown": False,
    }
    if train.precision == "bf16":
        cfg["bf16"] = {"enabled": True}
    elif train.precision == "fp16":
        cfg["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16,
                       "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1}
    return cfg


def make_optimizer(train: TrainConfig, params):
    """Adam (Semantic Genesis, lr 1e-3) or SGD with momentum 0.9 (Models Genesis)."""
    import torch

    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=0.9)
    return torch.optim.Adam(params, lr=train.lr)
