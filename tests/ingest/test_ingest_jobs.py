"""Command-line sources become jobs whose recorded ``source`` does not depend on the current folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from semgen_ray.config import IngestConfig
from semgen_ray.ingest.jobs import jobs_from_paths


def _write_nifti(path: Path, data: np.ndarray) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))


def test_relative_sources_and_csv_entries_are_recorded_absolute(tmp_path, monkeypatch):
    """A relative path on the command line is stored as an absolute one (the manifest's ``source``);
    a CSV list's relative ``path`` and ``label`` resolve against the CSV's folder, not the current one."""
    scan = np.zeros((8, 8, 8), np.int16)
    _write_nifti(tmp_path / "scans" / "a.nii.gz", scan)
    _write_nifti(tmp_path / "lists" / "images" / "b.nii.gz", scan)
    _write_nifti(tmp_path / "lists" / "images" / "b_mask.nii.gz", scan.astype(np.uint8))
    (tmp_path / "lists" / "cohort.csv").write_text("path,patient_id,label,modality,split\n"
                                                    "images/b.nii.gz,pb,images/b_mask.nii.gz,CT,train\n")
    monkeypatch.chdir(tmp_path)
    jobs, problems = jobs_from_paths(["scans/a.nii.gz", "lists/cohort.csv", "scans/missing.nii.gz"], IngestConfig())
    by_id = {j.patient_id: j for j in jobs}
    assert set(by_id) == {"a", "pb"}
    assert by_id["a"].source == str(tmp_path / "scans" / "a.nii.gz")
    assert by_id["pb"].source == str(tmp_path / "lists" / "images" / "b.nii.gz")
    assert by_id["pb"].label_path == str(tmp_path / "lists" / "images" / "b_mask.nii.gz")
    assert all(os.path.isabs(j.source) for j in jobs)
    (missing,) = problems
    assert missing["source"] == str(tmp_path / "scans" / "missing.nii.gz") and "does not exist" in missing["error"]
