"""Where the numpy corruption back end's CPU time goes, operation by operation (issues 17 and 18).

For each preset, on batches of ``--batch`` smooth random cubes (or, ``--spatial-dims 2``, 224×224
images), one thread, CPU time (``time.process_time``) per cube of the batch: the fastest of
``--repeat`` calls (a busy VM only ever adds time), median over ``--rounds`` rounds, each round with
its own seed:

  sampling     ``Corruption.sample``: every sample's parameters from its own seed (numpy, Python)
  <operation>  ``Corruption.apply`` with only that operation's drawn samples switched on, less the
               same call with nothing switched on (the batch's float32 copy); ``share`` is the
               fraction of the samples that drew it
  whole        ``Corruption.__call__`` (sampling and every operation)

    ./venv-run python benchmarks/corruption_breakdown.py --spatial-dims 2   # → corruption_breakdown_2d.json
    ./venv-run python benchmarks/corruption_breakdown.py                    # → corruption_breakdown.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # per-core numbers: before numpy loads its thread pool

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corruptions import SHAPE, SHAPE_2D, cubes  # noqa: E402
from machine import describe  # noqa: E402


def _cpu_ms(fn, n: int, repeat: int) -> float:
    """CPU milliseconds of a call of ``fn`` (the fastest of ``repeat``), per cube of a batch of ``n``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best * 1e3 / n


def breakdown(preset: str, batch: np.ndarray, spatial_dims: int, rounds: int, repeat: int) -> dict:
    """Per-part CPU ms per cube (median over rounds) and each operation's share of the samples."""
    from semgen_ray.transforms import make_corruption
    from semgen_ray.transforms.params import ORDER

    c = make_corruption(preset, spatial_dims=spatial_dims)
    n, shape = len(batch), batch.shape[2:]
    c(batch[:2], 0)  # warm-up: cached bases and templates
    parts: dict[str, list] = {"sampling": [], **{name: [] for name in ORDER}, "whole": []}
    shares: dict[str, list] = {name: [] for name in ORDER}
    for r in range(rounds):
        seed = 1000 + r
        parts["sampling"].append(_cpu_ms(lambda: c.sample(shape, np.arange(n) + seed * n), n, repeat))
        params = c.sample(shape, np.arange(n) + seed * n)
        none = replace(params, applied={k: np.zeros_like(v) for k, v in params.applied.items()})
        base = _cpu_ms(lambda: c.apply(batch, none), n, repeat)
        for name in ORDER:
            only = replace(params, applied={k: v if k == name else np.zeros_like(v) for k, v in params.applied.items()})
            parts[name].append(max(0.0, _cpu_ms(lambda: c.apply(batch, only), n, repeat) - base))
            shares[name].append(float(params.applied[name].mean()))
        parts["whole"].append(_cpu_ms(lambda: c(batch, np.arange(n) + seed * n), n, repeat))
    return {"ms_per_cube": {k: round(statistics.median(v), 4) for k, v in parts.items()},
            "share": {k: round(float(np.mean(v)), 3) for k, v in shares.items()}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spatial-dims", type=int, choices=[2, 3], default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--presets", nargs="+", default=["sg", "mg", "sg_keras"])
    ap.add_argument("--out", help="JSON to write (default benchmarks/results/corruption_breakdown[_2d].json)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    planar = args.spatial_dims == 2
    shape = SHAPE_2D if planar else SHAPE
    described = describe()
    batch = cubes(args.batch, 0, shape)
    result = {"benchmark": "corruption_breakdown_2d" if planar else "corruption_breakdown",
              "command": "python benchmarks/corruption_breakdown.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cube": list(shape), "batch": args.batch, "rounds": args.rounds, "repeat": args.repeat, "threads": 1,
              "unit": f"CPU ms per {'image' if planar else 'cube'} of the batch (time.process_time, one thread)",
              "machine": described,
              "presets": {p: breakdown(p, batch, args.spatial_dims, args.rounds, args.repeat) for p in args.presets},
              "loadavg_at_end": list(os.getloadavg())}
    out = Path(args.out or Path(__file__).resolve().parent / "results"
               / ("corruption_breakdown_2d.json" if planar else "corruption_breakdown.json"))
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["presets"], indent=1))
    return result


if __name__ == "__main__":
    main()
