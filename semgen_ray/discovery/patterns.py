"""Crop boxes of one pseudo-class (docs/method.md §2.2): the rows of the pattern manifest for a class.

For each neighbour j (rank = position in ``neighbours``; the reference itself is usually rank 0) at
the class coordinate (x, y, z) (the same raw voxel in every patient, or a per-neighbour coordinate from
``neighbour_coords`` for the ``body_box`` correspondence):

- **resolution 1**: ``[x : x+cx, y : y+cy, z : z+cz]`` (crop size = cube size);
- **resolutions 2..R** (train only), each drawn independently: side ``s ~ U{min_patch .. max_patch-1}``,
  offsets ``dx, dy ~ U{-max_offset .. max_offset-1}``, box ``[x+dx : x+dx+s, y+dy : y+dy+sy, z : z+cz]``
  with ``sy = s`` for square cubes (``round(s * cy / cx)`` otherwise); the reader resizes it to the cube.
  A draw that would leave the volume (either side; the reference checked only the upper bound, so a
  negative start silently wrapped) is redrawn, at most ``max_redraws`` times;
- **validation** neighbours get resolution 1 only.

A crop that cannot fit (a resolution-1 box outside a smaller neighbour, or no in-bounds rescaled draw)
is skipped and counted; no row ever holds an out-of-bounds box (the readers of
:mod:`semgen_ray.data.boxes` raise on those).

Patch sizes: ``min_patch``/``max_patch``/``max_offset`` are used as given (``patch_scale="config"``,
the default): the presets already hold values for their cube (paper 50/80/10 for 64-voxel cubes;
cpu-tiny 25/40/5 for 32). ``patch_scale="auto"`` treats them as paper values for a 64-voxel cube and
scales them by ``cx / 64``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

ROW_COLUMNS = ("class_id", "reference_id", "patient_id", "x0", "y0", "z0", "x1", "y1", "z1",
               "resolution", "split", "rank", "distance")
PAPER_CUBE_XY = 64


def _inside(box: Sequence[int], shape: Sequence[int]) -> bool:
    x0, y0, z0, x1, y1, z1 = box
    return 0 <= x0 < x1 <= shape[0] and 0 <= y0 < y1 <= shape[1] and 0 <= z0 < z1 <= shape[2]


def patch_range(cube: Sequence[int], min_patch: int, max_patch: int, max_offset: int,
                patch_scale: str = "config") -> tuple[int, int, int]:
    """(min_patch, max_patch, max_offset) for this cube: as given, or scaled by ``cube_x / 64``."""
    if patch_scale == "config":
        lo, hi, off = int(min_patch), int(max_patch), int(max_offset)
    elif patch_scale == "auto":
        f = cube[0] / PAPER_CUBE_XY
        lo, hi, off = max(1, round(min_patch * f)), round(max_patch * f), round(max_offset * f)
        hi = max(hi, lo + 1)
    else:
        raise ValueError(f"patch_scale must be 'config' or 'auto', got {patch_scale!r}")
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < min_patch < max_patch, got {lo}, {hi}")
    return lo, hi, max(off, 0)


def class_boxes(class_id: int, reference_id: str, coordinate: Sequence[int], neighbours: Sequence[str],
                distances: Sequence[float] | None, shapes: Mapping[str, Sequence[int]],
                rng: np.random.Generator, *, cube: Sequence[int] = (64, 64, 32), resolutions: int = 3,
                min_patch: int = 50, max_patch: int = 80, max_offset: int = 10, split: str = "train",
                patch_scale: str = "config", max_redraws: int = 100,
                neighbour_coords: Mapping[str, Sequence[int]] | None = None) -> tuple[list[dict], int]:
    """Boxes of class ``class_id`` for its neighbours; returns ``(rows, n_dropped)``.

    Args:
        class_id: the pseudo-class label.
        reference_id: the reference patient of the class.
        coordinate: the class coordinate (x, y, z) of the cube corner in the reference.
        neighbours: neighbour patient ids, nearest first (rank = index).
        distances: embedding distance of each neighbour (None: NaN).
        shapes: volume shape (X, Y, Z) of every neighbour.
        rng: ``numpy.random.Generator`` for the rescaled crops (fixed seed → fixed boxes).
        cube: cube size (cx, cy, cz).
        resolutions: 1..3 for ``train``; ``val`` always gets resolution 1 only.
        neighbour_coords: per-neighbour coordinate (``body_box`` correspondence); default: ``coordinate``.

    Returns:
        rows: dicts with :data:`ROW_COLUMNS` (half-open voxel boxes inside each neighbour's volume);
        n_dropped: crops skipped because no in-bounds box exists.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if not 1 <= int(resolutions) <= 3:
        raise ValueError(f"resolutions must be 1..3, got {resolutions}")
    if distances is not None and len(distances) != len(neighbours):
        raise ValueError(f"{len(distances)} distances for {len(neighbours)} neighbours")
    cx, cy, cz = (int(c) for c in cube)
    n_res = 1 if split == "val" else int(resolutions)
    lo, hi, off = patch_range(cube, min_patch, max_patch, max_offset, patch_scale)

    rows: list[dict] = []
    dropped = 0
    for rank, pid in enumerate(neighbours):
        shape = tuple(int(s) for s in shapes[pid])
        x, y, z = (int(c) for c in (neighbour_coords[pid] if neighbour_coords is not None else coordinate))
        dist = float("nan") if distances is None else float(distances[rank])

        def row(box, res, pid=pid, rank=rank, dist=dist):
            return {"class_id": int(class_id), "reference_id": str(reference_id), "patient_id": str(pid),
                    "x0": box[0], "y0": box[1], "z0": box[2], "x1": box[3], "y1": box[4], "z1": box[5],
                    "resolution": res, "split": split, "rank": rank, "distance": dist}

        box = (x, y, z, x + cx, y + cy, z + cz)
        if _inside(box, shape):
            rows.append(row(box, 1))
        else:
            dropped += 1
        for res in range(2, n_res + 1):
            for _ in range(max_redraws):
                s = int(rng.integers(lo, hi))
                sy = s if cx == cy else max(1, round(s * cy / cx))
                dx, dy = (int(v) for v in rng.integers(-off, off, size=2)) if off > 0 else (0, 0)
                box = (x + dx, y + dy, z, x + dx + s, y + dy + sy, z + cz)
                if _inside(box, shape):
                    rows.append(row(box, res))
                    break
            else:
                dropped += 1
    return rows, dropped
