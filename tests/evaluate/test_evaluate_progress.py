"""Progress lines of the evaluation: the counts, the estimate, and a real Tune run feeding them."""

import logging

import pytest

from semgen_ray.evaluate.progress import Progress, tune_callback


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "semgen_ray.evaluate.progress"]


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_counts_statuses_and_estimates_the_rest_from_this_sessions_rate(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="semgen_ray")
    p = Progress(10, every_s=60, clock=clock)
    # 2 trials restored as finished from an earlier session, 2 running, the rest pending
    p.update(["TERMINATED", "TERMINATED", "RUNNING", "RUNNING"] + ["PENDING"] * 6)
    clock.t = 30
    p.report()
    assert _lines(caplog)[-1] == "[evaluate] trials 2/10 done, 2 running, 0 failed; elapsed 0m30s"  # no rate yet
    clock.t = 100
    p.update(["TERMINATED"] * 4 + ["RUNNING", "ERROR"] + ["PENDING"] * 4, finished_here=2)
    p.report()
    # 2 finished here in 100 s -> 50 s each; 10 - 4 done - 1 failed = 5 left -> 250 s
    assert _lines(caplog)[-1] == "[evaluate] trials 4/10 done, 1 running, 1 failed; elapsed 1m40s, about 4m10s left"


def test_heartbeat_reports_only_after_a_quiet_interval(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="semgen_ray")
    p = Progress(3, every_s=60, clock=clock)
    clock.t = 59
    p.heartbeat()
    assert _lines(caplog) == []
    clock.t = 61
    p.heartbeat()
    assert len(_lines(caplog)) == 1
    clock.t = 100
    p.heartbeat()
    assert len(_lines(caplog)) == 1


@pytest.mark.usefixtures("ray_local")
def test_the_callback_pickles_after_rays_progress_bars_replaced_print(monkeypatch):
    """Tune pickles its callbacks; Ray's tqdm patch swaps ``builtins.print`` in the driver, after which
    the original ``print`` held as the log function could not be pickled (the no-argument evaluation
    died there)."""
    import builtins

    from ray import cloudpickle

    original = builtins.print
    progress = Progress(4)
    monkeypatch.setattr(builtins, "print", lambda *a, **k: original(*a, **k))
    clone = cloudpickle.loads(cloudpickle.dumps(tune_callback(progress)))
    assert clone is not None
    copy = cloudpickle.loads(cloudpickle.dumps(progress))
    assert copy.total == 4


def test_a_real_tune_run_reports_every_trial(tmp_path, caplog):
    from ray import tune

    def trainable(config):
        tune.report({"value": config["x"] * 2})

    caplog.set_level(logging.INFO, logger="semgen_ray")
    progress = Progress(3)
    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                       param_space={"x": tune.grid_search([1, 2, 3])},
                       run_config=tune.RunConfig(name="progress", storage_path=str(tmp_path), verbose=0,
                                                 callbacks=[tune_callback(progress)]))
    grid = tuner.fit()
    assert not grid.errors
    lines = _lines(caplog)
    assert lines[-1].startswith("[evaluate] trials 3/3 done, 0 running, 0 failed; elapsed ")
    done_counts = [int(line.split("trials ")[1].split("/")[0]) for line in lines]
    assert done_counts == sorted(done_counts) and {1, 2, 3} <= set(done_counts)
