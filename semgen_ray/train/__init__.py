"""Pretraining (docs/method.md §5): Ray Train + DeepSpeed over crops streamed from the pattern manifest.

- :mod:`~semgen_ray.train.objectives`: which losses, on which inputs (``train.objective``);
- :mod:`~semgen_ray.train.pattern_data`: the manifest's cubes as Ray Data datasets (crop-on-read,
  corruption on Ray Data CPU workers or on the device);
- :mod:`~semgen_ray.train.deepspeed_config`: the DeepSpeed config and the torch optimizer;
- :mod:`~semgen_ray.train.loop`: the worker function (full-state checkpoints, resume mid-epoch);
- :mod:`~semgen_ray.train.trainer`: :func:`run_pretraining` (TorchTrainer, export, report) and
  :func:`pretrain_or_reuse` (the same, unless the folder's reuse record holds this pretraining);
- :mod:`~semgen_ray.train.report`: loss curves and sample cubes.

The LR schedule and early stopping are :mod:`semgen_ray.engine`'s, shared with auto-encoder training
and fine-tuning. Heavy imports (ray, torch, deepspeed) happen inside functions.
"""

from semgen_ray.train.trainer import PretrainError, finished_pretraining, pretrain_or_reuse, run_pretraining

__all__ = ["PretrainError", "finished_pretraining", "pretrain_or_reuse", "run_pretraining"]
