"""Helpers of the ingest tests, as fixtures (test modules need not import this conftest)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest


def ct_small_series(folder: Path, slices) -> list[int]:
    """An axial CT series of pydicom's CT_small.dcm at z = 2 mm · k for k in ``slices`` (leave one
    out for uneven spacing), slice k brighter by 20·k; returns the slice numbers written."""
    import pydicom
    from pydicom.data import get_testdata_file

    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    folder.mkdir()
    written = list(slices)
    for k in written:
        ds = copy.deepcopy(template)
        ds.ImagePositionPatient = [-158.0, -179.0, 2.0 * k]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.10.98.{k + 1}"
        ds.PixelData = (template.pixel_array + 20 * k).astype(np.int16).tobytes()
        ds.save_as(folder / f"slice{k}.dcm")
    return written


@pytest.fixture(scope="session")
def write_ct_series():
    """``write_ct_series(folder, slices)``: :func:`ct_small_series`."""
    pytest.importorskip("pydicom")
    return ct_small_series
