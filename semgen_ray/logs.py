"""The console of the command-line tools: the project's progress lines in one format, library noise kept out.

Every module logs through ``logging.getLogger(__name__)`` (loggers under ``semgen_ray``); library code
prints nothing. :func:`configure`, called by every command (:mod:`semgen_ray.cli`), gives the
``semgen_ray`` logger one console handler: ``HH:MM:SS message``, progress on stdout (as the
results: paths of reports and weights), warnings and errors on stderr with the level named.

Ray's, Ray Data's and DeepSpeed's own lines stay out of the console in local mode: Ray runs with
``log_to_driver=False`` (worker output stays in the session's log files,
:func:`semgen_ray.runtime.init_ray`), and DeepSpeed's logger, which prints to stdout by itself, only
passes errors. ``verbose`` shows everything.

Ray Train calls its report callbacks in its controller actor, not in the driver, and the actor's
output is not sent to the driver: :class:`ReportRelay` carries the progress lines of a training run
(``[train] epoch …``) from there to the driver's log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

PROJECT = "semgen_ray"
QUIET, PROGRESS, VERBOSE = -1, 0, 1
#: loggers of libraries that write to the console on their own; only their errors pass unless verbose
NOISY = ("DeepSpeed",)
_HANDLER = "semgen_ray.console"


class _Console(logging.StreamHandler):
    """Progress (INFO, DEBUG) to stdout, warnings and errors to stderr: whatever ``sys.stdout`` /
    ``sys.stderr`` are when a line is written (pytest and ``contextlib.redirect_stdout`` replace them
    after the handler exists)."""

    def __init__(self) -> None:
        super().__init__()
        self._to_stderr = False

    @property
    def stream(self):
        return sys.stderr if self._to_stderr else sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        self._to_stderr = record.levelno >= logging.WARNING  # under the handler's lock (Handler.handle)
        super().emit(record)


class _Format(logging.Formatter):
    """``HH:MM:SS message``; ``HH:MM:SS WARNING message`` for any level other than INFO."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname} "
        return f"{record.asctime} {level}{record.message}"


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def configure(verbosity: int = PROGRESS) -> None:
    """Set up the console of a command; calling it again replaces the earlier setup.

    Args:
        verbosity: :data:`QUIET` (warnings and errors), :data:`PROGRESS` (the progress lines, the
            default) or :data:`VERBOSE` (debug lines, and the libraries' own lines).
    """
    if verbosity not in (QUIET, PROGRESS, VERBOSE):
        raise ValueError(f"verbosity must be {QUIET}, {PROGRESS} or {VERBOSE}, got {verbosity!r}")
    project = logging.getLogger(PROJECT)
    for handler in [h for h in project.handlers if h.get_name() == _HANDLER]:
        project.removeHandler(handler)
    handler = _Console()
    handler.set_name(_HANDLER)
    handler.setFormatter(_Format())
    project.addHandler(handler)
    project.setLevel({QUIET: logging.WARNING, PROGRESS: logging.INFO, VERBOSE: logging.DEBUG}[verbosity])
    for name in NOISY:  # a filter, not a level: DeepSpeed sets its logger's level when it is imported
        noisy = logging.getLogger(name)
        for old in [f for f in noisy.filters if isinstance(f, _ErrorsOnly)]:
            noisy.removeFilter(old)
        if verbosity < VERBOSE:
            noisy.addFilter(_ErrorsOnly())


def verbose() -> bool:
    """True when the console shows debug lines (``--verbose``): Ray's worker output is shown too."""
    return logging.getLogger(PROJECT).getEffectiveLevel() <= logging.DEBUG


def _relay_actor():
    import ray

    @ray.remote(num_cpus=0)
    class Lines:
        """Progress lines posted by a Ray Train controller, taken by the driver."""

        def __init__(self) -> None:
            self.lines: list[tuple[int, str]] = []

        def post(self, level: int, line: str) -> None:
            self.lines.append((int(level), str(line)))

        def take(self) -> list[tuple[int, str]]:
            lines, self.lines = self.lines, []
            return lines

    return Lines


def _report_callback(lines, stage: str, line_of: Callable[[dict], str | None]):
    import ray
    from ray.train import UserCallback

    def post(level: int, line: str) -> None:
        try:  # waited for: the line is there before fit() returns and the driver takes the last ones
            ray.get(lines.post.remote(level, line), timeout=10)
        except Exception:  # noqa: BLE001 - a lost progress line must not stop the training
            pass

    class ReportLines(UserCallback):
        """Posts the progress line of each report (rank 0's metrics) and each worker failure."""

        def after_report(self, run_context, metrics, checkpoint) -> None:
            line = line_of(metrics[0]) if metrics else None
            if line:
                post(logging.INFO, line)

        def after_exception(self, run_context, worker_exceptions) -> None:
            for rank, err in sorted(worker_exceptions.items()):
                text = str(err).strip()
                post(logging.WARNING, f"[{stage}] worker {rank} failed: "
                                      f"{text.splitlines()[0][:300] if text else type(err).__name__}")

    return ReportLines()


class ReportRelay:
    """Ray Train callbacks whose progress lines the driver logs while ``fit()`` runs.

    Create it before the trainer (its :attr:`callbacks` go into ``RunConfig(callbacks=…)``), and run
    ``fit()`` inside ``with relay:``; on exit the last lines are logged and the relay actor stops.

    Args:
        stage: the prefix of worker-failure lines (``[stage] worker 1 failed: …``).
        line_of: rank 0's reported metrics → the progress line of that report, or ``None`` for none.
            It runs in Ray Train's controller: a module-level function (or a ``functools.partial`` of one).
        name: the logger the lines go to (the training module's).
        every_s: how often the driver collects the lines while training runs.
    """

    def __init__(self, stage: str, line_of: Callable[[dict], str | None], name: str = __name__,
                 every_s: float = 0.5) -> None:
        import threading

        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._out = logging.getLogger(name)
        self._every_s = float(every_s)
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
        self._lines = _relay_actor().options(scheduling_strategy=here).remote()
        self.callbacks = [_report_callback(self._lines, stage, line_of)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="semgen-report-lines", daemon=True)

    def _take(self) -> bool:
        import ray

        try:
            for level, line in ray.get(self._lines.take.remote(), timeout=30):
                self._out.log(level, line)
            return True
        except Exception:  # noqa: BLE001 - Ray is shutting down: the lines are lost, the training is not
            return False

    def _pump(self) -> None:
        while not self._stop.wait(self._every_s) and self._take():
            pass

    def __enter__(self) -> ReportRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import ray

        self._stop.set()
        self._thread.join(timeout=35)
        self._take()
        ray.kill(self._lines)
