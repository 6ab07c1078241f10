"""Medical image readers: files on disk → :class:`Volume` in the canonical (x, y, z) LPS layout.

``find_sources`` discovers scans (NIfTI, MetaImage, NRRD files and DICOM folders), ``read_source``
reads one (one volume per DICOM series), ``source_sha256`` fingerprints its bytes for provenance and
``resample`` changes the voxel size. SimpleITK, pydicom and scipy are imported only when a reader or
``resample`` runs, so importing this package is cheap.

Example:
    >>> from semgen_ray.io import find_sources, read_source
    >>> for src in find_sources(["scans/"]):                         # doctest: +SKIP
    ...     for vol in read_source(src):
    ...         print(src.patient_id, vol.shape, vol.spacing, vol.modality, vol.warnings)
"""

from semgen_ray.io.modality import detect_modality
from semgen_ray.io.readers import get_reader, read_source, register_reader
from semgen_ray.io.resample import resample, resample_array, resample_labels
from semgen_ray.io.sources import FORMATS, Source, find_sources, source_sha256
from semgen_ray.io.volume import MODALITIES, ReadError, Volume

__all__ = [
    "FORMATS",
    "MODALITIES",
    "ReadError",
    "Source",
    "Volume",
    "detect_modality",
    "find_sources",
    "get_reader",
    "read_source",
    "register_reader",
    "resample",
    "resample_array",
    "resample_labels",
    "source_sha256",
]
