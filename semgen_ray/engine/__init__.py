"""What every training loop of the system shares, written once: auto-encoder training
(:mod:`semgen_ray.discovery`), pretraining (:mod:`semgen_ray.train`) and fine-tuning
(:mod:`semgen_ray.evaluate`) use the same pieces.

- :mod:`~semgen_ray.engine.schedule`: the learning-rate schedules (step, plateau, none) as checkpointable state;
- :mod:`~semgen_ray.engine.early_stopping`: early stopping and the best-so-far record.

The Ray Train wiring both Ray Train jobs share (backend, scaling, ingest, best-checkpoint pick) is
:mod:`semgen_ray.ray_train`. Nothing here imports torch or Ray.
"""

from semgen_ray.engine.early_stopping import EarlyStopping
from semgen_ray.engine.schedule import LRSchedule, apply_lr

__all__ = ["EarlyStopping", "LRSchedule", "apply_lr"]
