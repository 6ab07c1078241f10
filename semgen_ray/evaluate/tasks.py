"""Target tasks from a labelled store: nodule classification (NCC-like) and segmentation (NCS-like).

docs/method.md §6.2: NCC classifies candidate cubes as nodule / non-nodule (AUC); NCS segments the nodule
in cubes around it (IoU). From any CT store with instance or binary labels (the phantom cohort, or
LIDC-style nodule masks):

- cubes: ``cube`` voxels. With ``cube_mm`` they span that physical size (mm, from the patient's
  spacing) and are resampled to ``cube`` (trilinear for images, linear + threshold 0.5 for labels),
  padded with the volume's minimum (air) where they leave the volume; without it they are ``cube``
  voxel boxes moved inside the volume (the paper's 64×64×32 LUNA16 cubes span about 45 mm);
- positives: a cube centred on each labelled object (its centre of mass) of at least ``min_voxels``
  voxels;
- negatives (classification), ``negatives_per_positive`` per positive from the same patient, whose
  cube holds no labelled voxel:

  - ``"candidates"``: nodule-like structures inside the lung (vessels, crossings, pleura; see
    :mod:`semgen_ray.evaluate.candidates`), chosen from a seeded per-patient pool so that their cube
    statistics resemble the positives' (greedy nearest neighbours on the standardised statistics of
    :mod:`semgen_ray.evaluate.shortcuts`), so no one-number shortcut separates the classes;
  - ``"matched"``: random label-free boxes anywhere in the volume, matched to the positives'
    statistics the same way (no lung mask needed: the negatives of 2D images);
  - ``"random"``: random boxes anywhere in the volume (the earlier behaviour; a third of them are
    mostly air outside the body, so "is this lung?" solves the task);
- segmentation: a cube per object moved off-centre by a seeded uniform jitter of up to
  ``seg_jitter`` × the cube per axis (the object stays inside), plus ``seg_background`` cubes per
  object at random places inside the body, with their binary masks (label > 0).

On 2D images (``images``: radiographs, Semantic Genesis 2D) the same tasks are cut from the films as
patches of ``cube``'s first two sizes: nodule patches against ``matched`` or ``random`` negatives, and
segmentation patches with the nodules' projected masks, background patches anywhere on the film;
``x`` is then (N, 1, X, Y).

Splits are the store's patient splits (``train`` / ``val`` / ``test``), so a patient's cubes never
cross splits. Arrays are windowed to [0, 1] on read (CT HU [-1000, 1000]). Each :class:`TaskData`
carries ``info``: per-split counts, the classification shortcut AUCs and the settings used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
TASKS = ("classification", "segmentation")
NEGATIVES = ("candidates", "matched", "random")
#: Candidates drawn per patient before the negatives are matched to the positives.
POOL_SIZE = 128
#: Version of the cube sampling: part of the task cache key, so that cubes cached by an earlier
#: sampling are rebuilt (2: per-patient streams seeded from the whole patient id).
SAMPLING_VERSION = 2


class TaskError(ValueError):
    """The store cannot provide a target task (no labels, an empty split, too few positives)."""


@dataclass
class TaskData:
    """In-memory cubes of one task: per split ``x`` (N, 1, X, Y, Z) float32, ``y`` and ``patient``,
    plus ``info`` (JSON-serialisable: counts, shortcut AUCs, settings)."""

    task: str
    splits: dict = field(default_factory=dict)  # split -> {"x", "y", "patient"}
    info: dict = field(default_factory=dict)

    def sizes(self) -> dict:
        return {s: int(len(v["x"])) for s, v in self.splits.items()}

    def digest(self) -> str:
        """SHA-256 (hex) of the cubes, labels and patients of every split: which cubes trials saw."""
        import hashlib

        h = hashlib.sha256(self.task.encode())
        for s in sorted(self.splits):
            for k in ("x", "y", "patient"):
                a = np.ascontiguousarray(self.splits[s][k])
                h.update(f"{s}/{k}/{a.dtype.str}/{a.shape}".encode())
                h.update(a.tobytes())
        return h.hexdigest()

    def save(self, path: str | Path) -> None:
        arrays = {f"{s}_{k}": v[k] for s, v in self.splits.items() for k in ("x", "y", "patient")}
        np.savez_compressed(path, task=np.array(self.task), info=np.array(json.dumps(self.info)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> TaskData:
        with np.load(path, allow_pickle=False) as z:
            splits = {s: {k: z[f"{s}_{k}"] for k in ("x", "y", "patient")} for s in SPLITS if f"{s}_x" in z}
            info = json.loads(str(z["info"])) if "info" in z else {}
            return cls(str(z["task"]), splits, info)


# ---------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class _Grid:
    """Where a patient's cubes sample it: ``extent`` (voxels per axis that a cube spans) and ``step``
    (voxels between samples); voxel boxes (``cube_mm`` None) are slices."""

    shape: tuple[int, int, int]
    cube: tuple[int, int, int]
    step: np.ndarray | None  # None: voxel boxes

    @classmethod
    def make(cls, shape, cube, spacing, cube_mm) -> _Grid:
        if cube_mm is None:
            return cls(tuple(shape), cube, None)
        step = np.asarray(cube_mm, float) / np.asarray(cube, float) / np.asarray(spacing, float)
        return cls(tuple(shape), cube, step)

    @property
    def extent(self) -> np.ndarray:
        return np.asarray(self.cube, float) * (1.0 if self.step is None else self.step)

    def origins(self, centres: np.ndarray) -> np.ndarray:
        """First sample (voxel coordinates) of the cube centred on each of ``centres`` (N, 3)."""
        centres = np.asarray(centres, float).reshape(-1, 3)
        cube = np.asarray(self.cube)
        if self.step is None:  # a box of whole voxels, moved inside the volume
            return np.clip(np.round(centres - cube / 2), 0, np.asarray(self.shape) - cube).astype(int)
        return centres - (cube - 1) / 2.0 * self.step

    def voxel_ranges(self, origins: np.ndarray) -> np.ndarray:
        """Inclusive voxel index ranges (N, 3, 2) that a cube's samples read (for the label check)."""
        cube = np.asarray(self.cube)
        if self.step is None:
            lo, hi = origins, origins + cube - 1
        else:
            lo, hi = np.floor(origins), np.ceil(origins + (cube - 1) * self.step)
        top = np.asarray(self.shape) - 1
        return np.stack([np.clip(lo, 0, top), np.clip(hi, 0, top)], -1).astype(int)

    def holds_label(self, label: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Per cube, whether it reads any labelled voxel (a loop over the few cubes)."""
        return np.array([bool(label[tuple(slice(a, b + 1) for a, b in r)].any())
                         for r in self.voxel_ranges(origins)], bool)

    def extract(self, array: np.ndarray, origins: np.ndarray, mask: bool = False, stride: int = 1) -> np.ndarray:
        """Cubes (N, X, Y, Z) of ``array`` at ``origins``: float32 images, or uint8 masks of ``array > 0``.

        ``stride`` > 1 keeps every stride-th sample per axis (a cheap preview for statistics).
        """
        from scipy import ndimage

        origins = np.asarray(origins)
        size = tuple(len(range(0, c, stride)) for c in self.cube)
        if not len(origins):
            return np.zeros((0, *size), np.uint8 if mask else np.float32)
        if self.step is None:
            src = (array > 0).astype(np.uint8) if mask else array.astype(np.float32, copy=False)
            return np.stack([src[tuple(slice(a, a + c, stride) for a, c in zip(o, self.cube))] for o in origins])
        axes = [np.arange(0, c, stride) * s for c, s in zip(self.cube, self.step)]
        offsets = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, 1, -1)  # (3, 1, X·Y·Z)
        if mask:
            src, cval = (array > 0).astype(np.float32), 0.0
        else:
            src = array.astype(np.float32, copy=False)
            cval = float(src.min())
        out = np.empty((len(origins), offsets.shape[-1]), np.float32)
        batch = max(1, (1 << 22) // offsets.shape[-1])  # about 4 M sample points per call
        for start in range(0, len(origins), batch):
            coords = origins[start:start + batch].T[:, :, None] + offsets  # (3, n, X·Y·Z)
            out[start:start + batch] = ndimage.map_coordinates(
                src, coords.reshape(3, -1), order=1, mode="constant", cval=cval, prefilter=False
            ).reshape(len(coords[0]), -1)
        out = out.reshape(len(origins), *size)
        return (out >= 0.5).astype(np.uint8) if mask else out


def _objects(label: np.ndarray, min_voxels: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre of mass, bounding box (3, 2) in voxel coordinates) of each labelled object with at
    least ``min_voxels`` voxels; a box spans its voxels' extents (index ± 0.5)."""
    points = np.argwhere(label > 0)
    if not len(points):
        return []
    ids = label[tuple(points.T)].astype(np.int64)
    counts = np.bincount(ids)
    out = []
    for i in np.flatnonzero(counts >= max(1, min_voxels)):
        mine = points[ids == i]
        out.append((mine.mean(0), np.stack([mine.min(0) - 0.5, mine.max(0) + 0.5], 1)))
    return out


def _jittered(centre: np.ndarray, box: np.ndarray, extent: np.ndarray, jitter: float,
              rng: np.random.Generator) -> np.ndarray:
    """``centre`` moved by a uniform offset of up to ``jitter`` × ``extent`` per axis, within the
    positions whose cube still holds the whole object ``box`` (half a voxel of margin)."""
    lo_ok = box[:, 1] - extent / 2 + 0.5
    hi_ok = box[:, 0] + extent / 2 - 0.5
    lo = np.maximum(centre - jitter * extent, lo_ok)
    hi = np.minimum(centre + jitter * extent, hi_ok)
    # an object larger than the cube, or a centre of mass outside the allowed range: no room to move
    fixed = np.where(lo_ok <= hi_ok, np.clip(centre, lo_ok, hi_ok), box.mean(1))
    draw = rng.uniform(0.0, 1.0, 3)
    return np.where(lo <= hi, lo + draw * (hi - lo), fixed)


# --------------------------------------------------------------------------------------- negatives
def _random_negatives(grid: _Grid, label: np.ndarray, per_positive: int, positives: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Origins of ``per_positive`` cubes per positive at random places of the volume that hold no
    label (200 tries per positive; for voxel boxes the earlier draw, unchanged)."""
    shape, cube = np.asarray(grid.shape), np.asarray(grid.cube)
    out = []
    for _ in range(positives):
        made = tries = 0
        while made < per_positive and tries < 200:
            tries += 1
            if grid.step is None:
                origin = np.array([int(rng.integers(0, n - s + 1)) for s, n in zip(cube, shape)])
            else:  # a centre whose physical box lies inside the volume where it fits
                half = grid.extent / 2
                lo, hi = half - 0.5, shape - 0.5 - half
                centre = np.where(lo <= hi, rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi)), (shape - 1) / 2)
                origin = grid.origins(centre)[0]
            if not grid.holds_label(label, origin[None])[0]:
                out.append(origin)
                made += 1
    return np.array(out).reshape(-1, 3)


def _match(positive_stats: np.ndarray, pool_stats: np.ndarray, per_positive: int,
           rng: np.random.Generator) -> np.ndarray:
    """Indices into the pool: for each positive (in a seeded order), its ``per_positive`` nearest
    unused candidates in the statistics standardised over positives and pool together."""
    both = np.concatenate([positive_stats, pool_stats])
    scale = both.std(0)
    scale[scale == 0] = 1.0
    p, q = positive_stats / scale, pool_stats / scale
    dist = ((p[:, None, :] - q[None, :, :]) ** 2).sum(-1)  # (P, M)
    used = np.zeros(len(q), bool)
    chosen = []
    for i in rng.permutation(len(p)):
        for _ in range(per_positive):
            if used.all():
                return np.array(chosen, int)
            j = int(np.argmin(np.where(used, np.inf, dist[i])))
            used[j] = True
            chosen.append(j)
    return np.array(chosen, int)


def _candidate_negatives(grid: _Grid, volume: np.ndarray, label: np.ndarray, lung: np.ndarray, spacing,
                         window, positive_origins: np.ndarray, per_positive: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Origins of candidate negatives matched to the positives at ``positive_origins``, and the pool size."""
    from semgen_ray.evaluate.candidates import candidate_centres

    centres = candidate_centres(volume, lung, label, spacing, window)
    return _matched_negatives(grid, volume, label, window, centres[rng.permutation(len(centres))],
                              positive_origins, per_positive, rng)


def _matched_negatives(grid: _Grid, volume: np.ndarray, label: np.ndarray, window, centres: np.ndarray,
                       positive_origins: np.ndarray, per_positive: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Origins of negatives chosen from the label-free cubes at ``centres`` (in their order, up to
    :data:`POOL_SIZE`) to match the statistics of the positives at ``positive_origins``, and the
    pool size."""
    from semgen_ray.evaluate.shortcuts import cube_statistics

    origins = grid.origins(centres)
    pool = []
    for start in range(0, len(origins), POOL_SIZE):  # label checks in batches until the pool is full
        batch = origins[start:start + POOL_SIZE]
        pool.extend(batch[~grid.holds_label(label, batch)][:POOL_SIZE - len(pool)])
        if len(pool) >= POOL_SIZE:
            break
    if not pool or not len(positive_origins):
        return np.zeros((0, 3), int), len(pool)
    pool = np.array(pool)

    def features(origins):  # statistics of every other sample: an eighth of the cost, nearly the same
        return np.stack(list(cube_statistics(grid.extract(volume, origins, stride=2), window).values()), 1)

    chosen = _match(features(positive_origins), features(pool), per_positive, rng)
    return pool[chosen], len(pool)


# ------------------------------------------------------------------------------------------- build
def _patient_rng(seed: int, pid: str, *stream: int) -> np.random.Generator:
    """Patient ``pid``'s generator for ``stream``: from the whole id (:func:`semgen_ray.seeds.patient_seed`)."""
    from semgen_ray.seeds import patient_seed

    return np.random.default_rng(np.random.SeedSequence([int(seed), patient_seed(pid), *stream]))


def _seg_counts(y: np.ndarray, n_objects: int) -> dict:
    fraction = y.reshape(len(y), -1).mean(1, dtype=np.float64)
    has = fraction > 0
    return {"cubes": int(len(y)), "object_cubes": int(n_objects), "background_cubes": int(len(y) - n_objects),
            "with_foreground": int(has.sum()), "without_foreground": int((~has).sum()),
            "foreground_fraction_mean": round(float(fraction.mean()), 6),
            "foreground_fraction_median": round(float(np.median(fraction)), 6),
            "foreground_fraction_median_object_cubes": round(float(np.median(fraction[has])), 6) if has.any() else 0.0}


def _patient_cubes(volume, label, spacing, window, grid, objects, seed: int, pid: str, *, negatives: str,
                   negatives_per_positive: int, seg_jitter: float, seg_background: int, image: bool = False) -> dict:
    """One patient's cubes: classification positives (``pos``) and negatives (``neg``, drawn from a
    candidate ``pool`` of that many), segmentation cubes (``seg_x``) and their masks (``seg_y``).
    Each random draw has its own stream of the patient's seed (:func:`_patient_rng`). An ``image``
    (a film as an (X, Y, 1) volume) has no body mask: its background cubes lie anywhere on it."""
    from semgen_ray.evaluate.candidates import body_and_lung

    cls_origins = grid.origins(np.array([c for c, _ in objects]))
    body = np.ones(volume.shape, bool) if image else None
    if negatives == "random":
        neg_origins = _random_negatives(grid, label, negatives_per_positive, len(objects), _patient_rng(seed, pid))
        pool = 0
    elif negatives == "matched":
        anywhere = _body_points(np.ones(volume.shape, bool), 4 * POOL_SIZE, _patient_rng(seed, pid, 1))
        neg_origins, pool = _matched_negatives(grid, volume, label, window, anywhere, cls_origins,
                                               negatives_per_positive, _patient_rng(seed, pid, 4))
    else:
        body, lung = body_and_lung(volume, spacing, window)
        neg_origins, pool = _candidate_negatives(grid, volume, label, lung, spacing, window, cls_origins,
                                                 negatives_per_positive, _patient_rng(seed, pid, 1))
    jitter_rng = _patient_rng(seed, pid, 2)
    seg_centres = [_jittered(c, box, grid.extent, seg_jitter, jitter_rng) for c, box in objects]
    if seg_background:
        if body is None:
            body, _ = body_and_lung(volume, spacing, window)
        seg_centres += list(_body_points(body, seg_background * len(objects), _patient_rng(seed, pid, 3)))
    seg_origins = grid.origins(np.array(seg_centres))
    return {"pos": grid.extract(volume, cls_origins), "neg": grid.extract(volume, neg_origins), "pool": pool,
            "seg_x": grid.extract(volume, seg_origins), "seg_y": grid.extract(label, seg_origins, mask=True)}


def _collect(parts: dict, counts: dict, split: str, pid: str, cubes: dict, objects: int,
             negatives_per_positive: int) -> None:
    """Add one patient's cubes to both tasks' ``split`` and its counts."""
    pos, neg = cubes["pos"], cubes["neg"]
    counts["positives"] += len(pos)
    counts["negatives"] += len(neg)
    counts["negatives_short"] += negatives_per_positive * len(pos) - len(neg)
    counts["pool"] += cubes["pool"]
    counts["objects"] += objects
    cls, seg = parts["classification"][split], parts["segmentation"][split]
    for x, y in ((pos, 1), (neg, 0)):
        cls["x"].extend(x[:, None])
        cls["y"].extend([y] * len(x))
        cls["patient"].extend([pid] * len(x))
    seg["x"].extend(cubes["seg_x"][:, None])
    seg["y"].extend(cubes["seg_y"][:, None])
    seg["patient"].extend([pid] * len(cubes["seg_x"]))


def _task_data(task: str, parts: dict, counts: dict, store_uri: str, settings: dict) -> TaskData:
    """One task's stacked splits; a TaskError names a split without cubes (or without negatives)."""
    splits = {}
    for s in SPLITS:
        p = parts[s]
        if not p["x"]:
            raise TaskError(f"{task}: the {s} split of {store_uri} has no cube (labelled objects of ≥ "
                            f"{settings['min_voxels']} voxels); add patients or change ingest.split_fractions")
        if task == "classification" and not counts[s]["negatives"]:
            raise TaskError(f"classification: the {s} split of {store_uri} has no negative cube (no "
                            f"{settings['negatives']} negative without a label); try evaluate.negatives: random")
        splits[s] = {"x": np.stack(p["x"]).astype(np.float32),
                     "y": np.stack(p["y"]) if task == "segmentation" else np.asarray(p["y"], np.int64),
                     "patient": np.asarray(p["patient"])}
    if task == "classification":
        info = {"counts": {s: dict(counts[s]) for s in SPLITS}}
    else:
        info = {"counts": {s: _seg_counts(splits[s]["y"], counts[s]["objects"]) for s in SPLITS}}
    return TaskData(task, splits, {"task": task, **info, "settings": settings})


def build_tasks(store_uri: str, cube, seed: int = 0, min_voxels: int = 8, negatives_per_positive: int = 2, *,
                negatives: str = "candidates", cube_mm=None, seg_jitter: float = 0.25,
                seg_background: int = 0, images: bool = False) -> dict[str, TaskData]:
    """Both tasks' cubes from every labelled patient of the store (see the module docstring);
    ``images``: the patches of its 2D images (radiographs) instead, of ``cube``'s first two sizes.

    Everything random is drawn from per-patient seeds (``seed`` and the patient id), so the same
    arguments give identical arrays.
    """
    from semgen_ray.evaluate.shortcuts import task_shortcut_aucs
    from semgen_ray.store import IntensityWindow, open_store
    from semgen_ray.store.manifest import is_volume

    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if not 0 <= seg_jitter <= 0.5:
        raise ValueError(f"seg_jitter must be in [0, 0.5], got {seg_jitter}")
    if seg_background < 0:
        raise ValueError(f"seg_background must be >= 0, got {seg_background}")
    cube = tuple(int(c) for c in cube)
    if images:
        if cube_mm is not None:
            raise TaskError("cube_mm resamples the cubes of CT volumes; patches of 2D images are cut at their "
                            "pixel size: set evaluate.cube_mm: null")
        if negatives == "candidates":
            raise TaskError("negatives: candidates finds nodule-like structures in the lungs of a CT volume; "
                            "on 2D images use evaluate.negatives: matched (or random)")
        cube = (*cube[:2], 1)
    cube_mm = None if cube_mm is None else tuple(float(c) for c in cube_mm)
    if cube_mm is not None and (len(cube_mm) != 3 or min(cube_mm) <= 0):
        raise ValueError(f"cube_mm must be 3 positive sizes (mm), got {cube_mm}")
    store = open_store(store_uri)
    rows = [r for r in store.manifest_rows() if r["status"] == "ok" and is_volume(r) != images]
    parts = {t: {s: {"x": [], "y": [], "patient": []} for s in SPLITS} for t in TASKS}
    counts = {s: {"positives": 0, "negatives": 0, "negatives_short": 0, "pool": 0, "objects": 0} for s in SPLITS}
    labelled, windows = 0, set()
    for r in sorted(rows, key=lambda r: r["patient_id"]):
        pid = r["patient_id"]
        split = r["split"] if r["split"] in SPLITS else "train"
        if not store.has_label(pid):
            continue
        labelled += 1
        volume, meta = (store.read_flat if images else store.read)(pid, normalize=True)
        volume = volume.astype(np.float32, copy=False)
        window = IntensityWindow(*meta["window"])
        windows.add(meta["window"])
        spacing = meta["spacing"]
        label = store.read_label(pid)[..., None] if images else store.read_label(pid)
        shape = volume.shape
        if cube_mm is None and any(c > n for c, n in zip(cube, shape)):
            raise TaskError(f"patient {pid} of shape {shape} is smaller than the cube {cube}")
        grid = _Grid.make(shape, cube, spacing, cube_mm)
        objects = _objects(label, min_voxels)
        if not objects:
            continue
        cubes = _patient_cubes(volume, label, spacing, window, grid, objects, seed, pid,
                               negatives=negatives, negatives_per_positive=negatives_per_positive,
                               seg_jitter=seg_jitter, seg_background=seg_background, image=images)
        _collect(parts, counts[split], split, pid, cubes, len(objects), negatives_per_positive)
    if not labelled:
        raise TaskError(f"no {'image' if images else 'patient'} of {store_uri} has a label array: target tasks "
                        "need labels")
    settings = {"negatives": negatives, "negatives_per_positive": int(negatives_per_positive),
                "cube": list(cube), "cube_mm": None if cube_mm is None else list(cube_mm),
                "seg_jitter": float(seg_jitter), "seg_background": int(seg_background),
                "min_voxels": int(min_voxels), "seed": int(seed), **({"images": True} if images else {})}
    out = {task: _task_data(task, parts[task], counts, store_uri, settings) for task in TASKS}
    window = IntensityWindow(*windows.pop()) if len(windows) == 1 else None
    cls = out["classification"]
    cls.info["shortcut_auc"] = task_shortcut_aucs(cls, window) if window else task_shortcut_aucs(cls)
    return {t: _as_images(d) for t, d in out.items()} if images else out


def _as_images(data: TaskData) -> TaskData:
    """A task cut from (X, Y, 1) films with (N, 1, X, Y) patches and masks."""
    splits = {s: {"x": v["x"][..., 0], "y": v["y"][..., 0] if data.task == "segmentation" else v["y"],
                  "patient": v["patient"]} for s, v in data.splits.items()}
    return TaskData(data.task, splits, data.info)


def _body_points(body: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` voxel centres drawn uniformly from the ``body`` mask (rejection sampling, vectorised)."""
    shape = np.asarray(body.shape)
    out = np.zeros((0, 3), int)
    for _ in range(100 if body.any() else 0):
        if len(out) >= count:
            break
        draw = (rng.uniform(0.0, 1.0, (4 * count + 16, 3)) * shape).astype(int)
        out = np.concatenate([out, draw[body[tuple(draw.T)]]])
    return out[:count].astype(float)


#: Draws of a low-label subset before a fraction whose subsets lack a class is refused.
SUBSET_DRAWS = 100


def subset_patients(patients, labels, task: str, fraction: float, seed: int) -> tuple[list[str], int]:
    """The training patients of the low-label regime and the number of draws it took.

    ``round(fraction × patients)`` patients (at least one) drawn without replacement from a generator
    seeded with ``seed``. A classification subset must hold both classes: a subset that lacks one is
    redrawn, same size, up to :data:`SUBSET_DRAWS` times (the first draw is the one kept whenever it
    holds both); the subset never grows beyond the fraction.

    Args:
        patients: the patient of each training cube.
        labels: the label of each training cube (class for classification; unused otherwise).
        task: ``classification`` or ``segmentation``.

    Returns:
        (sorted patient ids, draws: 1 when the first draw was kept, 0 for ``fraction >= 1``).

    Raises:
        TaskError: no draw of that many patients held both classes (the message names the fraction,
            the subset size and the seed).
    """
    patients = np.asarray(patients)
    everyone = np.unique(patients)
    if fraction >= 1.0:
        return everyone.tolist(), 0
    n = max(1, int(round(fraction * len(everyone))))
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    for draw in range(1, SUBSET_DRAWS + 1):
        keep = rng.choice(everyone, size=n, replace=False)
        if task != "classification" or len(np.unique(labels[np.isin(patients, keep)])) >= 2:
            return sorted(keep.tolist()), draw
    raise TaskError(f"{task}: label fraction {fraction} keeps {n} of {len(everyone)} training patients, and no "
                    f"draw of {n} patients (seed {seed}, {SUBSET_DRAWS} draws) holds both classes; raise the "
                    f"label fraction or add training patients with both classes")


def subsample(data: TaskData, fraction: float, seed: int) -> TaskData:
    """The low-label regime: a ``fraction`` of the training *patients* (all their cubes), seeded.

    See :func:`subset_patients`, which chooses them (a classification subset holds both classes,
    redrawn within the fraction when needed; never widened). ``info`` gains ``label_fraction``,
    ``train_patients`` and ``subset_draws``.

    Raises:
        TaskError: the fraction's subsets lack a class.
    """
    if fraction >= 1.0:
        return data
    train = data.splits["train"]
    keep, draws = subset_patients(train["patient"], train["y"], data.task, fraction, seed)
    mask = np.isin(train["patient"], keep)
    info = {**data.info, "label_fraction": float(fraction), "train_patients": len(keep), "subset_draws": draws}
    return TaskData(data.task, {**data.splits, "train": {k: v[mask] for k, v in train.items()}}, info)
