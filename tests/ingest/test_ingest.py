"""End-to-end ingest: real files, every kind of bad input, resume, resampling (local Ray)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from semgen_ray.config import IngestConfig, StoreConfig
from semgen_ray.ingest import ingest
from semgen_ray.ingest.__main__ import main as ingest_main
from semgen_ray.store import open_store

pytestmark = pytest.mark.usefixtures("ray_local")


def sitk_lps_array(image):
    """What SimpleITK reads, after the documented reorientation: LPS, axes (x, y, z)."""
    import SimpleITK as sitk

    image = sitk.DICOMOrient(image, "LPS")
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), image.GetSpacing()


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, real_data):
    """The real DICOM, NRRD (with its label, via a CSV list) and MetaImage files, ingested once."""
    tmp = tmp_path_factory.mktemp("real")
    listing = tmp / "mr.csv"
    nrrd = real_data / "mri_nrrd"
    listing.write_text(f"path,patient_id,label,split\n{nrrd / 'brain1_image.nrrd'},brain1,"
                       f"{nrrd / 'brain1_label.nrrd'},test\n")
    uri = str(tmp / "real.zarr")
    code = ingest_main([str(real_data / "lidc_slabs"), str(real_data / "metaimage"), str(listing),
                        "--out", uri, "--no-progress"])
    assert code == 0
    return uri


def test_real_files_are_stored_as_simpleitk_reads_them(real_store, real_data):
    import SimpleITK as sitk

    store = open_store(real_store)
    assert store.patient_ids == ["HeadMRVolume", "LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003",
                                 "brain1"]
    # DICOM series through SimpleITK's GDCM series reader.
    for pid in ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"):
        folder = next((real_data / "lidc_slabs" / pid).glob("*/*"))
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        expected, spacing = sitk_lps_array(reader.Execute())
        array, meta = store.read(pid)
        assert meta["modality"] == "CT" and array.dtype == np.int16
        assert np.array_equal(array, expected)
        assert np.allclose(meta["spacing"], spacing, atol=1e-4)
    for pid, path in (("HeadMRVolume", real_data / "metaimage" / "HeadMRVolume.mhd"),
                      ("brain1", real_data / "mri_nrrd" / "brain1_image.nrrd")):
        expected, spacing = sitk_lps_array(sitk.ReadImage(str(path)))
        array, meta = store.read(pid)
        assert meta["modality"] == "MR" and array.dtype == np.float32
        assert np.array_equal(array, expected.astype(np.float32))
        assert np.allclose(meta["spacing"], spacing, atol=1e-5)
    label_expected, _ = sitk_lps_array(sitk.ReadImage(str(real_data / "mri_nrrd" / "brain1_label.nrrd")))
    assert np.array_equal(store.read_label("brain1"), label_expected)
    rows = {r["patient_id"]: r for r in store.manifest_rows()}
    assert rows["brain1"]["split"] == "test" and rows["brain1"]["has_label"]
    assert all(r["source_sha256"] and r["status"] == "ok" for r in rows.values())


def test_normalisation_on_read_of_real_ct(real_store):
    array, meta = open_store(real_store).read("LIDC-IDRI-0001", normalize=True)
    raw, _ = open_store(real_store).read("LIDC-IDRI-0001")
    assert array.dtype == np.float32 and 0.0 <= array.min() and array.max() <= 1.0
    assert np.allclose(array, np.clip((raw + 1000.0) / 2000.0, 0, 1))


def _write_nifti(path: Path, data: np.ndarray) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))


@pytest.fixture
def mixed_sources(tmp_path, real_data):
    """One folder of good scans and one of each kind of bad input."""
    good = tmp_path / "in"
    good.mkdir()
    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 1500, (24, 20, 12)).astype(np.int16)
    _write_nifti(good / "good_ct.nii.gz", ct)
    shutil.copy(real_data / "metaimage" / "HeadMRVolume.mhd", good / "head.mhd")
    shutil.copy(real_data / "metaimage" / "HeadMRVolume.raw", good / "HeadMRVolume.raw")
    blob = (good / "good_ct.nii.gz").read_bytes()
    (good / "truncated.nii.gz").write_bytes(blob[: len(blob) // 2])
    (good / "garbage.nrrd").write_bytes(b"this is not an image at all" * 10)
    shutil.copy(real_data / "metaimage" / "HeadMRVolume.mhd", good / "orphan.mhd")
    (good / "orphan.mhd").write_text((good / "orphan.mhd").read_text().replace("HeadMRVolume.raw", "gone.raw"))
    _write_nifti(good / "flat2d.nii.gz", ct[:, :, 0])
    import SimpleITK as sitk

    nan = ct.astype(np.float32)
    nan[3, 4, 5] = np.nan
    nan[1, 1, 1] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(nan.transpose(2, 1, 0)), str(good / "nans.nrrd"))
    _write_nifti(good / "nans_nifti.nii.gz", nan)  # ITK alone would read these as 0
    _write_nifti(good / "constant.nii.gz", np.zeros((16, 16, 16), np.int16))
    _write_nifti(good / "thin.nii.gz", ct[:, :, :2])
    big = np.zeros((64, 64, 40), np.int16)
    big[0, 0, 0] = 5
    _write_nifti(good / "huge.nii.gz", big)
    listing = tmp_path / "escape.csv"
    listing.write_text(f"path,patient_id\n{good / 'good_ct.nii.gz'},../x\n")
    return good, listing


EXPECTED_FAILURES = {
    "truncated": "truncated",
    "garbage": "",
    "orphan": "gone.raw",
    "flat2d": "3D",
    "nans": "NaN or infinite",
    "nans_nifti": "NaN or infinite",
    "constant": "constant",
    "thin": "fewer than 8 voxels",
    "huge": "max_voxels",
    "../x": "unsafe patient id",
}


def test_bad_inputs_fail_alone_with_reasons(tmp_path, mixed_sources, capsys):
    good, listing = mixed_sources
    uri = str(tmp_path / "mixed.zarr")
    code = ingest_main([str(good), str(listing), str(tmp_path / "missing_dir"), "--out", uri,
                        "--no-progress", "--set", "ingest.max_voxels=150000"])
    out = capsys.readouterr().out
    assert code == 1
    store = open_store(uri)
    assert store.patient_ids == ["good_ct", "head"]
    rows = {r["patient_id"]: r for r in store.manifest_rows()}
    for pid, fragment in EXPECTED_FAILURES.items():
        assert rows[pid]["status"] == "failed", pid
        assert fragment.lower() in rows[pid]["error"].lower(), (pid, rows[pid]["error"])
        assert "\n" not in rows[pid]["error"]
        assert f"FAILED {pid} " in out
    assert "missing_dir does not exist" in out
    assert not (tmp_path / "x").exists() and not (tmp_path / "mixed.zarr" / "x").exists()
    # Told to tolerate failures, the same run exits 0 (and skips what is already stored).
    assert ingest_main([str(good), "--out", uri, "--no-progress", "--allow-failures",
                        "--set", "ingest.max_voxels=150000"]) == 0
    assert "2 unchanged (skipped)" in capsys.readouterr().out


def test_resume_skips_unchanged_and_rewrites_changed_or_interrupted(tmp_path, real_data):
    import zarr

    src = tmp_path / "src"
    shutil.copytree(real_data / "lidc_slabs", src / "lidc")
    shutil.copytree(real_data / "metaimage", src / "meta")
    store_cfg = StoreConfig(uri=str(tmp_path / "r.zarr"))
    first = ingest([src], store_cfg, progress=False)
    assert first.ok and len(first.written) == 4

    # An interrupted run: one patient's commit never happened and the manifest was never written.
    arr = zarr.open_array(store_cfg.uri, path="volumes/LIDC-IDRI-0002", mode="r+")
    arr.attrs["semgen_ray"] = {"complete": False}
    (tmp_path / "r.zarr" / "manifest.parquet").unlink()
    # And one source changed on disk since.
    mhd = src / "meta" / "HeadMRVolume.raw"
    raw = bytearray(mhd.read_bytes())
    raw[100] = (raw[100] + 1) % 256
    mhd.write_bytes(bytes(raw))

    second = ingest([src], store_cfg, progress=False)
    assert second.ok
    assert sorted(second.written) == ["HeadMRVolume", "LIDC-IDRI-0002"]
    assert sorted(second.skipped) == ["LIDC-IDRI-0001", "LIDC-IDRI-0003"]
    store = open_store(store_cfg.uri)
    assert store.patient_ids == ["HeadMRVolume", "LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"]
    import SimpleITK as sitk

    changed, _ = sitk_lps_array(sitk.ReadImage(str(src / "meta" / "HeadMRVolume.mhd")))
    original, _ = sitk_lps_array(sitk.ReadImage(str(real_data / "metaimage" / "HeadMRVolume.mhd")))
    stored = store.read("HeadMRVolume")[0]
    assert np.array_equal(stored, changed) and not np.array_equal(stored, original)

    third = ingest([src], store_cfg, progress=False)
    assert third.written == [] and len(third.skipped) == 4


def test_resampling_to_a_target_spacing(tmp_path, real_data):
    cfg = IngestConfig(target_spacing=(2.0, 2.0, 2.5))
    report = ingest([real_data / "lidc_slabs" / "LIDC-IDRI-0001"], tmp_path / "rs.zarr", cfg, progress=False)
    assert report.ok
    array, meta = open_store(tmp_path / "rs.zarr").read("LIDC-IDRI-0001")
    assert np.allclose(meta["spacing"], (2.0, 2.0, 2.5))
    assert array.shape[0] == pytest.approx(512 * 0.703125 / 2.0, abs=1)
    assert array.shape[2] == 16


def test_uneven_spacing_keeps_resamples_or_refuses_a_series_with_a_missing_slice(tmp_path,
                                                                                   write_ct_series):
    """ingest.uneven_spacing through ingest: ``warn`` stores the 9 slices as acquired on the median
    2 mm step (noted), ``resample`` stores 10 on a regular 2 mm grid with the missing slice
    interpolated from its neighbours (noted), ``error`` refuses the series."""
    written = write_ct_series(tmp_path / "gap", [k for k in range(10) if k != 5])

    def run(mode):
        uri = tmp_path / f"{mode}.zarr"
        report = ingest([tmp_path / "gap"], uri, IngestConfig(uneven_spacing=mode), progress=False)
        return report, open_store(uri)

    def brightening(array):  # how much brighter than the first each stored slice is
        return [float(v) for v in (array - array[:, :, :1]).mean(axis=(0, 1))]

    report, store = run("warn")
    assert report.ok and report.written == ["gap"]
    array, meta = store.read("gap")
    assert array.shape == (128, 128, 9) and meta["spacing"][2] == pytest.approx(2.0)
    assert brightening(array) == [20.0 * k for k in written]
    assert any("about 1 missing" in w and "kept as acquired" in w for w in meta["warnings"])

    report, store = run("resample")
    assert report.ok and report.written == ["gap"]
    array, meta = store.read("gap")
    assert array.shape == (128, 128, 10) and meta["spacing"][2] == pytest.approx(2.0)
    assert brightening(array) == [20.0 * k for k in range(10)]  # slice 5: the mean of 4 and 6
    assert any("about 1 missing" in w and "resampled" in w for w in meta["warnings"])

    report, store = run("error")
    assert not report.ok and report.written == [] and store.patient_ids == []
    assert "uneven slice spacing" in report.failed[0][2]


def test_duplicate_patient_ids_are_refused(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _write_nifti(tmp_path / sub / "scan.nii.gz",
                     np.random.default_rng(1).integers(-1000, 1000, (12, 12, 12)).astype(np.int16))
    report = ingest([tmp_path / "a", tmp_path / "b"], tmp_path / "d.zarr", progress=False)
    assert len(report.written) == 1
    assert len(report.failed) == 1 and "also produced by" in report.failed[0][2]


def test_one_dicom_patient_id_from_two_folders_is_not_overwritten(tmp_path, real_data):
    series = next((real_data / "lidc_slabs" / "LIDC-IDRI-0001").glob("*/*"))
    for copy in ("first", "second"):
        shutil.copytree(series, tmp_path / copy)
    cfg = IngestConfig(id_from="dicom")
    report = ingest([tmp_path / "first", tmp_path / "second"], tmp_path / "d.zarr", cfg, progress=False)
    assert report.written == ["LIDC-IDRI-0001"]
    assert len(report.failed) == 1 and "also produced by" in report.failed[0][2]
    assert open_store(tmp_path / "d.zarr").meta("LIDC-IDRI-0001")["source"] == str(tmp_path / "first")
    # A later run from yet another folder (different bytes) may not take the id over either.
    import pydicom

    shutil.copytree(series, tmp_path / "third")
    first_file = sorted((tmp_path / "third").iterdir())[0]
    ds = pydicom.dcmread(first_file)
    ds.InstitutionName = "elsewhere"
    ds.save_as(first_file)
    later = ingest([tmp_path / "third"], tmp_path / "d.zarr", cfg, progress=False)
    assert later.written == [] and "already holds" in later.failed[0][2]
    assert open_store(tmp_path / "d.zarr").manifest_rows()[0]["source"] == str(tmp_path / "first")


def test_dicom_patient_id_that_escapes_the_store_is_refused(tmp_path, real_data):
    import pydicom

    series = next((real_data / "lidc_slabs" / "LIDC-IDRI-0002").glob("*/*"))
    shutil.copytree(series, tmp_path / "evil")
    for f in (tmp_path / "evil").iterdir():
        ds = pydicom.dcmread(f)
        ds.PatientID = "../x"
        ds.save_as(f)
    report = ingest([tmp_path / "evil"], tmp_path / "e.zarr", IngestConfig(id_from="dicom"), progress=False)
    assert report.written == [] and "unsafe patient id '../x'" in report.failed[0][2]
    assert not (tmp_path / "x").exists()


def test_store_and_ingest_settings_change_what_is_written(tmp_path, capsys):
    """Through the command line: ``ingest.min_extent`` / ``max_spacing_mm`` decide whether a thin or
    coarse image is refused, ``allow_failures`` the exit code, ``--modality`` (``ingest.modality``)
    and ``ingest.split_fractions`` what the manifest says, ``store.chunks`` / ``store.clevel`` how the
    arrays are laid out and compressed."""
    import json

    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    for name, shape, spacing in [("normal", (32, 32, 16), (1.0, 1.0, 2.0)), ("thin", (32, 32, 4), (1.0, 1.0, 2.0)),
                                 ("coarse", (32, 32, 16), (1.0, 1.0, 60.0))]:
        image = sitk.GetImageFromArray(rng.integers(-1000, 1000, shape[::-1]).astype(np.int16))
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(tmp_path / f"{name}.nrrd"))
    sources = [str(tmp_path / f"{n}.nrrd") for n in ("normal", "thin", "coarse")]

    def run(name, *sets, flags=()):
        uri = str(tmp_path / f"{name}.zarr")
        code = ingest_main([*sources, "--out", uri, "--no-progress", *flags, *[a for s in sets for a in ("--set", s)]])
        capsys.readouterr()
        store = open_store(uri)
        rows = {r["patient_id"]: r for r in store.manifest_rows()}
        meta = {pid: json.loads((tmp_path / f"{name}.zarr" / "volumes" / pid / "zarr.json").read_text())
                for pid in store.patient_ids}
        return code, rows, meta

    code, rows, meta = run("defaults", "ingest.split_fractions=[1, 0, 0]", "store.chunks=[16, 16, 16]",
                           "store.clevel=1")
    assert code == 1 and list(meta) == ["normal"]  # failures without allow_failures: exit 1
    assert "ingest.min_extent" in rows["thin"]["error"] and "ingest.max_spacing_mm" not in rows["thin"]["error"]
    assert "60.0" in rows["coarse"]["error"] and "ingest.max_spacing_mm" in rows["coarse"]["error"]
    assert rows["normal"]["modality"] == "CT" and rows["normal"]["split"] == "train"

    code, rows, changed = run("changed", "ingest.min_extent=4", "ingest.max_spacing_mm=100",
                              "ingest.split_fractions=[0, 0, 1]", "ingest.allow_failures=true",
                              "store.chunks=[8, 8, 8]", "store.clevel=9", flags=["--modality", "MR"])
    assert code == 0 and sorted(changed) == ["coarse", "normal", "thin"]
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert {r["modality"] for r in rows.values()} == {"MR"} and {r["split"] for r in rows.values()} == {"test"}

    def layout(m):
        blosc = [c for c in m["codecs"] if c["name"] == "blosc"]
        return m["chunk_grid"]["configuration"]["chunk_shape"], blosc[0]["configuration"]["clevel"]

    assert layout(meta["normal"]) == ([16, 16, 16], 1) and layout(changed["normal"]) == ([8, 8, 8], 9)
