"""The Ray Train worker function: DeepSpeed pretraining with full-state checkpoints (docs/method.md §5).

Every rank runs :func:`train_loop`. The model (U-Net 3D + classification head, reference names) and a
torch optimizer go through ``deepspeed.initialize`` (ZeRO stage, bf16 / fp16 / fp32, gradient
accumulation from the config; gloo on CPU, NCCL on GPUs, the process group set up by Ray Train).
Batches come from ``ray.train.get_dataset_shard``: crops of the pattern manifest, corrupted either by
Ray Data CPU workers (``corrupt_on=data``) or here on the device with the torch back end
(``corrupt_on=device``, seeds from (run seed, epoch, row id)). Validation corruptions are fixed for the
whole run (seed epoch :data:`VAL_EPOCH`), so early stopping sees a steady signal.

Schedule (Semantic Genesis paper §2): with ``train.cls_warmup_epochs`` = W (objectives with both
losses, :func:`semgen_ray.train.objectives.warmup_epochs`) epochs 1..W are the "warmup" phase: the
classification loss alone on uncorrupted cubes through the encoder and head (the decoder is not
run); later epochs are "joint". Early stopping, the LR schedule and the best checkpoint count only
joint epochs (a warm-up validation loss is another loss and is never compared with joint ones);
the state records W and the phase, so a resume mid-warm-up continues the warm-up, and every history
entry says which phase its epoch was.

Reproducibility: every rank seeds Python / numpy / torch from the run seed (+ rank); before each
epoch every rank sets the run's epoch clock (corruptions on Ray Data workers seeded by (run seed,
epoch, row id)) and shuffles its shard with a local-buffer seed from (run seed, epoch, rank); with
Ray Data's preserved order (set by the trainer) the same command gives the same batches on every
rank, so the same weights up to floating-point reduction order (see tests/train). Each epoch's
history entry holds ``rows_digest``, a digest of the row ids every rank iterated in order: equal
digests, equal data, also across a resume mid-epoch; ``val_inputs_digest``, one of the validation
inputs (equal every epoch with ``fixed_val_corruption``); and what the training inputs were:
``corrupted_on`` (``data``, ``device`` or ``none``), ``unchanged_inputs`` (cubes fed identical to
their target) and, when corrupted here, ``corruptions`` (cubes per operation).

Checkpoints (every ``checkpoint_every`` optimizer steps and at each epoch end) hold the full state:
DeepSpeed's model, optimizer and loss-scaler state (``ds/``); the step, epoch, position in the epoch,
LR schedule, early-stopping state and history (``client_state`` and ``state.json``); each rank's
Python / numpy / torch RNG states and a record of its files' sizes and hashes (layout and checks:
:mod:`semgen_ray.engine.checkpoint`). A restarted worker group (Ray Train ``FailureConfig``) loads the
newest good checkpoint and skips the batches of the current epoch that it had already trained on, so a
failure costs at most the steps since that checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import time
from pathlib import Path

from semgen_ray.engine.backends import allreduce_sum
from semgen_ray.engine.checkpoint import load_newest, report_checkpoint
from semgen_ray.engine.early_stopping import EarlyStopping
from semgen_ray.train.objectives import JOINT, WARMUP, loss_terms, phase_of, warmup_epochs, warmup_objective

logger = logging.getLogger(__name__)

#: Seed "epoch" of the validation corruptions (distinct from every training epoch >= 1).
VAL_EPOCH = 0
#: ``select_loss`` of checkpoints that must never rank as best (warm-up and mid-epoch ones): finite,
#: because Ray Train stores checkpoint metrics as JSON, where infinity does not survive a restart.
NOT_SELECTABLE = 1e30


def select_loss(phase: str, val_loss: float | None = None) -> float:
    """What Ray Train ranks a checkpoint by (lower is better, :func:`semgen_ray.stages.pretraining.checkpoint_config`):
    a joint-phase epoch end's validation loss; :data:`NOT_SELECTABLE` for mid-epoch checkpoints
    (no validation loss) and warm-up epochs (another loss), so they never rank as best."""
    return val_loss if phase == JOINT and val_loss is not None else NOT_SELECTABLE


def _fresh_state(warmup: int = 0) -> dict:
    return {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_val_loss": math.inf, "best_epoch": 0,
            "bad_epochs": 0, "history": [], "log": [], "stopped": None, "cls_warmup_epochs": int(warmup),
            "phase": phase_of(1, warmup)}


def shuffle_seed(run_seed: int, epoch: int, rank: int) -> int:
    """The local-shuffle-buffer seed of one rank in one epoch (a 32-bit hash of the three)."""
    import numpy as np

    return int(np.random.SeedSequence([int(run_seed), int(epoch), int(rank), 0x5B0F]).generate_state(1)[0])


def _rows_digest(rows) -> str:
    """One digest of every rank's digest in this epoch (rank order), to compare runs: of the sample
    order (a run resumed mid-epoch must have iterated the same rows as an uninterrupted one), or of
    the validation inputs."""
    import torch.distributed as dist

    digests = [rows.hexdigest()]
    if dist.is_available() and dist.is_initialized():
        digests = [None] * dist.get_world_size()
        dist.all_gather_object(digests, rows.hexdigest())
    return hashlib.sha256("|".join(digests).encode()).hexdigest()[:16]


class _Batches:
    """Model inputs from a Ray Data batch: ``(input, target, labels)`` on the device, dtype-cast.

    It also tallies what it fed since :meth:`start_epoch` (:meth:`fed`): where the inputs were
    corrupted, how many cubes came out unchanged (input identical to the target) and, for
    corruptions run here, how many cubes each operation was applied to.
    """

    def __init__(self, cfg: dict, device, dtype) -> None:
        from semgen_ray.train.objectives import objective

        self.obj = objective(cfg["objective"])
        self.device, self.dtype = device, dtype
        self.seed = cfg["seed"]
        self.on_device = cfg["corrupt_on"] == "device" and self.obj.corrupts
        self.target = cfg["target"]
        self.flat = cfg.get("spatial_dims", 3) == 2  # (X, Y, 1) cubes of 2D images, fed to a 2D U-Net
        if self.on_device:
            from semgen_ray.transforms import make_corruption

            self.corruption = make_corruption(cfg["corruption_policy"], backend="torch", device=device)
        self.start_epoch()

    def start_epoch(self) -> None:
        import numpy as np

        from semgen_ray.transforms.params import ORDER

        self.corrupted_on = "none"
        self.counts = np.zeros(1 + len(ORDER))  # unchanged cubes, then cubes per operation (ORDER)

    def fed(self, device) -> dict:
        """What the batches since :meth:`start_epoch` fed the model, summed over ranks (a collective)."""
        from semgen_ray.transforms.params import ORDER

        counts = allreduce_sum(self.counts.tolist(), device)
        out = {"corrupted_on": self.corrupted_on, "unchanged_inputs": int(counts[0])}
        if self.corrupted_on == "device":  # Ray Data workers do not report what they applied
            out["corruptions"] = {name: int(n) for name, n in zip(ORDER, counts[1:])}
        return out

    def __call__(self, batch: dict, epoch: int, warmup: bool = False):
        import numpy as np

        from semgen_ray.transforms.params import ORDER

        labels = batch["class_id"].to(self.device)
        if warmup:  # classification warm-up: the uncorrupted cube
            if "cube" not in batch:
                raise RuntimeError("a warm-up batch has no uncorrupted 'cube' column: build the datasets "
                                   "with the run's epoch clock and train.cls_warmup_epochs")
            x = y = batch["cube"].unsqueeze(1)
        elif "input" in batch:  # corrupted by Ray Data
            x, y = batch["input"], batch["target"]
            self.corrupted_on = "data"
        else:
            cube = batch["cube"].unsqueeze(1)
            if self.on_device:
                from semgen_ray.transforms import sample_seed

                seeds = np.array([sample_seed(self.seed, epoch, int(i)) for i in batch["row_id"].tolist()],
                                 dtype=np.uint64)
                cube = cube.to(self.device)
                x, params = self.corruption(cube, seeds)
                y = self.corruption.target(cube, params, deformed=self.target == "deformed")
                self.corrupted_on = "device"
                self.counts[1:] += [int(params.applied[name].sum()) for name in ORDER]
            else:  # classification only: the uncorrupted cube
                x = y = cube
        n = x.shape[0]
        self.counts[0] += int((x.reshape(n, -1) == y.reshape(n, -1)).all(1).sum())
        if self.flat:
            x, y = x[..., 0], y[..., 0]
        return x.to(self.device, self.dtype), y.to(self.device), labels


def _iterate(shard, cfg: dict, train: bool, epoch: int = 0, rank: int = 0):
    """Torch batches of this rank's shard; training batches through a local shuffle buffer seeded by
    (run seed, epoch, rank), a different order every epoch and the same for the same seed."""
    buffer = (cfg["shuffle_buffer"] or None) if train else None
    return shard.iter_torch_batches(
        batch_size=cfg["batch_size"], local_shuffle_buffer_size=buffer,
        local_shuffle_seed=shuffle_seed(cfg["seed"], epoch, rank) if buffer else None)


def _with_last(batches):
    """``(batch, is_last)`` pairs, one batch ahead: the loop must know an epoch's last micro-batch."""
    it = iter(batches)
    previous = next(it, None)
    while previous is not None:
        current = next(it, None)
        yield previous, current is None
        previous = current


def _forward(engine, x, warmup: bool):
    """``(restored, logits)``; in the warm-up only encoder and head run (``restored`` is ``None``)."""
    if warmup:
        module = engine.module
        return None, module.classify(module.encode(x))
    return engine(x)


def optimizer_fingerprint(engine, device) -> float:
    """Sum over ranks of every optimizer-state tensor's sum (fp64): equal before a save and after a load."""
    import torch

    base = getattr(engine.optimizer, "optimizer", engine.optimizer)  # ZeRO wraps the torch optimizer
    total = 0.0
    for per_param in base.state.values():
        for value in per_param.values():
            if torch.is_tensor(value):
                total += float(value.double().sum())
    return allreduce_sum([total], device)[0]


def _placement_of_each_rank(world: int) -> tuple[list[str], list[dict]]:
    """The Ray node id of every rank and the resources Ray reserved for it (a collective): where this
    attempt's workers run and what they hold (``train.cpus_per_worker``, GPUs)."""
    import ray
    import torch.distributed as dist

    ctx = ray.get_runtime_context()
    mine = (ctx.get_node_id(), ctx.get_assigned_resources())
    if world == 1 or not dist.is_initialized():
        gathered = [mine]
    else:
        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
    return [node for node, _ in gathered], [dict(res) for _, res in gathered]


def _maybe_fail(cfg: dict, rank: int, step: int) -> None:
    """Fault injection for tests: kill this worker process once at the given step."""
    fault = cfg.get("fault_injection")
    if fault and rank == fault["rank"] and step == fault["step"] and not Path(fault["marker"]).exists():
        Path(fault["marker"]).write_text(f"killed rank {rank} at step {step}")
        os._exit(1)


def loop_model(cfg: dict):
    """The U-Net of a ``train_loop_config``: 2D when the cubes are flat (2D images), else 3D."""
    from semgen_ray.models import build_model

    return build_model(cfg["model"], spatial_dims=cfg.get("spatial_dims", 3))


def _engine(cfg: dict, rank: int, device):
    """Seed this rank, build the model and wrap it in DeepSpeed (``train.precision: auto`` is bf16
    only if every rank's device computes it natively, so all ranks train in one precision)."""
    from semgen_ray.engine.backends import build_engine
    from semgen_ray.engine.seeding import seed_rank

    model = seed_rank(cfg["seed"], rank, lambda: loop_model(cfg))
    return build_engine(model, cfg["train_config"], "deepspeed", device)


def _restore(cfg: dict, engine, rank: int, device):
    """``(state, schedule)``: from the newest good checkpoint (the resume logged in the state), else fresh."""
    from semgen_ray.engine.schedule import LRSchedule

    train_cfg = cfg["train_config"]
    configured_warmup = warmup_epochs(cfg["objective"], train_cfg.cls_warmup_epochs)
    state = load_newest(engine, rank, cfg.get("checkpoint_root"))
    if state is None:
        return _fresh_state(configured_warmup), LRSchedule(
            train_cfg.schedule, train_cfg.lr, train_cfg.gamma, train_cfg.step_epochs or max(1, int(0.8 * train_cfg.patience)))
    state.setdefault("cls_warmup_epochs", 0)  # checkpoints from before the warm-up existed
    if state["cls_warmup_epochs"] != configured_warmup and rank == 0:
        logger.warning(f"[train] resuming with the checkpoint's classification warm-up of "
                       f"{state['cls_warmup_epochs']} epoch(s), not the configured {configured_warmup}")
    # what was restored, so a resume can be checked against the checkpoint
    sched_state = state.pop("schedule")
    state["log"].append({"resumed_at_step": state["step"], "epoch": state["epoch"],
                         "checkpoint": state.pop("resumed_from"), "batch_in_epoch": state["batch_in_epoch"],
                         "saved_optimizer_fingerprint": state.get("optimizer_fingerprint"),
                         "loaded_optimizer_fingerprint": optimizer_fingerprint(engine, device)})
    return state, LRSchedule.from_state(sched_state)


class _Scalars:
    """Rank 0's TensorBoard scalars (a URI run folder: written locally, uploaded when training ends)."""

    def __init__(self, target: str | None) -> None:
        self.target, self.writer = target, None
        if target:
            from tensorboardX import SummaryWriter

            from semgen_ray import runfolder

            self.local = tempfile.mkdtemp(prefix="semgen_tb_") if runfolder.is_remote(target) else target
            self.writer = SummaryWriter(self.local)

    def log(self, metrics: dict, step: int) -> None:
        if self.writer is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch", "select_loss"):
                    self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        if self.local != self.target:
            import shutil

            from semgen_ray import runfolder

            runfolder.upload(self.local, self.target)
            shutil.rmtree(self.local, ignore_errors=True)


class _Worker:
    """One rank's pretraining: the engine, the run state and the epoch loop (train, validate, decide, save)."""

    def __init__(self, cfg: dict) -> None:
        import ray.train
        import ray.train.torch as rtt

        from semgen_ray.engine.schedule import apply_lr

        ctx = ray.train.get_context()
        self.cfg, self.t = cfg, cfg["train_config"]
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = rtt.get_device()
        built = _engine(cfg, self.rank, self.device)
        self.engine, self.optimizer, self.precision, dtype = built.engine, built.optimizer, built.precision, built.dtype
        self.state, self.schedule = _restore(cfg, self.engine, self.rank, self.device)
        self.stopping = EarlyStopping.from_state(self.state, self.t.patience)
        # this attempt's placement, kept in every checkpoint
        self.state["nodes"], self.state["worker_resources"] = _placement_of_each_rank(self.world)
        self.state["precision"] = self.precision
        apply_lr(self.optimizer, self.schedule.lr)
        self.resumed_in_epoch = self.state["batch_in_epoch"]
        self.batches = _Batches(cfg, self.device, dtype)
        self.warmup = int(self.state["cls_warmup_epochs"])
        self.objectives = {JOINT: self.batches.obj, WARMUP: warmup_objective(cfg["objective"])}
        self.shards = {s: ray.train.get_dataset_shard(s) for s in ("train", "val")}
        self.max_steps = self.t.max_steps or None
        self.scalars = _Scalars(cfg.get("tensorboard_dir") if self.rank == 0 else None)

    def done(self) -> bool:
        s = self.state
        return (s["epoch"] >= self.t.max_epochs or self.stopping.stop
                or (self.max_steps is not None and s["step"] >= self.max_steps))

    def save(self, metrics: dict) -> None:
        """Report ``metrics`` with a full-state checkpoint (all ranks): the state, LR schedule, world
        size and optimizer fingerprint, under ``step_<step>[_epoch_end]``."""
        state = dict(self.state, schedule=self.schedule.state_dict(), world_size=self.world,
                     optimizer_fingerprint=optimizer_fingerprint(self.engine, self.device))
        name = f"step_{state['step']:08d}" + ("_epoch_end" if metrics.get("epoch_end") else "")
        report_checkpoint(self.engine, state, metrics, self.rank, self.cfg.get("checkpoint_root"), name)

    def _step_sums(self, x, y, labels, epoch: int, phase: str, train: bool) -> list[float]:
        """Forward (and, training, backward and DeepSpeed step) of one micro-batch: its loss sums."""
        import torch

        restored, logits = _forward(self.engine, x, phase == WARMUP)
        loss, parts = loss_terms(self.objectives[phase], restored, y, logits, labels, self.t.lambda_cls,
                                 self.t.lambda_rec)
        if train:
            if not torch.isfinite(loss):
                raise FloatingPointError(f"rank {self.rank} epoch {epoch} step {self.state['step']}: non-finite loss")
            self.engine.backward(loss)
            self.engine.step()
        n = x.shape[0]
        return [loss.item() * n, parts["rec_loss"].item() * n, parts["cls_loss"].item() * n,
                float(parts["correct"]), n]

    def train_epoch(self, epoch: int, phase: str):
        """One pass over this rank's shard (skipping the batches a resume had trained on); checkpoints
        every ``checkpoint_every`` optimizer steps. Returns ``(metrics, digest of the rows iterated)``."""
        import numpy as np

        state, every = self.state, self.t.checkpoint_every
        self.engine.train()
        self.batches.start_epoch()
        sums = np.zeros(5)  # loss·n, rec·n, cls·n, correct, n
        t_wait = t_start = time.perf_counter()
        wait, micro = 0.0, 0
        rows = hashlib.sha256()  # the epoch's sample order, skipped batches of a resume included
        batches = _iterate(self.shards["train"], self.cfg, train=True, epoch=epoch, rank=self.rank)
        for i, (batch, last) in enumerate(_with_last(batches)):
            wait += time.perf_counter() - t_wait
            rows.update(batch["row_id"].numpy().astype("<i8").tobytes())
            if i < state["batch_in_epoch"]:  # resumed mid-epoch: these batches were trained on
                t_wait = time.perf_counter()
                continue
            # an optimizer step every grad_accum micro-batches and after the epoch's last one, so no
            # gradient is carried into the next epoch (or lost by a resume from the epoch's end)
            boundary = (micro + 1) % self.t.grad_accum == 0 or last
            self.engine.set_gradient_accumulation_boundary(boundary)
            x, y, labels = self.batches(batch, epoch, phase == WARMUP)
            sums += self._step_sums(x, y, labels, epoch, phase, train=True)
            micro += 1
            state["batch_in_epoch"] = i + 1
            if boundary:  # an optimizer step happened
                state["step"] += 1
                _maybe_fail(self.cfg, self.rank, state["step"])
                if every and state["step"] % every == 0:
                    m = _train_metrics(sums, wait, t_start, self.world, self.device, state, self.schedule.lr, epoch)
                    self.scalars.log(m, state["step"])
                    self.save({**m, "phase": phase, "select_loss": select_loss(phase)})
                if self.max_steps is not None and state["step"] >= self.max_steps:
                    break
            t_wait = time.perf_counter()
        metrics = _train_metrics(sums, wait, t_start, self.world, self.device, state, self.schedule.lr, epoch)
        return {**metrics, **self.batches.fed(self.device)}, rows

    def validate(self, epoch: int, phase: str):
        """The validation split (fixed corruptions, no gradient): ``(sums over ranks, digest of the inputs)``."""
        import numpy as np
        import torch

        self.engine.eval()
        vs = np.zeros(5)
        val_inputs = hashlib.sha256()  # the validation inputs fed: the same every epoch when fixed
        seed_epoch = VAL_EPOCH if self.t.fixed_val_corruption else epoch
        with torch.no_grad():
            for batch in _iterate(self.shards["val"], self.cfg, train=False):
                x, y, labels = self.batches(batch, seed_epoch, phase == WARMUP)
                val_inputs.update(x.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
                vs += self._step_sums(x, y, labels, epoch, phase, train=False)
        return allreduce_sum(vs.tolist(), device=self.device), val_inputs

    def run_epoch(self) -> None:
        """Train, validate, update early stopping and the LR schedule (joint epochs only), record the
        epoch in the history and save the epoch-end checkpoint."""
        from semgen_ray.engine.schedule import apply_lr

        state, epoch = self.state, self.state["epoch"] + 1
        phase = state["phase"] = phase_of(epoch, self.warmup)
        if self.cfg.get("epoch_clock"):  # before this rank asks for the epoch's data: Ray Data starts it
            from semgen_ray.data.epoch_clock import set_epoch  # once all ranks have

            set_epoch(self.cfg["epoch_clock"], epoch)
        train_m, rows = self.train_epoch(epoch, phase)
        v, val_inputs = self.validate(epoch, phase)
        vn = max(v[4], 1.0)
        val_loss, lr = v[0] / vn, self.schedule.lr
        if not math.isfinite(val_loss):
            raise FloatingPointError(f"epoch {epoch}: non-finite validation loss")
        if phase == JOINT:  # early stopping and the LR schedule see joint epochs only (1, 2, ... after W)
            self.stopping.update(val_loss, epoch)
            state.update(self.stopping.state())
            apply_lr(self.optimizer, self.schedule.after_epoch(epoch - self.warmup, val_loss))
        state.update(epoch=epoch, batch_in_epoch=0, phase=phase_of(epoch + 1, self.warmup))
        metrics = {**train_m, "phase": phase, "val_loss": val_loss, "val_rec_loss": v[1] / vn,
                   "val_cls_loss": v[2] / vn, "val_acc": v[3] / vn, "lr": lr, "best_val_loss": state["best_val_loss"],
                   "best_epoch": state["best_epoch"], "bad_epochs": state["bad_epochs"], "epoch_end": True,
                   "resumed_at_batch": self.resumed_in_epoch, "rows_digest": _rows_digest(rows),
                   "val_inputs_digest": _rows_digest(val_inputs), "precision": self.precision}
        self.resumed_in_epoch = 0
        state["history"].append({k: v for k, v in metrics.items() if k != "epoch_end"})
        # what Ray Train ranks checkpoints by: joint validation losses only (warm-up epochs never "best")
        metrics["select_loss"] = select_loss(phase, val_loss)
        if self.done():
            state["stopped"] = ("max_steps" if self.max_steps is not None and state["step"] >= self.max_steps
                                else "patience" if self.stopping.stop else "max_epochs")
            metrics["stopped"] = state["stopped"]
        self.scalars.log(metrics, state["step"])
        self.save(metrics)


def train_loop(cfg: dict) -> None:
    """Ray Train worker function (``cfg``: :func:`semgen_ray.stages.pretraining.loop_config`)."""
    worker = _Worker(cfg)
    while not worker.done():
        worker.run_epoch()
    worker.scalars.close()


def _train_metrics(sums, wait: float, t_start: float, world: int, device, state: dict, lr: float,
                   epoch: int) -> dict:
    """Training metrics since the start of the epoch, summed over ranks."""
    elapsed = time.perf_counter() - t_start
    s = allreduce_sum([*sums.tolist(), wait, elapsed], device)
    n = max(s[4], 1.0)
    return {"step": state["step"], "epoch": epoch, "train_loss": s[0] / n, "train_rec_loss": s[1] / n,
            "train_cls_loss": s[2] / n, "train_acc": s[3] / n, "lr": lr,
            "cubes_per_s": s[4] / max(s[6] / world, 1e-9), "data_wait_fraction": s[5] / max(s[6], 1e-9)}
