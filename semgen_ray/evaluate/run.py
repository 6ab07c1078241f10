"""The evaluation stage end to end (SPEC.md §6; ``python -m semgen_ray.evaluate``).

1. the arms' weights: ``scratch``; pretraining objectives from the run's exports (``<run>/train`` for
   ``train.objective``, ``<run>/train_<objective>`` for the baselines, pretrained here on the same
   pattern manifest when missing); named weight files from ``evaluate.weights``;
2. the target store: ``evaluate.target_store``, or a phantom cohort of another cohort seed
   (``<run>/target.zarr``), so that no pretraining patient is a target patient;
3. the target tasks' cubes (cached in ``<run>/evaluate/tasks_<task>.npz``);
4. the Tune trials (resumed when interrupted);
5. ``results.csv``, ``report.md`` and PNGs in ``<run>/evaluate``.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from semgen_ray.config.schema import OBJECTIVES, SemGenConfig


class EvaluationError(RuntimeError):
    """Evaluation cannot run as configured; the message says why."""


def _abs(run_dir: str, p: str) -> str:
    """``p`` as an absolute path or URI (Tune trials run in their own working directories)."""
    return p if "://" in p else os.path.abspath(p if p.startswith("/") else os.path.join(run_dir, p))


def arm_weights(config: SemGenConfig, log=print, force: bool = False) -> dict[str, str | None]:
    """Arm name → weights (None for scratch), pretraining missing objective baselines on the way."""
    from semgen_ray.train import run_pretraining

    run = config.run_dir
    out: dict[str, str | None] = {}
    for arm in config.evaluate.arms:
        if arm == "scratch":
            out[arm] = None
        elif arm in config.evaluate.weights:
            path = _abs(run, str(config.evaluate.weights[arm]))
            if not os.path.exists(path):
                raise EvaluationError(f"evaluate.weights[{arm!r}]: no weights at {path}")
            out[arm] = path
        elif arm in OBJECTIVES:
            folder = os.path.join(run, "train" if arm == config.train.objective else f"train_{arm}")
            export = os.path.join(folder, "export")
            if force or not os.path.isfile(os.path.join(export, "model.safetensors")):
                manifest = os.path.join(run, "discovery", "patterns.parquet")
                if not os.path.isfile(manifest):
                    raise EvaluationError(f"arm {arm!r} needs pretraining, which needs the pattern manifest "
                                          f"{manifest}: run python -m semgen_ray.pretrain first")
                log(f"[evaluate] pretraining the {arm!r} arm into {folder}")
                cfg = replace(config, train=replace(config.train, objective=arm))
                run_pretraining(cfg, _abs(run, config.store.uri), manifest, folder, log=log, force=force)
            out[arm] = os.path.abspath(export)
    return out


def target_store(config: SemGenConfig, log=print) -> str:
    """The labelled store of the target tasks (a phantom cohort of its own seed by default)."""
    from semgen_ray.phantoms.cohort import write_cohort

    e = config.evaluate
    if e.target_store:
        return _abs(config.run_dir, e.target_store)
    if e.target_seed == config.phantoms.seed:
        raise EvaluationError("evaluate.target_seed equals phantoms.seed: the target patients would be the "
                              "pretraining patients")
    uri = os.path.abspath(os.path.join(config.run_dir, "target.zarr"))
    log(f"[evaluate] target cohort: {e.target_patients} phantoms (cohort seed {e.target_seed}) → {uri}")
    report = write_cohort(replace(config.phantoms, n=e.target_patients, seed=e.target_seed),
                          replace(config.store, uri=uri), config.ingest, config.ray, progress=False)
    if not report.ok:
        raise EvaluationError(f"{len(report.failed)} target phantoms failed; see the manifest of {uri}")
    return uri


def run_evaluation(config: SemGenConfig, log=print, force: bool = False) -> dict:
    """Run the evaluation and write its report under ``<run_dir>/evaluate``; returns the record."""
    from dataclasses import asdict

    from semgen_ray.evaluate.report import write_report
    from semgen_ray.evaluate.tasks import TaskData, TaskError, build_tasks
    from semgen_ray.evaluate.trials import run_trials

    e = config.evaluate
    out = Path(config.run_dir) / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    arms = arm_weights(config, log=log, force=force)
    store = target_store(config, log=log)
    data = {}
    cache = {t: out / f"tasks_{t}.npz" for t in e.tasks}
    if force or not all(p.is_file() for p in cache.values()):
        try:
            built = build_tasks(store, config.data.cube_size, seed=config.seed, min_voxels=e.min_voxels,
                                negatives_per_positive=e.negatives_per_positive)
        except TaskError as err:
            raise EvaluationError(str(err)) from err
        for t in e.tasks:
            built[t].save(cache[t])
    for t in e.tasks:
        data[t] = TaskData.load(cache[t])
        log(f"[evaluate] {t}: cubes per split {data[t].sizes()}")
    if force and (out / "tune").exists():
        import shutil

        shutil.rmtree(out / "tune")
    model = {k: v for k, v in asdict(config.model).items() if k != "num_classes"}
    settings = {"model": model, "lr": e.lr, "batch_size": e.batch_size, "max_epochs": e.max_epochs,
                "patience": e.patience, "label_fraction": e.label_fraction,
                "threads": max(1, int(e.cpus_per_trial))}
    rows, failed = run_trials(data, arms, settings, out, e.trials, cpus_per_trial=e.cpus_per_trial, log=log)
    if failed:
        raise EvaluationError(f"{len(failed)} of {len(failed) + len(rows)} trials failed (finished ones are "
                              f"kept; a re-run retries the rest). First error: {failed[0][-800:]}")
    header = (f"Target store `{store}`; {e.trials} trials per arm and task; label fraction "
              f"{e.label_fraction}; cubes {list(config.data.cube_size)}; arms: "
              + ", ".join(f"`{a}` ({w or 'random init'})" for a, w in arms.items()))
    summary = write_report(out, rows, e.alpha, header)
    record = {"report": str(out / "report.md"), "results": str(out / "results.csv"), "trials": len(rows),
              "arms": arms, "target_store": store,
              "best": {t: (s["comparisons"] or {}).get("best") for t, s in summary.items()},
              "means": {t: {a: sum(v) / len(v) for a, v in s["values"].items()} for t, s in summary.items()}}
    (out / "evaluate.json").write_text(json.dumps(record, indent=2, default=str))
    return record
