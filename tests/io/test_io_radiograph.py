"""2D radiograph readers (DICOM CR/DX, PNG and JPEG of 8 and 16 bits, 2D NIfTI), value for value
against independent readers: SimpleITK for the pixel data, pydicom's own VOI LUT for the display window."""

from __future__ import annotations

import numpy as np
import pytest

from semgen_ray.io.radiograph import NO_SPACING, radiograph_format, read_radiograph, voi_window
from semgen_ray.io.volume import ReadError

from radiograph_files import COLS, ROWS, film, write_dx

def _sitk_array(path) -> np.ndarray:
    import SimpleITK as sitk

    return np.squeeze(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).astype(np.float64)


def test_dx_without_window_uses_the_stored_bit_range_and_simpleitk_reads_the_same_pixels(tmp_path):
    pixels = film(12)
    write_dx(tmp_path / "a.dcm", pixels)
    img = read_radiograph(tmp_path / "a.dcm")
    assert img.shape == (ROWS, COLS) and img.array.dtype == np.float32
    assert img.modality == "DX" and img.pixel_spacing == (0.15, 0.16) and img.warnings == ()
    np.testing.assert_allclose(img.array, _sitk_array(tmp_path / "a.dcm") / 4095.0, atol=1e-6)
    assert img.extra["voi"] == {"range": [0.0, 4095.0]} and img.extra["format"] == "dicom"


@pytest.mark.parametrize("function", [None, "LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_dx_window_and_voi_function_match_pydicom(tmp_path, function):
    """The window through the modality LUT (rescale 2x - 100), as pydicom's apply_voi_lut computes it."""
    from pydicom import dcmread
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    pixels = film(12, seed=1)
    write_dx(tmp_path / "w.dcm", pixels, window=("3000", "2500"), function=function, rescale=("2", "-100"))
    img = read_radiograph(tmp_path / "w.dcm")
    ds = dcmread(tmp_path / "w.dcm")
    theirs = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    # pydicom maps the window onto the rescaled range of the stored bits (2·[0, 4095] - 100); ours onto [0, 1]
    np.testing.assert_allclose(img.array, (theirs + 100.0) / 8190.0, atol=2e-6)
    assert img.extra["voi"]["center"] == 3000.0 and img.array.min() < 0.2 and img.array.max() > 0.8
    np.testing.assert_allclose(_sitk_array(tmp_path / "w.dcm"), 2.0 * pixels - 100.0)  # SimpleITK: rescaled


def test_monochrome1_and_inverse_presentation_are_shown_inverted(tmp_path):
    pixels = film(12, seed=2)
    write_dx(tmp_path / "m2.dcm", pixels)
    write_dx(tmp_path / "m1.dcm", 4095 - pixels, photometric="MONOCHROME1")
    write_dx(tmp_path / "inv.dcm", 4095 - pixels, inverse=True)
    m2, m1, inv = (read_radiograph(tmp_path / f"{n}.dcm").array for n in ("m2", "m1", "inv"))
    np.testing.assert_allclose(m1, m2, atol=1e-6)
    np.testing.assert_allclose(inv, m2, atol=1e-6)
    assert m2[24, 20] > m2[22, 12]  # the mediastinum brighter than a lung, whatever the file's polarity


def test_voi_lut_sequence_is_applied(tmp_path):
    from pydicom import dcmread
    from pydicom.pixels import apply_voi_lut

    pixels = film(12, seed=3)
    table = np.rint(65535 * np.sqrt(np.linspace(0, 1, 4096))).astype(np.int64)  # a gamma curve
    write_dx(tmp_path / "lut.dcm", pixels, lut=(0, table))
    img = read_radiograph(tmp_path / "lut.dcm")
    ds = dcmread(tmp_path / "lut.dcm")
    np.testing.assert_allclose(img.array, apply_voi_lut(ds.pixel_array, ds) / 65535.0, atol=2e-6)
    np.testing.assert_allclose(img.array, np.sqrt(pixels / 4095.0), atol=2e-5)


def test_cr_with_imager_pixel_spacing_only_is_noted_and_no_spacing_is_assumed_1mm(tmp_path):
    write_dx(tmp_path / "cr.dcm", film(12), modality="CR", spacing=("ImagerPixelSpacing", ["0.2", "0.2"]))
    cr = read_radiograph(tmp_path / "cr.dcm")
    assert cr.modality == "CR" and cr.pixel_spacing == (0.2, 0.2)
    assert any("ImagerPixelSpacing" in w for w in cr.warnings)
    write_dx(tmp_path / "none.dcm", film(12), spacing=None)
    assert read_radiograph(tmp_path / "none.dcm").warnings == (NO_SPACING,)
    assert read_radiograph(tmp_path / "none.dcm", modality="XR").modality == "XR"


@pytest.mark.parametrize("bits", [8, 16])
def test_png_of_8_and_16_bits_match_simpleitk(tmp_path, bits):
    from PIL import Image

    pixels = film(bits, seed=4)
    Image.fromarray(pixels).save(tmp_path / "x.png", dpi=(254, 127))
    img = read_radiograph(tmp_path / "x.png")
    np.testing.assert_allclose(img.array, _sitk_array(tmp_path / "x.png") / (2 ** bits - 1), atol=1e-6)
    assert img.extra["bits"] == bits and img.modality == "OT"
    assert img.pixel_spacing == pytest.approx((0.2, 0.1))  # 127 dpi between rows, 254 between columns


def test_jpeg_matches_simpleitk_and_colour_pngs_become_grey(tmp_path):
    from PIL import Image

    pixels = film(8, seed=5)
    Image.fromarray(pixels).save(tmp_path / "x.jpg", quality=95)
    img = read_radiograph(tmp_path / "x.jpg")
    assert np.abs(img.array * 255 - _sitk_array(tmp_path / "x.jpg")).max() <= 1.0  # two JPEG decoders
    assert img.warnings == (NO_SPACING,)
    Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(tmp_path / "grey_rgb.png")
    np.testing.assert_array_equal(read_radiograph(tmp_path / "grey_rgb.png").array, pixels / np.float32(255))
    colour = np.stack([pixels, pixels // 2, 255 - pixels], axis=-1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    assert "colour image converted to grey (ITU-R 601 luma)" in read_radiograph(tmp_path / "colour.png").warnings


def test_2d_nifti_matches_simpleitk_layout_and_spacing(tmp_path):
    import nibabel as nib

    values = film(12, seed=6).T.astype(np.float32) - 1000.0  # (i, j): SimpleITK shows it as (j, i)
    image = nib.Nifti1Image(values[:, :, None], np.diag([0.3, 0.4, 1.0, 1.0]))
    nib.save(image, tmp_path / "x.nii.gz")
    img = read_radiograph(tmp_path / "x.nii.gz")
    theirs = _sitk_array(tmp_path / "x.nii.gz")
    np.testing.assert_allclose(img.array, (theirs - theirs.min()) / (theirs.max() - theirs.min()), atol=1e-6)
    assert img.shape == (ROWS, COLS) and img.pixel_spacing == pytest.approx((0.4, 0.3))


def test_linear_window_follows_the_standard_formula():
    """PS3.3 C.11.2.1.2.1 with center 100, width 11: below 94.5 → 0, above 104.5 → 1, linear between."""
    x = np.array([90, 94.5, 95, 100, 104, 104.5, 110])
    np.testing.assert_allclose(voi_window(x, 100, 11), [0, 0, 0.05, 0.55, 0.95, 1.0, 1.0])
    np.testing.assert_array_equal(voi_window(np.array([99, 99.5, 100]), 100, 1), [0, 1, 1])


def test_unreadable_files_get_one_line_naming_them(tmp_path):
    from PIL import Image

    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ReadError, match="x.txt: not a 2D image format"):
        read_radiograph(tmp_path / "x.txt")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ReadError, match="broken.png: cannot read it as a png image"):
        read_radiograph(tmp_path / "broken.png")
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), tmp_path / "v.nii")
    with pytest.raises(ReadError, match="not a 2D image"):
        read_radiograph(tmp_path / "v.nii")
    write_dx(tmp_path / "rgb.dcm", film(12), photometric="RGB")
    with pytest.raises(ReadError, match="photometric interpretation RGB"):
        read_radiograph(tmp_path / "rgb.dcm")
    Image.fromarray(film(8)).save(tmp_path / "noext", format="PNG")
    assert radiograph_format(tmp_path / "noext") is None and radiograph_format(tmp_path / "rgb.dcm") == "dicom"
    with pytest.raises(ValueError, match="modality"):
        read_radiograph(tmp_path / "rgb.dcm", modality="CT")
