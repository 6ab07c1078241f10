"""Driver side of pretraining: Ray Train ``TorchTrainer`` + DeepSpeed, export and report (docs/method.md §5).

:func:`run_pretraining` builds the datasets (:mod:`~semgen_ray.train.pattern_data`), the DeepSpeed config
(:mod:`~semgen_ray.engine.deepspeed_config`) and a ``TorchTrainer`` running
:func:`semgen_ray.train.loop.train_loop` with ``ScalingConfig`` (workers, GPUs, CPUs per worker),
``FailureConfig`` (retries from the last checkpoint) and a ``CheckpointConfig`` that keeps the best
checkpoints by joint-phase validation loss (``select_loss``: classification warm-up epochs never
count as best) plus the latest. Ray Data runs with ``preserve_order`` and the run owns an epoch clock
(:mod:`semgen_ray.data.epoch_clock`), so the data each rank sees follows from the run seed: the
same command gives the same weights (see the loop's docstring for every seeded source). The Ray Train run lives at
``<train.storage_path>/pretrain`` (a local path or an object-store URI); calling it again with the same
storage path resumes from the latest checkpoint. At the end the best epoch-end checkpoint is
converted to fp32 weights and exported with the model card and the discovery lineage, and the
report (loss curves, sample cubes, ``train.json``) is written. The stage folder may be a URI too
(:mod:`semgen_ray.runfolder`): export and report are then written locally and uploaded.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from semgen_ray.config.schema import SemGenConfig
from semgen_ray.stages import StageError
from semgen_ray.stages.layout import train_storage

RUN_NAME = "pretrain"

logger = logging.getLogger(__name__)


class PretrainError(StageError):
    """Pretraining cannot run as configured, or its run failed; the message says why."""


def epoch_line(metrics: dict, max_epochs: int) -> str | None:
    """The console line of an epoch end (rank 0's reported metrics); ``None`` for mid-epoch checkpoints."""
    if not metrics.get("epoch_end"):
        return None
    best = (f" (best {metrics['best_val_loss']:.4f} at epoch {metrics['best_epoch']})"
            if metrics.get("best_epoch") else "")
    acc = f", val acc {metrics['val_acc']:.2f}" if metrics.get("val_cls_loss") else ""
    stopped = f"; stopping: {metrics['stopped']}" if metrics.get("stopped") else ""
    return (f"[train] epoch {metrics['epoch']}/{max_epochs} ({metrics.get('phase', 'joint')}): "
            f"train loss {metrics['train_loss']:.4f}, val loss {metrics['val_loss']:.4f}{best}{acc}, "
            f"lr {metrics['lr']:.1e}, {metrics['cubes_per_s']:.1f} cubes/s ({metrics.get('precision', '?')}), "
            f"step {metrics['step']}{stopped}")


def loop_config(config: SemGenConfig, num_classes: int, gpu: bool, tensorboard_dir: str | None,
                fault_injection: dict | None = None) -> dict:
    """The ``train_loop_config`` handed to every worker."""
    from dataclasses import asdict, replace

    from semgen_ray.engine.deepspeed_config import deepspeed_config

    t = config.train
    model = replace(config.model, num_classes=num_classes, head=config.model.head or "torch")
    deepspeed_config(t, gpu)  # its errors (fp16 without GPUs) here, before any worker starts
    return {"model": asdict(model), "spatial_dims": 2 if config.data.flat else 3, "train_config": t,
            "seed": config.seed, "batch_size": t.batch_size, "shuffle_buffer": t.shuffle_buffer,
            "objective": t.objective, "corrupt_on": t.corrupt_on,
            "corruption_policy": t.corruption_policy,  # the run's policy object, pickled to every worker
            "target": t.target,
            "tensorboard_dir": tensorboard_dir, "fault_injection": fault_injection}


def _publish(record: dict, local: Path, out_dir: str) -> dict:
    """Upload a URI run folder's locally written artefacts (export, report, ``train.json``) to
    ``out_dir``, with the record's paths pointing there."""
    from semgen_ray import runfolder

    record = {**record, **{k: runfolder.join(out_dir, k) for k in ("export", "report")}}
    (local / "train.json").write_text(json.dumps(record, indent=2, default=float))
    runfolder.upload(local, out_dir)
    return record


def checkpoint_config(t):
    """Ray Train's retention (``t``: the ``TrainConfig``): the ``t.keep_checkpoints`` best checkpoints
    by ``select_loss`` (joint-phase epoch ends by validation loss; mid-epoch and warm-up ones rank
    last, :func:`semgen_ray.train.loop.select_loss`), and always the latest, for resuming.

    Ray writes its list of checkpoints before it deletes any, and every checkpoint has a folder of
    its own (:func:`semgen_ray.engine.checkpoint.unused_name`), so a later run never finds its list
    pointing at a deleted folder.
    """
    from ray.train import CheckpointConfig

    return CheckpointConfig(num_to_keep=t.keep_checkpoints, checkpoint_score_attribute="select_loss",
                            checkpoint_score_order="min")


def _best_checkpoint(result):
    """The joint-phase epoch-end checkpoint with the lowest validation loss (else the latest).

    Warm-up epochs (``phase`` "warmup") report the classification loss alone, which is not
    comparable with a joint loss, so they are never chosen.
    """
    from semgen_ray.ray_train import best_checkpoint
    from semgen_ray.train.objectives import JOINT

    return best_checkpoint(result, lambda m: m.get("epoch_end") and m.get("phase", JOINT) == JOINT)


def fp32_state_dict(checkpoint_dir: str | os.PathLike, zero_stage: int) -> dict:
    """fp32 master weights of a checkpoint (:mod:`semgen_ray.engine.fp32_weights`), failing as a ``PretrainError``."""
    from semgen_ray.engine.fp32_weights import ExportError
    from semgen_ray.engine.fp32_weights import fp32_state_dict as masters

    try:
        return masters(checkpoint_dir, zero_stage)
    except ExportError as err:
        raise PretrainError(str(err)) from err


def check_corruption(config: SemGenConfig) -> None:
    """Fail in the driver, not in a Ray task, when the run's corruption policy does not fit the cube."""
    from semgen_ray.transforms.policy import PolicyError, check_geometry

    try:
        check_geometry(config.train.corruption_policy, tuple(config.data.cube_size))
    except PolicyError as err:
        raise PretrainError(f"train.corruption does not fit {tuple(config.data.cube_size)} cubes: {err}") from err


def finished(state: dict, t) -> bool:
    """True when the checkpoint ``state`` ends a run of the ``TrainConfig`` ``t``: an epoch end at
    which the loop stopped (max epochs, patience or max steps reached). A run that Ray Train aborted
    (Ctrl-C) returns its last checkpoint, mid-epoch or before the end: not finished."""
    stop = (state["epoch"] >= t.max_epochs or state["bad_epochs"] >= t.patience
            or (bool(t.max_steps) and state["step"] >= t.max_steps))
    return bool(state.get("stopped")) and state.get("batch_in_epoch", 0) == 0 and stop


def with_corruption_site(config: SemGenConfig, gpu: bool | None = None) -> SemGenConfig:
    """``config`` with ``train.corrupt_on`` resolved: ``data`` and ``device`` stay, ``auto`` becomes
    ``device`` when the train stage runs on GPUs (``gpu``; ``None``: as :func:`semgen_ray.gpus.expects_gpus`
    foresees from ``train.use_gpu`` and the cluster), else ``data``."""
    from dataclasses import replace

    from semgen_ray.gpus import expects_gpus

    t = config.train
    if t.corrupt_on != "auto":
        return config
    gpu = expects_gpus(t.use_gpu, config.ray) if gpu is None else gpu
    return replace(config, train=replace(t, corrupt_on="device" if gpu else "data"))


def pretraining_key(config: SemGenConfig, manifest_path: str) -> str:
    """The reuse key (:mod:`semgen_ray.reuse`) of a pretraining: its settings (``train`` but where it
    runs, with ``corrupt_on`` resolved, ``model``, ``data``, ``seed``) and the content of the pattern
    manifest it reads."""
    from semgen_ray import reuse
    from semgen_ray.config import to_dict

    config = with_corruption_site(config)
    train = {k: v for k, v in to_dict(config.train).items() if k != "use_gpu"}  # not the result's
    return reuse.digest({"train": train, "model": to_dict(config.model), "data": to_dict(config.data),
                         "seed": config.seed, "manifest": reuse.content(manifest_path)})


def finished_pretraining(config: SemGenConfig, manifest_path: str, out_dir: str) -> dict | None:
    """The record (``out_dir/train.json``) of a finished pretraining of these settings on this
    manifest whose export is unchanged, or ``None``: weights trained otherwise are never reused."""
    from semgen_ray import reuse, runfolder

    return reuse.load(runfolder.join(out_dir, "train.json"), pretraining_key(config, manifest_path))


def pretrain_or_reuse(config: SemGenConfig, store_uri: str, manifest_path: str, out_dir: str,
                      force: bool = False) -> dict:
    """:func:`run_pretraining` into ``out_dir`` unless it holds this pretraining already
    (:func:`finished_pretraining`); the record (``reused`` says which) is written last.

    ``force`` first deletes the record, and the export and report that described the checkpoints
    ``run_pretraining`` then deletes, so that forced work that stops is never taken for finished work.
    """
    from semgen_ray import reuse, runfolder

    done_path = runfolder.join(out_dir, "train.json")
    if force:
        for stale in ("train.json", "export", "report"):
            runfolder.remove(runfolder.join(out_dir, stale))
    done = None if force else finished_pretraining(config, manifest_path, out_dir)
    if done:
        logger.info(f"[train] {out_dir} already holds this pretraining; reusing it (--force redoes it)")
        return {**done, "reused": True}
    record = run_pretraining(config, store_uri, manifest_path, out_dir, force=force)
    record = reuse.save(done_path, pretraining_key(config, manifest_path), record, outputs=["export"])
    return {**record, "reused": False}


def run_pretraining(config: SemGenConfig, store_uri: str, manifest_path: str, out_dir: str,
                    force: bool = False, fault_injection: dict | None = None) -> dict:
    """Pretrain on the pattern manifest's cubes; export the best weights and write the report.

    Args:
        config: the run's config (``train``, ``model``, ``data``, ``seed``).
        store_uri: the volume store.
        manifest_path: the pattern manifest of self-discovery.
        out_dir: where ``export/``, ``report/``, ``tensorboard/`` and ``train.json`` go (and the Ray
            Train run, unless ``train.storage_path`` is absolute or a URI).
        force: start over instead of resuming from the run's checkpoints.
        fault_injection: tests only: ``{"rank", "step", "marker"}`` kills that worker once.

    Returns:
        the record written to ``train.json``.
    """
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    import ray
    from ray.train import FailureConfig

    from semgen_ray import ray_train, runfolder
    from semgen_ray.data.epoch_clock import create_epoch_clock
    from semgen_ray.gpus import decide_gpus
    from semgen_ray.logs import ReportRelay
    from semgen_ray.runtime import require_cpus
    from semgen_ray.train.pattern_data import pattern_datasets
    from semgen_ray.train.loop import train_loop

    t = config.train
    require_cpus({"train.cpus_per_worker": t.cpus_per_worker, "data.read_cpus": config.data.read_cpus})
    remote = runfolder.is_remote(out_dir)  # a URI: export and report are written locally, then uploaded
    out = Path(tempfile.mkdtemp(prefix="semgen_train_")) if remote else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_corruption(config)
    decision = decide_gpus(t.use_gpu, "train", t.num_workers, config.ray.gpu_wait_s)
    gpu = decision.use
    config = with_corruption_site(config, gpu)
    t = config.train
    clock_name, clock = create_epoch_clock()
    data = pattern_datasets(config, store_uri, manifest_path, epoch_clock=clock_name)
    storage = train_storage(str(out_dir), t.storage_path)
    if force:
        import fsspec

        fs, path = fsspec.core.url_to_fs(storage)
        if fs.exists(f"{path}/{RUN_NAME}"):
            fs.rm(f"{path}/{RUN_NAME}", recursive=True)
    tensorboard = runfolder.join(out_dir, "tensorboard") if remote else str(out / "tensorboard")
    cfg = loop_config(config, data.num_classes, gpu, tensorboard, fault_injection)
    cfg["checkpoint_root"] = f"{storage.rstrip('/')}/{RUN_NAME}"
    cfg["epoch_clock"] = clock_name
    resources = {"CPU": t.cpus_per_worker, **({"GPU": 1} if gpu else {})}
    logger.info(f"[train] {t.objective}: {data.train_rows} train / {data.val_rows} val cubes, {data.num_classes} "
                f"classes; {t.num_workers} worker(s) × {resources}, DeepSpeed ZeRO-{t.zero_stage} {t.precision}, "
                f"corruption {t.corruption} on {t.corrupt_on}; checkpoints in {storage}/{RUN_NAME}")
    relay = ReportRelay("train", functools.partial(epoch_line, max_epochs=t.max_epochs), __name__)
    try:
        t0 = time.perf_counter()
        result = ray_train.fit(train_loop, cfg, {"train": data.train, "val": data.val}, relay=relay, name=RUN_NAME,
                               storage=storage, num_workers=t.num_workers, gpu=gpu, resources=resources,
                               placement=t.placement, failure_config=FailureConfig(max_failures=t.max_failures),
                               checkpoint_config=checkpoint_config(t))
        seconds = time.perf_counter() - t0
        record = _finish(config, cfg, data, result, seconds, store_uri, manifest_path, out, storage, decision)
        return _publish(record, out, str(out_dir)) if remote else record
    finally:
        ray.kill(clock)
        if remote:
            shutil.rmtree(out, ignore_errors=True)


def _finish(config: SemGenConfig, cfg: dict, data, result, seconds: float, store_uri: str, manifest_path: str,
            out: Path, storage: str, decision) -> dict:
    """Export the best joint-phase weights, write the report and ``train.json``; returns the record."""
    from semgen_ray.models import export_weights
    from semgen_ray.engine.checkpoint import STATE_FILE
    from semgen_ray.train.loop import loop_model
    from semgen_ray.train.report import write_report

    t = config.train
    if result.error is not None:
        raise PretrainError(f"pretraining failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise PretrainError("pretraining reported no checkpoint")
    with result.checkpoint.as_directory() as d:
        state = json.loads((Path(d) / STATE_FILE).read_text())
    if not finished(state, t):  # Ctrl-C: Ray Train aborts gracefully and fit() returns the last checkpoint
        raise PretrainError(
            f"pretraining was interrupted at step {state['step']} (epoch {state['epoch']}) before it finished: "
            f"nothing exported, no train.json; run it again (or --resume) to continue from {result.checkpoint.path}")
    for resume in state["log"]:
        logger.info(f"[train] recovered from a failure: resumed at step {resume['resumed_at_step']} (epoch "
                    f"{resume['epoch']}, batch {resume['batch_in_epoch']}) from {resume['checkpoint']}")
    best = _best_checkpoint(result)
    model = loop_model(cfg)
    with best.as_directory() as d:
        model.load_state_dict(fp32_state_dict(d, t.zero_stage))
    from semgen_ray.config import to_dict
    from semgen_ray.discovery.pattern_manifest import manifest_metadata

    from semgen_ray import reuse
    from semgen_ray.store import store_card_entry

    cube = list(config.data.cube_size)[:model.spatial_dims]  # a 2D model's input is (X, Y)
    card = {"name": f"semgen_ray {t.objective}", "input_size": cube,
            "epoch": state["best_epoch"], "intensity": store_card_entry(store_uri),
            "description": f"U-Net {model.spatial_dims}D pretrained with the {t.objective} objective "
                           "(Semantic Genesis, docs/method.md §5)",
            "lineage": {"store_uri": store_uri, "pattern_manifest": str(manifest_path),
                        "pattern_manifest_hash": reuse.content(manifest_path),  # SHA-256 of its bytes
                        "pattern_manifest_config_hash": data.config_hash,
                        "discovery": manifest_metadata(manifest_path),
                        "training_config": to_dict(config), "checkpoint": best.path,
                        "best_val_loss": state["best_val_loss"], "steps": state["step"],
                        "cls_warmup_epochs": state.get("cls_warmup_epochs", 0)}}
    export_dir = export_weights(model, out / "export", card)
    report = write_report(out / "report", state["history"], model, data.val, config)
    record = {"export": str(export_dir), "report": str(report), "tensorboard": cfg["tensorboard_dir"],
              "checkpoints": f"{storage}/{RUN_NAME}", "best_checkpoint": best.path,
              "latest_checkpoint": result.checkpoint.path, "steps": state["step"], "epochs": state["epoch"],
              "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"],
              "cls_warmup_epochs": state.get("cls_warmup_epochs", 0),
              "stopped": state["stopped"], "fit_seconds": round(seconds, 1), "num_classes": data.num_classes,
              "corruption_policy": t.corruption_policy.to_dict(), "corrupt_on": t.corrupt_on,
              "train_cubes": data.train_rows, "val_cubes": data.val_rows, "objective": t.objective,
              "workers": t.num_workers, "nodes": state.get("nodes", []),
              "worker_resources": state.get("worker_resources", []), "precision": state.get("precision"),
              "gpu": decision.use,
              "gpu_decision": decision.as_dict(), "resumes": state["log"], "history": state["history"]}
    (out / "train.json").write_text(json.dumps(record, indent=2, default=float))
    return record
