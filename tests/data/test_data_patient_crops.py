"""Crop-on-read without Ray: one region read per patient, exact voxels, windowing, resizing."""

import numpy as np
import pytest

from semgen_ray.data.boxes import BoxError
from semgen_ray.data.patient_crops import read_patient_crops
from semgen_ray.data.resize import resize
from semgen_ray.store import CT_WINDOW, open_store


@pytest.mark.parametrize("which", ["store_uri", "chunked_store_uri"])
def test_exact_native_and_resized_crops(request, arrays, which):
    store = open_store(request.getfixturevalue(which))
    lo = np.array([[0, 0, 0], [31, 17, 15], [32, 16, 8], [30, 10, 3]])
    size = np.array([[16, 16, 8], [16, 16, 8], [16, 16, 8], [22, 25, 12]])
    reads = []
    orig = store.read
    store.read = lambda *a, **k: reads.append(k.get("region")) or orig(*a, **k)
    (_rows, cubes, meta), = read_patient_crops(store, "P0", lo, lo + size, (16, 16, 8))
    assert reads == [((0, 52), (0, 35), (0, 23))]  # one read: the bounding region
    assert meta["spacing"] == (0.7, 0.75, 2.5)
    norm = CT_WINDOW.apply(arrays["P0"])
    for i, (a, b) in enumerate(zip(lo, lo + size)):
        want = norm[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
        if i < 3:
            np.testing.assert_array_equal(cubes[i], want)
        else:
            np.testing.assert_array_equal(cubes[i], resize(want, (16, 16, 8)))


def test_chunks_and_raw_values(store_uri, arrays):
    store = open_store(store_uri)
    lo = np.array([[i, 0, 0] for i in range(5)])
    chunks = list(read_patient_crops(store, "P1", lo, lo + [8, 8, 4], (8, 8, 4), normalize=False,
                                     rows_per_chunk=2))
    assert [c[0].tolist() for c in chunks] == [[0, 1], [2, 3], [4]]
    np.testing.assert_array_equal(chunks[2][1][0], arrays["P1"][4:12, :8, :4].astype(np.float32))


def test_out_of_volume_box_names_patient_and_box(store_uri):
    store = open_store(store_uri)
    with pytest.raises(BoxError, match=r"'P2'.*\(60, 0, 0\).*\(68, 8, 4\).*\(64, 64, 32\)"):
        list(read_patient_crops(store, "P2", np.array([[60, 0, 0]]), np.array([[68, 8, 4]]), (8, 8, 4)))
