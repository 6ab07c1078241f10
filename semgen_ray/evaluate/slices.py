"""2D slice-based solutions of the 3D target tasks (Semantic Genesis paper, Fig. 3; docs/method.md §6.4).

A 2D network is fine-tuned on the axial slices of the target cubes and its predictions are put back
together per cube, so that a 2D arm is scored on the same test cubes, by the same metrics and
statistics, as the 3D arms:

- classification: the :data:`CENTRAL_SLICES` central axial slices of each cube (the candidate's
  centre and its neighbours), each with the cube's label; a cube's probability is the mean of its
  slices' probabilities;
- segmentation: every axial slice with its mask; the slices' predicted masks, stacked back in
  order, are the cube's mask.
"""

from __future__ import annotations

import numpy as np

from semgen_ray.evaluate.tasks import TaskData

#: Axial slices per cube in the classification task (the central ones).
CENTRAL_SLICES = 3


def slice_indices(task: str, depth: int) -> np.ndarray:
    """The axial slices (z indices) of a cube of ``depth`` slices that the 2D task uses."""
    if task == "segmentation" or depth <= CENTRAL_SLICES:
        return np.arange(depth)
    first = depth // 2 - CENTRAL_SLICES // 2  # centred on slice depth // 2, the cube's centre
    return np.arange(first, first + CENTRAL_SLICES)


def _flatten(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(N, C, X, Y, Z) → (N·k, C, X, Y): the kept slices of cube 0, then of cube 1, ..."""
    picked = np.moveaxis(a[..., keep], -1, 1)  # (N, k, C, X, Y)
    return np.ascontiguousarray(picked.reshape(-1, *picked.shape[2:]))


def axial_slices(data: TaskData) -> TaskData:
    """The task on axial slices: per split ``x`` (N·k, 1, X, Y), ``y`` per slice (the cube's class, or
    the slice's mask) and ``patient``; ``info`` gains ``slices_per_cube``."""
    some = next(iter(data.splits.values()))["x"]
    keep = slice_indices(data.task, some.shape[-1])
    splits = {}
    for name, s in data.splits.items():
        y = np.repeat(s["y"], len(keep)) if data.task == "classification" else _flatten(s["y"], keep)
        splits[name] = {"x": _flatten(s["x"], keep), "y": y, "patient": np.repeat(s["patient"], len(keep))}
    return TaskData(data.task, splits, {**data.info, "slices_per_cube": int(len(keep))})


def to_cubes(task: str, pred: np.ndarray, cubes: int) -> np.ndarray:
    """Per-slice predictions of :func:`axial_slices`' test split as per-cube ones: the mean
    probability of a cube's slices (classification), or its slices' masks stacked along z
    (segmentation: (N·Z, 1, X, Y) → (N, 1, X, Y, Z))."""
    per_cube = pred.reshape(cubes, -1, *pred.shape[1:])
    if task == "classification":
        return per_cube.mean(axis=1)
    return np.moveaxis(per_cube, 1, -1)


__all__ = ["CENTRAL_SLICES", "axial_slices", "slice_indices", "to_cubes"]
