"""Pretraining's library (docs/method.md §5): Ray Train + DeepSpeed over crops streamed from the pattern manifest.

- :mod:`~semgen_ray.train.objectives`: which losses, on which inputs (``train.objective``);
- :mod:`~semgen_ray.train.pattern_data`: the manifest's cubes as Ray Data datasets (crop-on-read,
  corruption on Ray Data CPU workers or on the device);
- :mod:`~semgen_ray.train.loop`: the worker function (full-state checkpoints, resume mid-epoch);
- :mod:`~semgen_ray.train.report`: loss curves and sample cubes.

The stage that runs it (TorchTrainer, export, report, reuse) is :mod:`semgen_ray.stages.pretraining`.
The step engine (DeepSpeed), the checkpoint format, the fp32 export, the LR schedule and early
stopping are :mod:`semgen_ray.engine`'s, shared with auto-encoder training and fine-tuning. Heavy imports (ray, torch, deepspeed) happen inside functions.
"""
