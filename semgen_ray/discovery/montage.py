"""Small PNG figures for checking self-discovery by eye.

- :func:`write_montage`: a grid of the central axial slice (z = depth // 2) of the reference's crop
  (first, titled "reference") and of its neighbours' crops at the class coordinate, grey scale with
  the [0, 1] normalised window (pass ``window=(-1000, 1000)`` for HU crops); self-discovery titles
  each tile with the patient, its embedding distance and the slice (:func:`neighbour_labels`).
- :func:`write_distance_plot`: sorted neighbour distances per class (one line per class).

Both use matplotlib's Agg back end and low DPI so the files stay small (tens of kB).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from semgen_ray.figures import axial_slice, pyplot


def neighbour_labels(patients: Sequence[str], distances: Sequence[float], slices: Sequence[int]) -> list[str]:
    """Tile titles of a class montage: the patient, its embedding distance to the reference and the
    axial slice shown (patient voxel z); the first tile is the reference (distance 0)."""
    out = []
    for rank, (pid, dist, z) in enumerate(zip(patients, distances, slices)):
        head = f"reference {pid}" if rank == 0 else f"#{rank} {pid}"
        out.append(f"{head}\n" + (f"z {z}" if rank == 0 else f"d {float(dist):.3g}, z {z}"))
    return out


def montage_figure(crops: Sequence[np.ndarray], title: str | None = None,
                   labels: Sequence[str] | None = None, ncols: int | None = None,
                   window: tuple[float, float] = (0.0, 1.0), tile_inches: float = 1.2):
    """The matplotlib figure of :func:`write_montage` (the caller closes it)."""
    plt = pyplot()
    n = max(len(crops), 1)
    ncols = ncols or min(n, 8)
    nrows = math.ceil(n / ncols)
    if labels is None:
        labels = ["reference"] + [f"#{i}" for i in range(1, len(crops))]
    fig, axes = plt.subplots(nrows, ncols, figsize=(tile_inches * ncols, tile_inches * nrows + 0.4),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < len(crops):
            ax.imshow(axial_slice(crops[i]), cmap="gray", vmin=window[0], vmax=window[1],
                      interpolation="nearest")
            ax.set_title(str(labels[i]), fontsize=5 if "\n" in str(labels[i]) else 7)
    if not crops:
        axes[0, 0].text(0.5, 0.5, "no crops", ha="center", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=6 if ncols < 4 else 8)
    height = tile_inches * nrows + 0.4
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height if title else 1))   # the title band stays free
    return fig


def write_montage(path, crops: Sequence[np.ndarray], title: str | None = None,
                  labels: Sequence[str] | None = None, ncols: int | None = None,
                  window: tuple[float, float] = (0.0, 1.0), tile_inches: float = 1.2,
                  dpi: int = 80) -> Path:
    """Write a PNG grid of crops (reference first); returns the path. Creates parent folders.
    ``labels`` title the tiles (:func:`neighbour_labels`: patient, distance, slice)."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = montage_figure(crops, title, labels, ncols, window, tile_inches)
    try:
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def write_distance_plot(path, distances_per_class: Mapping[int, Sequence[float]] | Sequence[Sequence[float]],
                        title: str = "neighbour distance by rank", dpi: int = 80) -> Path:
    """Write a PNG of each class's neighbour distances against rank; returns the path."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    items = (list(distances_per_class.items()) if isinstance(distances_per_class, Mapping)
             else list(enumerate(distances_per_class)))
    fig, ax = plt.subplots(figsize=(4.0, 3.0))
    try:
        for cid, dist in items:
            d = np.sort(np.asarray(dist, dtype=np.float64))
            ax.plot(np.arange(len(d)), d, lw=0.8, alpha=0.7, label=str(cid) if len(items) <= 10 else None)
        ax.set_xlabel("neighbour rank")
        ax.set_ylabel("embedding distance")
        ax.set_title(title, fontsize=9)
        if 0 < len(items) <= 10:
            ax.legend(fontsize=6, title="class", title_fontsize=6)
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path
