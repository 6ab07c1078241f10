"""The DeepSpeed config of a training run, from its settings: :class:`semgen_ray.config.schema.TrainConfig`
for pretraining, :class:`~semgen_ray.engine.backends.EngineSettings` for the auto-encoder and fine-tuning
(both have ``batch_size``, ``grad_accum``, ``zero_stage``, ``precision``, ``optimizer`` and ``lr``).

The optimizer is a torch optimizer passed to ``deepspeed.initialize`` (no JIT-compiled FusedAdam,
docs/operations.md §1); ZeRO stage, precision and gradient accumulation come from the config. fp16 uses
dynamic loss scaling and needs GPUs (DeepSpeed refuses fp16 on CPUs without fp16 kernels). ``auto``
precision is bf16 where the device computes it natively and fp32 elsewhere: on a CPU without bf16
kernels (AVX2 only) torch runs bf16 convolutions through reference code, and a training step of the
``cpu-tiny`` U-Net took 36x as long as in fp32 (``benchmarks/results/unet_avx2.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # any settings object with these fields (duck-typed; config is a layer above)
    from semgen_ray.config.schema import TrainConfig

#: Never print DeepSpeed's periodic step logs (metrics go to Ray and TensorBoard).
QUIET_STEPS = 10**9


def native_bf16(gpu: bool) -> bool:
    """Whether this machine's device computes bf16 natively: a CUDA GPU with bf16 support (Ampere and
    later), or a CPU whose oneDNN has bf16 kernels (AVX512-BF16 or AMX)."""
    import torch

    if gpu:
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: no native bf16 either
        return False


def resolve_precision(requested: str, native: bool) -> str:
    """The precision a run trains in: ``auto`` is bf16 when every worker's device computes bf16
    natively (``native``), fp32 otherwise; an explicit ``bf16`` / ``fp16`` / ``fp32`` is kept."""
    if requested != "auto":
        return requested
    return "bf16" if native else "fp32"


def deepspeed_config(train: TrainConfig, gpu: bool, precision: str | None = None) -> dict:
    """The ``config`` dict for ``deepspeed.initialize``, in ``precision`` (default
    ``train.precision``, with ``auto`` resolved on this machine by :func:`native_bf16`).

    Raises:
        ValueError: fp16 without GPUs.
    """
    precision = precision or train.precision
    if precision == "auto":  # probe the device only when the choice is left to it
        precision = resolve_precision(precision, native_bf16(gpu))
    if precision == "fp16" and not gpu:
        raise ValueError("precision fp16 needs GPUs (DeepSpeed has no fp16 on this CPU); use bf16 or fp32")
    cfg = {
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "zero_optimization": {"stage": train.zero_stage},
        "steps_per_print": QUIET_STEPS,
        "wall_clock_breakdown": False,
    }
    if precision == "bf16":
        cfg["bf16"] = {"enabled": True}
    elif precision == "fp16":
        cfg["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16,
                       "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1}
    return cfg


def make_optimizer(train: TrainConfig, params):
    """Adam (Semantic Genesis, lr 1e-3) or SGD with momentum 0.9 (Models Genesis)."""
    import torch

    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=0.9)
    return torch.optim.Adam(params, lr=train.lr)
