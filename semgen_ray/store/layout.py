"""Names and rules of the on-disk volume store layout (README, "The volume store")."""

from __future__ import annotations

import re

FORMAT_NAME = "semgen_ray.volume_store"
FORMAT_VERSION = 1

VOLUMES = "volumes"  # group of patient arrays
LABELS = "labels"  # group of optional uint8 label arrays, same shape as the volume
MANIFEST = "manifest.parquet"  # one row per patient (ok or failed)
ATTRS_KEY = "semgen_ray"  # every semgen_ray attribute lives under this key of an array's attributes

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_RESERVED = {"zarr.json", "c"}


class InvalidPatientId(ValueError):
    """A patient id that is not a safe single path component of the store."""


def check_patient_id(patient_id: str) -> str:
    """Return ``patient_id`` if it is a safe array name, else raise :class:`InvalidPatientId`.

    Ids become path components (``volumes/<id>``) on local disks and object stores, so they may hold
    only letters, digits, ``.``, ``_`` and ``-``, must start with a letter or digit, may not contain
    ``..`` and are at most 200 characters: ``../x``, ``a/b`` or ``zarr.json`` could escape or corrupt
    the store.
    """
    if not isinstance(patient_id, str):
        raise InvalidPatientId(f"patient id must be a string, got {type(patient_id).__name__}")
    if ".." in patient_id or not _ID_RE.match(patient_id) or patient_id in _RESERVED:
        raise InvalidPatientId(
            f"unsafe patient id {patient_id!r}: use 1-200 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit and without '..'"
        )
    return patient_id


def sanitize_patient_id(name: str) -> str:
    """Map an arbitrary name (a file stem, a DICOM PatientID) onto the safe id alphabet."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    return cleaned[:200] or "patient"
