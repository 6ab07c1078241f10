"""End-to-end self-discovery on a phantom cohort: time per stage and neighbour purity (README "Benchmarks").

Generates (or reuses) a phantom cohort, runs :func:`semgen_ray.stages.discovery.run_discovery` from
scratch (``force``) and records the seconds of each step and the habitus purity of the neighbours
against chance (phantom patients come from four body-type clusters, so an embedding that finds
similar patients has purity well above chance).

    ./venv-run python benchmarks/discovery.py                    # 48 × 128×128×64, 20 AE epochs (~15 min)
    ./venv-run python benchmarks/discovery.py --n 16 --ae-epochs 3   # quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="phantom patients")
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 128, 64])
    ap.add_argument("--ae-epochs", type=int, default=20)
    ap.add_argument("--k-train", type=int, default=8)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--work", help="folder for the store and run (default: a temporary folder)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "discovery.json"))
    args = ap.parse_args(argv)

    from semgen_ray.config import load_config
    from semgen_ray.stages.discovery import run_discovery
    from semgen_ray.phantoms.cohort import write_cohort
    from semgen_ray.runtime import init_ray

    config = load_config("cpu-tiny", [f"discovery.ae_epochs={args.ae_epochs}",
                                      f"discovery.ae_patience={args.ae_epochs}",
                                      f"discovery.k_train={args.k_train}",
                                      f"discovery.num_classes={args.classes}"])
    work = Path(args.work or tempfile.mkdtemp(prefix="semgen_disc_bench_"))
    store_uri = str(work / "phantoms.zarr")
    init_ray(config.ray)
    t0 = time.perf_counter()
    report = write_cohort(replace(config.phantoms, n=args.n, shape=tuple(args.shape)),
                          replace(config.store, uri=store_uri), config.ingest, config.ray, progress=False)
    cohort_s = time.perf_counter() - t0
    record = run_discovery(config, store_uri, str(work / "discovery"), force=True)
    result = {"benchmark": "discovery", "machine": describe(),
              "params": {"n": args.n, "shape": args.shape, "ae_epochs": args.ae_epochs,
                         "k_train": args.k_train, "classes": args.classes, "preset": "cpu-tiny",
                         "volume_shape": list(config.data.volume_shape)},
              "cohort_seconds": round(cohort_s, 1), "cohort_written": len(report.written),
              "stage_seconds": record["seconds"], "total_seconds": round(sum(record["seconds"].values()), 1),
              "autoencoder_epochs": record["autoencoder"].get("epochs"),
              "habitus_purity": record["habitus_purity"], "index": record["index"], "cubes": record["cubes"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("stage_seconds", "total_seconds", "habitus_purity")}, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
