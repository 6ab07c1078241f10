"""The one early-stopping rule of the three training loops."""

import math

import pytest

from semgen_ray.engine import EarlyStopping
from semgen_ray.engine.early_stopping import STATE_KEYS


def test_strict_improvements_reset_the_count_and_patience_stops():
    s = EarlyStopping(patience=2)
    assert [s.update(v, at) for at, v in enumerate([1.0, 0.5, 0.5, 0.4, math.nan, 0.41], 1)] == [
        True, True, False, True, False, False]
    assert (s.best, s.best_at, s.bad, s.stop) == (0.4, 4, 2, True)


def test_state_round_trip_and_fresh_state():
    s = EarlyStopping(3)
    s.update(0.2, 7)
    s.update(0.3, 8)
    state = {"epoch": 8, **s.state()}
    assert tuple(s.state()) == STATE_KEYS
    assert EarlyStopping.from_state(state, 3) == s
    fresh = EarlyStopping.from_state({"epoch": 0}, 5)
    assert (fresh.best, fresh.best_at, fresh.bad, fresh.stop) == (math.inf, 0, 0, False)


def test_patience_below_one_is_refused():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(0)
