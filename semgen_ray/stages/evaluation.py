"""The evaluation stage end to end (docs/method.md §6; ``python -m semgen_ray.evaluate``).

1. the arms' weights: ``scratch``; pretraining objectives from the run's exports (``<run>/train`` for
   ``train.objective``, ``<run>/train_<objective>`` for the baselines, pretrained here on the same
   pattern manifest when missing); named weight files from ``evaluate.weights``;
2. the target store: ``evaluate.target_store``, or a phantom cohort of another cohort seed
   (``<run>/target.zarr``; its radiographs when the run is 2D), so that no pretraining patient is a
   target patient;
3. the target tasks' cubes (cached in ``<run>/evaluate/tasks_<task>.npz``, rebuilt when the settings
   they depend on change);
4. the Tune trials, task × arm × label fraction × seed (resumed when interrupted), with progress lines;
5. ``results.csv``, ``report.md`` (paths relative to the run folder) and PNGs in ``<run>/evaluate``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

from semgen_ray import reuse
from semgen_ray.config.schema import OBJECTIVES, SemGenConfig
from semgen_ray.stages import StageError
from semgen_ray.stages.layout import RunLayout

logger = logging.getLogger(__name__)


class EvaluationError(StageError):
    """Evaluation cannot run as configured; the message says why."""


def arm_weights(config: SemGenConfig, force: bool = False) -> dict[str, str | None]:
    """Arm name → weights (None for scratch), pretraining objective baselines on the way unless their
    folder's reuse record holds these settings (:func:`semgen_ray.stages.pretraining.pretrain_or_reuse`)."""
    from semgen_ray import runfolder
    from semgen_ray.stages.pretraining import pretrain_or_reuse

    layout = RunLayout.of(config)
    out: dict[str, str | None] = {}
    for arm in config.evaluate.arms:
        if arm in ("scratch", "scratch_2d"):
            out[arm] = None
        elif arm in config.evaluate.weights:
            path = layout.absolute(config.evaluate.weights[arm])
            if not runfolder.exists(path):
                raise EvaluationError(f"evaluate.weights[{arm!r}]: no weights at {path}")
            out[arm] = path
        elif arm in OBJECTIVES:
            folder, manifest = layout.train(arm), layout.patterns
            if not runfolder.isfile(manifest):
                raise EvaluationError(f"arm {arm!r} needs pretraining, which needs the pattern manifest "
                                      f"{manifest}: run python -m semgen_ray.pretrain first")
            logger.info(f"[evaluate] the {arm!r} arm: weights pretrained in {folder}")
            cfg = replace(config, train=replace(config.train, objective=arm))
            pretrain_or_reuse(cfg, layout.absolute(config.store.uri), manifest, folder, force=force)
            export = runfolder.join(folder, "export")
            out[arm] = export if runfolder.is_remote(export) else os.path.abspath(export)
    return out


def slice_arms(arms: dict[str, str | None]) -> list[str]:
    """The 2D slice-based arms (docs/method.md §6.4): ``scratch_2d`` and the arms whose export's model
    card says ``spatial_dims: 2``."""
    from semgen_ray import runfolder
    from semgen_ray.models.weights import read_card

    flat = []
    for arm, weights in arms.items():
        dims = 2 if arm == "scratch_2d" else 3
        if weights is not None:
            with runfolder.local_copy(weights) as local:
                dims = ((read_card(local) or {}).get("architecture") or {}).get("spatial_dims", 3)
        if dims == 2:
            flat.append(arm)
    return flat


def image_arms(arms: dict[str, str | None], two_d: list[str]) -> None:
    """A 2D run's arms (tasks on 2D images): ``scratch`` and the 2D ones (``two_d``, :func:`slice_arms`);
    anything else is refused."""
    three_d = [a for a in arms if a != "scratch" and a not in two_d]
    if three_d:
        raise EvaluationError(f"the target tasks of a 2D run are patches of 2D images, which only 2D networks "
                              f"fine-tune: arm(s) {three_d} hold 3D weights")


def check_target_films(config: SemGenConfig) -> None:
    """A 2D run's default target cohort (phantom films) holds ``data.cube_size``'s patches; checked
    before anything is trained or generated (the ``paper-2d`` sizes need a store of radiographs)."""
    from semgen_ray.phantoms.radiograph import film_shape

    e = config.evaluate
    if not config.data.flat or e.target_store:
        return
    shape, cube = list(e.target_shape or config.phantoms.shape), list(config.data.cube_size)[:2]
    film = film_shape(shape)
    if any(c > f for c, f in zip(cube, film)):
        raise EvaluationError(f"the target cohort's films (phantoms of {shape}) are {film[0]}×{film[1]} pixels, smaller "
                              f"than data.cube_size {cube}: give evaluate.target_store, a labelled store of radiographs "
                              "(python -m semgen_ray.ingest FILMS --kind 2d --out STORE), or a larger "
                              "evaluate.target_shape")


def target_store(config: SemGenConfig) -> str:
    """The labelled store of the target tasks (a phantom cohort of its own seed by default, its
    radiographs when the run is 2D)."""
    from semgen_ray.phantoms.cohort import write_cohort

    e = config.evaluate
    layout = RunLayout.of(config)
    if e.target_store:
        return layout.absolute(e.target_store)
    if e.target_seed == config.phantoms.seed:
        raise EvaluationError("evaluate.target_seed equals phantoms.seed: the target patients would be the "
                              "pretraining patients")
    shape = e.target_shape or config.phantoms.shape
    uri = layout.absolute("target.zarr")
    films = config.data.flat
    logger.info(f"[evaluate] target cohort: {e.target_patients} phantoms {list(shape)} (cohort seed {e.target_seed})"
                + (", their radiographs" if films else "") + f" → {_rel(config.run_dir, uri)}")
    report = write_cohort(replace(config.phantoms, n=e.target_patients, seed=e.target_seed, shape=shape),
                          replace(config.store, uri=uri), config.ingest, config.ray, progress=False,
                          radiographs=films)
    if not report.ok:
        raise EvaluationError(f"{len(report.failed)} target phantoms failed; see the manifest of {uri}")
    return uri


def _rel(run_dir: str, path: str) -> str:
    """``path`` relative to the run folder when it lies inside it (reports travel with their folder)."""
    if "://" in path or "://" in run_dir:
        base = run_dir.rstrip("/") + "/"
        return path[len(base):] if path.startswith(base) else path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(run_dir))
    return path if rel.startswith("..") else rel


def task_settings(config: SemGenConfig, store: str) -> dict:
    """Everything the target-task cubes depend on: the cache key of ``tasks_<task>.npz``."""
    from semgen_ray.evaluate.tasks import SAMPLING_VERSION

    e = config.evaluate
    return {"sampling": SAMPLING_VERSION, "store": store, "cube": list(config.data.cube_size), "seed": config.seed,
            "min_voxels": e.min_voxels,
            "negatives": e.negatives, "negatives_per_positive": e.negatives_per_positive,
            "cube_mm": list(e.cube_mm) if e.cube_mm else None, "seg_jitter": e.seg_jitter,
            "seg_background": e.seg_background, "target_shape": list(e.target_shape or config.phantoms.shape),
            **({"images": True} if config.data.flat else {})}  # only then: earlier caches keep their key


def load_tasks(config: SemGenConfig, store: str, out: Path, force: bool = False) -> dict:
    """Target-task cubes of ``store``, rebuilt unless the reuse record ``tasks.json``
    (:mod:`semgen_ray.reuse`) holds these settings (:func:`task_settings`) and the cube files it
    lists are unchanged."""
    from semgen_ray.evaluate.tasks import TaskData, TaskError, build_tasks

    e = config.evaluate
    settings = task_settings(config, store)
    key, key_file = reuse.digest(settings), out / "tasks.json"
    cache = {t: out / f"tasks_{t}.npz" for t in e.tasks}
    done = None if force else reuse.load(key_file, key)
    if done and all(f"tasks_{t}.npz" in done["outputs"] for t in e.tasks):
        logger.info(f"[evaluate] reusing the target-task cubes in {out} (tasks.json holds these settings)")
    else:
        reuse.clear(key_file)  # first: a build that stops leaves no record to trust
        try:
            built = build_tasks(store, config.data.cube_size, seed=config.seed, min_voxels=e.min_voxels,
                                negatives_per_positive=e.negatives_per_positive, negatives=e.negatives,
                                cube_mm=e.cube_mm, seg_jitter=e.seg_jitter, seg_background=e.seg_background,
                                images=config.data.flat)
        except TaskError as err:
            raise EvaluationError(str(err)) from err
        for t in e.tasks:
            built[t].save(cache[t])
        reuse.save(key_file, key, {"settings": settings}, outputs=[f"tasks_{t}.npz" for t in e.tasks])
    data = {t: TaskData.load(cache[t]) for t in e.tasks}
    for t, d in data.items():
        logger.info(f"[evaluate] {t}: cubes per split {d.sizes()}")
        best = (d.info.get("shortcut_auc") or {}).get("best")
        if best is not None and best >= e.max_shortcut_auc:
            logger.warning(f"[evaluate] {t}: a one-number shortcut separates the classes with AUC {best:.3f} (≥ "
                           f"evaluate.max_shortcut_auc {e.max_shortcut_auc}); the task will be reported as invalid")
    return data


#: The fine-tuning engine's defaults (:func:`semgen_ray.evaluate.finetune.run_trial`).
FINE_TUNE_DEFAULTS = {"engine": "torch", "precision": "fp32"}


def fine_tune_settings(config: SemGenConfig, gpu: bool = False) -> dict:
    """The Tune trials' settings (see :func:`semgen_ray.evaluate.trials.run_trials`); ``gpu``: the
    trials fine-tune on GPUs (``evaluate.gpus_per_trial`` each)."""
    from dataclasses import asdict

    e = config.evaluate
    model = {k: v for k, v in asdict(config.model).items() if k != "num_classes"}
    return {"model": model, "head": e.head, "lr": e.lr, "batch_size": e.batch_size, "max_steps": e.max_steps,
            "eval_every": e.eval_every, "patience": e.patience, "lr_patience": e.lr_patience,
            "per_task": {t: dict(v) for t, v in e.per_task.items()},
            "label_fractions": sorted({e.label_fraction, *e.curve_fractions}),
            "primary_fraction": e.label_fraction, "curve_trials": e.curve_trials or e.trials,
            "threads": max(1, int(e.cpus_per_trial)), "gpus_per_trial": e.gpus_per_trial if gpu else 0,
            # the settings are the trials' key: trials run before these settings existed stay valid
            **reuse.without_later_defaults({"engine": e.engine, "precision": e.precision}, FINE_TUNE_DEFAULTS)}


def run_evaluation(config: SemGenConfig, force: bool = False) -> dict:
    """Run the evaluation and write its report under ``<run_dir>/evaluate``; returns the record.

    The run folder may be a URI (:mod:`semgen_ray.runfolder`): the task cache and the report are then
    written locally and uploaded, and the Tune trials keep their results there directly.
    """
    from semgen_ray import runfolder
    from semgen_ray.runtime import require_cpus

    e = config.evaluate
    require_cpus({"evaluate.cpus_per_trial": e.cpus_per_trial, "data.read_cpus": config.data.read_cpus,
                  "train.cpus_per_worker": config.train.cpus_per_worker})  # before any baseline trains
    folder = RunLayout.of(config).evaluate
    cached = ["tasks.json", *(f"tasks_{t}.npz" for t in config.evaluate.tasks)]
    with runfolder.workdir(folder, fetch=cached) as out:
        return _evaluate(config, out, folder, force=force)


def _evaluate(config: SemGenConfig, out: Path, folder: str, force: bool = False) -> dict:
    """:func:`run_evaluation` with ``out``, a local folder standing for ``folder``."""
    from semgen_ray import runfolder
    from semgen_ray.evaluate.progress import Progress, tune_callback
    from semgen_ray.evaluate.report import write_report
    from semgen_ray.evaluate.tasks import TaskError
    from semgen_ray.evaluate.trials import run_trials
    from semgen_ray.gpus import decide_gpus

    e = config.evaluate
    run = config.run_dir
    check_target_films(config)
    arms = arm_weights(config, force=force)
    two_d = slice_arms(arms)  # from the exports' model cards, read once
    if config.data.flat:
        image_arms(arms, two_d)  # before the target cohort is made
    store = target_store(config)
    data = load_tasks(config, store, out, force=force)
    tune_base = folder if runfolder.is_remote(folder) else out  # Tune writes a URI itself
    if force:
        tune_dir = runfolder.join(str(tune_base), "tune")
        if runfolder.exists(tune_dir):
            logger.info(f"[evaluate] --force: deleting the earlier trials in {tune_dir} (superseded ones included)")
        runfolder.remove(tune_dir)
    gpu = decide_gpus(e.use_gpu, "evaluate", e.gpus_per_trial, config.ray.gpu_wait_s)
    settings = fine_tune_settings(config, gpu.use)
    flat = []  # the arms fine-tuned on the axial slices of 3D cubes
    if config.data.flat:  # patches of 2D images: every arm is a 2D network
        settings["images"] = True
    elif two_d:  # only then: the settings are the trials' key
        settings["slice_arms"] = flat = two_d
    per_arm = e.trials + (len(settings["label_fractions"]) - 1) * min(e.trials, settings["curve_trials"])
    total = len(data) * len(arms) * per_arm
    logger.info(f"[evaluate] {total} trials: {len(data)} tasks × {len(arms)} arms × ({e.trials} seeds at label "
                f"fraction {e.label_fraction}" + (f" + {settings['curve_trials']} at each of {list(e.curve_fractions)})"
                                                  if e.curve_fractions else ")"))
    progress = Progress(total)
    try:
        rows, failed = run_trials(data, arms, settings, tune_base, e.trials, cpus_per_trial=e.cpus_per_trial,
                                  callbacks=[tune_callback(progress)])
    except TaskError as err:  # a label fraction whose subsets lack a class: found before any trial ran
        raise EvaluationError(str(err)) from err
    if failed:
        raise EvaluationError(f"{len(failed)} of {len(failed) + len(rows)} trials failed (finished ones are "
                              f"kept; a re-run retries the rest). First error: {failed[0][-800:]}")
    header = (f"Target store `{_rel(run, store)}`; {e.trials} trials per arm, task and label fraction; "
              f"primary label fraction {e.label_fraction}"
              + (f", curve fractions {sorted(settings['label_fractions'])}" if e.curve_fractions else "")
              + (f"; patches {list(config.data.cube_size)[:2]} pixels of 2D images" if config.data.flat
                 else f"; cubes {list(config.data.cube_size)} voxels")
              + (f" resampled from {list(e.cube_mm)} mm" if e.cube_mm else "")
              + f"; negatives `{e.negatives}`; head `{e.head}`; fine-tuning ≤ {e.max_steps} steps, validation "
              f"every {e.eval_every}, patience {e.patience}, LR patience {e.lr_patience}; arms: "
              + ", ".join(f"`{a}` ({_rel(run, w) if w else 'random init'}"
                          + (", 2D on axial slices" if a in flat else "") + ")" for a, w in arms.items()))
    gates = {"auc": e.gate_auc, "dice": e.gate_dice, "max_shortcut_auc": e.max_shortcut_auc}
    summary = write_report(out, rows, e.alpha, header, label_fraction=e.label_fraction,
                           task_info={t: d.info for t, d in data.items()}, gates=gates)
    record = {"report": _rel(run, runfolder.join(folder, "report.md")),
              "results": _rel(run, runfolder.join(folder, "results.csv")),
              "trials": len(rows), "arms": {a: (_rel(run, w) if w else None) for a, w in arms.items()},
              "target_store": _rel(run, store), "task_info": {t: d.info for t, d in data.items()},
              "best": {t: (s["comparisons"] or {}).get("best") for t, s in summary.items()},
              "valid": {t: s.get("valid") for t, s in summary.items()}, "gpu_decision": gpu.as_dict(),
              "means": {t: {a: sum(v) / len(v) for a, v in s["values"].items()} for t, s in summary.items()}}
    (out / "evaluate.json").write_text(json.dumps(record, indent=2, default=str))
    return record
