"""One-number shortcuts of a classification task: how well a single cube statistic separates the classes.

A nodule / non-nodule task is only a test of learned features when no trivial statistic of the cube
(its mean intensity, how much air it holds, …) already tells the classes apart. Each statistic here is
scored as a classifier on its own by its ROC AUC, taken as ``max(auc, 1 - auc)`` since a shortcut works
in either direction; ``best`` is the strongest one.

Cubes are intensity-windowed to [0, 1]; the HU thresholds are mapped through the window the cubes
were read with (CT: HU [-1000, 1000]).
"""

from __future__ import annotations

import numpy as np

from semgen_ray.store.intensity import CT_WINDOW, IntensityWindow

#: HU bands of the fraction statistics: air, the lung parenchyma range, soft tissue.
AIR_HU = -900.0
LUNG_HU = (-1000.0, -400.0)
SOFT_HU = (-100.0, 200.0)

STATISTICS = ("mean", "sd", "fraction_air", "fraction_lung", "fraction_soft", "centre", "max")


def _level(hu: float, window: IntensityWindow) -> np.float32:
    """``hu`` in the windowed [0, 1] units."""
    return np.float32((hu - window.lo) / (window.hi - window.lo))


def cube_statistics(x: np.ndarray, window: IntensityWindow = CT_WINDOW) -> dict[str, np.ndarray]:
    """Per-cube statistics of windowed cubes ``x`` (N, [1,] X, Y, Z): name → (N,) float64 (see STATISTICS).

    The lung band includes its lower end (windowed air is exactly 0); the others are half-open.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 5:
        x = x[:, 0]
    if x.ndim != 4:
        raise ValueError(f"cubes must be (N, [1,] X, Y, Z), got shape {x.shape}")
    flat = x.reshape(len(x), -1)
    air = _level(AIR_HU, window)
    lung_lo, lung_hi = (_level(h, window) for h in LUNG_HU)
    soft_lo, soft_hi = (_level(h, window) for h in SOFT_HU)
    centre = x[:, x.shape[1] // 2, x.shape[2] // 2, x.shape[3] // 2]
    return {
        "mean": flat.mean(1, dtype=np.float64),
        "sd": flat.std(1, dtype=np.float64),
        "fraction_air": (flat < air).mean(1, dtype=np.float64),
        "fraction_lung": ((flat >= lung_lo) & (flat < lung_hi)).mean(1, dtype=np.float64),
        "fraction_soft": ((flat >= soft_lo) & (flat < soft_hi)).mean(1, dtype=np.float64),
        "centre": centre.astype(np.float64),
        "max": flat.max(1).astype(np.float64),
    }


def shortcut_aucs(x: np.ndarray, y: np.ndarray, window: IntensityWindow = CT_WINDOW) -> dict[str, float]:
    """AUC of each cube statistic as a classifier of the labels ``y`` (0/1), as ``max(auc, 1 - auc)``,
    plus ``best``, the largest of them."""
    from semgen_ray.evaluate.metrics import auc

    y = np.asarray(y).ravel()
    out = {}
    for name, values in cube_statistics(x, window).items():
        a = auc(y, values)
        out[name] = round(max(a, 1.0 - a), 4)
    out["best"] = max(out.values())
    return out


def task_shortcut_aucs(data, window: IntensityWindow = CT_WINDOW) -> dict[str, float]:
    """:func:`shortcut_aucs` of a classification :class:`~semgen_ray.evaluate.tasks.TaskData`, over
    all its splits together."""
    if data.task != "classification":
        raise ValueError(f"shortcut AUCs are defined for the classification task, not {data.task!r}")
    parts = list(data.splits.values())
    x = np.concatenate([p["x"] for p in parts])
    y = np.concatenate([np.asarray(p["y"]).ravel() for p in parts])
    return shortcut_aucs(x, y, window)
