"""The numpy reorientation (used for DICOM) against SimpleITK's DICOMOrient on random geometries."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from semgen_ray.io.orientation import closest_lps_axes, reorient_to_lps

sitk = pytest.importorskip("SimpleITK")


def _world(array_shape, spacing, origin, direction, index):
    d = np.asarray(direction).reshape(3, 3)
    return np.asarray(origin) + d @ (np.asarray(spacing) * np.asarray(index))


def test_dicomorient_conventions():
    """Pin SimpleITK's meaning of "LPS": identity stays, a RAS image gets x and y flipped."""
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)  # numpy (z, y, x)
    img = sitk.GetImageFromArray(arr)
    same = sitk.DICOMOrient(img, "LPS")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(same), arr)
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # axes running Right, Anterior, Superior
    flipped = sitk.DICOMOrient(img, "LPS")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(flipped), arr[:, ::-1, ::-1])
    assert flipped.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)


def _rotation(rng, max_angle):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


@pytest.mark.parametrize("perm, signs", list(itertools.product(
    itertools.permutations(range(3)), [(1, 1, 1), (-1, 1, 1), (1, -1, -1), (-1, -1, -1)])))
def test_matches_dicomorient(perm, signs):
    rng = np.random.default_rng(hash((perm, signs)) % 2**32)
    base = np.zeros((3, 3))
    for a, w in enumerate(perm):
        base[w, a] = signs[a]
    direction = _rotation(rng, np.radians(25)) @ base  # oblique, but each axis has a clear nearest
    array = rng.integers(0, 1000, size=(5, 4, 3)).astype(np.int16)  # (x, y, z)
    spacing, origin = (0.5, 0.8, 2.0), (10.0, -20.0, 30.0)
    img = sitk.GetImageFromArray(array.transpose(2, 1, 0))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction.ravel().tolist())
    ref = sitk.DICOMOrient(img, "LPS")
    out, sp, org, dirn = reorient_to_lps(array, spacing, origin, direction)
    np.testing.assert_array_equal(out, sitk.GetArrayFromImage(ref).transpose(2, 1, 0))
    np.testing.assert_allclose(sp, ref.GetSpacing())
    np.testing.assert_allclose(org, ref.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(dirn, ref.GetDirection(), atol=1e-9)
    assert out.flags.c_contiguous
    # Same voxel, same world position.
    idx_old = np.array([1, 2, 0])
    value = array[tuple(idx_old)]
    world = _world(array.shape, spacing, origin, direction, idx_old)
    d_new = np.asarray(dirn).reshape(3, 3)
    idx_new = np.rint(np.linalg.solve(d_new * np.asarray(sp), world - np.asarray(org))).astype(int)
    assert out[tuple(idx_new)] == value


def test_closest_axes_is_always_a_permutation():
    perm, signs = closest_lps_axes(np.full((3, 3), 1 / np.sqrt(3)))
    assert sorted(perm) == [0, 1, 2] and set(signs) <= {1, -1}
