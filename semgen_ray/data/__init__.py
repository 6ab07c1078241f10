"""Ray Data sources over the volume store: whole volumes, crop-on-read cubes, random sub-volumes.

Public functions (each returns a lazy ``ray.data.Dataset``; every row carries ``patient_id`` and
``spacing``, the stored voxel size in mm):

* :func:`read_volumes` — whole scans resampled to a fixed grid (self-discovery auto-encoder).
* :func:`read_crops` — the cubes of a crop-box table (:mod:`~semgen_ray.data.boxes`), resized to the
  cube size; one read task reads a patient's bounding region once and cuts all its crops.
* :func:`read_subvolumes` — random sub-volumes; boxes drawn by :func:`draw_subvolume_boxes` from
  (seed, epoch, patient id), then read like crops.
* :func:`restoration_pairs` — a ``map_batches`` body turning cubes into (corrupted input, target)
  pairs with the self-restoration corruptions of :mod:`semgen_ray.transforms`.

Design notes:

* Construction: a custom ``ray.data.Datasource`` (``_source.StoreDatasource``), one ``ReadTask`` per
  patient with a row count and byte estimate, read with ``override_num_blocks`` = number of tasks
  (no ``SplitBlocks`` into tiny blocks); blocks are Arrow tables with tensor columns. It was measured
  against ``from_items(specs).map_batches(run)`` with ``benchmarks/crop_read.py`` (2 shared vCPU,
  8 patients of 256×256×128, 768 cubes of 64×64×32 per pass to the driver, two runs): Datasource
  520-580 native / 234-325 rescaled cubes/s, from_items 445-568 / 267-273, i.e. equal within the noise
  of this shared machine. The Datasource was kept: it is the plug-in shape of Ray's own readers, and its
  size estimates let the streaming executor budget memory. (docs/operations.md §2 found a Datasource 2×
  slower, with output split into tiny blocks and projected by a separate ``select_columns``; here
  ``override_num_blocks`` = tasks and ``columns=`` projects inside the read task.) For scale: the same
  crop-on-read in one process without Ray ran at 726-852 / 288-374 cubes/s, uncompressed ``.npy`` +
  mmap at 1235-1313 / 344-429, and one Zarr read per crop at 70-71 (native).
* Resources: each read task reserves ``num_cpus=1`` by default (override per call); ``concurrency``
  caps parallel tasks (each holds one patient's region). With Ray Train on the same 2-CPU node,
  give train workers ``resources_per_worker={"CPU": 0.5}`` or start Ray with more logical CPUs, or
  Data gets a budget of 0 and hangs (docs/operations.md §2).
* Edges: boxes must lie inside the volume; an out-of-range box raises ``BoxError`` naming patient and
  box (checked against the manifest in the driver, and against the array in the task).
* Every task opens the store from its URI (local path or fsspec URI), so the same call runs in local
  mode and on a cluster whose nodes can all reach the store.

``import semgen_ray.data`` stays light: ray, pyarrow, torch and zarr are imported inside functions.
"""

from semgen_ray.data.boxes import BOX_COLUMNS, BoxError, as_box_table, check_in_bounds
from semgen_ray.data.crops import read_crops
from semgen_ray.data.resize import resize, resize_crops
from semgen_ray.data.restoration import restoration_pairs
from semgen_ray.data.subvolumes import (
    draw_subvolume_boxes,
    patient_rng,
    read_subvolumes,
)
from semgen_ray.data.volumes import read_volumes

#: Numeric columns of ``read_crops`` / ``read_subvolumes`` rows fit for ``iter_torch_batches``.
CROP_TENSOR_COLUMNS = ("cube", "spacing", "box_index", *BOX_COLUMNS)
#: Numeric columns of ``read_volumes`` rows.
VOLUME_TENSOR_COLUMNS = ("volume", "spacing", "original_shape", "scale")

__all__ = [
    "BOX_COLUMNS",
    "CROP_TENSOR_COLUMNS",
    "VOLUME_TENSOR_COLUMNS",
    "BoxError",
    "as_box_table",
    "check_in_bounds",
    "draw_subvolume_boxes",
    "patient_rng",
    "read_crops",
    "read_subvolumes",
    "read_volumes",
    "resize",
    "resize_crops",
    "restoration_pairs",
]
