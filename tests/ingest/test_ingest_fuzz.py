"""Ingest of a folder mixing good real scans with malformed files (issue 7, "Bad input and safety").

Every good scan must be stored and every malformed one reported failed with its reason: one bad
scan never stops the run, and none crashes a worker. The malformed files are the catalogue of
``tests/io/malformed_inputs.py`` (all of them read in a memory-limited child by
``tests/io/test_io_fuzz.py``); here a batch of them, one of each kind, goes through ``ingest``.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from semgen_ray.config import StoreConfig
from semgen_ray.ingest import ingest
from semgen_ray.io import find_sources, read_source
from semgen_ray.store import open_store

pytestmark = pytest.mark.usefixtures("ray_local")
pytest.importorskip("SimpleITK")
pytest.importorskip("pydicom")
pytest.importorskip("nibabel")

BATCH = [  # one or two of each kind; all must fail
    "nrrd-truncated-after-header", "nrrd-huge-sizes", "nrrd-below-max-voxels-but-no-data", "nrrd-wrong-magic",
    "nrrd-unknown-type", "nrrd-random-bytes", "nhdr-raw-truncated", "nhdr-data-file-pattern-huge-range",
    "mha-truncated-mid-data", "mha-ndims-100", "mha-compressed-data-size-huge", "mha-dimsize-zero",
    "mhd-huge-dimsize", "nii-truncated-in-header", "nii-missing-last-byte", "nii-wrong-magic", "nii-huge-dims",
    "nii-sform-offset-nan", "niigz-truncated-just-after-header", "nii2-dims-overflow-int64", "nii-random-bytes",
    "dcm-truncated-just-into-pixels", "dcm-rows-columns-65535", "dcm-frames-huge-shared-geometry",
    "dcm-rle-rows-columns-65535", "dcm-jpeg2000-rows-columns-65535", "dcm-pixel-spacing-nan",
    "dcm-series-slice-truncated-before-pixels", "dcm-series-with-random-dcm",
    "dcm-random-bytes-after-magic", "dcm-extensionless-random-with-magic",
]
_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _cases_module():
    name = "semgen_malformed_inputs"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "io" / "malformed_inputs.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


def _write_bad(case, folder: Path) -> Path:
    """The case's files in ``folder/<case name>/``, its image file renamed after the case (patient ids
    come from file stems: every ``t.nrrd`` would otherwise claim the id ``t``). Returns the source path."""
    case.write(folder)
    if case.read == ".":
        return folder  # a DICOM folder: its id is the folder's name
    ext = next(e for e in _EXTENSIONS if case.read.lower().endswith(e))
    target = folder / f"{case.name}{ext}"
    (folder / case.read).rename(target)
    return target


def test_good_scans_are_stored_and_every_malformed_one_fails_with_its_reason(tmp_path, real_data):
    mi = _cases_module()
    catalogue = {c.name: c for c in mi.all_cases()}
    src = tmp_path / "incoming"
    # Good real scans: a DICOM series, a NRRD, a MetaImage (with its detached data).
    lidc = next((real_data / "lidc_slabs" / "LIDC-IDRI-0003").glob("*/*"))
    shutil.copytree(lidc, src / "LIDC-IDRI-0003")
    shutil.copy(real_data / "mri_nrrd" / "brain1_image.nrrd", src / "brain1.nrrd")
    shutil.copy(real_data / "metaimage" / "HeadMRVolume.mhd", src / "HeadMRVolume.mhd")
    shutil.copy(real_data / "metaimage" / "HeadMRVolume.raw", src / "HeadMRVolume.raw")
    good = {"LIDC-IDRI-0003": lidc, "brain1": real_data / "mri_nrrd" / "brain1_image.nrrd",
            "HeadMRVolume": real_data / "metaimage" / "HeadMRVolume.mhd"}
    bad = {name: _write_bad(catalogue[name], src / "bad" / name) for name in BATCH}
    assert all(catalogue[name].expect == "error" for name in BATCH)
    assert len(find_sources([src])) == len(good) + len(bad)

    report = ingest([src], StoreConfig(uri=str(tmp_path / "fuzz.zarr")), progress=False)

    assert sorted(report.written) == sorted(good)
    failed = {source: (pid, error) for pid, source, error in report.failed}
    assert len(report.failed) == len(bad), report.summary()
    for name, path in bad.items():
        assert str(path) in failed, f"{name} ({path}) is not in the failed list:\n{report.summary()}"
        pid, error = failed[str(path)]
        assert error and "\n" not in error and not error.startswith("worker crashed"), (name, error)
        assert re.match(r"[A-Za-z]+Error: ", error) is None, f"{name}: not a ReadError: {error}"
        culprit = catalogue[name].culprit or (path.name if path.is_file() else
                                              min(p.name for p in path.iterdir()))
        assert culprit in error or str(path) in error, f"{name}: the reason names neither file nor source: {error}"
        # ingest passes ingest.max_voxels to every reader: a header declaring more is refused by that first
        expected = f"{catalogue[name].match}|more than max_voxels" if catalogue[name].match else None
        if expected:
            assert re.search(expected, error), f"{name}: expected /{expected}/: {error}"

    store = open_store(tmp_path / "fuzz.zarr")
    assert store.patient_ids == sorted(good)
    rows = {r["patient_id"]: r for r in store.manifest_rows()}
    assert sum(r["status"] == "failed" for r in rows.values()) == len(bad)
    for pid, path in good.items():
        [expected] = read_source(find_sources([path])[0])
        array, _ = store.read(pid)
        assert array.shape == expected.shape and rows[pid]["status"] == "ok"
        assert np.array_equal(array, expected.array.astype(array.dtype))
