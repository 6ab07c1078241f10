"""CorruptionParams: plain data that selects, concatenates, names and pickles."""

import pickle

import numpy as np
import pytest

from semgen_ray.transforms import ORDER, CorruptionParams, make_corruption


def test_select_concat_names_and_pickle():
    f = make_corruption("mg", shuffle_blocks=20)
    p = f.sample((8, 1, 32, 32, 16), seed=3)
    assert len(p) == 8 and p.shape == (32, 32, 16) and p.entropy.shape == (8, 2)
    assert set(p.applied) == set(ORDER) == set(p.ops)
    names = p.names()
    assert all(n == "identity" or set(n.split("+")) <= set(ORDER) for n in names)
    sub = p.select(np.array([True, False] * 4))
    assert len(sub) == 4 and sub.names() == names[::2]
    assert sub.ops["local_pixel_shuffle"]["boxes"].shape == (4, 20, 6)
    again = CorruptionParams.concat([p.select(slice(0, 5)), p.select(slice(5, 8))])
    for k in ORDER:
        np.testing.assert_array_equal(again.applied[k], p.applied[k])
        for name, v in p.ops[k].items():
            np.testing.assert_array_equal(again.ops[k][name], v)
    back = pickle.loads(pickle.dumps(p))
    assert back.policy == p.policy and back.names() == names


def test_concat_refuses_mixed_policies():
    a = make_corruption("sg").sample((2, 1, 32, 32, 16), seed=0)
    b = make_corruption("mg", shuffle_blocks=5).sample((2, 1, 32, 32, 16), seed=0)
    with pytest.raises(ValueError, match="same policy"):
        CorruptionParams.concat([a, b])
    with pytest.raises(ValueError, match="nothing"):
        CorruptionParams.concat([])
