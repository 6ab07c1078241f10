"""Target tasks from a labelled store: nodule classification (NCC-like) and segmentation (NCS-like).

SPEC.md §6.2: NCC classifies candidate cubes as nodule / non-nodule (AUC); NCS segments the nodule
in cubes around it (IoU). From any store with instance or binary labels (the phantom cohort, or
LIDC-style nodule masks):

- positives: a ``cube``-sized box centred on each labelled object (its centre of mass, moved inside
  the volume) whose object has at least ``min_voxels`` voxels;
- negatives (classification only): ``negatives_per_positive`` random boxes per positive in the same
  patient whose box holds no labelled voxel (drawn from a per-patient seed);
- segmentation: the positive cubes with their binary masks (label > 0).

Splits are the store's patient splits (``train`` / ``val`` / ``test``), so a patient's cubes never
cross splits. Arrays are windowed to [0, 1] on read (CT HU [-1000, 1000]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
TASKS = ("classification", "segmentation")


class TaskError(ValueError):
    """The store cannot provide a target task (no labels, an empty split, too few positives)."""


@dataclass
class TaskData:
    """In-memory cubes of one task: per split ``x`` (N, 1, X, Y, Z) float32 and ``y``."""

    task: str
    splits: dict = field(default_factory=dict)  # split -> {"x", "y", "patient"}

    def sizes(self) -> dict:
        return {s: int(len(v["x"])) for s, v in self.splits.items()}

    def save(self, path: str | Path) -> None:
        arrays = {f"{s}_{k}": v[k] for s, v in self.splits.items() for k in ("x", "y", "patient")}
        np.savez_compressed(path, task=np.array(self.task), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> TaskData:
        with np.load(path, allow_pickle=False) as z:
            splits = {s: {k: z[f"{s}_{k}"] for k in ("x", "y", "patient")} for s in SPLITS if f"{s}_x" in z}
            return cls(str(z["task"]), splits)


def _box_at(center, cube, shape) -> tuple[tuple[int, int], ...]:
    lo = [int(np.clip(round(c - s / 2), 0, n - s)) for c, s, n in zip(center, cube, shape)]
    return tuple((a, a + s) for a, s in zip(lo, cube))


def _objects(label: np.ndarray, min_voxels: int) -> list[tuple[float, float, float]]:
    """Centres of mass of the labelled objects with at least ``min_voxels`` voxels."""
    from scipy import ndimage

    ids, counts = np.unique(label[label > 0], return_counts=True)
    keep = ids[counts >= min_voxels]
    if keep.size == 0:
        return []
    return [tuple(c) for c in ndimage.center_of_mass(np.ones_like(label), label, keep)]


def build_tasks(store_uri: str, cube, seed: int = 0, min_voxels: int = 8,
                negatives_per_positive: int = 2) -> dict[str, TaskData]:
    """Both tasks' cubes from every labelled patient of the store (see the module docstring)."""
    from semgen_ray.store import open_store

    cube = tuple(int(c) for c in cube)
    store = open_store(store_uri)
    rows = [r for r in store.manifest_rows() if r["status"] == "ok"]
    parts = {t: {s: {"x": [], "y": [], "patient": []} for s in SPLITS} for t in TASKS}
    labelled = 0
    for r in sorted(rows, key=lambda r: r["patient_id"]):
        pid = r["patient_id"]
        split = r["split"] if r["split"] in SPLITS else "train"
        if not store.has_label(pid):
            continue
        labelled += 1
        volume = store.read(pid, normalize=True)[0].astype(np.float32)
        label = store.read_label(pid)
        shape = volume.shape
        if any(c > n for c, n in zip(cube, shape)):
            raise TaskError(f"patient {pid} of shape {shape} is smaller than the cube {cube}")
        rng = np.random.default_rng(np.random.SeedSequence([seed, int.from_bytes(pid.encode()[:8], "little")]))
        for center in _objects(label, min_voxels):
            box = _box_at(center, cube, shape)
            sl = tuple(slice(a, b) for a, b in box)
            x = volume[sl][None]
            for task, y in (("classification", 1), ("segmentation", (label[sl] > 0)[None].astype(np.uint8))):
                parts[task][split]["x"].append(x)
                parts[task][split]["y"].append(y)
                parts[task][split]["patient"].append(pid)
            made = tries = 0
            while made < negatives_per_positive and tries < 200:
                tries += 1
                lo = [int(rng.integers(0, n - s + 1)) for s, n in zip(cube, shape)]
                sl = tuple(slice(a, a + s) for a, s in zip(lo, cube))
                if label[sl].any():
                    continue
                parts["classification"][split]["x"].append(volume[sl][None])
                parts["classification"][split]["y"].append(0)
                parts["classification"][split]["patient"].append(pid)
                made += 1
    if not labelled:
        raise TaskError(f"no patient of {store_uri} has a label array: target tasks need labels")
    out = {}
    for task in TASKS:
        splits = {}
        for s in SPLITS:
            p = parts[task][s]
            if not p["x"]:
                raise TaskError(f"{task}: the {s} split of {store_uri} has no cube (labelled objects of ≥ "
                                f"{min_voxels} voxels); add patients or change ingest.split_fractions")
            splits[s] = {"x": np.stack(p["x"]).astype(np.float32),
                         "y": np.stack(p["y"]) if task == "segmentation" else np.asarray(p["y"], np.int64),
                         "patient": np.asarray(p["patient"])}
        out[task] = TaskData(task, splits)
    return out


def subsample(data: TaskData, fraction: float, seed: int) -> TaskData:
    """The low-label regime: a ``fraction`` of the training *patients* (all their cubes), seeded."""
    if fraction >= 1.0:
        return data
    train = data.splits["train"]
    patients = np.unique(train["patient"])
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(patients))))
    keep = set(rng.choice(patients, size=n, replace=False).tolist())
    mask = np.array([p in keep for p in train["patient"]])
    if data.task == "classification" and len(set(train["y"][mask].tolist())) < 2:
        mask = np.ones(len(mask), bool)  # too few patients to hold both classes: keep them all
    return TaskData(data.task, {**data.splits, "train": {k: v[mask] for k, v in train.items()}})
