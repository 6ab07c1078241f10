"""EmbeddingIndex and exact_knn: exactness, HNSW recall, persistence, pickling, input errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from semgen_ray.discovery.index import EmbeddingIndex, exact_knn, recall_at_k


def clustered(n: int, d: int, clusters: int = 20, seed: int = 0, spread: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    labels = rng.integers(0, clusters, size=n)
    return (centres[labels] + spread * rng.normal(size=(n, d))).astype(np.float32)


def ids_for(n: int) -> list[str]:
    return [f"P{i:05d}" for i in range(n)]


@pytest.fixture(scope="module")
def data_2000():
    return clustered(2000, 64, seed=1)


@pytest.fixture(scope="module")
def hnsw_2000(data_2000):
    return EmbeddingIndex.build(data_2000, ids_for(2000), method="hnsw", num_threads=2)


def brute_force(q, x, k):
    d = np.linalg.norm(q[:, None, :].astype(np.float64) - x[None, :, :].astype(np.float64), axis=2)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


@pytest.mark.parametrize("block", [7, 64, 10_000])
def test_exact_knn_equals_brute_force(block):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    q = rng.normal(size=(23, 16)).astype(np.float32)
    idx, dist = exact_knn(q, x, 10, block=block, query_block=8)
    ref_idx, ref_d = brute_force(q, x, 10)
    assert idx.dtype == np.int64 and dist.dtype == np.float32 and idx.shape == (23, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(np.sqrt(dist), ref_d, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_exact_knn_k_equals_n():
    x = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    idx, _ = exact_knn(x[:3], x, 12, block=5)
    assert sorted(idx[0].tolist()) == list(range(12))
    assert idx[0, 0] == 0 and idx[2, 0] == 2


def test_hnsw_recall_vs_exact(hnsw_2000, data_2000):
    q = data_2000[::20]  # 100 stored patients as queries
    approx, _ = hnsw_2000.query(q, 50)
    exact, _ = exact_knn(q, data_2000, 50)
    assert recall_at_k(approx, exact) >= 0.99


def test_self_is_rank_zero(hnsw_2000, data_2000):
    rows = np.array([0, 17, 1999])
    for index in (hnsw_2000, EmbeddingIndex.build(data_2000, ids_for(2000), method="exact")):
        idx, dist = index.query_rows(rows, 50)
        np.testing.assert_array_equal(idx[:, 0], rows)
        np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-3)
        assert np.all(np.diff(dist, axis=1) >= 0)
        assert index.ids[idx[1, 0]] == "P00017"


def test_exact_index_equals_exact_knn(data_2000):
    index = EmbeddingIndex.build(data_2000, ids_for(2000), method="exact")
    a = index.query(data_2000[:30], 25)
    b = exact_knn(data_2000[:30], data_2000, 25)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-4)


def test_ef_raised_for_large_k(data_2000):
    index = EmbeddingIndex.build(data_2000, ids_for(2000), method="hnsw", ef=10, num_threads=2)
    q = data_2000[:40]
    approx, _ = index.query(q, 200)
    exact, _ = exact_knn(q, data_2000, 200)
    assert recall_at_k(approx, exact) >= 0.99


@pytest.mark.parametrize("method", ["hnsw", "exact"])
def test_save_load_round_trip(tmp_path, data_2000, hnsw_2000, method):
    index = hnsw_2000 if method == "hnsw" else EmbeddingIndex.build(data_2000, ids_for(2000), method="exact")
    index.save(tmp_path / "ix")
    loaded = EmbeddingIndex.load(tmp_path / "ix")
    assert loaded.ids == index.ids and loaded.params() == index.params()
    a = index.query(data_2000[:50], 30)
    b = loaded.query(data_2000[:50], 30)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("method", ["hnsw", "exact"])
def test_pickle_round_trip(data_2000, hnsw_2000, method):
    index = hnsw_2000 if method == "hnsw" else EmbeddingIndex.build(data_2000, ids_for(2000), method="exact")
    clone = pickle.loads(pickle.dumps(index))
    assert clone.ids == index.ids and clone.method == method
    a = index.query(data_2000[100:140], 20)
    b = clone.query(data_2000[100:140], 20)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_embeddings_rejected(bad):
    x = clustered(20, 8)
    x[3, 2] = bad
    x[11, 0] = bad
    with pytest.raises(ValueError, match=r"P00003, P00011"):
        EmbeddingIndex.build(x, ids_for(20), method="exact")


def test_duplicate_ids_rejected():
    ids = ids_for(10)
    ids[7] = ids[2]
    with pytest.raises(ValueError, match="duplicate patient ids: P00002"):
        EmbeddingIndex.build(clustered(10, 4), ids)


@pytest.mark.parametrize("method", ["hnsw", "exact"])
def test_k_larger_than_n_rejected(method):
    index = EmbeddingIndex.build(clustered(30, 4), ids_for(30), method=method)
    with pytest.raises(ValueError, match=r"k=31 .* N=30"):
        index.query(clustered(2, 4), 31)
    with pytest.raises(ValueError, match=r"k=31"):
        exact_knn(clustered(2, 4), clustered(30, 4), 31)


def test_input_errors():
    with pytest.raises(ValueError, match="ids for"):
        EmbeddingIndex.build(clustered(5, 4), ids_for(4))
    with pytest.raises(ValueError, match="method"):
        EmbeddingIndex.build(clustered(5, 4), ids_for(5), method="faiss")
    index = EmbeddingIndex.build(clustered(5, 4), ids_for(5), method="exact")
    with pytest.raises(ValueError, match="dim"):
        index.query(np.zeros((1, 3), np.float32), 2)


@pytest.fixture(scope="module")
def low_rank_3000():
    """128-d vectors of intrinsic dimension 8 (clusters in 8-d, linear map, small noise)."""
    rng = np.random.default_rng(5)
    z = clustered(3000, 8, clusters=10, seed=6)
    return (z @ rng.normal(size=(8, 128)).astype(np.float32) + 0.01 * rng.normal(size=(3000, 128))).astype(np.float32)


@pytest.fixture(scope="module")
def pca_3000(low_rank_3000):
    return EmbeddingIndex.build(low_rank_3000, ids_for(3000), method="hnsw", pca_dim=16, ef=100, num_threads=2)


def test_pca_graph_recall_and_exact_distances(pca_3000, low_rank_3000):
    assert pca_3000.pca_dim == 16 and pca_3000.pca_variance > 0.99
    q = low_rank_3000[::30]
    approx, dist = pca_3000.query(q, 40)
    exact, exact_d = exact_knn(q, low_rank_3000, 40)
    assert recall_at_k(approx, exact) >= 0.99
    # distances are the full 128-d ones, sorted, and the first is the query itself
    full = ((low_rank_3000[approx] - q[:, None, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(dist, full, rtol=1e-4, atol=1e-3)
    assert np.all(np.diff(dist, axis=1) >= 0)
    np.testing.assert_array_equal(approx[:, 0], np.arange(0, 3000, 30))
    np.testing.assert_allclose(pca_3000.vectors([7]), low_rank_3000[7:8])


def test_pca_graph_loses_recall_on_isotropic_data(data_2000):
    """64-d isotropic clusters kept on 8 axes: the graph finds the right cluster, not the right order."""
    index = EmbeddingIndex.build(data_2000, ids_for(2000), method="hnsw", pca_dim=8, ef=50, num_threads=2)
    q = data_2000[::40]
    exact, _ = exact_knn(q, data_2000, 20)
    assert index.pca_variance < 0.99
    assert recall_at_k(index.query(q, 20)[0], exact) < 0.9


def test_pca_graph_save_load_and_pickle(tmp_path, pca_3000, low_rank_3000):
    q = low_rank_3000[5:45]
    a = pca_3000.query(q, 25)
    pca_3000.save(tmp_path / "ix")
    for clone in (EmbeddingIndex.load(tmp_path / "ix"), pickle.loads(pickle.dumps(pca_3000))):
        assert clone.params() == pca_3000.params() and clone.pca_dim == 16
        b = clone.query(q, 25)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_pca_dim_errors():
    x = clustered(50, 8)
    with pytest.raises(ValueError, match="method='hnsw' only"):
        EmbeddingIndex.build(x, ids_for(50), method="exact", pca_dim=4)
    with pytest.raises(ValueError, match=r"pca_dim must be in \[1, 8\)"):
        EmbeddingIndex.build(x, ids_for(50), method="hnsw", pca_dim=8)
    with pytest.raises(ValueError, match="needs more than 4 embeddings"):
        EmbeddingIndex.build(x[:4], ids_for(4), method="hnsw", pca_dim=4)


def test_recall_at_k():
    assert recall_at_k([[1, 2], [3, 4]], [[2, 1], [3, 5]]) == 0.75
