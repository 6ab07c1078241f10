"""Fixtures for the reader tests: the real-data folder, public test files, and DICOM series builders.

The ``real_data`` fixture (``tests/conftest.py``) is the folder named by ``SEMGEN_REAL_DATA`` (README,
"Tests and the real-data folder"); tests that need it skip with a clear message where it is unset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def lidc_series(real_data) -> list[Path]:
    """The three LIDC-IDRI slab series folders, sorted by patient."""
    dirs = sorted(p.parent for p in (real_data / "lidc_slabs").glob("*/*/*/*.dcm"))
    dirs = sorted(set(dirs))
    if len(dirs) < 3:
        pytest.skip(f"expected 3 LIDC series under {real_data / 'lidc_slabs'}, found {len(dirs)}")
    return dirs


@pytest.fixture(scope="session")
def nibabel_data() -> Path:
    nibabel = pytest.importorskip("nibabel")
    path = Path(nibabel.__file__).parent / "tests" / "data"
    if not path.is_dir():
        pytest.skip("nibabel's test data is not installed")
    return path


def pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not available")
    return Path(path)


def sitk_series_lps(folder: Path, series_uid: str | None = None):
    """SimpleITK's reading of a DICOM series: GDCM-sorted files → ImageSeriesReader → LPS.

    Returns ``(image, array)``: the reoriented SimpleITK image and its (x, y, z) array.
    """
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    names = (reader.GetGDCMSeriesFileNames(str(folder), series_uid) if series_uid
             else reader.GetGDCMSeriesFileNames(str(folder)))
    reader.SetFileNames(names)
    img = sitk.DICOMOrient(reader.Execute(), "LPS")
    return img, sitk.GetArrayFromImage(img).transpose(2, 1, 0)


def copy_series(src: Path, dst: Path, names=None) -> list[Path]:
    """Copy a series' .dcm files into ``dst`` (created), optionally renamed by ``names(i, path)``."""
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(sorted(src.glob("*.dcm"))):
        target = dst / (names(i, f) if names else f.name)
        shutil.copyfile(f, target)
        out.append(target)
    return out


def write_geometry_series(src: Path, dst: Path, row_dir, col_dir, pixel_spacing=(0.5, 0.8), step=2.0,
                          crop=(40, 56), offsets=None, lateral=None, order=None) -> Path:
    """A small series with chosen geometry, built from real LIDC slices (their pixels, cropped).

    Args:
        row_dir, col_dir: ImageOrientationPatient rows / columns directions.
        pixel_spacing: PixelSpacing (between rows, between columns); unequal to catch swaps.
        step: slice step along the normal (row × column), mm.
        crop: (rows, columns) kept from each slice; unequal to catch transposes.
        offsets: slice positions along the normal (default ``k * step``).
        lateral: per-slice sideways offsets (k, 3) in mm added to the positions (gantry tilt).
        order: file-name permutation, so names never reflect the slice order.
    """
    import pydicom
    from pydicom.uid import generate_uid

    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(src.glob("*.dcm"), key=lambda p: float(p.stem))
    row_dir = np.asarray(row_dir, float)
    col_dir = np.asarray(col_dir, float)
    normal = np.cross(row_dir, col_dir)
    offsets = np.arange(len(files)) * step if offsets is None else np.asarray(offsets, float)
    base = np.array([-30.0, 12.5, 40.0])
    n = len(offsets)
    order = list(range(n)) if order is None else list(order)
    for k in range(n):
        ds = pydicom.dcmread(files[k % len(files)])
        pixels = ds.pixel_array[100:100 + crop[0], 150:150 + crop[1]].copy()
        ds.PixelData = pixels.tobytes()
        ds.Rows, ds.Columns = pixels.shape
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
        pos = base + offsets[k] * normal + (0 if lateral is None else np.asarray(lateral[k], float))
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.PixelSpacing = [f"{v:.6f}" for v in pixel_spacing]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(dst), str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(dst / f"img_{order[k]:03d}.dcm")
    return dst


# Helpers as fixtures, so test modules need not import this conftest (robust to pytest import modes).
@pytest.fixture(scope="session")
def sitk_series():
    pytest.importorskip("SimpleITK")
    return sitk_series_lps


@pytest.fixture(scope="session")
def geometry_series():
    return write_geometry_series


@pytest.fixture(scope="session")
def copy_dicom_series():
    return copy_series


@pytest.fixture(scope="session")
def pydicom_testfile():
    pytest.importorskip("pydicom")
    return pydicom_file
