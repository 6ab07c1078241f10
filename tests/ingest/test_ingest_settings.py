"""Re-running the ingest into the same store with other settings: the settings that shape a stored
patient (``ingest.target_spacing``, ``ingest.uneven_spacing``, ``ingest.modality``, ``store.chunks``,
``store.clevel``) are recorded with it, and a patient is skipped only when its source *and* those
settings are unchanged; otherwise it is rewritten, with a note saying which setting changed. Splits
and ids follow the run's settings too (local Ray)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from semgen_ray.config import IngestConfig, StoreConfig
from semgen_ray.ingest import ingest
from semgen_ray.store import open_store

pytestmark = pytest.mark.usefixtures("ray_local")


def _ct_nrrd(path: Path, shape=(32, 32, 16), spacing=(1.0, 1.0, 2.0)) -> np.ndarray:
    """A CT-like NRRD (HU with air), identity direction; returns the array in (x, y, z)."""
    import SimpleITK as sitk

    a = np.random.default_rng(0).integers(-1000, 1000, shape).astype(np.int16)
    image = sitk.GetImageFromArray(a.transpose(2, 1, 0))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return a


def _files(uri: Path, patient_id: str) -> dict[str, int]:
    """Modification times of a patient's array files: unchanged when it was not rewritten."""
    root = Path(uri) / "volumes" / patient_id
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_another_target_spacing_rewrites_and_the_same_one_skips(tmp_path):
    _ct_nrrd(tmp_path / "ct.nrrd")
    uri = tmp_path / "s.zarr"

    first = ingest([tmp_path / "ct.nrrd"], uri, progress=False)
    assert first.written == ["ct"]
    assert open_store(uri).read("ct")[0].shape == (32, 32, 16)

    second = ingest([tmp_path / "ct.nrrd"], uri, IngestConfig(target_spacing=(2.0, 2.0, 2.0)), progress=False)
    assert second.written == ["ct"] and second.skipped == []  # before: skipped as unchanged
    array, meta = open_store(uri).read("ct")
    assert array.shape == (16, 16, 16) and meta["spacing"] == (2.0, 2.0, 2.0)
    assert meta["ingest"] == {"modality": None, "target_spacing": [2.0, 2.0, 2.0]}  # the record
    assert second.notes == [("ct", "rewritten: ingest.target_spacing changed: native -> [2, 2, 2]")]
    assert "NOTE   ct: rewritten: ingest.target_spacing changed: native -> [2, 2, 2]" in second.summary()

    before = _files(uri, "ct")
    third = ingest([tmp_path / "ct.nrrd"], uri, IngestConfig(target_spacing=(2.0, 2.0, 2.0)), progress=False)
    assert third.written == [] and third.skipped == ["ct"] and third.notes == []
    assert _files(uri, "ct") == before  # not rewritten

    back = ingest([tmp_path / "ct.nrrd"], uri, progress=False)
    assert back.written == ["ct"] and open_store(uri).read("ct")[0].shape == (32, 32, 16)
    assert [row["shape"] for row in open_store(uri).manifest_rows()] == [[32, 32, 16]]


def test_another_uneven_spacing_policy_rewrites_the_uneven_series_only(tmp_path, write_ct_series):
    """``warn`` → ``resample`` rewrites the series with a missing slice (9 → 10 slices) and skips an
    even series, which the policy does not change; a re-run with ``resample`` skips both."""
    write_ct_series(tmp_path / "gap", [k for k in range(10) if k != 5])
    write_ct_series(tmp_path / "even", range(10))
    sources = [tmp_path / "gap", tmp_path / "even"]
    uri = tmp_path / "s.zarr"

    def brightening(array):  # how much brighter than the first each stored slice is
        return [float(v) for v in (array - array[:, :, :1]).mean(axis=(0, 1))]

    first = ingest(sources, uri, IngestConfig(uneven_spacing="warn"), progress=False)
    assert sorted(first.written) == ["even", "gap"]
    store = open_store(uri)
    assert store.read("gap")[0].shape == (128, 128, 9)
    even_files = _files(uri, "even")

    second = ingest(sources, uri, IngestConfig(uneven_spacing="resample"), progress=False)
    assert second.written == ["gap"] and second.skipped == ["even"]  # before: both skipped
    array, meta = open_store(uri).read("gap")
    assert array.shape == (128, 128, 10) and brightening(array) == [20.0 * k for k in range(10)]
    assert second.notes == [("gap", "rewritten: ingest.uneven_spacing changed: warn -> resample")]
    # recorded only where it applied: the even series is the same under any policy
    assert meta["ingest"]["uneven_spacing"] == "resample" and "uneven_spacing" not in store.meta("even")["ingest"]
    assert _files(uri, "even") == even_files

    gap_files = _files(uri, "gap")
    third = ingest(sources, uri, IngestConfig(uneven_spacing="resample"), progress=False)
    assert third.written == [] and sorted(third.skipped) == ["even", "gap"]
    assert _files(uri, "gap") == gap_files

    refused = ingest(sources, uri, IngestConfig(uneven_spacing="error"), progress=False)
    assert refused.skipped == ["even"] and [f[0] for f in refused.failed] == ["gap"]
    assert "uneven slice spacing" in refused.failed[0][2]
    assert open_store(uri).patient_ids == ["even"]


def test_another_modality_or_store_layout_rewrites(tmp_path):
    """``ingest.modality`` (stored dtype and mapping), ``store.chunks`` and ``store.clevel``."""
    import zarr

    _ct_nrrd(tmp_path / "ct.nrrd")
    src = [tmp_path / "ct.nrrd"]
    uri = str(tmp_path / "s.zarr")
    cfg = StoreConfig(uri=uri, chunks=(16, 16, 16))
    assert ingest(src, cfg, progress=False).written == ["ct"]
    assert open_store(uri).read("ct")[0].dtype == np.int16

    mr = ingest(src, cfg, IngestConfig(modality="MR"), progress=False)
    assert mr.written == ["ct"]
    array, meta = open_store(uri).read("ct")
    assert array.dtype == np.float32 and meta["modality"] == "MR"
    assert meta["intensity"]["rule"] == "foreground_percentile"
    assert mr.notes == [("ct", "rewritten: ingest.modality changed: detected -> MR")]

    rechunked = ingest(src, StoreConfig(uri=uri, chunks=(8, 8, 8)), IngestConfig(modality="MR"), progress=False)
    assert rechunked.written == ["ct"] and "store.chunks changed" in rechunked.notes[0][1]
    assert zarr.open_array(uri, path="volumes/ct", mode="r").chunks == (8, 8, 8)

    cfg9 = StoreConfig(uri=uri, chunks=(8, 8, 8), clevel=9)
    recompressed = ingest(src, cfg9, IngestConfig(modality="MR"), progress=False)
    assert recompressed.written == ["ct"] and recompressed.notes == [("ct", "rewritten: store.clevel changed: 3 -> 9")]
    assert zarr.open_array(uri, path="volumes/ct", mode="r").compressors[0].clevel == 9

    before = _files(uri, "ct")
    again = ingest(src, cfg9, IngestConfig(modality="MR"), progress=False)
    assert again.written == [] and again.skipped == ["ct"] and _files(uri, "ct") == before


def test_split_and_id_changes_follow_the_run(tmp_path):
    """A changed split moves the stored patient (its attribute, voxels kept); a changed id (the CSV's
    ``patient_id``) stores the source under the new id and removes the old one, never both."""
    _ct_nrrd(tmp_path / "ct.nrrd")
    uri = tmp_path / "s.zarr"

    def csv_list(patient_id):
        with (tmp_path / "list.csv").open("w", newline="") as f:
            csv.writer(f).writerows([["path", "patient_id"], ["ct.nrrd", patient_id]])
        return [tmp_path / "list.csv"]

    assert ingest(csv_list("A"), uri, IngestConfig(split_fractions=(1.0, 0.0, 0.0)), progress=False).written == ["A"]
    before = _files(uri, "A")
    moved = ingest(csv_list("A"), uri, IngestConfig(split_fractions=(0.0, 0.0, 1.0)), progress=False)
    store = open_store(uri)
    assert store.meta("A")["split"] == "test" and store.manifest_rows()[0]["split"] == "test"
    assert moved.skipped == ["A"] and moved.written == [] and _files(uri, "A")["c/0/0/0"] == before["c/0/0/0"]
    assert moved.notes[0][1].startswith("split train -> test")

    renamed = ingest(csv_list("B"), uri, IngestConfig(split_fractions=(0.0, 0.0, 1.0)), progress=False)
    assert renamed.written == ["B"]
    store = open_store(uri)
    assert store.stored_ids() == ["B"] and [r["patient_id"] for r in store.manifest_rows()] == ["B"]
    assert renamed.removed == ["A"]
    assert ("A", f"removed: its source {tmp_path / 'ct.nrrd'} is stored as B now") in renamed.notes
    assert ingest(csv_list("B"), uri, IngestConfig(split_fractions=(0.0, 0.0, 1.0)), progress=False).skipped == ["B"]


def test_patients_stored_without_the_settings_record(tmp_path):
    """A patient written by an older semgen_ray (no ``ingest`` attribute): kept, with a note, while its
    attributes agree with the settings; rewritten, with the new record, when they do not."""
    import zarr

    _ct_nrrd(tmp_path / "ct.nrrd")
    uri = str(tmp_path / "s.zarr")
    assert ingest([tmp_path / "ct.nrrd"], uri, progress=False).written == ["ct"]
    arr = zarr.open_array(uri, path="volumes/ct", mode="r+")
    attrs = dict(arr.attrs["semgen_ray"])
    attrs.pop("ingest", None)
    arr.attrs["semgen_ray"] = attrs

    kept = ingest([tmp_path / "ct.nrrd"], uri, progress=False)
    assert kept.skipped == ["ct"] and len(kept.notes) == 1
    assert "older semgen_ray" in kept.notes[0][1] and "--force rewrites it" in kept.notes[0][1]

    rewritten = ingest([tmp_path / "ct.nrrd"], uri, IngestConfig(target_spacing=(2.0, 2.0, 4.0)), progress=False)
    assert rewritten.written == ["ct"]
    assert rewritten.notes == [("ct", "rewritten: ingest.target_spacing is [2, 2, 4], the patient is stored at "
                                      "[1, 1, 2] (stored by an older semgen_ray, without its ingest settings)")]
    meta = open_store(uri).meta("ct")
    assert meta["shape"] == (16, 16, 8) and meta["ingest"] == {"modality": None, "target_spacing": [2.0, 2.0, 4.0]}
