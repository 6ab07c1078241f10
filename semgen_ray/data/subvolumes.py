"""Random sub-volumes: draw boxes from a seed derived from (seed, epoch, patient id), then read them
with the crop-on-read machinery. Drawing is separate from reading, so a draw can be inspected,
recorded and replayed (docs/design.md, "Decisions and why": randomness)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from semgen_ray.data.boxes import BOX_COLUMNS, BoxError
from semgen_ray.seeds import patient_seed


def patient_rng(seed: int, epoch: int, patient_id: str) -> np.random.Generator:
    """The generator of one patient's draws; stable across processes and Python versions."""
    if int(seed) < 0 or int(epoch) < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), patient_seed(patient_id)]))


def draw_subvolume_boxes(shapes: Mapping[str, Sequence[int]], size: Sequence[int] = (64, 64, 32),
                         per_patient: int = 8, seed: int = 0, epoch: int = 0):
    """Draw ``per_patient`` boxes of ``size`` uniformly inside each volume.

    Args:
        shapes: volume shape (X, Y, Z) by patient id.
        size: box size (X, Y, Z); must fit in every volume.
        per_patient: boxes per patient.
        seed, epoch: the draw of patient ``p`` depends only on ``(seed, epoch, p)``.

    Returns:
        A ``pyarrow.Table`` box table (:mod:`semgen_ray.data.boxes`) with columns ``patient_id``,
        ``x0 … z1``, ``draw`` (0 … per_patient-1) and ``epoch``; patients in sorted order.

    Raises:
        BoxError: a volume is smaller than ``size`` on some axis.
    """
    import pyarrow as pa

    sz = np.asarray([int(s) for s in size], np.int64)
    if sz.shape != (3,) or (sz < 1).any():
        raise ValueError(f"size must be 3 positive ints, got {tuple(size)!r}")
    if int(per_patient) < 1:
        raise ValueError(f"per_patient must be >= 1, got {per_patient}")
    n = int(per_patient)
    pids = sorted(shapes)
    starts = np.empty((len(pids) * n, 3), np.int64)
    for i, pid in enumerate(pids):
        room = np.asarray(shapes[pid], np.int64) - sz
        if (room < 0).any():
            raise BoxError(f"patient {pid!r} of shape {tuple(shapes[pid])} is smaller than the "
                           f"sub-volume size {tuple(sz.tolist())}: leave it out (patient_ids=)")
        starts[i * n:(i + 1) * n] = patient_rng(seed, epoch, pid).integers(0, room + 1, size=(n, 3))
    ends = starts + sz
    cols = {"patient_id": pa.array(np.repeat(np.asarray(pids, dtype=object), n).tolist(), pa.string())}
    for j, name in enumerate(BOX_COLUMNS):
        cols[name] = pa.array(np.ascontiguousarray((starts if j < 3 else ends)[:, j % 3]))
    cols["draw"] = pa.array(np.tile(np.arange(n, dtype=np.int64), len(pids)))
    cols["epoch"] = pa.array(np.full(len(pids) * n, int(epoch), np.int64))
    return pa.table(cols)


def read_subvolumes(store_uri: str, size: Sequence[int] = (64, 64, 32), per_patient: int = 8,
                    seed: int = 0, epoch: int = 0, patient_ids: Sequence[str] | None = None,
                    normalize=True, *, cube_size: Sequence[int] | None = None, **read_kwargs):
    """A ``ray.data.Dataset`` of random sub-volumes: :func:`draw_subvolume_boxes` → ``read_crops``.

    Args:
        store_uri: volume store path or fsspec URI.
        size: sub-volume size in voxels (X, Y, Z).
        per_patient, seed, epoch: see :func:`draw_subvolume_boxes`; a new ``epoch`` gives new boxes.
        patient_ids: which patients (default: every complete patient).
        normalize: as :func:`~semgen_ray.data.crops.read_crops`.
        cube_size: resize the sub-volumes to this size (default: ``size``, no resize).
        **read_kwargs: passed to ``read_crops`` (``columns``, ``num_cpus``, ``concurrency``, …).

    Returns:
        The ``read_crops`` rows, including the box, ``draw`` and ``epoch``.
    """
    from semgen_ray.data.crops import read_crops
    from semgen_ray.store import open_store

    shapes = open_store(store_uri).shapes()
    if patient_ids is not None:
        unknown = [p for p in patient_ids if p not in shapes]
        if unknown:
            raise BoxError(f"patient(s) {unknown[:5]} are not complete patients of store {store_uri}")
        shapes = {p: shapes[p] for p in patient_ids}
    boxes = draw_subvolume_boxes(shapes, size, per_patient, seed, epoch)
    return read_crops(store_uri, boxes, cube_size=size if cube_size is None else cube_size,
                      normalize=normalize, **read_kwargs)
