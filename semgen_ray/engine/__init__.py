"""What every training loop of the system shares, written once: auto-encoder training
(:mod:`semgen_ray.discovery`), pretraining (:mod:`semgen_ray.train`) and fine-tuning
(:mod:`semgen_ray.evaluate`) use the same pieces.

- :mod:`~semgen_ray.engine.backends`: the step engine (DeepSpeed, or plain torch behind its calls);
- :mod:`~semgen_ray.engine.deepspeed_config`: DeepSpeed's config, the torch optimizer, the precision;
- :mod:`~semgen_ray.engine.seeding`: per-rank seeding;
- :mod:`~semgen_ray.engine.checkpoint`: the full-state checkpoint format, its checks, write and resume;
- :mod:`~semgen_ray.engine.fp32_weights`: the fp32 master weights of a checkpoint, for the export;
- :mod:`~semgen_ray.engine.schedule`: the learning-rate schedules (step, plateau, none) as checkpointable state;
- :mod:`~semgen_ray.engine.early_stopping`: early stopping and the best-so-far record.

The Ray Train wiring both Ray Train jobs share (backend, scaling, ingest, best-checkpoint pick) is
:mod:`semgen_ray.ray_train`. Importing this package imports neither torch nor DeepSpeed nor Ray.
"""

from semgen_ray.engine.early_stopping import EarlyStopping
from semgen_ray.engine.schedule import LRSchedule, apply_lr

__all__ = ["EarlyStopping", "LRSchedule", "apply_lr"]
