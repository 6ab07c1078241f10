"""N seeded fine-tuning trials per arm, task and label fraction on Ray Tune (docs/method.md §6.2, "ten-trial protocol").

One Tune trial = one (task, arm, label fraction, seed) fine-tuning run
(:func:`semgen_ray.evaluate.finetune.run_trial`), a grid over tasks × arms × label fractions × seeds;
trials run in parallel as CPUs allow (``evaluate.cpus_per_trial``), with actor reuse (docs/operations.md §3:
0.6 s instead of 4.9 s per trial), and show in the Tune / Ray dashboard. The task cubes go to the
object store once (``tune.with_parameters``). Results are kept under ``<out>/tune/evaluate``; running
again on the same folder with the same settings restores the experiment and runs only the trials that
had not finished. Changed settings start afresh: the earlier experiment is moved, never deleted, to
``<out>/tune/superseded/evaluate-<UTC time>`` with ``superseded.json`` naming the settings that changed,
and a log line says so. Low-label subsets are chosen (and checked) before any trial starts.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

from semgen_ray.evaluate.finetune import ROW_KEYS

NAME = "evaluate"

logger = logging.getLogger(__name__)

#: Fine-tuning settings that ``settings["per_task"]`` may override per task.
TUNABLE = ("lr", "batch_size", "max_steps", "eval_every", "patience", "lr_patience")


def task_settings(settings: dict, task: str) -> dict:
    """The fine-tuning settings of ``task``: the common ones with ``settings["per_task"][task]`` on top.

    Raises:
        ValueError: an override names an unknown setting, or ``lr_patience >= patience``.
    """
    overrides = dict((settings.get("per_task") or {}).get(task) or {})
    unknown = sorted(set(overrides) - set(TUNABLE))
    if unknown:
        raise ValueError(f"per_task[{task!r}] overrides unknown settings {unknown}; known: {list(TUNABLE)}")
    out = {k: settings[k] for k in TUNABLE}
    out.update(overrides)
    if out["lr_patience"] >= out["patience"]:
        raise ValueError(f"{task}: lr_patience ({out['lr_patience']}) must be < patience ({out['patience']})")
    return out


@contextmanager
def _no_credentials_in_runtime_env():
    """Keep cloud credentials out of the trial actors' ``runtime_env``.

    Ray Tune copies ``AWS_*`` keys from the driver's environment into every trial actor's
    ``runtime_env``, which Ray logs in plain text (``runtime_env_agent.log``) and shows on the
    dashboard. Trial actors find credentials where every Ray worker does (the node's environment,
    instance profile or service-account role), so the copy is switched off while the trials start.
    """
    from ray.tune.execution import class_cache

    saved = class_cache.ENV_VARS_TO_PROPAGATE
    class_cache.ENV_VARS_TO_PROPAGATE = {n for n in saved if not n.startswith("AWS_")}
    try:
        yield
    finally:
        class_cache.ENV_VARS_TO_PROPAGATE = saved


def check_subsets(data: dict, cells) -> None:
    """Every cell's low-label training subset, chosen before any trial starts: a fraction whose subsets
    lack a class fails here (:class:`~semgen_ray.evaluate.tasks.TaskError`), and a subset that had
    to be redrawn is logged (its trial row records ``subset_draws``)."""
    from semgen_ray.evaluate.tasks import subset_patients

    for task, fraction, seed in cells:
        if fraction >= 1.0:
            continue
        train = data[task].splits["train"]
        keep, draws = subset_patients(train["patient"], train["y"], task, fraction, seed)
        if draws > 1:
            logger.info(f"[evaluate] {task}, label fraction {fraction}, seed {seed}: {draws - 1} draw(s) of "
                        f"{len(keep)} training patients lacked a class; redrawn within the fraction (draw {draws})")


def _changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two experiment keys."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changes(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def claim(storage: str, key: str) -> str | None:
    """Make ``<storage>/evaluate`` the experiment of ``key`` (the trial settings, as JSON): an
    experiment there of other settings (or without a settings record) is set aside first
    (:func:`set_aside`); ``<storage>/experiment.json`` then holds ``key``. Returns where an earlier
    experiment went, or None."""
    from semgen_ray import runfolder

    path = f"{storage}/{NAME}"
    key_file = runfolder.join(storage, "experiment.json")
    moved = None
    if runfolder.exists(path) and (not runfolder.isfile(key_file) or runfolder.read_text(key_file) != key):
        moved = set_aside(storage, key)
    runfolder.write_text(key_file, key)
    return moved


def set_aside(storage: str, key: str) -> str:
    """Move the experiment of other settings, ``<storage>/evaluate``, to
    ``<storage>/superseded/evaluate-<UTC time>`` (never deleted: its trials stay readable there), with
    ``superseded.json`` saying what changed; log what was set aside and why. Returns the new place."""
    import datetime as _dt
    import posixpath

    from semgen_ray import runfolder

    path = f"{storage}/{NAME}"
    key_file = runfolder.join(storage, "experiment.json")
    try:
        old = json.loads(runfolder.read_text(key_file)) if runfolder.isfile(key_file) else None
    except ValueError:
        old = None
    changed = _changes(old, json.loads(key)) if isinstance(old, dict) else ["(no settings record)"]
    fs, fs_path = runfolder.filesystem(path)
    finished = len(fs.glob(posixpath.join(fs_path, "*", "result.json")))
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest = f"{storage}/superseded/{NAME}-{stamp}"
    runfolder.move(path, dest)  # object stores too: object by object (no folder to rename there)
    record = {"moved_from": path, "at": stamp, "changed": changed, "trial_folders": finished, "settings": old}
    runfolder.write_text(f"{dest}/superseded.json", json.dumps(record, indent=2, default=str))
    logger.info(f"[evaluate] the trial settings changed since {path} was started ({', '.join(changed[:8])}"
                + (f" and {len(changed) - 8} more" if len(changed) > 8 else "") + f"): its {finished} trial folder(s) "
                f"were moved to {dest} (kept, not resumed; superseded.json there says why); starting the trials afresh")
    return dest


def _trial(config: dict, data: dict) -> None:
    from ray import tune

    from semgen_ray.evaluate.finetune import run_trial

    s, (task, fraction, seed) = config["settings"], config["cell"]
    result = run_trial(data[task], task, config["arm"], s["weights"][config["arm"]], int(seed),
                       s["model"], head=s.get("head", "linear"), label_fraction=float(fraction),
                       threads=s["threads"], device="cuda" if s.get("gpus_per_trial") else "cpu",
                       engine=s.get("engine", "torch"), precision=s.get("precision", "fp32"),
                       spatial_dims=2 if s.get("images") or config["arm"] in s.get("slice_arms", ()) else 3,
                       **task_settings(s, task))
    tune.report(result)


def run_trials(data: dict, arms: dict[str, str | None], settings: dict, out_dir: str | Path, trials: int,
               cpus_per_trial: float = 1.0, callbacks=()) -> tuple[list[dict], list[str]]:
    """Run (or resume) the trial grid; returns (one result row per finished trial, errors of the failed).

    Args:
        data: task name → :class:`~semgen_ray.evaluate.tasks.TaskData`.
        arms: arm name → weights path (``None``: random initialisation).
        settings: fine-tuning options: ``model`` (``ModelConfig`` dict), ``head``, ``lr``, ``batch_size``,
            ``max_steps``, ``eval_every``, ``patience``, ``lr_patience``, ``per_task`` (task → overrides
            of those six), ``label_fractions`` (list), ``threads``, ``gpus_per_trial`` (0: CPUs;
            > 0: that many GPUs per trial, fine-tuning on CUDA); optionally ``primary_fraction``
            and ``curve_trials``: fractions other than the primary one get seeds
            0 .. curve_trials-1 only (a cheaper label-efficiency curve); ``engine`` and
            ``precision`` (:func:`~semgen_ray.evaluate.finetune.run_trial`'s, default torch / fp32);
            ``slice_arms``: arms whose 2D network works on axial slices (:mod:`semgen_ray.evaluate.slices`);
            ``images``: the tasks are patches of 2D images, every arm a 2D network.
        trials: seeds per arm, task and label fraction (0 .. trials-1).
        callbacks: Ray Tune callbacks (e.g. progress lines), given to ``tune.RunConfig``.

    Returns:
        Rows with the keys of :data:`semgen_ray.evaluate.finetune.ROW_KEYS`, sorted by task, arm,
        label fraction and seed.

    Raises:
        ValueError: invalid per-task settings, or (:class:`~semgen_ray.evaluate.tasks.TaskError`) a label
            fraction whose training subsets lack a class (both checked before any trial starts).
    """
    from ray import tune

    for task in data:
        task_settings(settings, task)
    fractions = [float(f) for f in settings.get("label_fractions") or [1.0]]
    primary, curve_trials = settings.get("primary_fraction"), settings.get("curve_trials") or trials
    cells = [(task, f, seed) for task in sorted(data) for f in fractions
             for seed in range(trials if primary is None or f == primary else min(trials, curve_trials))]
    check_subsets(data, cells)
    from semgen_ray import runfolder

    # a URI (s3://…) is Tune's storage as it is: trial results and the experiment state live there
    storage = runfolder.join(str(out_dir), "tune") if runfolder.is_remote(out_dir) \
        else str((Path(out_dir) / "tune").resolve())
    path = f"{storage}/{NAME}"
    resources = {"cpu": cpus_per_trial, **({"gpu": settings["gpus_per_trial"]} if settings.get("gpus_per_trial") else {})}
    trainable = tune.with_resources(tune.with_parameters(_trial, data=data), resources)
    settings = {**settings, "weights": dict(arms)}
    key = json.dumps({"settings": settings, "tasks": sorted(data), "trials": trials,
                      "sizes": {t: d.sizes() for t, d in data.items()},
                      "cubes": {t: d.digest() for t, d in data.items()}}, sort_keys=True, default=str)
    claim(storage, key)
    run_config = tune.RunConfig(name=NAME, storage_path=storage, verbose=0, callbacks=list(callbacks))
    if tune.Tuner.can_restore(path):
        logger.info(f"[evaluate] resuming the trials in {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
        local = getattr(tuner, "_local_tuner", None)
        if local is not None:  # the restored run config holds a pickled copy of the first session's callbacks
            local.get_run_config().callbacks = list(callbacks)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"arm": tune.grid_search(list(arms)), "cell": tune.grid_search(cells),
                         "settings": settings},
            tune_config=tune.TuneConfig(reuse_actors=True), run_config=run_config)
    with _no_credentials_in_runtime_env():
        grid = tuner.fit()
    rows, failed = [], []
    for r in grid:
        if r.error is not None or not r.metrics or "arm" not in r.metrics:
            failed.append(str(r.error))
            continue
        rows.append({k: v for k, v in r.metrics.items() if k in ROW_KEYS})
    return sorted(rows, key=lambda r: (r["task"], r["arm"], r["label_fraction"], r["seed"])), failed
