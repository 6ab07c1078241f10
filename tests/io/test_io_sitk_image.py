"""NIfTI / MetaImage / NRRD reader: equality with SimpleITK and nibabel, and every bad-input message."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from semgen_ray.io import ReadError, Source, read_source

sitk = pytest.importorskip("SimpleITK")


def _read(path, fmt=None, **kw):
    source = Source(str(path), fmt) if fmt else path
    [vol] = read_source(source, **kw)
    return vol


def _sitk_lps(path):
    img = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    return img, sitk.GetArrayFromImage(img).transpose(2, 1, 0)


@pytest.mark.parametrize("rel", ["mri_nrrd/brain1_image.nrrd", "mri_nrrd/brain1_label.nrrd",
                                 "metaimage/HeadMRVolume.mhd"])
def test_real_file_equals_simpleitk(real_data, rel):
    path = real_data / rel
    vol = _read(path)
    img, expected = _sitk_lps(path)
    assert vol.shape == expected.shape and vol.array.flags.c_contiguous
    np.testing.assert_array_equal(vol.array, expected)
    np.testing.assert_allclose(vol.spacing, img.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(vol.direction, img.GetDirection(), atol=1e-6)
    assert vol.modality == "MR"


def test_nrrd_with_flipped_axis_is_reoriented(real_data):
    """brain1 is stored with its y axis running anterior: the reader must flip it to posterior."""
    path = real_data / "mri_nrrd" / "brain1_image.nrrd"
    raw = sitk.ReadImage(str(path))
    assert raw.GetDirection()[4] < 0
    vol = _read(path)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(raw).transpose(2, 1, 0)[:, ::-1, :])
    np.testing.assert_allclose(vol.direction, np.eye(3).ravel(), atol=1e-9)
    np.testing.assert_allclose(vol.spacing, (0.78125, 0.78125, 6.5), atol=1e-4)
    assert vol.shape == (256, 256, 25)


def test_metaimage_known_header(real_data):
    vol = _read(real_data / "metaimage" / "HeadMRVolume.mhd")
    assert vol.shape == (48, 62, 42) and vol.array.dtype == np.uint8
    assert vol.spacing == (4.0, 4.0, 4.0)


@pytest.mark.parametrize("name", ["anatomical.nii", "standard.nii.gz", "reoriented_anat_moved.nii"])
def test_nifti_equals_nibabel_canonical_flipped(nibabel_data, name):
    """nibabel's closest canonical is RAS; flipping x and y gives our LPS."""
    import nibabel

    path = nibabel_data / name
    canonical = nibabel.as_closest_canonical(nibabel.load(path))
    expected = np.asarray(canonical.dataobj)[::-1, ::-1, :]
    vol = _read(path)
    assert vol.shape == expected.shape
    np.testing.assert_array_equal(vol.array, expected)
    np.testing.assert_allclose(vol.spacing, canonical.header.get_zooms()[:3], atol=1e-5)
    corner = canonical.affine @ [vol.shape[0] - 1, vol.shape[1] - 1, 0, 1]  # RAS of our voxel (0, 0, 0)
    np.testing.assert_allclose(vol.origin, corner[:3] * [-1, -1, 1], atol=1e-3)


def test_nifti2_read_like_nifti1(nibabel_data, tmp_path):
    """SimpleITK cannot read NIfTI-2; the nibabel fallback must give what SimpleITK gives for NIfTI-1."""
    import nibabel

    img = nibabel.load(nibabel_data / "anatomical.nii")
    angle = 0.3
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    affine = rot @ img.affine  # oblique, to exercise the direction cosines too
    data = np.asarray(img.dataobj)
    nibabel.save(nibabel.Nifti1Image(data, affine), tmp_path / "one.nii.gz")
    nibabel.save(nibabel.Nifti2Image(data, affine), tmp_path / "two.nii.gz")
    v1, v2 = _read(tmp_path / "one.nii.gz"), _read(tmp_path / "two.nii.gz")
    np.testing.assert_array_equal(v1.array, v2.array)
    np.testing.assert_allclose(v1.spacing, v2.spacing, atol=1e-5)
    np.testing.assert_allclose(v1.origin, v2.origin, atol=1e-3)
    np.testing.assert_allclose(v1.direction, v2.direction, atol=1e-5)


def test_single_timepoint_4d_is_accepted(tmp_path):
    import nibabel

    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6, 1)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), tmp_path / "t1.nii.gz")
    vol = _read(tmp_path / "t1.nii.gz")
    assert vol.shape == (4, 5, 6)
    np.testing.assert_array_equal(vol.array, data[::-1, ::-1, :, 0])  # RAS identity affine → LPS


def test_modality_override_and_detection(real_data):
    path = real_data / "mri_nrrd" / "brain1_image.nrrd"
    assert _read(path).modality == "MR"
    assert _read(path, modality="CT").modality == "CT"


# ---- bad inputs: each a ReadError with a specific, one-line reason ---------------------------------


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_truncated_nrrd(real_data, tmp_path):
    data = (real_data / "mri_nrrd" / "brain1_image.nrrd").read_bytes()
    (tmp_path / "half.nrrd").write_bytes(data[: len(data) // 2])
    with pytest.raises(ReadError, match=r"cannot read half\.nrrd as NRRD \(truncated or corrupt\?\)") as err:
        _read(tmp_path / "half.nrrd")
    _one_line(err)


@pytest.mark.parametrize("name", ["half.nii", "half.nii.gz"])
def test_truncated_nifti(nibabel_data, tmp_path, name):
    """ITK would zero-fill the missing voxels without a word; the reader must refuse."""
    data = (nibabel_data / "anatomical.nii").read_bytes()
    if name.endswith(".gz"):
        data = gzip.compress(data)
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ReadError, match=rf"{name.replace('.', '[.]')} is truncated: the header needs") as err:
        _read(tmp_path / name)
    _one_line(err)


def test_truncated_metaimage_data(real_data, tmp_path):
    shutil.copyfile(real_data / "metaimage" / "HeadMRVolume.mhd", tmp_path / "HeadMRVolume.mhd")
    raw = (real_data / "metaimage" / "HeadMRVolume.raw").read_bytes()
    (tmp_path / "HeadMRVolume.raw").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReadError, match=r"HeadMRVolume\.mhd: header declares 48x62x42 voxels = 124992 bytes, "
                                        r"but its data holds only 62496 bytes \(truncated"):
        _read(tmp_path / "HeadMRVolume.mhd")


def test_mhd_with_missing_raw(real_data, tmp_path):
    shutil.copyfile(real_data / "metaimage" / "HeadMRVolume.mhd", tmp_path / "HeadMRVolume.mhd")
    source = Source(str(tmp_path / "HeadMRVolume.mhd"), "metaimage")  # constructible without its data
    assert [p.split("/")[-1] for p in source.files] == ["HeadMRVolume.mhd", "HeadMRVolume.raw"]
    with pytest.raises(ReadError, match=r"data file HeadMRVolume\.raw named by HeadMRVolume\.mhd is missing") as err:
        read_source(source)
    _one_line(err)


def test_2d_image(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 9), np.int16)), str(tmp_path / "flat.nrrd"))
    with pytest.raises(ReadError, match=r"image is 2D with shape 9x8; a 3D volume is needed"):
        _read(tmp_path / "flat.nrrd")


def test_4d_image(nibabel_data):
    with pytest.raises(ReadError, match=r"image is 4D with shape 128x96x24x2") as err:
        _read(nibabel_data / "example4d.nii.gz")
    assert "single time point" in _one_line(err)


def test_4d_nifti2(nibabel_data):
    with pytest.raises(ReadError, match=r"image is 4D with shape 32x20x12x2"):
        _read(nibabel_data / "example_nifti2.nii.gz")


def test_vector_pixels(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.float32), isVector=True)
    sitk.WriteImage(img, str(tmp_path / "vectors.mha"))
    with pytest.raises(ReadError, match=r"pixels have 3 components"):
        _read(tmp_path / "vectors.mha")


def test_garbage_with_nifti_name(tmp_path):
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(np.random.default_rng(0).bytes(4000)))
    (tmp_path / "raw_junk.nii.gz").write_bytes(np.random.default_rng(1).bytes(4000))
    for name in ("junk.nii.gz", "raw_junk.nii.gz"):
        with pytest.raises(ReadError, match=rf"cannot read {name.replace('.', '[.]')} as NIfTI") as err:
            _read(tmp_path / name)
        _one_line(err)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.nrrd").write_bytes(b"")
    with pytest.raises(ReadError, match="empty file"):
        _read(tmp_path / "empty.nrrd")
    with pytest.raises(ReadError, match="file not found"):
        read_source(Source(str(tmp_path / "gone.nii"), "nifti"))
