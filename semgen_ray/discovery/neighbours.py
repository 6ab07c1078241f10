"""K nearest patients of many reference patients, in parallel on Ray (docs/method.md §1.4).

Self-discovery asks the K (=200) nearest train patients of each of C reference patients. The index
is put in the object store **once** (``ray.put``) and each Ray task answers a block of references
with one batched ``query`` (one ``knn_query`` call for HNSW), as docs/operations.md §4 recommends.
"""

from __future__ import annotations

import numpy as np

from semgen_ray.discovery.index import EmbeddingIndex, exact_knn, recall_at_k

#: The cost model of ``discovery.index: auto`` is calibrated on these benchmark results
#: (``benchmarks/neighbours.py``: synthetic embeddings, K = 200, M = 16, ef_construction = 200,
#: 2 threads), relative to the repository root; :func:`fit_cost_model` re-derives the constants below
#: from them (a test keeps the two in step).
COST_MODEL_FILES = ("benchmarks/results/neighbours.json",
                    "benchmarks/results/neighbours_1e6_isotropic_m32.json",
                    "benchmarks/results/neighbours_1e6_isotropic_pca64.json",
                    "benchmarks/results/neighbours_1e6_latent_m16.json",
                    "benchmarks/results/neighbours_1e6_latent_pca64.json")
#: Exact search, seconds per reference = EXACT_S * patients * dim: the median over every exact row
#: of those files (2.1e-11 to 5.4e-11 across N = 1e4..1e6; a blocked matmul is linear in N·D).
EXACT_S = 2.76e-11
#: HNSW build, seconds = BUILD_S * patients**BUILD_N_EXP * graph_dim**BUILD_D_EXP: least squares in
#: log space over the M = 16 builds (the default ``hnsw_m``; the M = 32 file gives exact rows only) (N = 1e4..1e6, graph dim 512, or 64 with PCA); it reproduces them
#: within a factor 1.7 (2.9 s at 1e4, 84 s at 1e5, 183-802 s at 1e6).
BUILD_S, BUILD_N_EXP, BUILD_D_EXP = 3.32e-6, 1.122, 0.577
#: HNSW query, seconds per reference = QUERY_S * graph_dim * log2(patients): the median over the
#: M = 16 HNSW rows (0.23-1.25 ms per reference at ef 200-400).
QUERY_S = 1.21e-7
#: Discovery checks an HNSW index against exact search on this many sampled references
#: (:func:`measure_recall`): that check alone costs as many exact queries as the index would save
#: for up to this many references, which is why ``auto`` keeps exact search for C = 44-200 classes.
RECALL_SAMPLE = 200


def fit_cost_model(paths=None, root=None) -> dict:
    """The cost-model constants fitted on the benchmark JSON files (:data:`COST_MODEL_FILES`)."""
    import json
    from pathlib import Path

    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    exact, builds, queries = [], set(), []
    for name in paths or COST_MODEL_FILES:
        data = json.loads((root / name).read_text())
        pca = int(data["params"].get("pca_dim") or 0)
        m = int(data["params"].get("M", 16))
        for r in data["rows"]:
            n, dim = int(r["n"]), int(r["dim"])
            if r["method"] == "exact":
                exact.append(r["query_ms_per_ref"] / 1e3 / (n * dim))
            elif m == 16:
                graph = pca or dim
                builds.add((n, graph, float(r["build_s"])))
                queries.append(r["query_ms_per_ref"] / 1e3 / (graph * np.log2(n)))
    builds = sorted(builds)
    a = np.array([[1.0, np.log(n), np.log(g)] for n, g, _ in builds])
    coef = np.linalg.lstsq(a, np.log([t for *_, t in builds]), rcond=None)[0]
    return {"EXACT_S": float(np.median(exact)), "BUILD_S": float(np.exp(coef[0])),
            "BUILD_N_EXP": float(coef[1]), "BUILD_D_EXP": float(coef[2]), "QUERY_S": float(np.median(queries))}


def exact_seconds(references: int, patients: int, dim: int) -> float:
    """Estimated seconds of exact search for ``references`` queries among ``patients`` of ``dim``."""
    return float(references) * EXACT_S * float(patients) * float(dim)


def hnsw_build_seconds(patients: int, graph_dim: int) -> float:
    return BUILD_S * float(patients) ** BUILD_N_EXP * float(graph_dim) ** BUILD_D_EXP if patients > 1 else 0.0


def hnsw_query_seconds(references: int, patients: int, graph_dim: int) -> float:
    return float(references) * QUERY_S * float(graph_dim) * np.log2(max(patients, 2))


def index_costs(references: int, patients: int, dim: int, val_patients: int = 0,
                graph_dim: int | None = None, recall_sample: int = RECALL_SAMPLE) -> dict:
    """Estimated seconds of discovery's neighbour search with either index (:data:`COST_MODEL_FILES`).

    ``exact``: every reference searched among the ``patients`` train and ``val_patients`` validation
    embeddings. ``hnsw``: both graphs built (over ``graph_dim`` dimensions, the PCA dimension when
    one is used), the references queried on both, and the recall check (``recall_sample`` sampled
    train patients searched both ways). Build threads as in the benchmark (2 cores).
    """
    g = int(graph_dim or dim)
    sample = min(int(recall_sample), int(patients))
    exact = exact_seconds(references, patients, dim) + exact_seconds(references, val_patients, dim)
    hnsw = (hnsw_build_seconds(patients, g) + hnsw_build_seconds(val_patients, g)
            + hnsw_query_seconds(references, patients, g) + hnsw_query_seconds(references, val_patients, g)
            + exact_seconds(sample, patients, dim) + hnsw_query_seconds(sample, patients, g))
    return {"exact": float(f"{exact:.4g}"), "hnsw": float(f"{hnsw:.4g}")}


def choose_index(references: int, patients: int, dim: int, k: int, val_patients: int = 0,
                 graph_dim: int | None = None, override: str | None = None) -> dict:
    """The index for ``discovery.index``: ``{"method", "mode", "estimated_s", "reason", "calibration"}``.

    ``override`` (``exact``/``hnsw``, from the config) wins; otherwise (``auto``) the cheaper of the
    two estimates of :func:`index_costs` (exact on a tie).
    """
    if k > patients:
        raise ValueError(f"k={k} neighbours asked for, but there are only N={patients} patients")
    costs = index_costs(references, patients, dim, val_patients, graph_dim)
    sizes = f"{references} references, {patients} + {val_patients} patients, dim {dim}"
    if override is not None:
        if override not in ("exact", "hnsw"):
            raise ValueError(f"override must be 'exact' or 'hnsw', got {override!r}")
        method, mode = override, "configured"
        reason = f"discovery.index: {override} (estimated {costs[override]:.3g} s; {sizes})"
    else:
        method = "exact" if costs["exact"] <= costs["hnsw"] else "hnsw"
        other = "hnsw" if method == "exact" else "exact"
        mode = "auto"
        reason = (f"{method}: estimated {costs[method]:.3g} s against {costs[other]:.3g} s for {other} "
                  f"({sizes}" + (", HNSW build and recall check included)" if method == "exact" else ")"))
    return {"method": method, "mode": mode, "estimated_s": costs, "reason": reason,
            "calibration": list(COST_MODEL_FILES)}


def choose_method(n: int, k: int, references: int = 200, dim: int = 512, override: str | None = None,
                  val_patients: int = 0, graph_dim: int | None = None) -> str:
    """The method of :func:`choose_index` for ``n`` patients (``override`` wins if given)."""
    return choose_index(references, n, dim, k, val_patients, graph_dim, override)["method"]


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
    from semgen_ray.discovery.index import check_k

    k = check_k(k, len(index))
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
