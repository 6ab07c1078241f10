"""What one ingest task does: a *job* names a source and knows how to fingerprint and load it.

Jobs are small picklable objects built by the driver; loading happens in a Ray task. The same
runner stores scans read from disk (:class:`SourceJob`) and generated phantoms
(``semgen_ray.phantoms.cohort.PhantomJob``), so both go through one writer.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from semgen_ray.config.schema import IngestConfig
from semgen_ray.io.image2d import Image2D
from semgen_ray.io.volume import ReadError, Volume
from semgen_ray.store.layout import sanitize_patient_id

_UID_RE = re.compile(r"^[0-9.]+$")


@dataclass
class Item:
    """One patient produced by a job: a 3D ``volume``, or a 2D image (an
    :class:`~semgen_ray.io.image2d.Image2D`) in the same field."""

    patient_id: str
    volume: Volume | Image2D
    label: np.ndarray | None = None
    split: str | None = None


class Job(Protocol):
    """The contract the runner relies on."""

    patient_id: str  # the id, or the base of the ids, this job produces (for reports)
    source: str  # path or URI, the manifest's ``source``

    def fingerprint(self) -> str:
        """A hash that changes whenever the job's output would change."""

    def load(self, config: IngestConfig) -> list[Item]:
        """Read or generate the patients; raise ReadError with a one-line reason on bad input."""

    # Optional: ``reading_settings(config) -> dict``, the ``config`` settings the job's ``load`` obeys
    # that change what it returns (``modality``, ``uneven_spacing``); a job without it obeys none.


@dataclass(frozen=True)
class SourceJob:
    """A scan on disk (a file, or a DICOM folder that may hold several series)."""

    source_ref: object  # semgen_ray.io.Source
    patient_id: str
    label_path: str | None = None
    modality: str | None = None
    split: str | None = None

    @property
    def source(self) -> str:
        return self.source_ref.path

    def fingerprint(self) -> str:
        from semgen_ray.io import source_sha256

        digest = source_sha256(self.source_ref)
        if self.label_path:
            from semgen_ray.io import find_sources

            digest += ":" + source_sha256(find_sources([self.label_path])[0])
        return digest

    def reading_settings(self, config: IngestConfig) -> dict:
        """The settings that change what :meth:`load` returns: the modality override (the list's own
        first, None: detected) and, for DICOM, the uneven-spacing policy."""
        settings = {"modality": self.modality or config.modality}
        if config.kind == "2d":
            return {**settings, "kind": "2d"}
        if self.source_ref.format == "dicom":
            settings["uneven_spacing"] = config.uneven_spacing
        return settings

    def load(self, config: IngestConfig) -> list[Item]:
        from semgen_ray.io import read_source

        if config.kind == "2d":
            return [self._load_image(config)]

        options = {"max_voxels": config.max_voxels}  # refused from the header, before any voxel is read
        if self.source_ref.format == "dicom":
            options["uneven"] = config.uneven_spacing
        volumes = read_source(self.source_ref, modality=self.modality or config.modality, **options)
        items = []
        for k, vol in enumerate(volumes):
            pid = self.patient_id
            if len(volumes) > 1:
                pid = f"{pid}_s{vol.extra.get('series_number', k)}"
            items.append(Item(pid, vol, self._label_for(vol), self.split))
        return items

    def _load_image(self, config: IngestConfig) -> Item:
        """A 2D image (``ingest.kind: 2d``): one file, read by :func:`semgen_ray.io.radiograph.read_radiograph`."""
        from semgen_ray.io.radiograph import read_radiograph

        if self.label_path:
            raise ReadError("labels of 2D images are not read yet (the list's label column)")
        if len(self.source_ref.files) != 1:
            raise ReadError(f"{self.source}: a 2D image is one file, the source has {len(self.source_ref.files)}")
        image = read_radiograph(self.source_ref.files[0], modality=self.modality or config.modality)
        return Item(self.patient_id, image, None, self.split)  # checked by the runner (check_image)

    def _label_for(self, vol: Volume) -> np.ndarray | None:
        if not self.label_path:
            return None
        from semgen_ray.io import find_sources, read_source

        found = find_sources([self.label_path])
        if not found:
            raise ReadError(f"label {self.label_path} is not a readable image")
        (label,) = read_source(found[0], modality="OT")
        if label.shape != vol.shape:
            raise ReadError(f"label {self.label_path} has shape {label.shape}, image {vol.shape}")
        values = label.array
        if np.issubdtype(values.dtype, np.floating):
            values = np.rint(values)
        if values.min() < 0 or values.max() > 255:
            raise ReadError(f"label {self.label_path} has values outside 0..255")
        return values.astype(np.uint8)


def jobs_from_paths(paths: list[str], config: IngestConfig) -> tuple[list[SourceJob], list[dict]]:
    """Turn command-line sources into jobs.

    Each path is a file, a folder (searched recursively for scans; a folder of DICOM files is one
    source) or a ``.csv`` list with columns ``path`` and optionally ``patient_id``, ``label``,
    ``modality``, ``split``.

    Returns:
        ``(jobs, problems)``: problems are failure rows for paths that do not exist or lists that
        cannot be parsed, so that the run reports them instead of stopping.
    """
    from semgen_ray.io.sources import find_radiographs, find_sources

    find = find_radiographs if config.kind == "2d" else find_sources
    jobs: list[SourceJob] = []
    problems: list[dict] = []
    for raw in paths:
        # absolute (symlinks kept as named): the manifest's ``source`` must not depend on the folder
        # the ingest ran in; a CSV list's relative entries resolve against the CSV's own folder
        path = Path(os.path.abspath(raw))
        if path.suffix.lower() == ".csv" and path.is_file():
            rows_jobs, rows_problems = _jobs_from_csv(path)
            jobs += rows_jobs
            problems += rows_problems
            continue
        if not path.exists():
            problems.append({"patient_id": sanitize_patient_id(path.name), "source": str(path),
                             "error": f"{raw} does not exist"})
            continue
        try:
            found = find([str(path)])
        except ValueError as err:  # a file of no format this ingest reads: its failure row, not a crash
            problems.append({"patient_id": sanitize_patient_id(path.name), "source": str(path), "error": str(err)})
            continue
        if not found:
            what = "DICOM, PNG, JPEG or NIfTI 2D image" if config.kind == "2d" else "NIfTI, DICOM, MetaImage or NRRD image"
            problems.append({"patient_id": sanitize_patient_id(path.name), "source": str(path),
                             "error": f"no {what} found in {raw}"})
        for src in found:
            tag = _dicom_patient_id(src) if config.id_from == "dicom" and src.format == "dicom" else None
            if tag is not None:  # the user asked for this id: validated as it is, never rewritten
                jobs.append(SourceJob(src, tag))
            else:
                default = src.patient_id if config.kind == "2d" else _default_id(src, path)  # 2D: the file's stem
                jobs.append(SourceJob(src, sanitize_patient_id(default)))
    return jobs, problems


def _dicom_patient_id(source) -> str | None:
    """The PatientID tag of a DICOM source's first file (header only), or None when absent."""
    import pydicom

    for file in source.files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["PatientID"])
        except Exception:  # noqa: BLE001 - an unreadable file is reported when the source is read
            continue
        value = str(ds.get("PatientID", "") or "").strip()
        return value or None
    return None


def _default_id(source, root: Path) -> str:
    """The file stem for image files. For a DICOM folder, the nearest enclosing folder whose name is
    not a DICOM UID (digits and dots), so ``LIDC-IDRI-0001/<study UID>/<series UID>`` gives
    ``LIDC-IDRI-0001``; the search stops at ``root``, the folder given on the command line."""
    if source.format != "dicom":
        return source.patient_id
    folder = Path(source.path).resolve()
    stop = root.resolve().parent
    while _UID_RE.match(folder.name) and folder.parent != stop and folder.parent != folder:
        folder = folder.parent
    return folder.name if not _UID_RE.match(folder.name) else source.patient_id


def _jobs_from_csv(path: Path) -> tuple[list[SourceJob], list[dict]]:
    from semgen_ray.io import find_sources

    jobs, problems = [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            return [], [{"patient_id": sanitize_patient_id(path.stem), "source": str(path),
                         "error": f"{path} needs a 'path' column"}]
        for line, row in enumerate(reader, start=2):
            src_path = Path(row["path"])
            if not src_path.is_absolute():
                src_path = path.parent / src_path
            pid = (row.get("patient_id") or "").strip()
            found = find_sources([str(src_path)]) if src_path.exists() else []
            if len(found) != 1:
                why = "does not exist" if not src_path.exists() else f"holds {len(found)} images, not 1"
                problems.append({"patient_id": pid or sanitize_patient_id(src_path.name),
                                 "source": str(src_path), "error": f"{path}:{line}: {src_path} {why}"})
                continue
            label = (row.get("label") or "").strip() or None
            if label and not Path(label).is_absolute():
                label = str(path.parent / label)
            jobs.append(SourceJob(
                found[0], pid or sanitize_patient_id(found[0].patient_id), label_path=label,
                modality=(row.get("modality") or "").strip() or None,
                split=(row.get("split") or "").strip() or None
            ))
    return jobs, problems
