"""What every command line shares: the common flags, the config, the console, Ray and the errors.

Each stage is ``python -m semgen_ray.<stage>`` and the ``semgen-<stage>`` console script
(``pyproject.toml``). Its parser comes from :func:`parser`, which adds the common flags: ``--config``,
``--set``, ``--run-dir`` (where the stage has a run folder), ``--force``, ``--quiet`` / ``--verbose``
(and ``--help``). Its body runs under :func:`run`: one console format (:mod:`semgen_ray.logs`), the
project's errors as one ``error: …`` line on stderr (exit status 1; 2 for a bad configuration), and
Ctrl-C as one line saying how to continue (exit status 130). Heavy modules are imported by the
bodies, never here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence

CONFIG_HELP = "preset (paper, cpu-tiny, cpu-small, cpu-tiny-2d, paper-2d) or YAML file; default $SEMGEN_CONFIG when set, else cpu-tiny"
CONTINUE = "run the same command again to continue (finished work is reused)"
#: the project's errors that end a command with one line (module → class; status 1, a ConfigError 2),
#: looked up only in modules already imported: a module never imported cannot have raised its error
ERRORS = {
    "semgen_ray.runfolder": "RunFolderError", "semgen_ray.gpus": "GpuUnavailableError",
    "semgen_ray.stages": "StageError",  # every stage's error (discovery, pretraining, evaluation, the chain)
    "semgen_ray.store.volume_store": "StoreError", "semgen_ray.config.schema": "ConfigError",
}


class CommandError(Exception):
    """Ends a command with ``error: <message>`` on stderr and exit status ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def parser(prog: str, description: str, *, set_example: str, force: str,
           run_dir: str | None = None, config: str = CONFIG_HELP) -> argparse.ArgumentParser:
    """An argument parser with the common flags; the stage adds its own.

    Args:
        prog: the module form, ``python -m semgen_ray.<stage>``.
        description: the first line of the module docstring, usually.
        set_example: an override of this stage for the ``--set`` help (``train.lr=3e-4``).
        force: what ``--force`` redoes in this stage.
        run_dir: the ``--run-dir`` help; ``None`` for a stage without a run folder.
        config: the ``--config`` help.
    """
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", help=config)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"config override such as {set_example} (repeatable)")
    if run_dir is not None:
        p.add_argument("--run-dir", help=run_dir)
    p.add_argument("--force", action="store_true", help=force)
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="only warnings and errors on the console")
    talk.add_argument("--verbose", action="store_true",
                      help="debug lines, and Ray's, Ray Data's and DeepSpeed's own output, on the console")
    return p


def load(args: argparse.Namespace, overrides: Sequence[str] = (), path: str | dict | None = None):
    """The config of ``--config`` (or ``path``: a file, a preset or a dict of sections; without
    either, ``$SEMGEN_CONFIG`` when set: a node's or a job's default) with ``--set``, the stage's own
    ``overrides`` and ``--run-dir`` on top; a bad one (a ``ConfigError``) ends the command with
    status 2 under :func:`run`."""
    from semgen_ray.config import load_config

    extra = list(args.set) + list(overrides)
    if getattr(args, "run_dir", None):
        extra.append(f"run_dir={args.run_dir}")
    return load_config(path or args.config or os.environ.get("SEMGEN_CONFIG") or None, extra)


@contextlib.contextmanager
def ray_session(ray_config) -> Iterator:
    """Ray started (local) or joined (cluster) for the command, and shut down at the end when the
    command started it; yields the ``ray`` module. ``--verbose`` lets the workers' output through."""
    import ray

    from semgen_ray import logs
    from semgen_ray.runtime import init_ray

    owns = not ray.is_initialized()
    init_ray(ray_config, quiet=not logs.verbose())
    try:
        yield ray
    finally:
        if owns and ray.is_initialized():
            ray.shutdown()


def _status(err: BaseException) -> int | None:
    """The exit status of one of the project's errors (:data:`ERRORS`), or ``None`` for any other error."""
    for module, name in ERRORS.items():
        found = sys.modules.get(module)
        if found is not None and isinstance(err, getattr(found, name, ())):
            return 2 if name == "ConfigError" else 1
    return None


def run(args: argparse.Namespace, body: Callable[[], int],
        interrupted: str | Callable[[], str] = CONTINUE) -> int:
    """Run a command's ``body`` (returns the exit status) with the console set up from ``--quiet`` /
    ``--verbose``; the project's errors and Ctrl-C end it with one line on stderr.

    Args:
        interrupted: what the Ctrl-C line says to do to continue (or a function that says it, when
            that depends on what the body found out, such as the run folder).
    """
    from semgen_ray import logs

    logs.configure(logs.QUIET if getattr(args, "quiet", False)
                   else logs.VERBOSE if getattr(args, "verbose", False) else logs.PROGRESS)
    try:
        return body()
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        print(f"\ninterrupted: {interrupted() if callable(interrupted) else interrupted}", file=sys.stderr)
        return 130
    except Exception as err:
        status = _status(err)
        if status is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return status
