"""Training the self-discovery auto-encoder on whole scans with Ray Train (docs/method.md §1.3).

Whole scans are read and resized by :func:`semgen_ray.data.volumes.read_volumes` (only the numeric
``volume`` column) and handed to a Ray Train :class:`~ray.train.torch.TorchTrainer` as the ``train``
and ``val`` datasets. Each worker drives the step engine every training loop shares
(:mod:`semgen_ray.engine.backends`): plain torch by default (DDP on gloo when there are several CPU
workers, NCCL on GPUs; bf16 by autocast), or DeepSpeed (ZeRO, bf16 / fp16 with fp32 masters) with
``engine="deepspeed"``. MSE to the input, Adam, ReduceLROnPlateau on the validation loss (factor 0.5,
min lr 1e-6, patience 0.4× the early-stopping patience, i.e. 20 for the reference 50; torch's
relative threshold 1e-4), early stopping on the validation loss: the schedule and the stopping rule
of pretraining and fine-tuning (:class:`~semgen_ray.engine.schedule.LRSchedule`,
:class:`~semgen_ray.engine.early_stopping.EarlyStopping`).

Every epoch the workers report the metrics and a full-state checkpoint in pretraining's format
(:mod:`semgen_ray.engine.checkpoint`: the engine's weights and optimizer, the run state with the LR
schedule, early stopping and loss history, every rank's RNG states, integrity records). Ray keeps
the two best by ``val_loss`` (and the latest). Calling :func:`train_autoencoder` again with the same
``run_dir`` and ``name`` resumes from the newest good checkpoint (a damaged one is skipped), so
``max_epochs`` is the total epoch count. At the end the best checkpoint's fp32 weights are exported
with :func:`semgen_ray.models.export_weights` to ``run_dir/autoencoder/``, which
:func:`semgen_ray.discovery.embedding.embed_patients` reads.

Reproducibility: the volumes are cached in a fixed order (Ray Data ``preserve_order``), the training
volumes are shuffled every epoch by a block order seeded from ``seed`` and Ray Data's execution index
(the reference shuffles its file list every epoch), ingest preserves that order, and every rank is
seeded as in the other loops (:func:`semgen_ray.engine.seeding.seed_rank`): the same call on the
same machine trains the same weights (tested in tests/discovery). A resumed run restarts the
execution index, so its later epochs see other (still seeded) orders than an uninterrupted run.

Resources: on the 2-core machine a Train worker that takes a whole CPU leaves Ray Data no budget and
the run hangs (docs/operations.md §1/§2); the default ``cpus_per_worker=0.5`` avoids it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LR_FACTOR = 0.5
MIN_LR = 1e-6
LR_PATIENCE_RATIO = 20 / 50
"""Reference: ReduceLROnPlateau patience 20 with early-stopping patience 50."""


def _build(model_kwargs: Mapping[str, Any]):
    """``build_autoencoder`` from a kwargs dict; an optional ``preset_or_config`` key is the first argument."""
    from semgen_ray.models import build_autoencoder

    kwargs = dict(model_kwargs or {})
    preset = kwargs.pop("preset_or_config", None)
    return build_autoencoder(preset, **kwargs)


def epoch_line(metrics: dict, max_epochs: int) -> str:
    """The console line of one auto-encoder epoch (from rank 0's reported metrics)."""
    return (f"[discover] auto-encoder epoch {metrics['epoch']}/{max_epochs}: train loss {metrics['train_loss']:.5f}, "
            f"val loss {metrics['val_loss']:.5f} (best {metrics['best_val_loss']:.5f} at epoch "
            f"{metrics['best_epoch']}), lr {metrics['lr']:.1e}")


def lr_patience_for(patience: int) -> int:
    """ReduceLROnPlateau patience scaled from the early-stopping patience (20 for 50)."""
    return max(1, round(patience * LR_PATIENCE_RATIO))


def _epoch_loss(engine, shard, batch_size, device, dtype, train: bool = False):
    """Mean MSE over this worker's shard, summed across workers (a global mean); trains when ``train``.

    Returns ``(mean loss, scans, batches, this rank's optimizer steps)``, scans and batches summed
    over all workers."""
    import torch
    import torch.nn.functional as F

    from semgen_ray.engine.backends import allreduce_sum

    total, steps = [0.0, 0.0, 0.0], 0
    engine.train(train)
    with torch.set_grad_enabled(train):
        for batch in shard.iter_torch_batches(batch_size=batch_size, dtypes=torch.float32,
                                              device=str(device)):
            x = batch["volume"].unsqueeze(1)
            recon, _ = engine(x.to(dtype))
            loss = F.mse_loss(recon.float(), x)
            if train:
                engine.backward(loss)
                engine.step()
                steps += 1
            total = [total[0] + loss.item() * x.shape[0], total[1] + x.shape[0], total[2] + 1]
    total = allreduce_sum(total, device)
    n = total[1]
    return (total[0] / n if n else float("nan")), int(n), int(total[2]), steps


def _schedule(lr: float, lr_patience: int):
    """ReduceLROnPlateau as torch's default (relative threshold 1e-4, reducing after ``lr_patience + 1``
    bad epochs), factor 0.5, floor 1e-6."""
    from semgen_ray.engine import LRSchedule

    return LRSchedule("plateau", lr, LR_FACTOR, plateau_patience=lr_patience + 1, min_delta=1e-4, relative=True,
                      min_lr=MIN_LR)


def _restore(config: dict, engine, rank: int):
    """``(run state, schedule)`` from the newest good checkpoint of the run (weights, optimizer and RNGs
    loaded), or a fresh state and schedule."""
    from semgen_ray.engine import LRSchedule
    from semgen_ray.engine.checkpoint import load_newest

    state = load_newest(engine, rank, config["checkpoint_root"], tag="discover")
    if state is None:
        return {"epoch": 0, "step": 0, "history": []}, _schedule(config["lr"], config["lr_patience"])
    state.setdefault("resumes", []).append({"epoch": state["epoch"], "checkpoint": state.pop("resumed_from")})
    return state, LRSchedule.from_state(state.pop("schedule"))


def _train_loop(config: dict) -> None:
    """Ray Train worker function: the step engine (``config["engine"]``), an epoch per checkpoint."""
    import ray.train
    import ray.train.torch as rtt

    from semgen_ray.engine import EarlyStopping, apply_lr
    from semgen_ray.engine.backends import EngineSettings, build_engine
    from semgen_ray.engine.checkpoint import report_checkpoint
    from semgen_ray.engine.seeding import seed_rank

    ctx = ray.train.get_context()
    rank, device = ctx.get_world_rank(), rtt.get_device()
    model = seed_rank(config["seed"], rank, lambda: _build(config["model_kwargs"]))
    settings = EngineSettings(batch_size=config["batch_size"], lr=config["lr"], precision=config["precision"],
                              zero_stage=config["zero_stage"])
    built = build_engine(model, settings, config["engine"], device)
    state, schedule = _restore(config, built.engine, rank)
    apply_lr(built.optimizer, schedule.lr)
    stopping = EarlyStopping.from_state(state, config["patience"])
    shards = {s: ray.train.get_dataset_shard(s) for s in ("train", "val")}
    bs = config["batch_size"]
    while state["epoch"] < config["max_epochs"] and not stopping.stop:
        epoch = state["epoch"] + 1
        train_loss, scans, batches, steps = _epoch_loss(built.engine, shards["train"], bs, device, built.dtype, True)
        val_loss = _epoch_loss(built.engine, shards["val"], bs, device, built.dtype)[0]
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise FloatingPointError(f"epoch {epoch}: non-finite loss (train {train_loss}, val {val_loss})")
        lr = schedule.lr
        apply_lr(built.optimizer, schedule.after_epoch(epoch, val_loss))
        stopping.update(val_loss, epoch)
        state.update(stopping.state(), epoch=epoch, step=state["step"] + steps, precision=built.precision)
        state["history"].append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr,
                                 "train_scans": scans, "train_batches": batches, "workers": ctx.get_world_size()})
        metrics = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr, **stopping.state()}
        saved = {**state, "schedule": schedule.state_dict(), "world_size": ctx.get_world_size()}
        report_checkpoint(built.engine, saved, metrics, rank, config["checkpoint_root"],
                          f"step_{state['step']:08d}_epoch_end")


def train_autoencoder(store_uri: str, patient_ids_train: Sequence[str], patient_ids_val: Sequence[str],
                      model_kwargs: Mapping[str, Any] | None = None,
                      volume_shape: Sequence[int] = (128, 128, 64), batch_size: int = 2, lr: float = 1e-3,
                      max_epochs: int = 10000, patience: int = 50, num_workers: int = 1,
                      run_dir: str | os.PathLike = "runs/autoencoder", seed: int = 0, precision: str = "fp32",
                      *, name: str = "autoencoder_train", cpus_per_worker: float = 0.5,
                      use_gpu: bool | str = "auto", gpu_wait_s: float = 900.0, lr_patience: int | None = None, read_cpus: float = 1.0,
                      cache: bool = True, ray_config=None, engine: str = "torch", zero_stage: int = 0) -> dict:
    """Train the auto-encoder with Ray Train and export the best model (by validation loss).

    Args:
        store_uri: the volume store.
        patient_ids_train, patient_ids_val: the splits (docs/method.md §1.2); both must be non-empty.
        model_kwargs: :func:`semgen_ray.models.build_autoencoder` arguments; the optional key
            ``preset_or_config`` (a preset name, YAML path, ``ModelConfig`` or dict) is its first
            argument, the rest are overrides (``width``, ``depth``, ``norm``, ``skips``, …).
        volume_shape: whole-scan input size (x, y, z), a multiple of ``2**(depth-1)``; (rows, columns)
            for the store's 2D images, with ``model_kwargs["spatial_dims"] = 2``.
        batch_size: per-worker batch size.
        lr: Adam learning rate (1e-3).
        max_epochs: total epochs (a resumed run counts the epochs already done).
        patience: early-stopping patience on the validation loss (50); the LR-plateau patience is
            ``lr_patience`` or ``round(0.4 × patience)``.
        num_workers: Ray Train workers (DDP when > 1).
        run_dir: Ray Train ``storage_path``, a local path or a URI (``s3://…``); the export goes to
            ``run_dir/autoencoder``.
        seed: worker ``r`` seeds torch with ``seed + r``; the per-epoch patient order derives from it.
        precision: ``fp32``, ``bf16``, ``fp16`` (DeepSpeed on GPUs) or ``auto`` (bf16 where every
            worker's device computes it natively); the loss is computed in fp32.
        name: the Ray Train run name (the run is ``run_dir/name``); reuse it to resume.
        cpus_per_worker: logical CPUs per Train worker (0.5 leaves Ray Data a budget on 2 cores).
        use_gpu: a decision (``True`` / ``False``) or a setting (``auto`` / ``true`` / ``false``) that
            :func:`semgen_ray.gpus.decide_gpus` resolves from the cluster, waiting up to
            ``gpu_wait_s`` for required GPUs (never the driver's own CUDA: a head node has none).
        read_cpus: CPUs per read task of ``read_volumes``.
        cache: materialise the resized volumes once in the object store (``N × prod(shape) × 4``
            bytes, ~4 MiB per scan at 128×128×64) instead of re-reading every epoch.
        ray_config: passed to :func:`semgen_ray.runtime.init_ray` when Ray is not running.
        engine: ``torch`` (plain torch, bf16 by autocast, DDP across workers) or ``deepspeed``
            (:mod:`semgen_ray.engine.backends`); both write the same full-state checkpoints.
        zero_stage: DeepSpeed's ZeRO stage (0-3) with ``engine="deepspeed"``.

    Returns:
        ``{"best_checkpoint", "best_epoch", "best_val_loss", "history" (per epoch: epoch,
        train_loss, val_loss, lr, and train_scans / train_batches / workers: the scans and batches
        of the epoch's training pass, all workers together, and how many workers there were),
        "epochs", "stopped_early", "model_dir", "run_path", "engine", "precision" (the one trained in,
        ``auto`` resolved), "zero_stage", "resumes" (per resume: the epoch and checkpoint it went on from)}``.

    Raises:
        ValueError: empty split, bad precision; RuntimeError: the Train run failed.
    """
    from semgen_ray.engine.backends import check_engine

    check_engine(engine, precision, zero_stage)
    if not patient_ids_train or not patient_ids_val:
        raise ValueError("train_autoencoder needs non-empty train and validation patient lists")
    if patience < 1 or max_epochs < 1 or batch_size < 1 or num_workers < 1:
        raise ValueError("patience, max_epochs, batch_size and num_workers must be >= 1")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")

    from semgen_ray import runfolder
    from semgen_ray.gpus import decide_gpus
    from semgen_ray.runtime import init_ray
    from semgen_ray.store import store_card_entry

    init_ray(ray_config)
    shape = tuple(int(s) for s in volume_shape)
    model_kwargs = dict(model_kwargs or {})
    if len(shape) != model_kwargs.get("spatial_dims", 3):
        raise ValueError(f"volume_shape {list(shape)} needs an auto-encoder with spatial_dims={len(shape)} "
                         f"(model_kwargs has {model_kwargs.get('spatial_dims', 3)})")
    _build(model_kwargs)  # validate the model options in the driver, before starting workers
    gpu = use_gpu if isinstance(use_gpu, bool) else decide_gpus(use_gpu, "discovery", num_workers, gpu_wait_s).use
    remote = runfolder.is_remote(run_dir)
    run_dir = str(run_dir) if remote else str(Path(run_dir).resolve())
    if not remote:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    config = {"model_kwargs": model_kwargs, "batch_size": int(batch_size), "lr": float(lr),
              "max_epochs": int(max_epochs), "patience": int(patience),
              "lr_patience": int(lr_patience if lr_patience is not None else lr_patience_for(patience)),
              "seed": int(seed), "precision": precision, "engine": engine, "zero_stage": int(zero_stage)}
    datasets = {"train": _volumes(store_uri, shape, patient_ids_train, read_cpus, cache, shuffle_seed=int(seed)),
                "val": _volumes(store_uri, shape, patient_ids_val, read_cpus, cache)}
    result = _fit(config, datasets, gpu, int(num_workers), float(cpus_per_worker), name, run_dir)
    latest, best_ckpt = _latest_and_best(result)
    intensity = (store_card_entry(str(store_uri)) if len(shape) == 3 else  # 2D images: display values
                 {"kind": "2d", "range": [0.0, 1.0], "mapping": "stored uint16 / 65535"})
    card = {"input_size": list(shape), "name": "self-discovery auto-encoder", "intensity": intensity,
            "description": "whole-scan auto-encoder (docs/method.md §1.3); embedding = pooled bottleneck",
            "epoch": int(latest["best_epoch"]),
            "lineage": {"store_uri": str(store_uri),
                        "training_config": {**config, "num_workers": int(num_workers),
                                            "train_patients": len(patient_ids_train),
                                            "val_patients": len(patient_ids_val),
                                            "best_val_loss": float(latest["best_val_loss"]),
                                            "checkpoint": best_ckpt.path}}}
    model_dir = _export(model_kwargs, best_ckpt, int(zero_stage), card, runfolder.join(run_dir, "autoencoder"))
    return {"best_checkpoint": best_ckpt.path, "best_epoch": int(latest["best_epoch"]),
            "best_val_loss": float(latest["best_val_loss"]), "history": list(latest["history"]),
            "epochs": int(latest["epoch"]), "stopped_early": latest["bad_epochs"] >= patience,
            "model_dir": str(model_dir), "run_path": runfolder.join(run_dir, name), "engine": engine,
            "precision": latest["precision"], "zero_stage": int(zero_stage), "resumes": latest.get("resumes", [])}


def _volumes(store_uri: str, shape: tuple, ids, read_cpus: float, cache: bool, shuffle_seed: int | None = None):
    """The resized whole scans of ``ids`` in patient order (materialised once when ``cache``); with
    ``shuffle_seed``, one block per patient in a seeded new order every epoch."""
    from ray.data import RandomSeedConfig

    from semgen_ray.data.volumes import read_volumes

    ds = read_volumes(store_uri, shape, [str(p) for p in ids], columns=("volume",), num_cpus=read_cpus)
    ds.context.execution_options.preserve_order = True  # the cache in patient order, not finishing order
    if cache:
        ds = ds.materialize()
    if shuffle_seed is not None:
        ds = ds.randomize_block_order(seed=RandomSeedConfig(seed=shuffle_seed, reseed_after_execution=True))
    return ds


def _fit(config: dict, datasets: dict, gpu: bool, num_workers: int, cpus_per_worker: float, name: str,
         run_dir: str):
    """Run the Ray Train job (epoch lines relayed to this log); its result, or a RuntimeError."""
    import functools

    from ray.train import CheckpointConfig

    from semgen_ray import ray_train, runfolder
    from semgen_ray.logs import ReportRelay

    relay = ReportRelay("discover", functools.partial(epoch_line, max_epochs=config["max_epochs"]), __name__)
    loop_config = {**config, "checkpoint_root": runfolder.join(run_dir, name)}  # where the run's checkpoints go
    result = ray_train.fit(_train_loop, loop_config, datasets, relay=relay, name=name, storage=run_dir,
                           num_workers=num_workers, gpu=gpu, resources={"CPU": cpus_per_worker},
                           checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_loss",
                                                              checkpoint_score_order="min"))
    if result.error is not None:
        raise RuntimeError(f"auto-encoder training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError("auto-encoder training reported no checkpoint")
    return result


def _latest_and_best(result):
    """The run state of the latest checkpoint and the checkpoint with the lowest validation loss."""
    from semgen_ray.engine.checkpoint import STATE_FILE
    from semgen_ray.ray_train import best_checkpoint

    with result.checkpoint.as_directory() as d:
        latest = json.loads((Path(d) / STATE_FILE).read_text())
    return latest, best_checkpoint(result)


def _export(model_kwargs: dict, checkpoint, zero_stage: int, card: dict, model_dir: str) -> str:
    """The checkpoint's fp32 weights as a model export with its card (written locally, uploaded to a URI)."""
    from semgen_ray import runfolder
    from semgen_ray.engine.fp32_weights import fp32_state_dict
    from semgen_ray.models import export_weights

    model = _build(model_kwargs)
    with checkpoint.as_directory() as d:
        model.load_state_dict(fp32_state_dict(d, zero_stage))
    with runfolder.workdir(model_dir) as local:
        export_weights(model, local, card)
    return model_dir
