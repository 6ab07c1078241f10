"""Resampling: shape / spacing / origin arithmetic, interpolation, labels."""

from __future__ import annotations

import numpy as np
import pytest

from semgen_ray.io import Volume, resample, resample_array, resample_labels
from semgen_ray.io.resample import resampled_shape


def test_shape_spacing_and_extent():
    vol = Volume(np.zeros((100, 80, 20), np.int16), spacing=(0.7, 0.7, 2.5), origin=(10.0, -5.0, 3.0))
    out = resample(vol, (1.0, 1.0, 1.0))
    assert out.shape == (70, 56, 50)
    assert out.spacing == (1.0, 1.0, 1.0)
    # Voxel edges are kept: the first centre moves by half the spacing difference.
    np.testing.assert_allclose(out.origin, (10.15, -4.85, 2.25))
    assert out.extra["resampled_from"] == {"shape": [100, 80, 20], "spacing": [0.7, 0.7, 2.5]}
    assert vol.shape == (100, 80, 20)  # input untouched
    assert resampled_shape((3, 3, 3), (1, 1, 1), (10, 10, 10)) == (1, 1, 1)  # never zero


def test_origin_follows_direction():
    flip = (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    vol = Volume(np.zeros((10, 10, 10), np.float32), spacing=(1, 1, 1), direction=flip)
    out = resample(vol, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(out.origin, (-0.5, 0.5, 0.5))
    assert out.direction == vol.direction


def test_identity_and_integer_downsample():
    arr = np.random.default_rng(0).normal(size=(8, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(resample_array(arr, (1, 2, 3), (1, 2, 3)), arr, atol=1e-6)
    # Halving: each new voxel centre sits between two old ones → their mean (linear interpolation).
    out = resample_array(arr, (1, 1, 1), (2, 2, 2))
    expected = arr.reshape(4, 2, 3, 2, 2, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_linear_ramp_is_reproduced():
    x = np.arange(20, dtype=np.float32)
    arr = np.broadcast_to(x[:, None, None], (20, 3, 3)).copy()
    out = resample_array(arr, (1, 1, 1), (0.5, 1, 1))
    centres = (np.arange(40) + 0.5) * 0.5 - 0.5  # old-index coordinates of the new centres
    np.testing.assert_allclose(out[:, 0, 0], np.clip(centres, 0, 19), atol=1e-5)


def test_integer_images_stay_integer():
    arr = np.random.default_rng(1).integers(-1024, 2000, size=(10, 10, 6)).astype(np.int16)
    out = resample_array(arr, (1, 1, 2), (1.5, 1.5, 1.5))
    assert out.dtype == np.int16
    assert out.min() >= arr.min() and out.max() <= arr.max()


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, bool])
def test_labels_keep_their_label_set(dtype):
    rng = np.random.default_rng(2)
    labels = rng.choice([0, 1, 4, 7] if dtype is not bool else [0, 1], size=(12, 10, 5)).astype(dtype)
    out = resample_labels(labels, (0.8, 0.8, 3.0), (1.1, 0.5, 1.0))
    assert out.dtype == labels.dtype
    assert out.shape == resampled_shape(labels.shape, (0.8, 0.8, 3.0), (1.1, 0.5, 1.0))
    assert set(np.unique(out)) <= set(np.unique(labels))
    vol = resample(Volume(labels, spacing=(0.8, 0.8, 3.0)), (1.0, 1.0, 1.0), order=0)
    assert set(np.unique(vol.array)) <= set(np.unique(labels))


def test_labels_on_the_image_grid(real_data):
    from semgen_ray.io import read_source

    [image] = read_source(real_data / "mri_nrrd" / "brain1_image.nrrd")
    [label] = read_source(real_data / "mri_nrrd" / "brain1_label.nrrd")
    img2 = resample(image, (1.0, 1.0, 2.0))
    lab2 = resample_labels(label.array, label.spacing, (1.0, 1.0, 2.0), shape=img2.shape)
    assert lab2.shape == img2.shape
    assert set(np.unique(lab2)) <= set(np.unique(label.array))
    # The tumour keeps its volume up to the quantisation of its few 6.5 mm slices into 2 mm ones.
    before = np.count_nonzero(label.array) * np.prod(label.spacing)
    after = np.count_nonzero(lab2) * np.prod(img2.spacing)
    assert after == pytest.approx(before, rel=0.1)


def test_bad_arguments():
    vol = Volume(np.zeros((4, 4, 4), np.float32), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="3 positive numbers"):
        resample(vol, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="3 positive numbers"):
        resample(vol, (1.0, 1.0))
    with pytest.raises(ValueError, match="order"):
        resample(vol, (1.0, 1.0, 1.0), order=7)
