"""Patient-id seeds: stable (pinned), from the whole id, and the one derivation every user shares."""

import numpy as np
import pytest

from semgen_ray.seeds import patient_seed, patient_unit


def test_pinned_values():
    """SHA-256 of the UTF-8 id, first 8 bytes big-endian: sha256(b"phantom_00001") starts 386bb33271e61213."""
    assert patient_seed("phantom_00001") == 0x386BB33271E61213 == 4065540117872644627
    assert patient_seed("phantom_00002") == 17498190784901683248
    assert patient_unit("phantom_00001") == pytest.approx(0x386BB33271E61213 / 2 ** 64, rel=0, abs=0)


def test_whole_id_counts():
    """Ids that share their first 8 (or 12) bytes still get different seeds (the old derivation read
    only ``pid.encode()[:8]``, b"phantom_" for every phantom)."""
    ids = [f"phantom_{i:05d}" for i in range(200)]
    assert len({patient_seed(p) for p in ids}) == len(ids)
    assert all(0 <= patient_seed(p) < 2 ** 64 and 0 <= patient_unit(p) < 1 for p in ids)
    with pytest.raises(TypeError):
        patient_seed(b"phantom_00001")


def test_every_user_shares_the_derivation():
    """The evaluation's negative sampling, the sub-volume draws and the hash split all read
    :func:`patient_seed` (one derivation, not three)."""
    from semgen_ray.data.subvolumes import patient_rng
    from semgen_ray.evaluate.tasks import _patient_rng
    from semgen_ray.ingest.split import assign_split

    pid = "phantom_00007"
    want = np.random.default_rng(np.random.SeedSequence([3, patient_seed(pid), 1])).integers(0, 2 ** 31, 8)
    assert np.array_equal(_patient_rng(3, pid, 1).integers(0, 2 ** 31, 8), want)
    want = np.random.default_rng(np.random.SeedSequence([3, 2, patient_seed(pid)])).integers(0, 2 ** 31, 8)
    assert np.array_equal(patient_rng(3, 2, pid).integers(0, 2 ** 31, 8), want)
    u = patient_unit(pid)
    assert assign_split(pid, (u + 1e-9, 0.0, 1 - u - 1e-9)) == "train"
    assert assign_split(pid, (u - 1e-9, 1 - u + 1e-9, 0.0)) == "val"


def test_phantom_patients_get_different_negative_streams():
    """Two phantom patients, same evaluation seed: different random streams for every draw (negatives,
    jitter, background cubes)."""
    from semgen_ray.evaluate.tasks import _patient_rng

    for stream in ((), (1,), (2,), (3,)):
        a = _patient_rng(0, "phantom_00001", *stream).random(16)
        b = _patient_rng(0, "phantom_00002", *stream).random(16)
        assert not np.array_equal(a, b), stream
        assert np.array_equal(a, _patient_rng(0, "phantom_00001", *stream).random(16))  # reproducible
