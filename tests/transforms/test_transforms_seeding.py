"""Per-sample seeds: (run seed, epoch, sample id) → independent, replayable streams."""

import numpy as np
import pytest

from semgen_ray.transforms import sample_seed
from semgen_ray.transforms.seeding import sample_rng, seed_rows


def test_sample_seed_is_deterministic_distinct_and_64_bit():
    seeds = {sample_seed(r, e, i) for r in range(3) for e in range(4) for i in range(50)}
    assert len(seeds) == 3 * 4 * 50
    assert sample_seed(1, 2, 3) == sample_seed(1, 2, 3)
    assert all(0 <= s < 2 ** 64 for s in seeds)
    assert sample_seed(0, 1, 2) != sample_seed(0, 2, 1) != sample_seed(1, 0, 2)
    assert sample_seed(0, 0, 2 ** 40) != sample_seed(0, 0, 0)


@pytest.mark.parametrize("args", [(-1, 0, 0), (0, -1, 0), (0, 0, -5), (0, 0, 1.5), (True, 0, 0)])
def test_sample_seed_rejects_bad_values(args):
    with pytest.raises(ValueError, match="must be an int >= 0"):
        sample_seed(*args)


def test_int_seed_gives_sample_i_the_stream_of_seedsequence_seed_i():
    rows = seed_rows(7, 3)
    assert rows.tolist() == [[7, 0], [7, 1], [7, 2]]
    want = np.random.default_rng(np.random.SeedSequence([7, 2])).random(5)
    np.testing.assert_array_equal(sample_rng(rows[2]).random(5), want)


def test_per_sample_seeds_and_seed_rows():
    s = np.array([sample_seed(0, 1, i) for i in range(4)], dtype=np.uint64)
    rows = seed_rows(s, 4)
    assert rows.shape == (4, 1) and rows.dtype == np.uint64
    want = np.random.default_rng(np.random.SeedSequence(int(s[3]))).random(3)
    np.testing.assert_array_equal(sample_rng(rows[3]).random(3), want)
    two = seed_rows(np.array([[1, 2], [3, 4]]), 2)
    np.testing.assert_array_equal(two, [[1, 2], [3, 4]])


@pytest.mark.parametrize("seed", [-1, np.array([1, 2]), np.array([1.0, 2.0, 3.0]), "x", np.array([-1, 2, 3])])
def test_bad_seeds(seed):
    with pytest.raises(ValueError):
        seed_rows(seed, 3)


def test_a_list_of_sample_seeds_is_taken_as_the_uint64_array_it_stands_for():
    """The README's ``[sample_seed(...) for i in range(n)]`` holds ints of 2^63 and more, which numpy
    alone turns into float64: a list of Python ints gives the same rows as the uint64 array."""
    seeds = [sample_seed(0, 1, i) for i in range(16)]
    assert max(seeds) >= 2 ** 63                                  # the case numpy gets wrong
    np.testing.assert_array_equal(seed_rows(seeds, 16), seed_rows(np.array(seeds, np.uint64), 16))
    np.testing.assert_array_equal(seed_rows([[1, 2], [3, 4]], 2), [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="must be ints.*float"):
        seed_rows([1.0, 2, 3], 3)
    with pytest.raises(ValueError, match=r"\[0, 2\^64\)"):
        seed_rows([2 ** 64, 2, 3], 3)
    with pytest.raises(ValueError, match="array of 3"):
        seed_rows([1, 2], 3)
