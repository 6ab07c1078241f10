"""Patient-level K-nearest-neighbour index over auto-encoder embeddings (docs/method.md §1.4, docs/operations.md §4).

Self-discovery sorts patients by Euclidean (L2) distance between their 512-d features. This module
answers that question two ways behind one interface:

``method="exact"``   blocked matrix products (``‖q‖² − 2 q·x + ‖x‖²``, argpartition + sort), float32,
                     memory bounded: the reference and the test oracle, and cheaper below ~50k patients.
``method="hnsw"``    an hnswlib graph (multithreaded build), approximate, for large cohorts. With
                     ``pca_dim`` > 0 the graph is built over the embeddings projected on their
                     ``pca_dim`` leading principal axes, and its ``max(ef, k)`` candidates are re-ranked
                     by their exact distances in the full dimension (the "PCA + HNSW + refine" recipe of
                     graph search libraries): a smaller, faster graph when the embeddings have a low
                     intrinsic dimension, as trained networks' features do. The recall that costs is
                     measured on every discovery run.

Distances returned by both paths are **squared** Euclidean distances (hnswlib's ``"l2"`` space);
the ordering is the same as for the Euclidean distance of the reference code. Rows are the positions
of the patients in the ``embeddings`` given to :meth:`EmbeddingIndex.build`; ``index.ids[row]`` is the
patient id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

METHODS = ("hnsw", "exact")
_PARAMS_FILE = "params.json"
_IDS_FILE = "ids.json"
_HNSW_FILE = "index.hnsw"
_DATA_FILE = "data.npy"
_PCA_FILE = "pca.npz"
_CHUNK = 100_000  # rows per chunk when building the covariance and projecting


def _as_float32_2d(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, dim), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_k(k: int, n: int) -> int:
    """``k`` as an int when it is a positive integer no larger than the ``n`` rows of an index (else a
    ``ValueError`` saying which); shared by the exact search, the index and the reference queries."""
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n:
        raise ValueError(f"k={k} neighbours asked for, but the index holds only N={n} patients (k must be ≤ N)")
    return int(k)


def exact_knn(queries, data, k: int, block: int = 8192, query_block: int = 1024,
              data_sq_norms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact K nearest neighbours of every query among ``data`` rows by squared L2 distance.

    Computed as ``‖q‖² − 2 q·x + ‖x‖²`` in float32 with blocked matrix products: queries in chunks
    of ``query_block`` rows, data in chunks of ``block`` rows, so the distance scratch is at most
    ``query_block × block`` floats (32 MiB at the defaults) whatever N is. Each data block keeps its
    best ``k`` per query (argpartition) and merges them with the running best; the final ``k`` are
    sorted by distance. Returns ``(indices (Q, k) int64, distances (Q, k) float32)``; distances are
    clipped at 0 (float32 cancellation can make a self-distance come out as a tiny negative number).
    """
    q = _as_float32_2d(queries, "queries")
    x = _as_float32_2d(data, "data")
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"queries have dim {q.shape[1]} but data has dim {x.shape[1]}")
    n = x.shape[0]
    k = check_k(k, n)
    block = max(int(block), k)
    x_sq = (np.einsum("ij,ij->i", x, x) if data_sq_norms is None
            else np.asarray(data_sq_norms, dtype=np.float32))
    out_i = np.empty((q.shape[0], k), dtype=np.int64)
    out_d = np.empty((q.shape[0], k), dtype=np.float32)
    for q0 in range(0, q.shape[0], query_block):
        qb = q[q0:q0 + query_block]
        q_sq = np.einsum("ij,ij->i", qb, qb)[:, None]
        best_d = best_i = None
        for x0 in range(0, n, block):
            xb = x[x0:x0 + block]
            d = qb @ xb.T
            d *= -2.0
            d += q_sq
            d += x_sq[None, x0:x0 + block]
            kk = min(k, d.shape[1])
            if kk < d.shape[1]:
                part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
            else:
                part = np.broadcast_to(np.arange(d.shape[1]), d.shape)
            cand_d = np.take_along_axis(d, part, axis=1)
            cand_i = part.astype(np.int64) + x0
            if best_d is not None:
                cand_d = np.concatenate([best_d, cand_d], axis=1)
                cand_i = np.concatenate([best_i, cand_i], axis=1)
                if cand_d.shape[1] > k:
                    sel = np.argpartition(cand_d, k - 1, axis=1)[:, :k]
                    cand_d = np.take_along_axis(cand_d, sel, axis=1)
                    cand_i = np.take_along_axis(cand_i, sel, axis=1)
            best_d, best_i = cand_d, cand_i
        order = np.argsort(best_d, axis=1, kind="stable")
        out_d[q0:q0 + len(qb)] = np.maximum(np.take_along_axis(best_d, order, axis=1), 0.0)
        out_i[q0:q0 + len(qb)] = np.take_along_axis(best_i, order, axis=1)
    return out_i, out_d


def recall_at_k(approx, exact) -> float:
    """Mean fraction of each row of ``exact`` neighbour indices found in the same row of ``approx``."""
    a = np.asarray(approx)
    e = np.asarray(exact)
    if a.shape[0] != e.shape[0] or a.ndim != 2 or e.ndim != 2:
        raise ValueError(f"approx {a.shape} and exact {e.shape} must be 2-D with the same number of rows")
    if e.size == 0:
        return 1.0
    hits = sum(np.intersect1d(ar, er, assume_unique=False).size for ar, er in zip(a, e))
    return float(hits) / float(e.size)


def principal_axes(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean (D,), the ``dim`` leading principal axes (D, dim) of the rows of ``x`` and the fraction
    of the variance they keep. The covariance is accumulated in float64 over row chunks (D × D memory).
    """
    n, d = x.shape
    if not 1 <= dim < d:
        raise ValueError(f"pca_dim must be in [1, {d}) for {d}-d embeddings, got {dim}")
    if n <= dim:
        raise ValueError(f"pca_dim={dim} needs more than {dim} embeddings, got {n}")
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((d, d))
    for s in range(0, n, _CHUNK):
        b = x[s:s + _CHUNK].astype(np.float64) - mean
        cov += b.T @ b
    w, v = np.linalg.eigh(cov)  # ascending
    w = np.clip(w, 0.0, None)
    kept = float(w[-dim:].sum() / w.sum()) if w.sum() > 0 else 1.0
    axes = np.ascontiguousarray(v[:, ::-1][:, :dim], dtype=np.float32)
    return mean.astype(np.float32), axes, kept


class EmbeddingIndex:
    """K-NN index over per-patient float32 embeddings. Build with :meth:`build` or :meth:`load`.

    Picklable (hnswlib indexes pickle themselves), so ``ray.put(index)`` once and query it from tasks.
    """

    def __init__(self, method: str, space: str, dim: int, ids: Sequence[str], *, M: int = 16,
                 ef_construction: int = 200, ef: int = 400, num_threads: int | None = None,
                 hnsw=None, data: np.ndarray | None = None,
                 pca: tuple[np.ndarray, np.ndarray] | None = None, pca_variance: float | None = None):
        self.method = method
        self.space = space
        self.dim = int(dim)
        self.ids = list(ids)
        self.M = int(M)
        self.ef_construction = int(ef_construction)
        self.ef = int(ef)
        self.num_threads = num_threads
        self._hnsw = hnsw
        self._data = data
        self._data_sq = None if data is None else np.einsum("ij,ij->i", data, data)
        self._pca = pca
        self.pca_dim = 0 if pca is None else int(pca[1].shape[1])
        self.pca_variance = pca_variance

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, embeddings, ids: Sequence[str], method: str = "hnsw", space: str = "l2", M: int = 16,
              ef_construction: int = 200, ef: int = 400, num_threads: int | None = None,
              seed: int = 100, pca_dim: int = 0) -> EmbeddingIndex:
        """Index ``embeddings`` (N, D), row i belonging to patient ``ids[i]``.

        Rejects non-finite embeddings (naming the patients) and duplicate ids. ``num_threads`` is
        hnswlib's build parallelism (default: all cores). ``pca_dim`` > 0 (HNSW only) builds the
        graph over the ``pca_dim`` leading principal components and re-ranks in full dimension.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if pca_dim and method != "hnsw":
            raise ValueError(f"pca_dim applies to method='hnsw' only (got method={method!r}, pca_dim={pca_dim})")
        if space != "l2":
            raise ValueError(f"only space='l2' (Euclidean, docs/method.md §1.4) is supported, got {space!r}")
        x = _as_float32_2d(embeddings, "embeddings")
        ids = [str(i) for i in ids]
        if len(ids) != x.shape[0]:
            raise ValueError(f"{len(ids)} ids for {x.shape[0]} embeddings")
        if x.shape[0] == 0:
            raise ValueError("cannot build an index over 0 embeddings")
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            bad = [ids[i] for i in np.flatnonzero(~finite)]
            shown = ", ".join(bad[:10]) + (f", … ({len(bad)} in all)" if len(bad) > 10 else "")
            raise ValueError(f"non-finite (NaN/inf) embeddings for patient(s): {shown}")
        if len(set(ids)) != len(ids):
            seen, dups = set(), []
            for i in ids:
                if i in seen and i not in dups:
                    dups.append(i)
                seen.add(i)
            raise ValueError(f"duplicate patient ids: {', '.join(dups[:10])}")
        n, d = x.shape
        if method == "exact":
            return cls(method, space, d, ids, M=M, ef_construction=ef_construction, ef=ef,
                       num_threads=num_threads, data=x)
        import hnswlib

        threads = int(num_threads) if num_threads else (os.cpu_count() or 1)
        pca = kept = None
        graph_x = x
        if pca_dim:
            mean, axes, kept = principal_axes(x, int(pca_dim))
            pca = (mean, axes)
            graph_x = np.empty((n, axes.shape[1]), dtype=np.float32)
            for s in range(0, n, _CHUNK):
                graph_x[s:s + _CHUNK] = (x[s:s + _CHUNK] - mean) @ axes
        h = hnswlib.Index(space=space, dim=graph_x.shape[1])
        h.init_index(max_elements=n, ef_construction=int(ef_construction), M=int(M), random_seed=int(seed))
        h.add_items(graph_x, np.arange(n, dtype=np.int64), num_threads=threads)
        h.set_ef(int(ef))
        return cls(method, space, d, ids, M=M, ef_construction=ef_construction, ef=ef,
                   num_threads=num_threads, hnsw=h, data=x if pca else None, pca=pca, pca_variance=kept)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        pca = f", pca_dim={self.pca_dim}" if self.pca_dim else ""
        return (f"EmbeddingIndex(method={self.method!r}, N={len(self)}, dim={self.dim}, M={self.M}, "
                f"ef={self.ef}{pca})")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_data_sq"] = None  # recomputed on load: cheaper than shipping it
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._data is not None:
            self._data_sq = np.einsum("ij,ij->i", self._data, self._data)

    # ------------------------------------------------------------------ queries
    def vectors(self, rows) -> np.ndarray:
        """The stored embeddings of ``rows`` (float32, (len(rows), D))."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows must lie in [0, {len(self)}), got {rows.min()}..{rows.max()}")
        if self._data is not None:
            return self._data[rows]
        if rows.size == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.asarray(self._hnsw.get_items(rows, return_type="numpy"), dtype=np.float32)

    def query(self, vectors, k: int, num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """K nearest stored patients of each vector: ``(rows (Q, k) int64, sq. L2 distances (Q, k) float32)``.

        Sorted by increasing distance. For HNSW the search beam is ``max(ef, k)`` (a beam narrower
        than k cannot return k neighbours); recall rises with ef and M, see the README's benchmark.
        """
        q = _as_float32_2d(vectors, "vectors")
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors have dim {q.shape[1]}, the index has dim {self.dim}")
        if not np.isfinite(q).all():
            raise ValueError("query vectors contain NaN/inf")
        k = check_k(k, len(self))
        if q.shape[0] == 0:
            return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
        if self.method == "exact":
            return exact_knn(q, self._data, k, data_sq_norms=self._data_sq)
        beam = max(self.ef, k)
        self._hnsw.set_ef(beam)
        threads = int(num_threads) if num_threads else (int(self.num_threads) if self.num_threads else -1)
        if self._pca is None:
            labels, dist = self._hnsw.knn_query(q, k=k, num_threads=threads)
            return labels.astype(np.int64, copy=False), np.asarray(dist, dtype=np.float32)
        mean, axes = self._pca
        cand, _ = self._hnsw.knn_query((q - mean) @ axes, k=min(beam, len(self)), num_threads=threads)
        return self._rerank(q, cand.astype(np.int64, copy=False), k, threads)

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int, threads: int,
                block: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` of each row's candidates nearest in full dimension, sorted, with exact distances.

        Small query blocks keep the gathered candidate vectors in cache; blocks run on ``threads``
        threads (numpy's gathers and BLAS release the GIL).
        """
        out_i = np.empty((q.shape[0], k), dtype=np.int64)
        out_d = np.empty((q.shape[0], k), dtype=np.float32)
        q_sq = np.einsum("ij,ij->i", q, q)

        def run(start: int, stop: int) -> None:
            for b in range(start, stop, block):
                rows = cand[b:min(b + block, stop)]
                d = np.matmul(self._data[rows], q[b:b + len(rows), :, None])[..., 0]
                d *= -2.0
                d += self._data_sq[rows]
                d += q_sq[b:b + len(rows), None]
                sel = np.argpartition(d, k - 1, axis=1)[:, :k]
                top = np.take_along_axis(d, sel, axis=1)
                order = np.argsort(top, axis=1, kind="stable")
                out_i[b:b + len(rows)] = np.take_along_axis(np.take_along_axis(rows, sel, axis=1), order, axis=1)
                out_d[b:b + len(rows)] = np.maximum(np.take_along_axis(top, order, axis=1), 0.0)

        workers = max(1, threads if threads > 0 else (os.cpu_count() or 1))
        bounds = np.linspace(0, q.shape[0], min(workers, q.shape[0]) + 1).astype(int)
        if len(bounds) <= 2:
            run(0, q.shape[0])
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(bounds) - 1) as pool:
                list(pool.map(run, bounds[:-1], bounds[1:]))
        return out_i, out_d

    def query_rows(self, rows, k: int, num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`query` with the stored embeddings of ``rows`` (each patient is then its own rank 0)."""
        return self.query(self.vectors(rows), k, num_threads=num_threads)

    # ------------------------------------------------------------------ persistence
    def params(self) -> dict:
        return {"method": self.method, "space": self.space, "dim": self.dim, "n": len(self),
                "M": self.M, "ef_construction": self.ef_construction, "ef": self.ef,
                "num_threads": self.num_threads, "pca_dim": self.pca_dim, "pca_variance": self.pca_variance}

    def save(self, directory) -> Path:
        """Write ``params.json``, ``ids.json``, ``index.hnsw`` (hnswlib) and/or ``data.npy`` (exact, and the
        full-dimension vectors of a PCA graph) and ``pca.npz`` (its mean and axes)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if self.method == "hnsw":
            self._hnsw.save_index(str(d / _HNSW_FILE))
        if self._data is not None:
            np.save(d / _DATA_FILE, self._data)
        if self._pca is not None:
            np.savez(d / _PCA_FILE, mean=self._pca[0], axes=self._pca[1])
        (d / _IDS_FILE).write_text(json.dumps(self.ids))
        (d / _PARAMS_FILE).write_text(json.dumps(self.params(), indent=2))
        return d

    @classmethod
    def load(cls, directory) -> EmbeddingIndex:
        d = Path(directory)
        if not (d / _PARAMS_FILE).is_file():
            raise FileNotFoundError(f"no {_PARAMS_FILE} in {d}: not a saved EmbeddingIndex")
        p = json.loads((d / _PARAMS_FILE).read_text())
        ids = json.loads((d / _IDS_FILE).read_text())
        if len(ids) != p["n"]:
            raise ValueError(f"{d}: {len(ids)} ids but params say n={p['n']}")
        kw = {"M": p["M"], "ef_construction": p["ef_construction"], "ef": p["ef"], "num_threads": p.get("num_threads")}
        if p["method"] == "exact":
            data = np.load(d / _DATA_FILE)
            return cls("exact", p["space"], p["dim"], ids, data=data, **kw)
        import hnswlib

        pca = data = None
        if p.get("pca_dim"):
            with np.load(d / _PCA_FILE) as z:
                pca = (z["mean"], z["axes"])
            data = np.load(d / _DATA_FILE)
        h = hnswlib.Index(space=p["space"], dim=int(p.get("pca_dim") or p["dim"]))
        h.load_index(str(d / _HNSW_FILE), max_elements=p["n"])
        h.set_ef(p["ef"])
        return cls("hnsw", p["space"], p["dim"], ids, hnsw=h, data=data, pca=pca,
                   pca_variance=p.get("pca_variance"), **kw)
