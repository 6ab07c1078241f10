"""DICOM series reader: equality with SimpleITK, ordering, several series, irregular acquisitions."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from semgen_ray.io import ReadError, Source, find_sources, read_source

pydicom = pytest.importorskip("pydicom")


def _read_one(folder, **options):
    volumes = read_source(Source(str(folder), "dicom"), **options)
    assert len(volumes) == 1
    return volumes[0]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_lidc_slab_equals_simpleitk(lidc_series, sitk_series, index):
    folder = lidc_series[index]
    vol = _read_one(folder)
    img, expected = sitk_series(folder)
    assert vol.shape == expected.shape
    assert vol.array.dtype == np.int16 and vol.array.flags.c_contiguous
    np.testing.assert_array_equal(vol.array, expected)  # HU, after rescale
    np.testing.assert_allclose(vol.spacing, img.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(vol.direction, img.GetDirection(), atol=1e-6)
    assert vol.modality == "CT"
    assert vol.warnings == ()
    assert vol.array.min() < -1000  # air / padding in HU, so the rescale was applied
    ds = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    assert vol.extra == {"series_uid": ds.SeriesInstanceUID, "study_uid": ds.StudyInstanceUID,
                         "series_number": int(ds.SeriesNumber), "patient_id_tag": ds.PatientID}


def test_file_names_do_not_change_the_volume(lidc_series, copy_dicom_series, tmp_path):
    folder = lidc_series[0]
    reference = _read_one(folder)
    # Scrambled names, ordered neither by position nor by instance number.
    n = len(list(folder.glob("*.dcm")))
    perm = np.random.default_rng(0).permutation(n)
    copy_dicom_series(folder, tmp_path / "scrambled", names=lambda i, f: f"x{perm[i]:02d}.dcm")
    vol = _read_one(tmp_path / "scrambled")
    np.testing.assert_array_equal(vol.array, reference.array)
    assert vol.spacing == reference.spacing and vol.origin == reference.origin


def test_extensionless_dicom_files_are_found(lidc_series, copy_dicom_series, tmp_path):
    copy_dicom_series(lidc_series[2], tmp_path / "IMG", names=lambda i, f: f"IM{i:04d}")
    sources = find_sources([tmp_path])
    assert [s.format for s in sources] == ["dicom"] and len(sources[0].files) == 11
    np.testing.assert_array_equal(read_source(sources[0])[0].array, _read_one(lidc_series[2]).array)


def test_two_series_in_one_folder_give_two_volumes(lidc_series, copy_dicom_series, tmp_path):
    mixed = tmp_path / "mixed"
    copy_dicom_series(lidc_series[1], mixed, names=lambda i, f: f"a{i:03d}.dcm")
    copy_dicom_series(lidc_series[2], mixed, names=lambda i, f: f"b{i:03d}.dcm")
    volumes = read_source(Source(str(mixed), "dicom"))
    assert len(volumes) == 2
    by_uid = {v.extra["series_uid"]: v for v in volumes}
    for folder in lidc_series[1:]:
        single = _read_one(folder)
        np.testing.assert_array_equal(by_uid[single.extra["series_uid"]].array, single.array)
        assert by_uid[single.extra["series_uid"]].spacing == single.spacing


_C, _S = np.cos(np.radians(20)), np.sin(np.radians(20))
ORIENTATIONS = {
    "axial": ((1, 0, 0), (0, 1, 0)),
    "axial_flipped": ((-1, 0, 0), (0, -1, 0)),
    "axial_feet_first": ((1, 0, 0), (0, -1, 0)),  # normal points inferior
    "sagittal": ((0, 1, 0), (0, 0, -1)),
    "coronal": ((1, 0, 0), (0, 0, -1)),
    "oblique_about_z": ((_C, _S, 0), (-_S, _C, 0)),
    "oblique_about_y": ((_C, 0, _S), (0, 1, 0)),
}


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_orientation_matches_simpleitk(lidc_series, geometry_series, sitk_series, tmp_path, name):
    """Non-square slices, unequal PixelSpacing and shuffled names: catches row/column swaps."""
    row_dir, col_dir = ORIENTATIONS[name]
    folder = geometry_series(lidc_series[2], tmp_path / name, row_dir, col_dir,
                             order=[5, 3, 8, 1, 0, 10, 2, 9, 4, 7, 6])
    vol = _read_one(folder)
    img, expected = sitk_series(folder)
    assert vol.shape == expected.shape
    np.testing.assert_array_equal(vol.array, expected)
    np.testing.assert_allclose(vol.spacing, img.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(vol.direction, img.GetDirection(), atol=1e-5)


def test_axial_pixel_spacing_is_row_then_column(lidc_series, geometry_series, tmp_path):
    folder = geometry_series(lidc_series[2], tmp_path / "s", (1, 0, 0), (0, 1, 0), pixel_spacing=(0.5, 0.8),
                             step=2.0, crop=(40, 56))
    vol = _read_one(folder)
    # 56 columns along x at 0.8 mm (column spacing), 40 rows along y at 0.5 mm (row spacing).
    assert vol.shape == (56, 40, 11)
    np.testing.assert_allclose(vol.spacing, (0.8, 0.5, 2.0), atol=1e-6)


def _drop_middle_slice(folder, dst, copy_dicom_series):
    files = copy_dicom_series(folder, dst)
    files = sorted(files, key=lambda p: float(p.stem))
    files[len(files) // 2].unlink()
    return dst


def test_uneven_spacing_warns(lidc_series, copy_dicom_series, tmp_path):
    folder = _drop_middle_slice(lidc_series[2], tmp_path / "gap", copy_dicom_series)
    vol = _read_one(folder)
    assert vol.shape[2] == 10
    assert any("uneven slice spacing" in w and "1 missing" in w for w in vol.warnings)
    assert vol.spacing[2] == pytest.approx(2.5)


def test_uneven_spacing_resampled_onto_regular_grid(lidc_series, copy_dicom_series, tmp_path):
    full = _read_one(lidc_series[2])
    folder = _drop_middle_slice(lidc_series[2], tmp_path / "gap", copy_dicom_series)
    vol = _read_one(folder, uneven="resample")
    assert vol.shape == full.shape and vol.spacing == pytest.approx(full.spacing)
    assert vol.origin == pytest.approx(full.origin)
    assert any("resampled" in w for w in vol.warnings)
    gap = 5  # the dropped slice (11 slices; index 5 in position order)
    keep = [k for k in range(full.shape[2]) if k != gap]
    np.testing.assert_array_equal(vol.array[:, :, keep], full.array[:, :, keep])
    neighbours = (full.array[:, :, gap - 1].astype(np.float32) + full.array[:, :, gap + 1]) / 2
    np.testing.assert_allclose(vol.array[:, :, gap], neighbours, atol=0.5 + 1e-3)


def test_uneven_spacing_error_mode(lidc_series, copy_dicom_series, tmp_path):
    folder = _drop_middle_slice(lidc_series[2], tmp_path / "gap", copy_dicom_series)
    with pytest.raises(ReadError, match="uneven slice spacing"):
        _read_one(folder, uneven="error")


def test_gantry_tilt_is_removed(lidc_series, geometry_series, tmp_path):
    """Each slice drifts one column (0.8 mm) further along +x: a shear the reader must undo."""
    straight = _read_one(geometry_series(lidc_series[2], tmp_path / "straight", (1, 0, 0), (0, 1, 0)))
    lateral = [(0.8 * k, 0.0, 0.0) for k in range(11)]
    tilted_dir = geometry_series(lidc_series[2], tmp_path / "tilted", (1, 0, 0), (0, 1, 0), lateral=lateral)
    vol = _read_one(tilted_dir)
    assert any("gantry tilt" in w and "removed" in w for w in vol.warnings)
    assert vol.shape == straight.shape and vol.spacing == pytest.approx(straight.spacing)
    assert vol.origin == pytest.approx(straight.origin)
    for k in range(vol.shape[2]):  # slice k moved k voxels along x on the orthogonal grid
        np.testing.assert_array_equal(vol.array[k:, :, k], straight.array[: vol.shape[0] - k, :, k])
    ignored = _read_one(tilted_dir, tilt="ignore")
    np.testing.assert_array_equal(ignored.array, straight.array)
    assert any("gantry tilt" in w and "ignored" in w for w in ignored.warnings)
    with pytest.raises(ReadError, match="gantry tilt"):
        _read_one(tilted_dir, tilt="error")


def test_duplicate_positions_keep_first(lidc_series, copy_dicom_series, tmp_path):
    folder = tmp_path / "dup"
    files = copy_dicom_series(lidc_series[2], folder)
    ds = pydicom.dcmread(files[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["duplicate"])
    ds.InstanceNumber = 999
    ds.PixelData = (ds.pixel_array + 7).astype(ds.pixel_array.dtype).tobytes()
    ds.save_as(folder / "zz_duplicate.dcm")
    reference = _read_one(lidc_series[2])
    vol = _read_one(folder)
    np.testing.assert_array_equal(vol.array, reference.array)  # the original (lower InstanceNumber) kept
    assert any("duplicate positions" in w for w in vol.warnings)
    with pytest.raises(ReadError, match="share a position"):
        _read_one(folder, duplicates="error")


def test_non_image_objects_are_skipped(lidc_series, copy_dicom_series, pydicom_testfile, tmp_path):
    folder = tmp_path / "with_sr"
    copy_dicom_series(lidc_series[2], folder)
    shutil.copyfile(pydicom_testfile("test-SR.dcm"), folder / "report.dcm")
    vol = _read_one(folder)
    np.testing.assert_array_equal(vol.array, _read_one(lidc_series[2]).array)
    assert vol.warnings == ()


def test_unusable_series_is_skipped_with_note(lidc_series, copy_dicom_series, pydicom_testfile, tmp_path):
    folder = tmp_path / "with_colour"
    copy_dicom_series(lidc_series[2], folder)
    shutil.copyfile(pydicom_testfile("SC_rgb_small_odd.dcm"), folder / "screenshot.dcm")
    vol = _read_one(folder)
    assert vol.shape == (512, 512, 11)
    assert any(w.startswith("skipped series") for w in vol.warnings)


def test_image_without_geometry_alone_is_an_error(pydicom_testfile, tmp_path):
    shutil.copyfile(pydicom_testfile("SC_rgb_small_odd.dcm"), tmp_path / "sc.dcm")
    with pytest.raises(ReadError, match="not a cross-sectional image"):
        read_source(Source(str(tmp_path), "dicom"))


def test_truncated_file_is_a_read_error(lidc_series, tmp_path):
    data = next(lidc_series[0].glob("*.dcm")).read_bytes()
    (tmp_path / "half.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(ReadError, match="truncated"):
        read_source(Source(str(tmp_path), "dicom"))


def test_truncated_pixel_data_is_a_read_error(pydicom_testfile):
    """Refused from the header, before decoding: the declared size against the bytes present."""
    with pytest.raises(ReadError, match=r"MR_truncated\.dcm: pixel data holds 8130 bytes, but 64x64 pixels "
                                        r"at 16 bits need 8192 \(truncated"):
        read_source(pydicom_testfile("MR_truncated.dcm"))


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_transfer_syntaxes_decode_alike(pydicom_testfile, name):
    [reference] = read_source(pydicom_testfile("MR_small.dcm"))
    [vol] = read_source(pydicom_testfile(name))
    np.testing.assert_array_equal(vol.array, reference.array)


def test_no_images_is_a_read_error(pydicom_testfile, tmp_path):
    shutil.copyfile(pydicom_testfile("test-SR.dcm"), tmp_path / "report.dcm")
    with pytest.raises(ReadError, match="no DICOM image"):
        read_source(Source(str(tmp_path), "dicom"))


@pytest.mark.parametrize("name, modality", [("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")])
def test_single_file_matches_simpleitk(pydicom_testfile, name, modality):
    sitk = pytest.importorskip("SimpleITK")
    path = pydicom_testfile(name)
    [vol] = read_source(path)
    img = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(img).transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing[:2], img.GetSpacing()[:2], atol=1e-6)
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), atol=1e-4)
    assert vol.modality == modality
    assert any("single slice" in w for w in vol.warnings)


def test_modality_argument_overrides_tag(lidc_series):
    assert _read_one(lidc_series[2]).modality == "CT"
    assert read_source(Source(str(lidc_series[2]), "dicom"), modality="OT")[0].modality == "OT"


def test_grid_frame_offset_multiframe_matches_simpleitk(pydicom_testfile):
    sitk = pytest.importorskip("SimpleITK")
    path = pydicom_testfile("rtdose.dcm")
    [vol] = read_source(path)
    img = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(img).transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing, img.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), atol=1e-3)
    assert vol.modality == "OT"


def test_enhanced_multiframe_equals_single_frame_series(lidc_series, tmp_path):
    """An enhanced (per-frame functional groups) file built from a slab reads as the slab does."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    folder = lidc_series[2]
    reference = _read_one(folder)
    slices = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    slices = slices[::-1]  # frame order must not matter either
    ds = slices[0]
    ds.PixelData = np.stack([s.pixel_array for s in slices]).tobytes()
    ds.NumberOfFrames = len(slices)

    def item(**kw):
        d = Dataset()
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    ds.PerFrameFunctionalGroupsSequence = Sequence([
        item(PlanePositionSequence=Sequence([item(ImagePositionPatient=s.ImagePositionPatient)]))
        for s in slices])
    ds.SharedFunctionalGroupsSequence = Sequence([item(
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=ds.ImageOrientationPatient)]),
        PixelMeasuresSequence=Sequence([item(PixelSpacing=ds.PixelSpacing, SliceThickness=ds.SliceThickness)]),
        PixelValueTransformationSequence=Sequence([item(RescaleSlope=ds.RescaleSlope,
                                                        RescaleIntercept=ds.RescaleIntercept)]),
    )])
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope",
                "RescaleIntercept"):
        delattr(ds, tag)
    ds.save_as(tmp_path / "enhanced.dcm")
    [vol] = read_source(tmp_path / "enhanced.dcm")
    np.testing.assert_array_equal(vol.array, reference.array)
    assert vol.spacing == pytest.approx(reference.spacing)
    assert vol.origin == pytest.approx(reference.origin)


def test_bad_option_values_are_rejected(lidc_series):
    with pytest.raises(ValueError, match="uneven"):
        _read_one(lidc_series[2], uneven="maybe")
    with pytest.raises(ValueError, match="modality"):
        _read_one(lidc_series[2], modality="PET")
