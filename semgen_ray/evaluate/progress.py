"""Progress of the evaluation's trial grid on the console: done / running / failed of the total,
elapsed time and an estimate of the rest.

:class:`Progress` is the bookkeeping (no Ray), :func:`tune_callback` wraps it in a Ray Tune
``Callback`` so that the trials report as they start, finish or fail, plus a heartbeat line at most
every ``every_s`` seconds while they run (an evaluation is otherwise silent for many minutes).
The estimate is the rate of trials finished in this session (trials restored as finished from an
earlier, interrupted session count as done but not in the rate).
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Counts of a fixed grid of ``total`` trials and the line that reports them.

    ``update`` takes the status of every trial (Tune's ``PENDING`` / ``RUNNING`` / ``TERMINATED`` /
    ``ERROR`` …), so trials restored as finished from an interrupted session count as done;
    ``finished_here`` counts those finished in this session, which set the rate of the estimate.
    """

    def __init__(self, total: int, every_s: float = 60.0, clock=time.monotonic) -> None:
        self.total, self.every_s, self.clock = int(total), float(every_s), clock
        self.t0 = self.last_line = clock()
        self.done = self.running = self.failed = self.finished_here = 0

    def update(self, statuses, finished_here: int = 0) -> None:
        statuses = [str(s) for s in statuses]
        self.done = statuses.count("TERMINATED")
        self.running = statuses.count("RUNNING")
        self.failed = statuses.count("ERROR")
        self.finished_here += finished_here

    def line(self) -> str:
        elapsed = self.clock() - self.t0
        left = self.total - self.done - self.failed
        text = (f"[evaluate] trials {self.done}/{self.total} done, {self.running} running, "
                f"{self.failed} failed; elapsed {_clock(elapsed)}")
        if self.finished_here and left > 0:
            text += f", about {_clock(elapsed / self.finished_here * left)} left"
        return text

    def report(self) -> None:
        self.last_line = self.clock()
        logger.info(self.line())

    def heartbeat(self) -> None:
        """Report if nothing was reported for ``every_s`` seconds."""
        if self.clock() - self.last_line >= self.every_s:
            self.report()


def tune_callback(progress: Progress):
    """A Ray Tune callback feeding ``progress`` (``tune.RunConfig(callbacks=[...])``)."""
    from ray.tune import Callback

    def statuses(trials):
        return [t.status for t in trials]

    class _TuneProgress(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            # called before the trial's own status becomes RUNNING
            progress.update([("RUNNING" if t is trial else t.status) for t in trials])
            progress.report()

        def on_trial_complete(self, iteration, trials, trial, **info):
            # Tune calls this before the trial's own status changes: count it as done here
            progress.update([("TERMINATED" if t is trial else t.status) for t in trials], finished_here=1)
            progress.report()

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.update([("ERROR" if t is trial else t.status) for t in trials])
            progress.report()

        def on_step_end(self, iteration, trials, **info):
            progress.update(statuses(trials))
            progress.heartbeat()

    return _TuneProgress()
