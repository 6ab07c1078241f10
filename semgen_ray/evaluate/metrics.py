"""Target-task metrics (docs/method.md §6.2), numpy only and vectorised.

- :func:`auc`: ROC AUC for classification (NCC), from ranks (Mann-Whitney U).
- :func:`dice`, :func:`iou`: foreground overlap of two boolean masks, over the whole array.
- :func:`mean_iou_thresholded`: the "IoU" the Genesis papers report for segmentation: the two-class
  (background and foreground) mean IoU, averaged over the thresholds 0.50, 0.55, ..., 0.95;
  :func:`mean_iou_per_batch`: the same per test batch, averaged over the batches as Keras'
  ``model.evaluate`` reported it.
- :func:`soft_dice_loss`: the reference's segmentation loss, 1 - soft Dice with smoothing 1.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

#: The thresholds of the reference's IoU: exactly 0.50, 0.55, ..., 0.95 (10 values, built without a
#: floating ``arange`` end).
IOU_THRESHOLDS = np.round(0.5 + 0.05 * np.arange(10), 2)
IOU_THRESHOLDS.setflags(write=False)


def _pair(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def auc(labels, scores) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (any shape, flattened).

    Computed from ranks: AUC = U / (n_pos n_neg) with U = (sum of the positives' ranks) -
    n_pos (n_pos + 1) / 2, where tied scores share their average rank; a tie between a positive and
    a negative therefore counts 1/2, as in sklearn's ``roc_auc_score``.

    Args:
        labels: 0/1 or boolean labels, 1 = positive.
        scores: real scores, higher = more likely positive (finite).

    Raises:
        ValueError: shapes differ, labels are not binary, scores are not finite, or only one class is
            present (the AUC is undefined then).
    """
    labels, scores = _pair(labels, scores, ("labels", "scores"))
    labels, scores = labels.ravel(), scores.astype(np.float64).ravel()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("auc: labels must be binary (0/1 or bool)")
    if not np.isfinite(scores).all():
        raise ValueError("auc: scores must be finite")
    positive = labels.astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auc: needs both classes, got {n_pos} positive and {n_neg} negative labels")
    ranks = rankdata(scores)  # average ranks for ties
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def dice(pred_mask, true_mask, smooth: float = 0.0) -> float:
    """Foreground Dice (2|P ∩ T| + smooth) / (|P| + |T| + smooth) over the whole array.

    Masks of any shape (a batch axis included); non-zero = foreground. Two empty masks give 1.0.
    """
    pred, true = _pair(pred_mask, true_mask, ("pred_mask", "true_mask"))
    pred, true = pred.astype(bool), true.astype(bool)
    total = float(pred.sum()) + float(true.sum())
    if total == 0:
        return 1.0
    return float((2.0 * np.logical_and(pred, true).sum() + smooth) / (total + smooth))


def iou(pred_mask, true_mask) -> float:
    """Foreground IoU (Jaccard) |P ∩ T| / |P ∪ T| over the whole array.

    Masks of any shape (a batch axis included); non-zero = foreground. Two empty masks give 1.0.
    """
    pred, true = _pair(pred_mask, true_mask, ("pred_mask", "true_mask"))
    pred, true = pred.astype(bool), true.astype(bool)
    union = int(np.logical_or(pred, true).sum())
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, true).sum() / union)


def mean_iou_thresholded(probs, true_mask, thresholds=IOU_THRESHOLDS) -> float:
    """The reference's segmentation "IoU" (docs/method.md §6.2): background-inclusive, threshold-averaged.

    For each threshold t the prediction is ``probs > t`` (strictly greater, as the Keras metric of
    Models Genesis used ``y_pred > t``), and the two-class mean IoU is
    mean(IoU of foreground, IoU of background) over the whole array; the result is the mean over
    the thresholds. As in TF's ``mean_iou``, a class absent from both truth and prediction (empty
    union) is left out of the two-class mean. The thresholds are cast to the dtype of a floating
    ``probs`` first, so float32 probabilities are compared with float32 thresholds, as in TF.

    The reference evaluated this per batch and Keras averaged the batch values; to mimic that, call
    this per batch and average. The value is higher than the foreground IoU (e.g. 77.14 % against
    59.22 % in MG's NCS run).

    Args:
        probs: foreground probabilities, any shape.
        true_mask: ground truth of the same shape, non-zero = foreground.
        thresholds: default :data:`IOU_THRESHOLDS` = 0.50, 0.55, ..., 0.95.
    """
    probs, true = _pair(probs, true_mask, ("probs", "true_mask"))
    if probs.size == 0:
        raise ValueError("mean_iou_thresholded: empty input")
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype(np.float64)
    true = true.astype(bool).ravel()
    probs = probs.ravel()
    thresholds = np.asarray(thresholds, dtype=probs.dtype).ravel()
    if thresholds.size == 0:
        raise ValueError("mean_iou_thresholded: no thresholds")
    n_true = int(true.sum())
    n = true.size
    scores = np.empty(thresholds.size)
    for i, t in enumerate(thresholds):  # a loop over the (10) thresholds, not over voxels
        pred = probs > t
        n_pred = int(pred.sum())
        tp = int(np.logical_and(pred, true).sum())
        tn = n - n_pred - n_true + tp
        unions = np.array([n_pred + n_true - tp, 2 * n - n_pred - n_true - tn], dtype=np.float64)
        inter = np.array([tp, tn], dtype=np.float64)
        valid = unions > 0  # at least one is (n > 0)
        scores[i] = (inter[valid] / unions[valid]).mean()
    return float(scores.mean())


def mean_iou_per_batch(probs, true_mask, batch_size: int, thresholds=IOU_THRESHOLDS) -> float:
    """The reference's reported segmentation "IoU" (docs/method.md §6.2): :func:`mean_iou_thresholded` per batch.

    Keras' ``model.evaluate`` computed the metric on consecutive batches of ``batch_size`` cubes (in
    test order) and averaged the batch values weighted by the batch's size (``outs += value * len(batch)``,
    then ``/ n``), so only a short last batch weighs less; with equal batches this is the plain mean.
    Per-batch values differ from one value over the whole set: a batch without foreground scores its
    background IoU alone (the foreground class drops out of the two-class mean).

    Args:
        probs: foreground probabilities (N, ...), the first axis being the cubes in test order.
        true_mask: ground truth of the same shape, non-zero = foreground.
        batch_size: cubes per evaluation batch (>= 1).
        thresholds: as :func:`mean_iou_thresholded`.

    Raises:
        ValueError: shapes differ, empty input or ``batch_size`` < 1.
    """
    probs, true = _pair(probs, true_mask, ("probs", "true_mask"))
    if probs.ndim == 0 or len(probs) == 0:
        raise ValueError("mean_iou_per_batch: empty input")
    if int(batch_size) < 1:
        raise ValueError(f"mean_iou_per_batch: batch_size must be >= 1, got {batch_size!r}")
    starts = range(0, len(probs), int(batch_size))  # a loop over batches, each vectorised
    values = np.array([mean_iou_thresholded(probs[i:i + batch_size], true[i:i + batch_size], thresholds)
                       for i in starts])
    sizes = np.array([min(batch_size, len(probs) - i) for i in starts], dtype=np.float64)
    return float((values * sizes).sum() / sizes.sum())


def soft_dice_loss(probs, true_mask, smooth: float = 1.0) -> float:
    """The reference's segmentation loss 1 - (2 Σ y p + s) / (Σ y + Σ p + s), over the whole array.

    numpy version of the training loss (docs/method.md §6.1), for tests and reference values.
    """
    probs, true = _pair(probs, true_mask, ("probs", "true_mask"))
    p, y = probs.astype(np.float64), true.astype(np.float64)
    return float(1.0 - (2.0 * (y * p).sum() + smooth) / (y.sum() + p.sum() + smooth))
