"""Learning-rate schedules (docs/method.md §5), as plain state so checkpoints can hold them; the one
schedule of pretraining, auto-encoder training and fine-tuning.

``step``: StepLR, lr = base · γ^⌊epoch / step_epochs⌋, step_epochs = int(0.8 · patience) = 40 by
default (the PyTorch reference). ``plateau``: ReduceLROnPlateau on the validation loss (× γ once
``plateau_patience`` validations in a row brought no improvement of ``min_delta``, floor ``min_lr``;
the Keras reference: 0.5, 20, 1e-4, 1e-6). ``min_delta`` is absolute (Keras) or, with
``relative=True``, a fraction of the best loss (torch's default ``threshold_mode="rel"``); torch's
``patience=p`` reduces after ``p + 1`` bad validations, i.e. ``plateau_patience = p + 1`` here.
``none``: constant. The schedule is applied by setting the optimizer's ``param_groups`` learning
rate, which works the same for a plain torch optimizer and a DeepSpeed ZeRO wrapper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PLATEAU_PATIENCE = 20
PLATEAU_MIN_DELTA = 1e-4
MIN_LR = 1e-6


@dataclass
class LRSchedule:
    """The schedule and its state; :meth:`after_epoch` returns the learning rate for the next epoch."""

    kind: str
    base_lr: float
    gamma: float = 0.5
    step_epochs: int = 40
    plateau_patience: int = PLATEAU_PATIENCE
    min_delta: float = PLATEAU_MIN_DELTA
    relative: bool = False
    min_lr: float = MIN_LR
    lr: float = 0.0
    best: float = float("inf")
    bad_epochs: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("step", "plateau", "none"):
            raise ValueError(f"schedule must be step, plateau or none, got {self.kind!r}")
        if self.plateau_patience < 1 or self.min_delta < 0:
            raise ValueError(f"plateau_patience must be >= 1 and min_delta >= 0, got {self.plateau_patience}, "
                             f"{self.min_delta}")
        self.lr = self.lr or self.base_lr

    def after_epoch(self, epoch: int, val_loss: float) -> float:
        """Advance after finished epoch (or validation) ``epoch`` (1-based) with its validation loss."""
        if self.kind == "step":
            self.lr = self.base_lr * self.gamma ** (epoch // self.step_epochs)
        elif self.kind == "plateau":
            bar = self.best * (1 - self.min_delta) if self.relative else self.best - self.min_delta
            if val_loss < bar:
                self.best, self.bad_epochs = val_loss, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs >= self.plateau_patience:
                    # never raised: an LR already below the floor stays (torch and Keras alike)
                    self.lr, self.bad_epochs = min(self.lr, max(self.min_lr, self.lr * self.gamma)), 0
        return self.lr

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> LRSchedule:
        return cls(**state)


def apply_lr(optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr
