"""One fine-tuning trial on a target task (SPEC.md §6.2), the body of each Ray Tune trial.

- classification: the pretrained encoder + a fresh 2-class head (the decoder is unused), cross-entropy,
  AUC on the test split from the softmax probability of class 1;
- segmentation: the whole pretrained encoder-decoder (sigmoid output), loss 1 − soft Dice (smooth 1),
  foreground IoU and Dice at threshold 0.5 and the reference's background-inclusive IoU averaged over
  thresholds 0.5-0.95 on the test split.

All layers are fine-tuned, Adam (lr from the config), ReduceLROnPlateau(0.5, patience 6, min 1e-6)
and early stopping on the validation loss; the test metrics are those of the best validation epoch.
The trial's seed fixes the initialisation of new layers, the data order and the low-label subset.
"""

from __future__ import annotations

import time

import numpy as np


def _model(model_cfg: dict, task: str, weights: str | None):
    from semgen_ray.models import build_model, load_weights

    model = build_model(model_cfg, num_classes=2 if task == "classification" else None,
                        head=model_cfg.get("head") or "torch")
    if weights:
        # pretrained head (pseudo-classes) is replaced; every other weight must match
        load_weights(model, weights, ignore_head=True)
    return model


def _loss(task: str, out, logits, y):
    """Cross-entropy on logits, or the reference's 1 − soft Dice (smooth 1) over the batch."""
    import torch.nn.functional as F

    if task == "classification":
        return F.cross_entropy(logits.float(), y)
    p, t = out.float(), y.float()
    return 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)


def _predict(model, task, x, batch):
    import torch

    outs = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out, logits = model(torch.from_numpy(x[i:i + batch]))
            outs.append(torch.softmax(logits, 1)[:, 1].numpy() if task == "classification" else out.numpy())
    return np.concatenate(outs)


def run_trial(data, task: str, arm: str, weights: str | None, seed: int, model_cfg: dict, *,
              lr: float = 1e-3, batch_size: int = 8, max_epochs: int = 20, patience: int = 5,
              label_fraction: float = 1.0, threads: int = 1) -> dict:
    """Fine-tune ``arm``'s initialisation on ``data`` (a :class:`~semgen_ray.evaluate.tasks.TaskData`)."""
    import torch

    from semgen_ray.evaluate.metrics import auc, dice, iou, mean_iou_thresholded
    from semgen_ray.evaluate.tasks import subsample

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = subsample(data, label_fraction, seed)
    model = _model(model_cfg, task, weights)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=6, min_lr=1e-6)
    tr, va, te = (data.splits[s] for s in ("train", "val", "test"))
    ytype = torch.long if task == "classification" else torch.float32
    best, best_state, bad, epochs = np.inf, None, 0, 0
    for epoch in range(max_epochs):
        model.train()
        order = rng.permutation(len(tr["x"]))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2 and len(order) > 1:
                continue  # BatchNorm needs more than one sample
            x = torch.from_numpy(tr["x"][idx])
            y = torch.as_tensor(tr["y"][idx], dtype=ytype)
            out, logits = model(x)
            loss = _loss(task, out, logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out, logits = model(torch.from_numpy(va["x"]))
            val = float(_loss(task, out, logits, torch.as_tensor(va["y"], dtype=ytype)))
        sched.step(val)
        epochs = epoch + 1
        if val < best - 1e-6:
            best, bad = val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    model.load_state_dict(best_state)
    pred = _predict(model, task, te["x"], batch_size)
    result = {"task": task, "arm": arm, "seed": seed, "val_loss": best, "epochs": epochs,
              "train_cases": int(len(tr["x"])), "test_cases": int(len(te["x"])),
              "seconds": round(time.perf_counter() - t0, 2)}
    if task == "classification":
        result["auc"] = auc(te["y"], pred)
    else:
        truth = te["y"].astype(bool)
        result.update(iou=iou(pred >= 0.5, truth), dice=dice(pred >= 0.5, truth),
                      mean_iou=mean_iou_thresholded(pred, truth))
    return result
