"""The one LR schedule of the three training loops: step and plateau, checkpointable, and equal to
torch's ReduceLROnPlateau where the auto-encoder and fine-tuning used torch's before."""

import numpy as np
import pytest
import torch

from semgen_ray.engine import LRSchedule, apply_lr


def test_step_schedule_halves_every_40_epochs_and_plateau_waits():
    s = LRSchedule("step", 1e-3, 0.5, 40)
    assert [s.after_epoch(e, 1.0) for e in (1, 39, 40, 80)] == [1e-3, 1e-3, 5e-4, 2.5e-4]
    p = LRSchedule("plateau", 1e-3, 0.5, plateau_patience=2)
    lrs = [p.after_epoch(e, v) for e, v in enumerate([1.0, 0.5, 0.5, 0.5, 0.5], 1)]
    assert lrs == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4]
    assert LRSchedule.from_state(p.state_dict()) == p


def test_a_checkpoint_from_before_the_threshold_fields_restores_the_keras_plateau():
    old = {"kind": "plateau", "base_lr": 1e-3, "gamma": 0.5, "step_epochs": 40, "plateau_patience": 20,
           "lr": 5e-4, "best": 0.3, "bad_epochs": 4}
    s = LRSchedule.from_state(old)
    assert (s.min_delta, s.relative, s.min_lr, s.lr, s.bad_epochs) == (1e-4, False, 1e-6, 5e-4, 4)


def _losses(seed: int, n: int = 300) -> list[float]:
    """Noisy, mostly flat losses with long plateaus, tiny improvements (below a 1e-4 threshold) and NaNs."""
    rng = np.random.default_rng(seed)
    x = 1.0 + np.cumsum(rng.choice([0.0, 0.0, -1e-5, -0.02, 0.01], n)) + rng.normal(0, 1e-3, n) * (rng.random(n) < 0.3)
    x[rng.random(n) < 0.02] = np.nan
    return x.tolist()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("torch_kwargs, ours", [
    ({"patience": 3}, {"plateau_patience": 4, "min_delta": 1e-4, "relative": True}),    # the auto-encoder's
    ({"patience": 2, "threshold": 0.0}, {"plateau_patience": 3, "min_delta": 0.0}),     # fine-tuning's
])
def test_plateau_follows_torch_reduce_lr_on_plateau(seed, torch_kwargs, ours):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1e-2)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, min_lr=1e-6, **torch_kwargs)
    mine = LRSchedule("plateau", 1e-2, 0.5, min_lr=1e-6, **ours)
    mirror = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    seen = set()
    for epoch, loss in enumerate(_losses(seed), 1):
        theirs.step(loss)
        apply_lr(mirror, mine.after_epoch(epoch, loss))
        assert mirror.param_groups[0]["lr"] == opt.param_groups[0]["lr"], epoch
        seen.add(mine.lr)
    assert len(seen) >= 3  # the sequence does exercise several reductions


def test_plateau_never_raises_a_learning_rate_below_the_floor():
    s = LRSchedule("plateau", 0.0, 0.5, plateau_patience=1, min_lr=1e-6)
    assert [s.after_epoch(e, 1.0) for e in (1, 2, 3)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("bad", [{"kind": "cosine"}, {"plateau_patience": 0}, {"min_delta": -1.0}])
def test_invalid_schedules_are_refused(bad):
    with pytest.raises(ValueError):
        LRSchedule(**{"kind": "plateau", "base_lr": 1e-3, **bad})
