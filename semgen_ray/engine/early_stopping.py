"""Early stopping and the best-so-far record on a validation loss (docs/method.md §5, §6.2): the one
rule of pretraining, auto-encoder training and fine-tuning.

A loss strictly below the best so far is an improvement (it becomes the best, and the state to keep);
``patience`` validations in a row without one end training. A NaN loss is never an improvement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The run-state keys the record is kept under (checkpoints, metrics and reports name them so).
STATE_KEYS = ("best_val_loss", "best_epoch", "bad_epochs")


@dataclass
class EarlyStopping:
    """``best``: the lowest loss so far, reached at ``best_at`` (an epoch, or a fine-tuning step);
    ``bad``: validations since then."""

    patience: int
    best: float = math.inf
    best_at: int = 0
    bad: int = 0

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def update(self, loss: float, at: int) -> bool:
        """Record validation ``at``'s loss; True when it is the new best."""
        if loss < self.best:
            self.best, self.best_at, self.bad = loss, at, 0
            return True
        self.bad += 1
        return False

    @property
    def stop(self) -> bool:
        """Whether ``patience`` validations in a row brought no improvement."""
        return self.bad >= self.patience

    def state(self) -> dict:
        """The record under :data:`STATE_KEYS`, for a run state that a checkpoint holds."""
        return dict(zip(STATE_KEYS, (self.best, self.best_at, self.bad)))

    @classmethod
    def from_state(cls, state: dict, patience: int) -> EarlyStopping:
        """The record kept in ``state`` (a fresh one where it holds none) with ``patience``."""
        return cls(patience, *(state.get(k, d) for k, d in zip(STATE_KEYS, (math.inf, 0, 0))))


__all__ = ["STATE_KEYS", "EarlyStopping"]
