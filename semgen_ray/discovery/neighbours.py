"""K nearest patients of many reference patients, in parallel on Ray (SPEC §1.4).

Self-discovery asks the K (=200) nearest train patients of each of C reference patients. The index
is put in the object store **once** (``ray.put``) and each Ray task answers a block of references
with one batched ``query`` (one ``knn_query`` call for HNSW), as RAY_NOTES §4 recommends.
"""

from __future__ import annotations

import numpy as np

from semgen_ray.discovery.index import EmbeddingIndex, exact_knn, recall_at_k

#: Below this many patients exact search is the default. RAY_NOTES §4 measured exact numpy search at
#: ~1 ms/query at 20k×256 and 208 ms for 64 queries at 100k×256, with no build cost, while an HNSW
#: build costs seconds (4–5 s at 20k, 35 s at 100k on 2 cores). benchmarks/neighbours.py (D=512,
#: K=200, 2 cores): build 2.9 s at 10k and 84 s at 100k; exact 0.2 ms/ref at 10k, 1.9 ms/ref at 100k,
#: 58–70 ms/ref at 1M. With few references (C = 44–200) exact stays cheaper than building HNSW even
#: at 100k; HNSW pays off when many references are asked of one index, or at ~1M patients.
EXACT_THRESHOLD = 50_000


def choose_method(n: int, k: int, threshold: int = EXACT_THRESHOLD, override: str | None = None) -> str:
    """``"exact"`` for ``n < threshold`` patients, ``"hnsw"`` otherwise; ``override`` wins if given."""
    if k > n:
        raise ValueError(f"k={k} neighbours asked for, but there are only N={n} patients")
    if override is not None:
        if override not in ("exact", "hnsw"):
            raise ValueError(f"override must be 'exact' or 'hnsw', got {override!r}")
        return override
    return "exact" if n < threshold else "hnsw"


def _query_block(index: EmbeddingIndex, refs: np.ndarray, k: int, num_threads: int | None):
    if refs.ndim == 1:
        return index.query_rows(refs, k, num_threads=num_threads)
    return index.query(refs, k, num_threads=num_threads)


def _normalise_refs(index: EmbeddingIndex, reference_rows) -> np.ndarray:
    refs = np.asarray(reference_rows)
    if refs.ndim == 1 or refs.ndim == 0:
        refs = refs.reshape(-1)
        if refs.size and not np.issubdtype(refs.dtype, np.integer):
            raise TypeError("1-D reference_rows must be integer row numbers of the index")
        refs = refs.astype(np.int64)
        if refs.size and (refs.min() < 0 or refs.max() >= len(index)):
            raise IndexError(f"reference rows must lie in [0, {len(index)})")
        return refs
    if refs.ndim == 2:
        if refs.shape[1] != index.dim:
            raise ValueError(f"reference vectors have dim {refs.shape[1]}, the index has dim {index.dim}")
        return np.ascontiguousarray(refs, dtype=np.float32)
    raise ValueError(f"reference_rows must be 1-D rows or 2-D vectors, got shape {refs.shape}")


def neighbours_for_references(index: EmbeddingIndex, reference_rows, k: int, batch_per_task: int = 256,
                              ray: bool = True, num_cpus_per_task: float = 1,
                              num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """K nearest patients of every reference: ``(rows (R, k) int64, sq. L2 distances (R, k) float32)``.

    ``reference_rows`` is either 1-D row numbers of the index (the reference patient is then its
    own rank 0, as in the reference code) or a 2-D (R, D) array of query vectors. Results are in
    reference order. With ``ray=True`` the index is ``ray.put`` once and the references are split
    into blocks of ``batch_per_task``, one Ray task each (each a single batched query; hnswlib uses
    ``num_threads`` threads per task, default 1 since parallelism comes from the tasks). ``ray=False``
    runs the same blocks in this process (same results; hnswlib threads default to the index's
    setting, i.e. all cores). Needs an initialised Ray when ``ray=True``.
    """
    refs = _normalise_refs(index, reference_rows)
    from semgen_ray.discovery.index import _check_k

    k = _check_k(k, len(index))
    if batch_per_task < 1:
        raise ValueError(f"batch_per_task must be ≥ 1, got {batch_per_task}")
    n_refs = refs.shape[0]
    if n_refs == 0:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
    starts = list(range(0, n_refs, batch_per_task))
    if not ray:
        parts = [_query_block(index, refs[s:s + batch_per_task], k, num_threads) for s in starts]
    else:
        import ray as _ray

        if not _ray.is_initialized():
            raise RuntimeError("neighbours_for_references(ray=True) needs ray.init() first "
                               "(or pass ray=False to search in this process)")
        index_ref = _ray.put(index)
        task = _ray.remote(num_cpus=num_cpus_per_task)(_query_block)
        threads = 1 if num_threads is None else num_threads
        parts = _ray.get([task.remote(index_ref, refs[s:s + batch_per_task], k, threads) for s in starts])
    rows = np.concatenate([p[0] for p in parts], axis=0)
    dist = np.concatenate([p[1] for p in parts], axis=0)
    if np.asarray(reference_rows).ndim == 1:
        _self_first(rows, dist, np.asarray(reference_rows, dtype=np.int64))
    return rows, dist


def _self_first(rows: np.ndarray, dist: np.ndarray, refs: np.ndarray) -> None:
    """Put each stored reference at rank 0 (distance 0), as the reference code does, in place.

    Float32 distances between near-identical embeddings (an under-trained auto-encoder) can tie at
    0 with other patients; the reference patient must still be its own first neighbour.
    """
    for i, ref in enumerate(refs.tolist()):
        if rows[i, 0] == ref:
            continue
        hit = np.flatnonzero(rows[i] == ref)
        end = hit[0] if hit.size else rows.shape[1] - 1
        rows[i, 1:end + 1] = rows[i, :end].copy()
        dist[i, 1:end + 1] = dist[i, :end].copy()
        rows[i, 0], dist[i, 0] = ref, 0.0


def measure_recall(index: EmbeddingIndex, data, sample: int = 200, k: int = 200, seed: int = 0) -> dict:
    """Recall@k of ``index`` against exact search over ``data`` (the embeddings it was built from).

    Queries are ``sample`` rows of ``data`` drawn without replacement with ``seed``. Returns
    ``{"method", "recall_at_k", "queries", "k"}`` (recall is 1.0 by construction for exact indexes).
    """
    x = np.asarray(data, dtype=np.float32)
    if x.shape[0] != len(index):
        raise ValueError(f"data has {x.shape[0]} rows but the index holds {len(index)} patients")
    rng = np.random.default_rng(seed)
    n_q = min(int(sample), x.shape[0])
    rows = np.sort(rng.choice(x.shape[0], size=n_q, replace=False))
    approx, _ = index.query(x[rows], k)
    exact, _ = exact_knn(x[rows], x, k)
    return {"method": index.method, "recall_at_k": recall_at_k(approx, exact), "queries": int(n_q), "k": int(k)}
