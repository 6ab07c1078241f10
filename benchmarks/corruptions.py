"""Benchmark: self-restoration corruption throughput per CPU core, against the reference algorithm.

Claim measured (issue 17): ``semgen_ray.transforms.make_corruption`` corrupts 64×64×32 cubes at least
20× faster per core than the reference algorithm (docs/method.md §3), for the ``sg`` and ``mg``
presets. Rows, in cubes per CPU-second (``time.process_time``, one thread: ``OMP_NUM_THREADS=1`` and
``torch.set_num_threads(1)``, so the numbers are per core):

  baseline       the reference algorithm per sample, written here step for step as the reference
                 code does it, on float64 cubes: elastic deformation by ``scipy.ndimage.gaussian_filter``
                 (σ = 8, mode constant) of two full-size U(−1, 1) noise cubes × 991 and
                 ``map_coordinates`` (order 1, reflect); the Bézier map by a curve evaluated at 100,000
                 points, sorting and ``np.interp``; the local shuffle as a Python loop over its blocks
                 (10,000 ``mg``, 5 ``sg``) with ``random.randint`` sizes and ``np.random.shuffle``;
                 painting as a Python loop over holes/windows with ``np.random.rand`` noise.
  numpy          ``make_corruption(preset, backend="numpy")`` on the batch (sampling included)
  torch          ``make_corruption(preset, backend="torch")`` on a CPU tensor (sampling included)

The official reference code itself, measured side by side on this machine class, made
:data:`REFERENCE_CODE` cubes per CPU-second; the JSON records those figures next to the baseline's,
and the baseline's CPU milliseconds per step (``baseline_step_ms``), so that the baseline can be
checked against the reference step by step.

Each configuration runs ``--rounds`` times, interleaved with the others so a busy machine slows all
alike; the table reports the median throughput and the median (and range) over rounds of the
speed-up against the baseline measured in the same round. Writes JSON (default
``benchmarks/results/corruptions.json``) and prints a markdown table.

    ./venv-run python benchmarks/corruptions.py              # about 3 min on 2 cores
    ./venv-run python benchmarks/corruptions.py --quick      # smaller, for a smoke test

``--spatial-dims 2`` measures the same on 224×224 images (Semantic Genesis 2D; issue 18, target 10×):
the baseline runs the same per-sample algorithm on 2D arrays (the elastic field smooths 2D noise),
ours is ``make_corruption(preset, spatial_dims=2)``; it writes ``corruptions_2d.json``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # per-core numbers: before numpy/torch load their thread pools

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from math import comb  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe as machine  # noqa: E402

SHAPE = (64, 64, 32)
#: The 2D images of ``--spatial-dims 2`` (the paper's 2D input, 224 × 224) and the target there.
SHAPE_2D = (224, 224)
TARGET_2D = 10.0
#: Cubes per CPU-second of the official reference code (Semantic Genesis ``sg``, Models Genesis ``mg``),
#: measured side by side with this project on this machine class, one thread (issue 17).
REFERENCE_CODE = {"sg": 17.7, "mg": 13.1}
#: The speed-up the numpy back end is held to.
TARGET = 20.0


# ---- the reference algorithm, per sample (docs/method.md §3.1-3.3), as the baseline -------------------------
class Reference:
    """Per-sample corruptions as the reference code does them (Python/numpy loops)."""

    def __init__(self, seed: int) -> None:
        self.rand = random.Random(seed)
        self.np = np.random.RandomState(seed)

    def flip(self, x, y):
        cnt = 3
        while self.rand.random() < 0.4 and cnt > 0:
            axis = self.rand.choice([0, 1, 2])
            x, y = np.flip(x, axis=axis), np.flip(y, axis=axis)
            cnt -= 1
        return x, y

    def shuffle(self, x, blocks):
        dims = x.shape[1:]
        orig, out = x.copy(), x.copy()
        for _ in range(blocks):
            size = [self.rand.randint(1, d // 10) for d in dims]
            pos = [self.rand.randint(0, d - s) for d, s in zip(dims, size)]
            box = (0, *(slice(p, p + s) for p, s in zip(pos, size)))
            window = orig[box].flatten()
            self.np.shuffle(window)
            out[box] = window.reshape(size)
        return out

    def nonlinear(self, x):
        points = [[0, 0], [self.rand.random(), self.rand.random()], [self.rand.random(), self.rand.random()], [1, 1]]
        t = np.linspace(0.0, 1.0, 100000)
        poly = np.array([comb(3, i) * t ** (3 - i) * (1 - t) ** i for i in range(4)])
        xs = np.array([p[0] for p in points]) @ poly
        ys = np.array([p[1] for p in points]) @ poly
        if self.rand.random() < 0.5:
            xs = np.sort(xs)
        else:
            xs, ys = np.sort(xs), np.sort(ys)
        return np.interp(x, xs, ys)

    def inpaint(self, x, holes, rate, size, constant):
        dims = x.shape[1:]
        x = x.copy()
        cnt = holes
        while cnt > 0 and self.rand.random() < rate:
            sides = [self.rand.randint(lo, hi) for lo, hi in size(dims)]
            pos = [self.rand.randint(3, d - s - 3) for d, s in zip(dims, sides)]
            fill = self.rand.random() if constant else self.np.rand(*sides)
            x[(slice(None), *(slice(p, p + s) for p, s in zip(pos, sides)))] = fill
            cnt -= 1
        return x

    def outpaint(self, x, windows, rate, shrink, constant):
        dims = x.shape[1:]
        orig = x.copy()
        x = np.full(x.shape, self.rand.random()) if constant else self.np.rand(*x.shape)
        for k in range(windows):
            if k and self.rand.random() >= rate:
                break
            sides = [d - self.rand.randint(lo, hi) for d, (lo, hi) in zip(dims, shrink(dims))]
            pos = [self.rand.randint(3, d - s - 3) for d, s in zip(dims, sides)]
            box = (slice(None), *(slice(p, p + s) for p, s in zip(pos, sides)))
            x[box] = orig[box]
        return x

    def elastic(self, x):
        """x and y displaced by smoothed noise (z, in 3D, is not); 2D arrays are smoothed in 2D."""
        from scipy.ndimage import gaussian_filter, map_coordinates

        shape = x.shape[1:]
        dx = gaussian_filter(self.np.rand(*shape) * 2 - 1, 8, mode="constant", cval=0) * 991
        dy = gaussian_filter(self.np.rand(*shape) * 2 - 1, 8, mode="constant", cval=0) * 991
        g = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
        idx = [(g[0] + dx).reshape(-1), (g[1] + dy).reshape(-1), *(a.reshape(-1) for a in g[2:])]
        return map_coordinates(x[0], idx, order=1, mode="reflect").reshape(x.shape)

    def sample(self, x, preset):
        """One (input, target) pair of a (1, X, Y, Z) cube."""
        def rel(shape, f1, f2):
            return [(max(1, d * f1[0] // f1[1]), max(1, d * f2[0] // f2[1])) for d in shape]

        if preset == "mg":
            x, y = self.flip(x, x)
            if self.rand.random() < 0.5:
                x = self.shuffle(x, 10_000)
            if self.rand.random() < 0.9:
                x = self.nonlinear(x)
            if self.rand.random() < 0.9:
                if self.rand.random() < 0.2:
                    x = self.inpaint(x, 5, 0.95, lambda s: rel(s, (1, 6), (1, 3)), False)
                else:
                    x = self.outpaint(x, 5, 0.95, lambda s: rel(s, (3, 7), (4, 7)), False)
            return x, y
        keras = preset == "sg_keras"
        y = x.copy()
        x = self.elastic(x)
        r = self.rand.random()
        if r <= 0.25:
            x = self.shuffle(x, 5)
        elif r <= 0.5:
            x = self.nonlinear(x)
        elif r <= 0.75:
            size = (lambda s: [(10, 20)] * len(s)) if keras else (lambda s: rel(s, (1, 6), (1, 3)))
            x = self.inpaint(x, 1, 1.0, size, keras)
        else:
            shrink = (lambda s: [(10, 20)] * len(s)) if keras else (lambda s: rel(s, (3, 7), (4, 7)))
            x = self.outpaint(x, 1, 0.95, shrink, keras)
        return x, y


# ---- measurement ------------------------------------------------------------------------------------
def cubes(n: int, seed: int, shape=SHAPE) -> np.ndarray:
    """Smooth random cubes (or images) in [0, 1] (float32), (N, 1, *shape); every side a multiple of 8."""
    from scipy.ndimage import zoom

    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 1, *(d // 8 for d in shape)))
    return np.clip(zoom(coarse, (1, 1, *(8,) * len(shape)), order=1), 0, 1).astype(np.float32)


def run_baseline(batch: np.ndarray, preset: str, seed: int) -> float:
    ref = Reference(seed)
    t0 = time.process_time()
    for cube in batch.astype(np.float64):   # the reference works on float64 cubes
        ref.sample(cube, preset)
    return time.process_time() - t0


def baseline_steps(batch: np.ndarray, seed: int, reps: int = 3) -> dict:
    """CPU milliseconds per call of each baseline step on float64 cubes (median of ``reps``)."""
    ref = Reference(seed)
    cube = batch[0].astype(np.float64)
    rel = [(max(1, d // 6), max(1, d // 3)) for d in cube.shape[1:]]
    shrink = [(max(1, 3 * d // 7), max(1, 4 * d // 7)) for d in cube.shape[1:]]
    steps = {
        "elastic_deformation": lambda: ref.elastic(cube),
        "local_pixel_shuffle_5": lambda: ref.shuffle(cube, 5),
        "local_pixel_shuffle_10000": lambda: ref.shuffle(cube, 10_000),
        "nonlinear_intensity": lambda: ref.nonlinear(cube),
        "in_painting_1": lambda: ref.inpaint(cube, 1, 1.0, lambda s: rel, False),
        "out_painting_1": lambda: ref.outpaint(cube, 1, 0.95, lambda s: shrink, False),
    }
    out = {}
    for name, fn in steps.items():
        times = []
        for _ in range(reps):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        out[name] = round(1e3 * statistics.median(times), 2)
    return out


def run_ours(f, batch, seed: int) -> float:
    t0 = time.process_time()
    f(batch, seed)
    return time.process_time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32, help="cubes per call (ours)")
    ap.add_argument("--baseline-cubes", type=int, default=16, help="cubes per baseline round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--presets", nargs="+", default=["sg", "mg", "sg_keras"])
    ap.add_argument("--quick", action="store_true", help="batch 8, 4 baseline cubes, 2 rounds")
    ap.add_argument("--spatial-dims", type=int, choices=[2, 3], default=3,
                    help="3: 64x64x32 cubes (default); 2: 224x224 images (Semantic Genesis 2D)")
    ap.add_argument("--out", help="JSON to write (default benchmarks/results/corruptions.json, "
                                  "corruptions_2d.json with --spatial-dims 2)")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.baseline_cubes, args.rounds = 8, 4, 2
    planar = args.spatial_dims == 2
    shape, target = (SHAPE_2D, TARGET_2D) if planar else (SHAPE, TARGET)
    args.out = args.out or str(Path(__file__).resolve().parent / "results"
                               / ("corruptions_2d.json" if planar else "corruptions.json"))

    import torch

    torch.set_num_threads(1)
    from semgen_ray.transforms import make_corruption

    described = machine()   # the load average at the start
    batch = cubes(args.batch, 0, shape)
    base_batch = batch[: args.baseline_cubes, :]
    tensor = torch.from_numpy(batch.copy())
    fns = {p: {b: make_corruption(p, backend=b, spatial_dims=args.spatial_dims) for b in ("numpy", "torch")}
           for p in args.presets}
    for p in args.presets:  # warm-up: caches (elastic basis, templates), torch kernels
        fns[p]["numpy"](batch[:2], 0)
        fns[p]["torch"](tensor[:2], 0)
    times: dict = {p: {"baseline": [], "numpy": [], "torch": []} for p in args.presets}
    for r in range(args.rounds):
        for p in args.presets:
            times[p]["baseline"].append(args.baseline_cubes / run_baseline(base_batch, p, 1000 + r))
            times[p]["numpy"].append(args.batch / run_ours(fns[p]["numpy"], batch, 1000 + r))
            times[p]["torch"].append(args.batch / run_ours(fns[p]["torch"], tensor, 1000 + r))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    rows = []
    for p in args.presets:
        base = times[p]["baseline"]
        for impl in ("baseline", "numpy", "torch"):
            ratios = [t / b for t, b in zip(times[p][impl], base)]   # same round: same machine load
            rows.append({"preset": p, "implementation": impl,
                         "cubes_per_cpu_s": round(statistics.median(times[p][impl]), 1),
                         "min": round(min(times[p][impl]), 1), "max": round(max(times[p][impl]), 1),
                         "speedup_vs_baseline": round(statistics.median(ratios), 1),
                         "speedup_min": round(min(ratios), 1), "speedup_max": round(max(ratios), 1)})
            if p in REFERENCE_CODE and not planar:   # the official code's figure (another run: indicative)
                rows[-1]["speedup_vs_reference_code"] = round(statistics.median(times[p][impl]) / REFERENCE_CODE[p], 2)
    steps_ms = baseline_steps(batch, 99)

    result = {
        "benchmark": "corruptions_2d" if planar else "corruptions",
        "command": "python benchmarks/corruptions.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cube": list(shape), "batch": args.batch, "baseline_cubes_per_round": args.baseline_cubes,
        "rounds": args.rounds, "threads": 1,
        "unit": f"{'images' if planar else 'cubes'} per CPU-second (time.process_time, one thread)",
        "machine": described, "loadavg_at_end": list(os.getloadavg()), "rows": rows,
        "target_speedup": target,
        "baseline_step_ms": steps_ms,
    }
    if not planar:
        result["reference_code_cubes_per_cpu_s"] = REFERENCE_CODE
        result["reference_code_note"] = ("the official Semantic Genesis (sg) and Models Genesis (mg) corruption "
                                         "code, run side by side with this project on this machine class, one "
                                         "thread (issue 17)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print("| preset | implementation | cubes/s per core (median) | range | × baseline (median) | × range |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['preset']} | {row['implementation']} | {row['cubes_per_cpu_s']} | "
              f"{row['min']}–{row['max']} | {row['speedup_vs_baseline']} | "
              f"{row['speedup_min']}–{row['speedup_max']} |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
