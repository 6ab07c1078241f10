"""Phantom generation time per patient on one core (README "Benchmarks").

    OMP_NUM_THREADS=1 ./venv-run python benchmarks/phantoms.py --n 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="patients per shape")
    ap.add_argument("--shapes", nargs="+", default=["256x256x128", "128x128x64", "512x512x192"])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "phantoms.json"))
    args = ap.parse_args(argv)

    from semgen_ray.phantoms import generate_patient

    rows = []
    for text in args.shapes:
        shape = tuple(int(s) for s in text.split("x"))
        generate_patient(0, shape=shape)  # warm-up (imports, caches)
        times = []
        for i in range(args.n):
            t0 = time.perf_counter()
            vol, label, _ = generate_patient(i + 1, shape=shape)
            times.append(time.perf_counter() - t0)
        mvox = np.prod(shape) / 1e6
        rows.append({"shape": list(shape), "seconds_median": round(float(np.median(times)), 2),
                     "seconds": [round(t, 2) for t in times], "Mvoxel_per_s": round(mvox / np.median(times), 1)})
        print(f"| {text} | {rows[-1]['seconds_median']} s | {rows[-1]['Mvoxel_per_s']} Mvoxel/s |", flush=True)
    result = {"benchmark": "phantoms", "machine": describe(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
