"""Benchmark: patient-level K-NN for self-discovery, HNSW (hnswlib) against exact blocked matmul.

Claim measured: exact search (semgen_ray.discovery.index.exact_knn) is the cheaper choice for small
cohorts (no build), HNSW pays off for large N, and how recall@K and query time of HNSW trade against
each other through M (graph degree, one build each) and ef (search beam, one query pass each).

Data (``--data``), float32, ``--dim`` 512 like the auto-encoder features of docs/method.md §1.3, in chunks of
100k rows; references are stored rows (each its own rank 0, docs/method.md §1.4):

  isotropic  ``--clusters`` Gaussian clusters whose spread fills all ``--dim`` dimensions: the worst
             case for a graph index (within a cluster every direction matters, neighbours are almost
             equidistant).
  latent     the same clusters drawn in a ``--latent-dim``-dimensional space, mapped to ``--dim`` by a
             random linear map, plus isotropic noise of s.d. ``--noise``: features of low intrinsic
             dimension, as the last layers of trained networks have (Ansuini et al., NeurIPS 2019).

For each N and each reference count R, rows record:

  hnsw    build time (``--threads`` threads), then for every ``--ef``: one batched query of R
          references, recall@K against exact search on the first ``--exact-max`` references
  exact   blocked-matmul time for R references; when R > ``--exact-max`` only the first
          ``--exact-max`` are timed and the time is scaled linearly (``"extrapolated": true``)

Query times of both methods are the median of ``--repeats`` passes.
HNSW builds above ``--hnsw-max-n`` are not run (recorded as ``not_run`` with the reason).
Writes JSON (default ``benchmarks/results/neighbours.json``) and prints a markdown table.

    ./venv-run python benchmarks/neighbours.py                               # N = 1e4, 1e5 (≈ 5 min on 2 cores)
    ./venv-run python benchmarks/neighbours.py --n 1000000 --hnsw-max-n 1000000 --M 32 --ef 200 300 400 \
        --json benchmarks/results/neighbours_1e6_isotropic_m32.json         # one 1e6 build (≈ 12 min)
    ./venv-run python benchmarks/neighbours.py --n 1000000 --hnsw-max-n 1000000 --data latent --pca-dim 64 \
        --ef 200 300 400 --repeats 3 --json benchmarks/results/neighbours_1e6_latent_pca64.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe as machine  # noqa: E402


def clustered(n: int, dim: int, clusters: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` float32 vectors around ``clusters`` Gaussian centres with per-cluster spread, in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    spread = rng.uniform(0.2, 0.6, size=clusters).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        lab = rng.integers(0, clusters, size=m)
        noise = rng.standard_normal(size=(m, dim), dtype=np.float32)
        noise *= spread[lab, None]
        noise += centres[lab]
        out[s:s + m] = noise
    return out


def median_time(fn, repeats: int):
    """``(result of the last call, median seconds)`` over ``repeats`` calls of ``fn()``."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def latent(n: int, dim: int, latent_dim: int, clusters: int, noise: float, seed: int,
           chunk: int = 100_000) -> np.ndarray:
    """:func:`clustered` vectors in ``latent_dim`` dimensions, mapped linearly to ``dim``, plus noise."""
    rng = np.random.default_rng(seed + 1)
    w = (rng.standard_normal(size=(latent_dim, dim), dtype=np.float32) / np.float32(np.sqrt(latent_dim)))
    z = clustered(n, latent_dim, clusters, seed)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        blk = z[s:s + chunk] @ w
        blk += np.float32(noise) * rng.standard_normal(size=blk.shape, dtype=np.float32)
        out[s:s + chunk] = blk
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--refs", type=int, nargs="+", default=[100, 10_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--clusters", type=int, default=200)
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", type=int, nargs="+", default=[400], help="search beams, each queried (>= K used)")
    p.add_argument("--pca-dim", type=int, default=0,
                   help="build the graph over this many principal components, re-rank in full dimension (0: off)")
    p.add_argument("--data", choices=("isotropic", "latent"), default="isotropic")
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--exact-max", type=int, default=1000,
                   help="most references timed exactly (also the recall sample); more are extrapolated")
    p.add_argument("--hnsw-max-n", type=int, default=100_000, help="skip HNSW builds above this N")
    p.add_argument("--repeats", type=int, default=1, help="time each query batch as the median of this many passes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "neighbours.json"))
    args = p.parse_args(argv)

    from semgen_ray.discovery.index import EmbeddingIndex, exact_knn, recall_at_k

    result = {"benchmark": "neighbours", "machine": machine(),
              "params": {k: v for k, v in vars(args).items() if k != "json"},
              "distance": "squared L2", "rows": [], "not_run": []}
    t_all = time.perf_counter()
    for n in args.n:
        t0 = time.perf_counter()
        x = (clustered(n, args.dim, args.clusters, args.seed + n) if args.data == "isotropic"
             else latent(n, args.dim, args.latent_dim, args.clusters, args.noise, args.seed + n))
        gen_s = time.perf_counter() - t0
        ids = [f"P{i:07d}" for i in range(n)]
        rng = np.random.default_rng(args.seed)
        max_r = max(r for r in args.refs if r <= n) if any(r <= n for r in args.refs) else 0
        all_refs = rng.choice(n, size=max_r, replace=False)
        x_sq = np.einsum("ij,ij->i", x, x)
        # exact search: time up to --exact-max references, keep them as the recall oracle
        exact_rows = {}
        for r in args.refs:
            if r > n:
                result["not_run"].append({"n": n, "refs": r, "reason": "more references than patients"})
                continue
            timed = min(r, args.exact_max)
            refs = all_refs[:timed]
            (e_idx, _), dt = median_time(lambda: exact_knn(x[refs], x, args.k, data_sq_norms=x_sq), args.repeats)
            exact_rows[r] = e_idx
            total = dt * r / timed
            result["rows"].append({"n": n, "dim": args.dim, "k": args.k, "refs": r, "method": "exact",
                                   "build_s": 0.0, "query_s": round(total, 4),
                                   "query_ms_per_ref": round(1e3 * total / r, 4), "recall_at_k": 1.0,
                                   "extrapolated": timed < r, "timed_refs": timed, "data_gen_s": round(gen_s, 2)})
            print(f"N={n} R={r} exact {total:.3f}s{' (extrapolated)' if timed < r else ''}", flush=True)
        if n > args.hnsw_max_n:
            result["not_run"].append({"n": n, "method": "hnsw",
                                      "reason": f"HNSW build above --hnsw-max-n={args.hnsw_max_n} not run "
                                                "(too long on this machine within the benchmark's time budget)"})
            print(f"N={n} hnsw not run (> --hnsw-max-n)", flush=True)
            continue
        t0 = time.perf_counter()
        index = EmbeddingIndex.build(x, ids, method="hnsw", M=args.M, ef_construction=args.ef_construction,
                                     ef=max(args.ef), num_threads=args.threads, pca_dim=args.pca_dim)
        build_s = time.perf_counter() - t0
        print(f"N={n} hnsw build {build_s:.1f}s" + (f" (PCA {args.pca_dim}: {index.pca_variance:.4f} of the "
              "variance)" if args.pca_dim else ""), flush=True)
        for ef in args.ef:
            index.ef = ef
            for r in args.refs:
                if r > n:
                    continue
                q = x[all_refs[:r]]
                index.query(q[:10], args.k, num_threads=args.threads)  # warm-up
                (a_idx, _), dt = median_time(lambda: index.query(q, args.k, num_threads=args.threads), args.repeats)
                e_idx = exact_rows[r]
                rec = recall_at_k(a_idx[:len(e_idx)], e_idx)
                result["rows"].append({"n": n, "dim": args.dim, "k": args.k, "refs": r, "method": "hnsw",
                                       "build_s": round(build_s, 2), "query_s": round(dt, 4),
                                       "query_ms_per_ref": round(1e3 * dt / r, 4), "recall_at_k": round(rec, 5),
                                       "recall_queries": len(e_idx), "extrapolated": False,
                                       "M": args.M, "ef_construction": args.ef_construction,
                                       "ef": max(ef, args.k), "threads": args.threads,
                                       "pca_dim": args.pca_dim, "pca_variance": index.pca_variance,
                                       "data": args.data})
                print(f"N={n} R={r} hnsw M={args.M} ef={ef} query {dt:.3f}s recall@{args.k}={rec:.4f}", flush=True)
        del index, x
    result["total_s"] = round(time.perf_counter() - t_all, 1)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {out}\n")
    print(f"| N | D | K | refs | method | M | ef | build (s) | query (s) | ms/ref | recall@{args.k} |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        q = f"{row['query_s']:.3f}" + (" (extrap.)" if row["extrapolated"] else "")
        print(f"| {row['n']:,} | {row['dim']} | {row['k']} | {row['refs']:,} | {row['method']} | "
              f"{row.get('M', '')}{'/PCA' + str(row['pca_dim']) if row.get('pca_dim') else ''} | "
              f"{row.get('ef', '')} | "
              f"{row['build_s']:.1f} | {q} | {row['query_ms_per_ref']:.3f} | {row['recall_at_k']:.4f} |")
    for nr in result["not_run"]:
        print(f"not run: {nr}")
    return result


if __name__ == "__main__":
    main()
