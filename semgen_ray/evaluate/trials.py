"""N seeded fine-tuning trials per arm and task on Ray Tune (SPEC.md §6.2, "ten-trial protocol").

One Tune trial = one (task, arm, seed) fine-tuning run (:func:`semgen_ray.evaluate.finetune.run_trial`),
a grid over tasks × arms × seeds; trials run in parallel as CPUs allow (``evaluate.cpus_per_trial``),
with actor reuse (RAY_NOTES.md §3: 0.6 s instead of 4.9 s per trial), and show in the Tune / Ray
dashboard. The task cubes go to the object store once (``tune.with_parameters``). Results are kept
under ``<out>/tune/evaluate``; running again on the same folder with the same settings restores
the experiment and runs only the trials that had not finished (changed settings start afresh).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

NAME = "evaluate"


def _trial(config: dict, data: dict) -> None:
    from ray import tune

    from semgen_ray.evaluate.finetune import run_trial

    s = config["settings"]
    result = run_trial(data[config["task"]], config["task"], config["arm"], s["weights"][config["arm"]],
                       int(config["seed"]), s["model"], lr=s["lr"], batch_size=s["batch_size"],
                       max_epochs=s["max_epochs"], patience=s["patience"],
                       label_fraction=s["label_fraction"], threads=s["threads"])
    tune.report(result)


def run_trials(data: dict, arms: dict[str, str | None], settings: dict, out_dir: str | Path, trials: int,
               cpus_per_trial: float = 1.0, log=print) -> tuple[list[dict], list[str]]:
    """Run (or resume) the trial grid; returns (one result dict per finished trial, errors of the failed).

    Args:
        data: task name → :class:`~semgen_ray.evaluate.tasks.TaskData`.
        arms: arm name → weights path (``None``: random initialisation).
        settings: fine-tuning options (``model`` config dict, ``lr``, ``batch_size``, ``max_epochs``,
            ``patience``, ``label_fraction``, ``threads``).
        trials: seeds per arm and task (0 .. trials-1).
    """
    from ray import tune

    storage = str((Path(out_dir) / "tune").resolve())
    path = f"{storage}/{NAME}"
    trainable = tune.with_resources(tune.with_parameters(_trial, data=data), {"cpu": cpus_per_trial})
    settings = {**settings, "weights": dict(arms)}
    key = json.dumps({"settings": settings, "tasks": sorted(data), "trials": trials,
                      "sizes": {t: d.sizes() for t, d in data.items()}}, sort_keys=True, default=str)
    key_file = Path(storage) / "experiment.json"
    if Path(path).exists() and (not key_file.is_file() or key_file.read_text() != key):
        log(f"[evaluate] the trial settings changed since {path} was started: starting the trials afresh")
        shutil.rmtree(path, ignore_errors=True)
    Path(storage).mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    if tune.Tuner.can_restore(path):
        log(f"[evaluate] resuming the trials in {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"task": tune.grid_search(sorted(data)), "arm": tune.grid_search(list(arms)),
                         "seed": tune.grid_search(list(range(trials))), "settings": settings},
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(name=NAME, storage_path=storage, verbose=0))
    grid = tuner.fit()
    rows, failed = [], []
    for r in grid:
        if r.error is not None or not r.metrics or "arm" not in r.metrics:
            failed.append(str(r.error))
            continue
        rows.append({k: v for k, v in r.metrics.items() if k in (
            "task", "arm", "seed", "auc", "iou", "dice", "mean_iou", "val_loss", "epochs",
            "train_cases", "test_cases", "seconds")})
    return sorted(rows, key=lambda r: (r["task"], r["arm"], r["seed"])), failed
