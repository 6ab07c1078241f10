"""Benchmark: cubes/s the pretraining data path delivers per CPU core, against what a GPU consumes.

Claim measured: the streaming pipeline of the ``train`` stage (:func:`semgen_ray.train.pattern_data.
pattern_datasets`: crop-on-read by the pattern manifest, resolutions 2-3 resized, ``sg``
corruptions on Ray Data CPU workers) delivers N cubes/s on this machine's C cores; one H100 training
the ``paper`` U-Net consumes G cubes/s (from its FLOPs per cube, ``benchmarks/unet.py``: 754 GFLOP
per training cube at ~40 % of 990 TFLOP/s bf16), so about G / (N / C) cores per GPU keep it fed.

The manifest is the reference mix: per patient and class one native 64×64×32 crop and two crops of
1.25-2× that size (resized on read), at 8 class coordinates, over ``--patients`` phantom patients of
``--shape``. Each pass is an epoch of the run's epoch clock, as in training, and reads every train
cube once to the driver (``iter_batches``); the first pass (worker start-up) is reported apart. The
local object store is ``cpu-tiny``'s 512 MB unless ``--set ray.object_store_mb=…`` (the ``paper``
preset's 2048: 64×64×32 cubes starve in 512 MB, ``benchmarks/train_data_profile.py``).

    ./venv-run python benchmarks/train_data.py --patients 16 --classes 16 --passes 4 \
        --set ray.object_store_mb=2048                                                 # ~3 min
    ./venv-run python benchmarks/train_data.py --patients 16 --classes 16 --passes 4 \
        --set ray.object_store_mb=2048 --corrupt-on device --out benchmarks/results/train_data_crops_only.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

PAPER_GFLOP_PER_CUBE = 754.0
H100_BF16_TFLOPS = 990.0
UTILISATION = 0.40


def manifest_rows(shapes: dict, cube, classes: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(classes):
        for pid, shape in sorted(shapes.items()):
            for res in (1, 2, 3):
                scale = 1.0 if res == 1 else rng.uniform(1.25, 2.0)
                size = [min(int(round(s * scale)), n) for s, n in zip(cube, shape)]
                lo = [int(rng.integers(0, n - s + 1)) for s, n in zip(size, shape)]
                rows.append({"row_id": len(rows), "class_id": c, "reference_id": pid, "patient_id": pid,
                             "x0": lo[0], "y0": lo[1], "z0": lo[2], "x1": lo[0] + size[0],
                             "y1": lo[1] + size[1], "z1": lo[2] + size[2], "resolution": res,
                             "split": "train", "rank": 0, "distance": 0.0})
    rows.append({**rows[0], "row_id": len(rows), "split": "val"})
    return rows


def prepare(args, benchmark: str):
    """The config, the phantom store (kept when ``--work`` already holds one), the manifest's rows and
    path: what this benchmark and ``train_data_profile.py`` measure on."""
    from dataclasses import replace

    from semgen_ray.config import load_config
    from semgen_ray.discovery.pattern_manifest import write_manifest
    from semgen_ray.phantoms.cohort import write_cohort
    from semgen_ray.runtime import init_ray
    from semgen_ray.store import open_store

    work = Path(args.work or tempfile.mkdtemp(prefix="semgen_train_data_"))
    config = load_config("cpu-tiny", [f"data.cube_size={args.cube}", f"data.read_cpus={args.read_cpus}",
                                      f"train.corrupt_on={args.corrupt_on}", "train.corruption=sg", *args.set])
    init_ray(config.ray)
    store_uri = str(work / "store.zarr")
    if not (work / "store.zarr").exists():
        write_cohort(replace(config.phantoms, n=args.patients, shape=tuple(args.shape)),
                     replace(config.store, uri=store_uri), config.ingest, config.ray, progress=False)
    rows = manifest_rows(open_store(store_uri).shapes(), args.cube, args.classes, 0)
    manifest = str(work / "patterns.parquet")
    write_manifest(rows, manifest, {"benchmark": benchmark}, config_hash="benchmark")
    return config, store_uri, rows, manifest


def recorded_params(args) -> dict:
    """The arguments as the results file records them: the output path relative to the repository,
    without the scratch folder of the store (it does not change the measurement)."""
    root = Path(__file__).resolve().parents[1]
    out = Path(args.out).resolve()
    params = {k: v for k, v in vars(args).items() if k != "work"}
    params["out"] = str(out.relative_to(root)) if out.is_relative_to(root) else out.name
    return params


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=8)
    ap.add_argument("--shape", type=int, nargs=3, default=[256, 256, 128])
    ap.add_argument("--cube", type=int, nargs=3, default=[64, 64, 32])
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--read-cpus", type=float, default=1.0)
    ap.add_argument("--corrupt-on", choices=("data", "device"), default="data",
                    help="device: measure crop-on-read alone (corruptions then run on the GPU)")
    ap.add_argument("--set", action="append", default=[],
                    help="config override, e.g. ray.object_store_mb=2048 (the paper preset's local-mode store)")
    ap.add_argument("--work", help="folder for the store (default: temporary; an existing store is reused)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_data.json"))
    args = ap.parse_args(argv)

    from semgen_ray.train.pattern_data import pattern_datasets

    config, store_uri, _, manifest = prepare(args, "train_data")
    from semgen_ray.data.epoch_clock import create_epoch_clock, set_epoch

    clock, _handle = create_epoch_clock()  # as in training: each pass an epoch, patients in its order
    data = pattern_datasets(config, store_uri, manifest, epoch_clock=clock)
    passes = []
    for epoch in range(1, args.passes + 1):
        set_epoch(clock, epoch)
        t0 = time.perf_counter()
        n = 0
        for batch in data.train.iter_batches(batch_size=32, batch_format="numpy"):
            column = "input" if args.corrupt_on == "data" else "cube"
            assert batch[column].shape[-3:] == tuple(args.cube)
            n += len(batch[column])
        passes.append({"cubes": n, "seconds": round(time.perf_counter() - t0, 2),
                       "cubes_per_s": round(n / (time.perf_counter() - t0), 1)})
        print(passes[-1], flush=True)
    cores = os.cpu_count()
    steady = float(np.median([p["cubes_per_s"] for p in passes[1:]] or [passes[0]["cubes_per_s"]]))
    h100 = UTILISATION * H100_BF16_TFLOPS * 1e3 / PAPER_GFLOP_PER_CUBE
    result = {"benchmark": "train_data", "machine": describe(), "params": recorded_params(args),
              "passes": passes, "cores": cores, "steady_cubes_per_s": steady,
              "cubes_per_s_per_core": round(steady / cores, 1),
              "h100_paper_cubes_per_s_estimate": round(h100, 1),
              "cores_per_h100": round(h100 / (steady / cores), 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"steady {steady:.0f} cubes/s on {cores} cores = {steady / cores:.0f} per core; an H100 on the paper "
          f"U-Net consumes ~{h100:.0f} cubes/s → ~{h100 / (steady / cores):.1f} cores per H100")
    return result


if __name__ == "__main__":
    main()
