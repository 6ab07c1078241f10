"""neighbours_for_references (Ray and in-process), measure_recall, choose_method."""

from __future__ import annotations

import numpy as np
import pytest

from semgen_ray.discovery.index import EmbeddingIndex
from semgen_ray.discovery.neighbours import (
    choose_method,
    measure_recall,
    neighbours_for_references,
)


def clustered(n: int, d: int, clusters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    return (centres[rng.integers(0, clusters, size=n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return clustered(1500, 32, seed=5)


@pytest.fixture(scope="module", params=["hnsw", "exact"])
def index(request, data):
    return EmbeddingIndex.build(data, [f"P{i}" for i in range(len(data))], method=request.param, num_threads=2)


def test_in_process_matches_direct_query(index, data):
    refs = np.array([5, 900, 3, 1499, 42, 7, 600])
    rows, dist = neighbours_for_references(index, refs, 40, batch_per_task=3, ray=False)
    direct = index.query(data[refs], 40)
    np.testing.assert_array_equal(rows, direct[0])
    # BLAS rounding depends on the batch shape, so exact distances agree to float32 precision only
    np.testing.assert_allclose(dist, direct[1], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(rows[:, 0], refs)  # each reference is its own rank 0


@pytest.mark.usefixtures("ray_local")
def test_ray_path_equals_in_process(index, data):
    refs = np.random.default_rng(1).choice(len(data), size=50, replace=False)
    ray_rows, ray_dist = neighbours_for_references(index, refs, 30, batch_per_task=16, ray=True)
    loc_rows, loc_dist = neighbours_for_references(index, refs, 30, batch_per_task=16, ray=False)
    assert ray_rows.shape == (50, 30) and ray_rows.dtype == np.int64 and ray_dist.dtype == np.float32
    np.testing.assert_array_equal(ray_rows, loc_rows)
    # the same neighbours; their float32 distances within rounding: the exact search's matmul sums in
    # an order that depends on the BLAS threads of the process (1 in a Ray task, 2 here), and on an
    # AVX2 machine that moved distances by up to 3e-5
    np.testing.assert_allclose(ray_dist, loc_dist, rtol=1e-5, atol=1e-4)
    # 2-D query vectors take the same path
    vec_rows, _ = neighbours_for_references(index, data[refs], 30, batch_per_task=16, ray=True)
    np.testing.assert_array_equal(vec_rows, loc_rows)


def test_neighbours_errors(index):
    with pytest.raises(ValueError, match="k=2000"):
        neighbours_for_references(index, [1, 2], 2000, ray=False)
    with pytest.raises(IndexError):
        neighbours_for_references(index, [1, 5000], 5, ray=False)
    rows, _ = neighbours_for_references(index, np.array([], dtype=np.int64), 5, ray=False)
    assert rows.shape == (0, 5)


def test_measure_recall(index, data):
    out = measure_recall(index, data, sample=60, k=50, seed=3)
    assert set(out) == {"method", "recall_at_k", "queries", "k"}
    assert out["method"] == index.method and out["queries"] == 60 and out["k"] == 50
    assert out["recall_at_k"] >= (1.0 if index.method == "exact" else 0.99)


def test_choose_method():
    # discovery's 44-200 references: exact search even at 10^6 and 10^7 patients (the benchmark's
    # 1e6 exact search of 100 references took 1.1-1.8 s, an HNSW build 3-13 minutes)
    for n in (30, 10_000, 49_999, 50_000, 1_000_000, 10_000_000):
        for refs in (44, 200):
            assert choose_method(n, 3, references=refs) == "exact", (n, refs)
    # the fixed 50,000-patient threshold is gone: the patients alone never switch to HNSW
    assert choose_method(50_000, 200, references=200) == choose_method(49_999, 200, references=200) == "exact"
    # many references on one large index: the build pays for itself
    assert choose_method(1_000_000, 200, references=100_000) == "hnsw"
    assert choose_method(1_000_000, 200, references=10_000) == "exact"  # 141 s exact < ~670 s build
    assert choose_method(1_000_000, 200, override="hnsw") == "hnsw"
    assert choose_method(1_000_000, 200, references=100_000, override="exact") == "exact"
    with pytest.raises(ValueError):
        choose_method(100, 200)
    with pytest.raises(ValueError):
        choose_method(1000, 10, override="annoy")


def test_choose_index_costs_grow_with_every_size_and_say_why():
    from semgen_ray.discovery.neighbours import choose_index, index_costs

    base = index_costs(200, 100_000, 512)
    for bigger in (index_costs(400, 100_000, 512), index_costs(200, 200_000, 512), index_costs(200, 100_000, 1024)):
        assert bigger["exact"] > base["exact"] and bigger["hnsw"] > base["hnsw"]
    # a PCA graph is cheaper to build than a full-dimension one
    assert index_costs(200, 1_000_000, 512, graph_dim=64)["hnsw"] < index_costs(200, 1_000_000, 512)["hnsw"]
    # the benchmark's own points (benchmarks/results/neighbours*.json): exact 100 refs at 1e6, D = 512
    # took 1.07-1.79 s; M = 16 builds took 409-802 s
    est = index_costs(100, 1_000_000, 512, recall_sample=0)
    assert 1.0 < est["exact"] < 1.8 and 400 < est["hnsw"] < 900
    choice = choose_index(44, 1_000_000, 512, 200, val_patients=200_000)
    assert choice["method"] == "exact" and choice["mode"] == "auto"
    assert choice["estimated_s"]["exact"] < choice["estimated_s"]["hnsw"]
    assert "estimated" in choice["reason"] and choice["calibration"][0].startswith("benchmarks/results/")
    forced = choose_index(44, 1_000_000, 512, 200, override="hnsw")
    assert forced["method"] == "hnsw" and forced["mode"] == "configured"


def test_cost_model_constants_are_those_fitted_on_the_benchmark_results():
    """The constants in the code are the fit of the files they name (re-run the fit after a new benchmark)."""
    from semgen_ray.discovery import neighbours as nb

    fitted = nb.fit_cost_model()
    for name, value in fitted.items():
        assert getattr(nb, name) == pytest.approx(value, rel=0.01), name
