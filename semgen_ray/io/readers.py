"""The reader registry: ``read_source`` picks the reader for a source's format.

A reader is a function ``reader(source, modality=None, **options) -> list[Volume]``. Readers are
registered by import path, so registering (and importing this module) loads neither pydicom nor
SimpleITK; the first read of a format imports its reader.
"""

from __future__ import annotations

import importlib
import os
from typing import Callable

import numpy as np

from semgen_ray.io.sources import Source, find_sources
from semgen_ray.io.volume import MODALITIES, ReadError, Volume

Reader = Callable[..., "list[Volume]"]

_READERS: dict[str, str | Reader] = {
    "dicom": "semgen_ray.io.dicom:read_dicom",
    "nifti": "semgen_ray.io.sitk_image:read_sitk_image",
    "metaimage": "semgen_ray.io.sitk_image:read_sitk_image",
    "nrrd": "semgen_ray.io.sitk_image:read_sitk_image",
}


def register_reader(fmt: str, reader: str | Reader) -> None:
    """Register (or replace) the reader of a format: a callable or a ``"module:function"`` path."""
    _READERS[fmt] = reader


def get_reader(fmt: str) -> Reader:
    """The reader function of a format. Raises ValueError for an unknown format."""
    try:
        reader = _READERS[fmt]
    except KeyError:
        raise ValueError(f"no reader for format {fmt!r}; known: {sorted(_READERS)}") from None
    if isinstance(reader, str):
        module, _, name = reader.partition(":")
        reader = getattr(importlib.import_module(module), name)
        _READERS[fmt] = reader
    return reader


def read_source(source: Source | str | os.PathLike, modality: str | None = None, **options) -> list[Volume]:
    """Read a source into canonical LPS volumes (one per DICOM series; one for other formats).

    Args:
        source: a :class:`Source`, or a path that :func:`find_sources` turns into exactly one source.
        modality: "CT", "MR" or "OT" to override the reader's choice (DICOM Modality tag, or
            :func:`detect_modality` for other formats).
        **options: format-specific options, e.g. ``uneven="resample"`` / ``tilt=...`` /
            ``duplicates=...`` for DICOM (see :mod:`semgen_ray.io.dicom`).

    Returns:
        A non-empty list of volumes.

    Raises:
        ReadError: the source cannot be read (the message says why, in one line), or the reader's
            volume is unusable: not a non-empty 3D array, or spacing / origin / direction that are not
            finite (spacing also positive), which broken headers can produce.
        ValueError: a bad ``modality`` or option value, or a path that is not exactly one source.
    """
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES} or None, got {modality!r}")
    if not isinstance(source, Source):
        found = find_sources(source)
        if len(found) != 1:
            raise ValueError(f"{os.fspath(source)} holds {len(found)} sources; pass one Source "
                             "(see find_sources)")
        source = found[0]
    reader = get_reader(source.format)
    volumes = reader(source, modality=modality, **options)
    if not volumes:  # pragma: no cover - readers raise instead
        raise ReadError(f"{source.path}: the {source.format} reader returned no volume")
    for volume in volumes:
        _check_geometry(volume, source)
    return volumes


def _check_geometry(volume: Volume, source: Source) -> None:
    """The last line of defence against broken headers: what no reader may hand over."""
    shape = tuple(volume.array.shape)
    if len(shape) != 3 or 0 in shape:
        raise ReadError(f"{source.path}: the {source.format} reader produced an array of shape {shape}; a "
                        "non-empty 3D volume is needed")
    spacing = np.asarray(volume.spacing)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise ReadError(f"{source.path}: voxel spacing {volume.spacing} mm is not finite and positive "
                        "(a broken header?)")
    for what in ("origin", "direction"):
        if not np.isfinite(getattr(volume, what)).all():
            raise ReadError(f"{source.path}: {what} {getattr(volume, what)} is not finite (a broken header?)")
