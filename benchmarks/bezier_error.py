"""Benchmark: how far the Bézier intensity map's lookup table is from the reference map.

Claim measured (README, "Self-restoration corruptions"): :class:`semgen_ray.transforms.NonlinearIntensity`
(an 8,193-knot table per sample) agrees with the reference (docs/method.md §3.1 step 3: the cubic Bézier
sampled at 100,000 parameter values, sorted, ``np.interp``) to a small absolute difference. ``--curves``
random curves (control points ~ U[0, 1), inverted with probability 0.5, as drawn in training) are
each evaluated at ``--values`` uniform random voxel values plus 600 values within 1e-9..1e-2 of 0 and
1; ``--degenerate`` more curves have a or 1 − c in 1e-4..1e-2 (a vertical tangent at an end, which a
uniform draw gives about 2 % of the time) and are reported apart.

    ./venv-run python benchmarks/bezier_error.py          # ~1 min on one core

Writes ``benchmarks/results/bezier_error.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from math import comb
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

REFERENCE_SAMPLES = 100_000


def reference(values: np.ndarray, a: float, b: float, c: float, d: float, invert: bool) -> np.ndarray:
    """The reference map, float64: Bernstein terms in reverse order, sort, ``np.interp``."""
    t = np.linspace(0.0, 1.0, REFERENCE_SAMPLES)
    terms = np.array([comb(3, i) * t ** (3 - i) * (1 - t) ** i for i in range(4)])
    xs = np.array([0.0, a, c, 1.0]) @ terms
    ys = np.array([0.0, b, d, 1.0]) @ terms
    xs = np.sort(xs)
    if not invert:
        ys = np.sort(ys)
    return np.interp(values, xs, ys)


def errors(points: np.ndarray, invert: np.ndarray, values: np.ndarray, chunk: int = 8) -> np.ndarray:
    """Largest absolute difference per curve between ours and the reference."""
    from semgen_ray.transforms import NonlinearIntensity

    op = NonlinearIntensity()
    out = []
    for i in range(0, len(points), chunk):
        p, inv = points[i:i + chunk], invert[i:i + chunk]
        x = np.broadcast_to(values, (len(p), values.size)).reshape(len(p), 1, values.size, 1, 1).copy()
        got = op.apply(x, {"points": p, "invert": inv}).reshape(len(p), -1).astype(np.float64)
        for j in range(len(p)):
            out.append(float(np.abs(got[j] - reference(values.astype(np.float64), *p[j], bool(inv[j]))).max()))
    return np.array(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--curves", type=int, default=200)
    ap.add_argument("--degenerate", type=int, default=40)
    ap.add_argument("--values", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bezier_error.json"))
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    tail = np.logspace(-9, -2, 300)
    values = np.concatenate([rng.random(args.values), tail, 1 - tail]).astype(np.float32)
    points = rng.random((args.curves, 4))
    invert = rng.random(args.curves) < 0.5
    degen = rng.random((args.degenerate, 4))
    small = 10 ** rng.uniform(-4, -2, args.degenerate)
    first = rng.random(args.degenerate) < 0.5
    degen[first, 0] = small[first]              # a near 0: vertical tangent at v = 0
    degen[~first, 2] = 1 - small[~first]        # c near 1: vertical tangent at v = 1
    degen_invert = rng.random(args.degenerate) < 0.5
    e = errors(points, invert, values)
    ed = errors(degen, degen_invert, values) if args.degenerate else np.zeros(0)
    result = {"benchmark": "bezier_error", "machine": describe(), "args": {**vars(args), "out": os.path.relpath(args.out, Path(__file__).parents[1])},
              "lut_knots": 8193, "reference_samples": REFERENCE_SAMPLES, "values_per_curve": int(values.size),
              "random": {"curves": args.curves, "max_abs_diff": float(e.max()), "median_of_max": float(np.median(e)),
                         "p95_of_max": float(np.quantile(e, 0.95))},
              "degenerate": {"curves": args.degenerate, "max_abs_diff": float(ed.max()) if ed.size else None,
                             "median_of_max": float(np.median(ed)) if ed.size else None},
              "total_s": round(time.perf_counter() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"random curves: largest difference {e.max():.2e}, median over curves {np.median(e):.2e}; "
          f"near-degenerate: {ed.max() if ed.size else float('nan'):.2e}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
