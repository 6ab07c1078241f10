"""One fine-tuning trial on a target task (docs/method.md §6.2), the body of each Ray Tune trial.

- classification: the pretrained encoder + a fresh 2-class head on the bottleneck (the decoder is
  unused), cross-entropy, AUC on the test split from the softmax probability of class 1. The default
  ``linear`` head is global average pooling + one linear layer (docs/method.md §6.1, the SG usage snippet
  GAP → Dense), so the comparison measures the encoder, not a big fresh head; ``torch`` / ``keras``
  are the pretraining heads (§4.2, §4.3).
- segmentation: the whole pretrained encoder-decoder (sigmoid output), loss 1 − soft Dice (smooth 1);
  primary metric foreground Dice at threshold 0.5 over the test split, plus foreground IoU and the
  reference's background-inclusive, threshold-averaged mean IoU computed per test batch (§6.2).

All layers are fine-tuned with Adam. The budget counts optimizer steps, not epochs (small and
large training sets get comparable optimisation); the whole validation split is scored every
``eval_every`` steps, the LR is halved on a plateau, training stops early after ``patience``
validations without improvement, and the test metrics are those of the best validation state
(MG's ReduceLROnPlateau / EarlyStopping / best checkpoint, §6.2, counted in validations).
The trial's seed fixes the initialisation of new layers, the data order and the low-label subset.
"""

from __future__ import annotations

import time

import numpy as np

#: Keys of the row :func:`run_trial` returns (the report and the trial grid rely on them).
ROW_KEYS = ("task", "arm", "seed", "label_fraction", "auc", "dice", "iou", "mean_iou", "val_loss", "steps",
            "best_step", "validations", "collapsed", "train_cases", "train_patients", "subset_draws", "test_cases",
            "test_pos", "test_neg", "lr_final", "seconds")

#: A classification trial whose test probabilities have a standard deviation below this is collapsed.
COLLAPSE_STD = 1e-3
#: ... or whose best validation loss is within this fraction of the loss of predicting the prior
COLLAPSE_PRIOR_REL = 0.01
#: ... while its test probabilities vary less than this.
COLLAPSE_PRIOR_STD = 0.05


def _model(model_cfg: dict, task: str, weights: str | None, head: str, spatial_dims: int = 3):
    from semgen_ray.models import build_model, load_weights

    cfg = {k: v for k, v in model_cfg.items() if k not in ("head", "num_classes")}
    if task == "classification":
        model = build_model(cfg, num_classes=2, head=head, spatial_dims=spatial_dims)
    else:
        model = build_model(cfg, head=None, spatial_dims=spatial_dims)
    if weights:
        from semgen_ray import runfolder

        # the pretrained head (pseudo-classes) is replaced; every other weight must match
        with runfolder.local_copy(weights) as local:  # an export on an object store: fetched here
            load_weights(model, local, ignore_head=True)
    return model


def _on_device(model, device: str, channels_last: bool = True):
    """``model`` on ``device``; on a CPU with channels-last weights (``N X Y Z C`` memory order) unless
    ``channels_last`` is false (DeepSpeed broadcasts parameters as contiguous bytes), in
    which oneDNN's 3D convolutions train a ``cpu-tiny`` U-Net 1.3-1.5x faster than in the default
    order (``benchmarks/results/unet_layout.json``). A step's outputs equal the default order's to
    float rounding (the sums run in another order), not bit for bit. CUDA keeps the default order."""
    import torch

    model = model.to(device)
    if device != "cpu" or not channels_last:
        return model
    return model.to(memory_format=torch.channels_last_3d if model.spatial_dims == 3 else torch.channels_last)


def _forward(model, task: str, x):
    """Logits (N, 2) for classification (encoder + head only), probabilities for segmentation."""
    feats = model.encode(x)
    return model.classify(feats) if task == "classification" else model.decode(feats)


def _loss(task: str, out, y):
    """Cross-entropy on logits, or the reference's 1 − soft Dice (smooth 1) over the batch."""
    import torch.nn.functional as F

    if task == "classification":
        return F.cross_entropy(out.float(), y)
    p, t = out.float(), y.float()
    return 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)


def _evaluate(built, task: str, x: np.ndarray, y: np.ndarray, batch: int, device="cpu") -> tuple[float, np.ndarray]:
    """(loss over the whole split, predictions) of the step engine ``built``'s model, batched, in eval
    mode without gradients.

    The loss equals the one of a single pass over the split: mean cross-entropy, or the soft Dice
    of the summed intersections and volumes.
    """
    import torch
    import torch.nn.functional as F

    built.engine.eval()
    preds, ce, inter, volume = [], 0.0, 0.0, 0.0
    with torch.no_grad(), built.autocast():
        for i in range(0, len(x), batch):
            out = _forward(built.engine.module, task, torch.from_numpy(x[i:i + batch]).to(device, built.dtype))
            out = out.float().cpu()
            if task == "classification":
                ce += float(F.cross_entropy(out, torch.as_tensor(y[i:i + batch], dtype=torch.long),
                                            reduction="sum"))
                preds.append(torch.softmax(out, 1)[:, 1].numpy())
            else:
                t = torch.as_tensor(y[i:i + batch], dtype=torch.float32)
                inter += float((out * t).sum())
                volume += float(out.sum() + t.sum())
                preds.append(out.numpy())
    loss = ce / len(x) if task == "classification" else 1 - (2 * inter + 1) / (volume + 1)
    return loss, np.concatenate(preds)


def _prior_loss(train_y: np.ndarray, val_y: np.ndarray) -> float:
    """Validation cross-entropy of always predicting the training split's class frequency."""
    p = float(np.clip(np.mean(train_y), 1e-7, 1 - 1e-7))
    v = np.asarray(val_y, dtype=np.float64)
    return float(-(v * np.log(p) + (1 - v) * np.log(1 - p)).mean())


def is_collapsed(task: str, pred: np.ndarray, best_val: float | None = None,
                 prior_loss: float | None = None) -> bool:
    """Whether a trial ended predicting a constant / the class prior instead of learning the task.

    Rule (checked on the best-validation state):

    - classification: the test probabilities are constant (std < :data:`COLLAPSE_STD`, 1e-3), or
      the trial never got below the loss of predicting the class prior (best validation loss within
      :data:`COLLAPSE_PRIOR_REL`, 1 %, of ``prior_loss``) *and* its probabilities barely vary
      (std < :data:`COLLAPSE_PRIOR_STD`, 0.05): a model that ranks the cases with spread-out
      probabilities is not collapsed, whatever its loss;
    - segmentation: the mask at threshold 0.5 is empty on every test cube, or foreground everywhere.

    Collapsed trials are kept in the results (they are outcomes) but flagged for the report.
    """
    pred = np.asarray(pred)
    if task == "classification":
        if pred.size == 0 or float(pred.std()) < COLLAPSE_STD:
            return True
        return (best_val is not None and prior_loss is not None and np.isfinite(best_val)
                and abs(best_val - prior_loss) <= COLLAPSE_PRIOR_REL * prior_loss
                and float(pred.std()) < COLLAPSE_PRIOR_STD)
    mask = pred >= 0.5
    return bool(not mask.any() or mask.all())


def _settings_check(max_steps: int, eval_every: int, patience: int, lr_patience: int, batch_size: int) -> None:
    if max_steps < 1 or eval_every < 1 or patience < 1 or lr_patience < 1 or batch_size < 1:
        raise ValueError("max_steps, eval_every, patience, lr_patience and batch_size must be >= 1, got "
                         f"{max_steps}, {eval_every}, {patience}, {lr_patience}, {batch_size}")
    if lr_patience >= patience:
        raise ValueError(f"lr_patience ({lr_patience}) must be < patience ({patience}): otherwise early "
                         "stopping ends the trial before the LR is ever reduced")


def _fine_tune(built, schedule, task: str, tr: dict, va: dict, rng, *, batch_size: int, max_steps: int,
               eval_every: int, patience: int, device) -> tuple[int, int, float, int]:
    """The step loop of :func:`run_trial` on the step engine ``built``
    (:func:`semgen_ray.engine.backends.build_engine`); leaves its model in the best validation state
    (a copy kept in memory: a trial lasts seconds to minutes, a restarted trial starts over).

    Returns ``(steps, validations, best validation loss, step of the best)``."""
    import torch

    from semgen_ray.engine import EarlyStopping, apply_lr

    engine, model = built.engine, built.engine.module

    ytype = torch.long if task == "classification" else torch.float32
    n = len(tr["x"])
    smallest = min(2, batch_size, n)  # the smallest batch trained on: 2 unless that can never happen
    order, pos = rng.permutation(n), 0
    stopping, best_state, steps, validations = EarlyStopping(patience), None, 0, 0
    while steps < max_steps:
        if pos >= n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        if len(idx) < smallest:
            continue  # a single-cube remainder: BatchNorm needs more than one sample
        engine.train()
        with built.autocast():
            out = _forward(model, task, torch.from_numpy(tr["x"][idx]).to(device, built.dtype))
        loss = _loss(task, out, torch.as_tensor(tr["y"][idx], dtype=ytype, device=device))
        engine.backward(loss)
        engine.step()
        steps += 1
        if steps % eval_every and steps < max_steps:
            continue
        val, _ = _evaluate(built, task, va["x"], va["y"], batch_size, device)
        validations += 1
        apply_lr(built.optimizer, schedule.after_epoch(validations, val))
        if stopping.update(val, steps):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif stopping.stop:
            break
    if best_state is not None:  # None only when every validation loss was NaN: test the last state
        model.load_state_dict(best_state)
    return steps, validations, stopping.best, stopping.best_at


def _test_metrics(task: str, pred: np.ndarray, te: dict, best: float, tr: dict, va: dict, batch_size: int) -> dict:
    """The row's test metrics and counts, and the collapse flag (:func:`is_collapsed`)."""
    from semgen_ray.evaluate.metrics import auc, dice, iou, mean_iou_per_batch

    if task == "classification":
        y = np.asarray(te["y"]).astype(bool)
        return dict(auc=auc(y, pred), test_pos=int(y.sum()), test_neg=int((~y).sum()),
                    collapsed=bool(is_collapsed(task, pred, best, _prior_loss(tr["y"], va["y"]))))
    truth = te["y"].astype(bool)
    has = truth.reshape(len(truth), -1).any(axis=1)
    mask = pred >= 0.5
    return dict(dice=dice(mask, truth), iou=iou(mask, truth), mean_iou=mean_iou_per_batch(pred, truth, batch_size),
                test_pos=int(has.sum()), test_neg=int((~has).sum()), collapsed=bool(is_collapsed(task, pred)))


def run_trial(data, task: str, arm: str, weights: str | None, seed: int, model_cfg: dict, *,
              head: str = "linear", lr: float = 1e-3, batch_size: int = 8, max_steps: int = 400,
              eval_every: int = 20, patience: int = 8, lr_patience: int = 3, label_fraction: float = 1.0,
              threads: int = 1, device: str = "cpu", engine: str = "torch", precision: str = "fp32",
              spatial_dims: int = 3) -> dict:
    """Fine-tune ``arm``'s initialisation on ``data`` (a :class:`~semgen_ray.evaluate.tasks.TaskData`).

    Training draws batches of ``batch_size`` from a seeded permutation of the training cubes, a new
    permutation each pass, for at most ``max_steps`` Adam steps; a batch of one cube is skipped
    (BatchNorm) unless the training split has a single cube. Every ``eval_every`` steps and at
    the end the whole validation split is scored; the best state is kept (a copy),
    ReduceLROnPlateau halves the LR (min 1e-6) once ``lr_patience`` validations in a row have not
    improved (Keras' counting: torch's ``patience = lr_patience - 1``), and training stops after
    ``patience`` validations in a row without improvement. The test split is scored with the best
    state. See :func:`is_collapsed` for ``collapsed``.

    Args:
        data: the task's cubes per split.
        task: ``classification`` or ``segmentation``.
        arm: name of the initialisation (copied to the row).
        weights: weight file / export of the arm, ``None`` for random initialisation.
        seed: trial seed.
        model_cfg: ``ModelConfig`` fields (its ``head`` / ``num_classes`` are replaced).
        head: classification head, ``linear`` (default), ``torch`` or ``keras``.
        label_fraction: fraction of the training patients used (:func:`~semgen_ray.evaluate.tasks.subsample`).
        threads: torch CPU threads.
        device: ``cpu`` or ``cuda`` (a trial given a GPU by Ray sees it as ``cuda``).
        engine: the step engine, ``torch`` (default) or ``deepspeed`` (ZeRO-0 in a one-rank
            process group), :func:`semgen_ray.engine.backends.build_engine`.
        precision: ``fp32`` (default), ``bf16`` (autocast with ``torch``; bf16 weights with fp32
            masters with ``deepspeed``), ``fp16`` (``deepspeed`` on a GPU) or ``auto``.
        spatial_dims: 3 (default), or 2: a 2D network fine-tuned on the cubes' axial slices and
            scored per cube (:mod:`semgen_ray.evaluate.slices`; the counts in the row are cubes), or
            on the patches themselves when ``data`` holds 2D images ((N, 1, X, Y) ``x``).

    Returns:
        A row with :data:`ROW_KEYS` (``auc`` for classification; ``dice``, ``iou``, ``mean_iou``
        for segmentation). ``test_pos`` / ``test_neg``: test positives / negatives, or segmentation
        test cubes with / without foreground. ``train_patients``: patients of the training subset;
        ``subset_draws``: draws it took (0: all labels; more than 1: earlier draws lacked a class).

    Raises:
        ValueError: ``lr_patience >= patience``, a setting below 1, an unknown task or an empty split;
            :class:`~semgen_ray.evaluate.tasks.TaskError` when no subset of ``label_fraction`` holds
            both classes.
    """
    import torch

    from semgen_ray.engine import LRSchedule
    from semgen_ray.engine.backends import EngineSettings, build_engine, ensure_process_group
    from semgen_ray.engine.seeding import seed_rank
    from semgen_ray.evaluate.slices import axial_slices, to_cubes
    from semgen_ray.evaluate.tasks import subsample

    if task not in ("classification", "segmentation"):
        raise ValueError(f"unknown task {task!r}")
    _settings_check(max_steps, eval_every, patience, lr_patience, batch_size)
    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    data = subsample(data, label_fraction, seed)
    tr, va, te = (data.splits[s] for s in ("train", "val", "test"))
    if not (len(tr["x"]) and len(va["x"]) and len(te["x"])):
        raise ValueError(f"{task}: empty split (train/val/test sizes {data.sizes()})")
    images = tr["x"].ndim == 4  # (N, 1, X, Y): patches of 2D images
    if images and spatial_dims == 3:
        raise ValueError(f"{task}: a 3D network cannot fine-tune on 2D images (arm {arm!r}); use 2D weights")
    sliced = spatial_dims == 2 and not images
    fit = axial_slices(data) if sliced else data  # what the network sees: cubes, slices or patches
    model = seed_rank(seed, 0, lambda: _on_device(_model(model_cfg, task, weights, head, spatial_dims), device,
                                                  engine == "torch"))
    # threshold 0: any decrease counts as an improvement, as for the best state and early stopping
    schedule = LRSchedule("plateau", lr, 0.5, plateau_patience=lr_patience, min_delta=0.0, min_lr=1e-6)
    if engine == "deepspeed":
        ensure_process_group()  # a Tune trial is a lone process
    built = build_engine(model, EngineSettings(batch_size=batch_size, lr=lr, precision=precision), engine,
                         torch.device(device))
    ftr, fva, fte = (fit.splits[s] for s in ("train", "val", "test"))
    steps, validations, best, best_step = _fine_tune(built, schedule, task, ftr, fva, rng, batch_size=batch_size,
                                                    max_steps=max_steps, eval_every=eval_every, patience=patience,
                                                    device=device)
    _, pred = _evaluate(built, task, fte["x"], fte["y"], batch_size, device)
    if sliced:
        pred = to_cubes(task, pred, len(te["x"]))
    row = {"task": task, "arm": arm, "seed": int(seed), "label_fraction": float(label_fraction),
           "val_loss": float(best), "steps": steps, "best_step": best_step, "validations": validations,
           "train_cases": int(len(tr["x"])), "train_patients": int(len(np.unique(tr["patient"]))),
           "subset_draws": int(data.info.get("subset_draws", 0)), "test_cases": int(len(te["x"])),
           "lr_final": float(built.optimizer.param_groups[0]["lr"])}
    row.update(_test_metrics(task, pred, te, best, tr, va, batch_size))
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row
