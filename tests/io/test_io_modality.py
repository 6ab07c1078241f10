"""CT vs MR detection from voxel values."""

from __future__ import annotations

import numpy as np
import pytest

from semgen_ray.io import Source, detect_modality, read_source


def test_ct_slabs_are_ct(lidc_series):
    for folder in lidc_series:
        [vol] = read_source(Source(str(folder), "dicom"))
        assert detect_modality(vol.array) == "CT"


@pytest.mark.parametrize("rel", ["mri_nrrd/brain1_image.nrrd", "metaimage/HeadMRVolume.mhd"])
def test_mr_files_are_mr(real_data, rel):
    [vol] = read_source(real_data / rel)
    assert detect_modality(vol.array) == "MR"
    assert vol.modality == "MR"


def test_ct_in_a_nifti_is_detected(lidc_series, tmp_path):
    """The heuristic is what non-DICOM readers use: a CT slab saved as NIfTI reads back as CT."""
    sitk = pytest.importorskip("SimpleITK")
    [vol] = read_source(Source(str(lidc_series[0]), "dicom"))
    img = sitk.GetImageFromArray(vol.array.transpose(2, 1, 0))
    img.SetSpacing(vol.spacing)
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    [back] = read_source(tmp_path / "ct.nii.gz")
    assert back.modality == "CT"
    np.testing.assert_array_equal(back.array, vol.array)


def test_synthetic_edges():
    mr = np.full((10, 10, 10), 300, np.int16)
    assert detect_modality(mr) == "MR"
    ct = mr.copy()
    ct[:3] = -1000  # a band of air
    assert detect_modality(ct) == "CT"
    speck = mr.copy()
    speck[0, 0, 0] = -1000  # one dark voxel is not air
    assert detect_modality(speck) == "MR"
    assert detect_modality(np.zeros((0, 3, 3))) == "OT"
