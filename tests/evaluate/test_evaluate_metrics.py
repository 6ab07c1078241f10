"""Metrics against small cases computed by hand, and brute-force references."""

import inspect
import itertools

import numpy as np
import pytest

from semgen_ray.evaluate.metrics import (
    IOU_THRESHOLDS,
    auc,
    dice,
    iou,
    mean_iou_per_batch,
    mean_iou_thresholded,
    soft_dice_loss,
)


def pairwise_auc(labels, scores):
    """Brute force: P(score_pos > score_neg) + 1/2 P(tie) over all positive-negative pairs."""
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


# ---------------------------------------------------------------------------------------------- AUC

def test_auc_perfect_reversed_and_all_tied():
    labels = [0, 0, 1, 1]
    assert auc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auc(labels, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auc_hand_example_with_ties():
    labels = [0, 0, 1, 1, 1, 0]
    scores = [0.1, 0.4, 0.4, 0.8, 0.1, 0.9]
    # positives 0.4, 0.8, 0.1 against negatives 0.1, 0.4, 0.9 (win 1, tie 1/2):
    #   0.4: 1 + 0.5 + 0 = 1.5;  0.8: 1 + 1 + 0 = 2;  0.1: 0.5 + 0 + 0 = 0.5  ->  4 / 9
    # ranks (average for ties): 0.1 -> 1.5, 0.4 -> 3.5, 0.8 -> 5, 0.9 -> 6;
    #   positives' rank sum = 3.5 + 5 + 1.5 = 10;  U = 10 - 3*4/2 = 4;  AUC = 4 / (3*3)
    assert auc(labels, scores) == pytest.approx(4 / 9, abs=1e-12)
    assert auc(np.array(labels, dtype=bool).reshape(2, 3), np.array(scores).reshape(2, 3)) == pytest.approx(4 / 9)


def test_auc_matches_the_pairwise_definition_on_random_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # many ties
    assert auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)


def test_auc_errors():
    with pytest.raises(ValueError, match="both classes"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both classes"):
        auc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="binary"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same shape"):
        auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        auc([0, 1], [0.1, np.nan])


# ------------------------------------------------------------------------------------ Dice and IoU

def test_dice_and_iou_of_2x2x1_masks_by_hand():
    pred = np.array([[[1], [1]], [[0], [0]]], dtype=bool)
    true = np.array([[[1], [0]], [[1], [0]]], dtype=bool)
    # |P| = 2, |T| = 2, |P ∩ T| = 1, |P ∪ T| = 3
    assert dice(pred, true) == pytest.approx(2 * 1 / (2 + 2))          # 0.5
    assert dice(pred, true, smooth=1.0) == pytest.approx((2 + 1) / (4 + 1))  # 0.6
    assert iou(pred, true) == pytest.approx(1 / 3)
    assert dice(pred, pred) == 1.0 and iou(pred, pred) == 1.0
    assert dice(pred, ~pred) == 0.0 and iou(pred, ~pred) == 0.0


def test_dice_and_iou_use_the_whole_batch_and_empty_vs_empty_is_one():
    pred = np.zeros((2, 1, 2, 2, 1), dtype=bool)
    true = np.zeros_like(pred)
    assert dice(pred, true) == 1.0 and iou(pred, true) == 1.0
    pred[0, 0, 0, 0, 0] = True
    true[1, 0, 0, 0, 0] = True  # sample 0: fp only; sample 1: fn only; whole array: 0 overlap
    assert dice(pred, true) == 0.0 and iou(pred, true) == 0.0
    true[0, 0, 0, 0, 0] = True  # overlap 1, |P| = 1, |T| = 2
    assert dice(pred, true) == pytest.approx(2 / 3) and iou(pred, true) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="same shape"):
        dice(pred, true[0])


# ------------------------------------------------------------------- the reference's mean IoU

def test_iou_thresholds_are_exactly_ten_values_from_0_50_to_0_95():
    assert IOU_THRESHOLDS.shape == (10,)
    np.testing.assert_array_equal(IOU_THRESHOLDS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
    default = inspect.signature(mean_iou_thresholded).parameters["thresholds"].default
    assert default is IOU_THRESHOLDS
    assert not IOU_THRESHOLDS.flags.writeable


def test_mean_iou_thresholded_by_hand():
    probs = np.array([0.1, 0.6, 0.8, 0.97])
    truth = np.array([0, 1, 1, 1])
    # prediction = probs > t (strict):
    #   t = 0.50, 0.55:            pred [0,1,1,1] = truth: fg IoU 3/3, bg IoU 1/1       -> mean 1
    #   t = 0.60 .. 0.75 (4 thr):  pred [0,0,1,1]: fg tp=2, fp=0, fn=1 -> 2/3;
    #                              bg tn=1, bg union = {0, 1} -> 1/2                     -> mean 7/12
    #   t = 0.80 .. 0.95 (4 thr):  pred [0,0,0,1]: fg 1/3; bg tn=1, union {0,1,2} -> 1/3 -> mean 1/3
    #   average: (2*1 + 4*7/12 + 4*1/3) / 10 = (2 + 7/3 + 4/3) / 10 = 17/30
    assert mean_iou_thresholded(probs, truth) == pytest.approx(17 / 30, abs=1e-12)
    # float32 probabilities are compared with float32 thresholds (0.6f > 0.6f is still False)
    assert mean_iou_thresholded(probs.astype(np.float32), truth) == pytest.approx(17 / 30, abs=1e-12)
    # a batch-shaped copy gives the same value (computed over the whole array)
    assert mean_iou_thresholded(probs.reshape(2, 1, 2, 1, 1), truth.reshape(2, 1, 2, 1, 1)) == pytest.approx(17 / 30)
    # a single threshold: 0.6 alone -> 7/12; the floating arange gives the same 10 thresholds
    assert mean_iou_thresholded(probs, truth, thresholds=[0.6]) == pytest.approx(7 / 12)
    assert mean_iou_thresholded(probs, truth, thresholds=np.arange(0.5, 1.0, 0.05)) == pytest.approx(17 / 30)


def test_mean_iou_thresholded_is_background_inclusive_and_skips_absent_classes():
    truth = np.zeros(8)
    assert mean_iou_thresholded(np.full(8, 0.2), truth) == 1.0  # only background, perfectly predicted
    probs = np.zeros(8)
    probs[0] = 0.99  # one false positive at every threshold: fg IoU 0/1, bg IoU 7/8
    assert mean_iou_thresholded(probs, truth) == pytest.approx((0 + 7 / 8) / 2)
    # versus the foreground-only IoU at 0.5
    truth = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    probs = np.array([0.99, 0.1, 0.99, 0, 0, 0, 0, 0])
    # at every threshold: tp 1, fp 1, fn 1 -> fg IoU 1/3; bg truth {2..7}, bg pred {1, 3..7} -> 5/7
    assert iou(probs > 0.5, truth) == pytest.approx(1 / 3)
    assert mean_iou_thresholded(probs, truth) == pytest.approx((1 / 3 + 5 / 7) / 2)
    # with 0.9 instead of 0.99, t = 0.90 and 0.95 predict nothing (0.9 > 0.9 is False):
    # fg 0/2, bg 6/8 -> 3/8 there; mean = (8 * (1/3 + 5/7)/2 + 2 * 3/8) / 10
    probs[[0, 2]] = 0.9
    assert mean_iou_thresholded(probs, truth) == pytest.approx((8 * (1 / 3 + 5 / 7) / 2 + 2 * 3 / 8) / 10)


def test_mean_iou_thresholded_matches_a_per_threshold_confusion_matrix():
    rng = np.random.default_rng(1)
    probs = rng.random((3, 1, 4, 4, 2))
    truth = rng.random(probs.shape) < 0.3
    want = []
    for t in IOU_THRESHOLDS:
        cm = np.zeros((2, 2))
        for y, p in zip(truth.ravel(), (probs > t).ravel()):
            cm[int(y), int(p)] += 1
        want.append(np.mean([cm[k, k] / (cm[k, :].sum() + cm[:, k].sum() - cm[k, k]) for k in (0, 1)]))
    assert mean_iou_thresholded(probs, truth) == pytest.approx(np.mean(want), abs=1e-12)


def test_mean_iou_thresholded_errors():
    with pytest.raises(ValueError, match="same shape"):
        mean_iou_thresholded(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        mean_iou_thresholded(np.zeros(0), np.zeros(0))


# -------------------------------------------------------------------------------- soft Dice loss

def explicit_mean_iou_per_batch(probs, truth, batch_size):
    """Reference with plain loops: per batch, per threshold, a voxel-by-voxel confusion matrix; the
    batch values averaged weighted by batch size (Keras' ``model.evaluate``)."""
    total, count = 0.0, 0
    for start in range(0, len(probs), batch_size):
        p_batch, t_batch = probs[start:start + batch_size].ravel(), truth[start:start + batch_size].ravel()
        per_threshold = []
        for t in [0.5 + 0.05 * k for k in range(10)]:
            t = round(t, 2)
            tp = fp = fn = tn = 0
            for p, y in zip(p_batch, t_batch):
                pred = p > t
                tp += pred and y
                fp += pred and not y
                fn += (not pred) and y
                tn += (not pred) and not y
            ious = [inter / union for inter, union in ((tp, tp + fp + fn), (tn, tn + fp + fn)) if union > 0]
            per_threshold.append(sum(ious) / len(ious))
        n = len(p_batch) // probs[0].size
        total += n * sum(per_threshold) / len(per_threshold)
        count += n
    return total / count


def test_mean_iou_per_batch_by_hand():
    """Batch 1 (cubes 0, 1): 1 at t 0.50-0.55, 7/12 at 0.60-0.85, 1/4 at 0.90-0.95 -> 0.6; batch 2
    (cube 2, background only, predicted so) -> 1; weighted by batch size (2, 1): 2.2 / 3."""
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.3]])
    truth = np.array([[1, 0], [1, 0], [0, 0]])
    assert mean_iou_per_batch(probs, truth, 2) == pytest.approx(2.2 / 3, abs=1e-12)
    assert mean_iou_per_batch(probs, truth, 3) == pytest.approx(mean_iou_thresholded(probs, truth))
    assert mean_iou_per_batch(probs, truth, 1) == pytest.approx(
        np.mean([mean_iou_thresholded(probs[i], truth[i]) for i in range(3)]))


def test_mean_iou_per_batch_matches_the_explicit_loop():
    rng = np.random.default_rng(4)
    probs = rng.random((7, 1, 3, 3, 2)).astype(np.float32)
    truth = rng.random((7, 1, 3, 3, 2)) < 0.3
    truth[2] = False  # a cube without foreground
    for batch in (1, 2, 3, 7, 10):
        assert mean_iou_per_batch(probs, truth, batch) == pytest.approx(
            explicit_mean_iou_per_batch(probs, truth, batch), abs=1e-9), batch


def test_mean_iou_per_batch_errors():
    with pytest.raises(ValueError, match="batch_size"):
        mean_iou_per_batch(np.zeros((2, 3)), np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="empty"):
        mean_iou_per_batch(np.zeros((0, 3)), np.zeros((0, 3)), 2)
    with pytest.raises(ValueError, match="shape"):
        mean_iou_per_batch(np.zeros((2, 3)), np.zeros((3, 3)), 2)


def test_soft_dice_loss_by_hand():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.5, 0.2, 0.0])
    # Σyp = 1.4, Σy = 2, Σp = 1.6:  1 - (2.8 + 1) / (3.6 + 1) = 1 - 3.8/4.6 = 0.8/4.6
    assert soft_dice_loss(p, y) == pytest.approx(0.8 / 4.6, abs=1e-12)
    assert soft_dice_loss(p, y, smooth=0.0) == pytest.approx(1 - 2.8 / 3.6, abs=1e-12)
    assert soft_dice_loss(y.astype(float), y) == 0.0
    assert soft_dice_loss(np.zeros(4), np.zeros(4)) == 0.0  # (0 + 1) / (0 + 1)
