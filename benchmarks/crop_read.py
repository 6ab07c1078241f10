"""Benchmark: crop-on-read throughput of semgen_ray.data.read_crops against plain-numpy baselines.

Claim measured: streaming 64×64×32 cubes straight from the Zarr volume store (one region read per
patient, crops cut in memory, rescaled crops resized in one batched call) is fast enough that no cube
cache is needed. Rows (cubes/s, after a warm-up pass):

  ray-native / ray-rescaled     read_crops through Ray Data to the driver (``iter_batches``), for
                                both constructions (custom Datasource, from_items + map_batches)
  store-loop-*                  the same per-patient crop-on-read in one process, no Ray
  npy-mmap-*                    the same crops cut from uncompressed ``.npy`` files (``np.load(mmap_mode="r")``)
                                in a plain loop, same windowing and resize function
  zarr-per-crop-native          one ``store.read(region=box)`` per crop (the naive design)

plus the store's size on disk against raw int16 bytes, and a resize micro-benchmark (torch trilinear
against scipy.ndimage.zoom order 1). Writes JSON (default ``benchmarks/results/crop_read.json``) and
prints markdown table rows.

    ./venv-run python benchmarks/crop_read.py                 # about 2 min on 2 cores
    ./venv-run python benchmarks/crop_read.py --store s.zarr  # an existing store (no npy rows)

The volumes are phantom patients (semgen_ray.phantoms) of ``--shape``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe as machine  # noqa: E402


def build(work: Path, n: int, shape, seed: int) -> tuple[str, dict[str, Path]]:
    from semgen_ray.phantoms import generate_patient
    from semgen_ray.store import open_store

    uri = str(work / "bench.zarr")
    store = open_store(uri, mode="w")
    rows, npy = [], {}
    for i in range(n):
        pid = f"B{i:03d}"
        volume, _, _ = generate_patient(i, cohort_seed=seed, shape=tuple(shape))
        vol = volume.array
        rows.append(store.write(pid, volume))
        npy[pid] = work / f"{pid}.npy"
        np.save(npy[pid], vol)
    store.update_manifest(rows)
    return uri, npy


def draw_boxes(shapes: dict, per_patient: int, cube, rescaled: bool, seed: int) -> list[dict]:
    """Native cube-size boxes, or boxes with in-plane sides 50-79 and the cube's depth."""
    rng = np.random.default_rng(seed)
    rows = []
    for pid in sorted(shapes):
        shp = np.asarray(shapes[pid])
        for _ in range(per_patient):
            size = np.array(cube)
            if rescaled:
                size[:2] = rng.integers(50, 80, size=2)
            lo = rng.integers(0, shp - size + 1)
            rows.append({"patient_id": pid, "x0": int(lo[0]), "y0": int(lo[1]), "z0": int(lo[2]),
                         "x1": int(lo[0] + size[0]), "y1": int(lo[1] + size[1]), "z1": int(lo[2] + size[2])})
    return rows


def timed_passes(fn, passes: int) -> list[float]:
    """Run ``fn`` (returns a cube count) ``passes`` times after one warm-up; cubes/s per pass."""
    fn()
    rates = []
    for _ in range(passes):
        t = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t))
    return rates


def bench_ray(uri, boxes, cube, construction, passes, num_cpus_task) -> list[float]:
    from semgen_ray.data import _source
    from semgen_ray.data.crops import crop_specs

    specs = crop_specs(uri, boxes, cube, columns=["cube", "patient_id"])
    ds = _source.build_dataset(specs, "bench", num_cpus=num_cpus_task, construction=construction)

    def run():
        n = 0
        for b in ds.iter_batches(batch_size=32, batch_format="numpy"):
            n += len(b["cube"])
        assert n == len(boxes), (n, len(boxes))
        return n

    return timed_passes(run, passes)


def bench_store_loop(uri, boxes, cube, passes) -> list[float]:
    from semgen_ray.data.boxes import as_box_table, box_arrays, group_by_patient
    from semgen_ray.data.patient_crops import read_patient_crops
    from semgen_ray.store import open_store

    store = open_store(uri)
    table = as_box_table(boxes)
    lo, hi = box_arrays(table)
    groups = group_by_patient(table)

    def run():
        n = 0
        for pid, idx in groups:
            for _, cubes, _ in read_patient_crops(store, pid, lo[idx], hi[idx], cube):
                n += len(cubes)
        return n

    return timed_passes(run, passes)


def bench_npy(npy, boxes, cube, passes) -> list[float]:
    from semgen_ray.data.boxes import as_box_table, box_arrays, group_by_patient
    from semgen_ray.data.patient_crops import cut_crops
    from semgen_ray.store import CT_WINDOW

    table = as_box_table(boxes)
    lo, hi = box_arrays(table)
    groups = group_by_patient(table)

    def run():
        n = 0
        for pid, idx in groups:
            arr = np.load(npy[pid], mmap_mode="r")
            n += len(cut_crops(arr, (0, 0, 0), lo[idx], hi[idx], cube, CT_WINDOW))
        return n

    return timed_passes(run, passes)


def bench_zarr_per_crop(uri, boxes, passes) -> list[float]:
    from semgen_ray.store import open_store

    store = open_store(uri)

    def run():
        for b in boxes:
            store.read(b["patient_id"], region=((b["x0"], b["x1"]), (b["y0"], b["y1"]), (b["z0"], b["z1"])),
                       normalize=True)
        return len(boxes)

    return timed_passes(run, passes)


def bench_resize(reps: int) -> dict:
    """ms per call (one torch thread): 32 crops 72×72×40 → 64×64×32, one 512×512×300 → 128×128×64."""
    from scipy import ndimage as ndi

    from semgen_ray.data.resize import resize

    rng = np.random.default_rng(0)

    def zoom(x, shape):
        x = x[None] if x.ndim == 3 else x
        return np.stack([ndi.zoom(c, [t / s for t, s in zip(shape, c.shape)], order=1, grid_mode=True,
                                  mode="grid-constant") for c in x])

    def ms(fn, *a):
        fn(*a)
        t = time.perf_counter()
        for _ in range(reps):
            fn(*a)
        return round((time.perf_counter() - t) / reps * 1e3, 1)

    crops = rng.random((32, 72, 72, 40), dtype=np.float32)
    vol = rng.random((512, 512, 300), dtype=np.float32)
    out = {
        "crops32_72x72x40_to_64x64x32_ms": {"torch_trilinear": ms(resize, crops, (64, 64, 32)),
                                            "scipy_zoom_order1": ms(zoom, crops, (64, 64, 32))},
        "volume_512x512x300_to_128x128x64_ms": {
            "torch_trilinear": ms(lambda v, s: resize(v, s, antialias=False), vol, (128, 128, 64)),
            "torch_trilinear_antialias": ms(resize, vol, (128, 128, 64)),
            "scipy_zoom_order1": ms(zoom, vol, (128, 128, 64))},
    }
    return out


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="use this existing store (skips the npy rows)")
    p.add_argument("--patients", type=int, default=8)
    p.add_argument("--shape", type=int, nargs=3, default=(256, 256, 128))
    p.add_argument("--crops-per-patient", type=int, default=96)
    p.add_argument("--cube", type=int, nargs=3, default=(64, 64, 32))
    p.add_argument("--passes", type=int, default=3, help="measured passes after one warm-up")
    p.add_argument("--naive-crops", type=int, default=128, help="crops for the per-crop zarr row (0: skip)")
    p.add_argument("--num-cpus", type=int, default=2, help="ray.init(num_cpus=...)")
    p.add_argument("--task-cpus", type=float, default=1.0, help="num_cpus per read task")
    p.add_argument("--constructions", nargs="+", default=["datasource", "items"])
    p.add_argument("--resize-reps", type=int, default=3, help="0 skips the resize micro-benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "crop_read.json"))
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import logging

    import ray
    import torch

    # The single-process baselines use one torch thread, as a Ray read task with num_cpus=1 does
    # (OMP_NUM_THREADS=1); two threads on a shared 2-core box mostly wait on each other.
    torch.set_num_threads(1)

    from semgen_ray.store import open_store

    result = {"benchmark": "crop_read", "command": " ".join(["python", *sys.argv]),
              "machine": machine(), "args": vars(args), "rows": []}
    work = Path(tempfile.mkdtemp(prefix="crop_read_"))
    try:
        t = time.perf_counter()
        if args.store:
            uri, npy = args.store, {}
        else:
            uri, npy = build(work, args.patients, args.shape, args.seed)
        result["build_s"] = round(time.perf_counter() - t, 2)
        shapes = open_store(uri).shapes()
        raw = sum(int(np.prod(s)) * 2 for s in shapes.values())
        disk = dir_bytes(uri) if Path(uri).exists() else None
        result["store"] = {"uri": uri if args.store else "<temp>", "patients": len(shapes),
                           "raw_int16_bytes": raw, "disk_bytes": disk,
                           "compression_ratio": round(raw / disk, 2) if disk else None}
        cube = tuple(args.cube)
        boxes = {kind: draw_boxes(shapes, args.crops_per_patient, cube, kind == "rescaled", args.seed + 1)
                 for kind in ("native", "rescaled")}

        def add(name, rates, note=""):
            row = {"name": name, "cubes_per_s_median": round(float(np.median(rates)), 1),
                   "cubes_per_s_passes": [round(r, 1) for r in rates], "note": note}
            result["rows"].append(row)
            print(f"  {name}: {row['cubes_per_s_median']} cubes/s {row['cubes_per_s_passes']}", flush=True)

        ray.init(num_cpus=args.num_cpus, object_store_memory=512 * 1024**2, include_dashboard=False,
                 log_to_driver=False)
        try:
            logging.getLogger("ray.data").setLevel(logging.WARNING)  # after init, which sets INFO
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.print_on_execution_start = False
            for construction in args.constructions:
                for kind, bx in boxes.items():
                    add(f"ray-{construction}-{kind}",
                        bench_ray(uri, bx, cube, construction, args.passes, args.task_cpus),
                        f"read_crops via Ray Data to the driver, {args.num_cpus} CPUs")
        finally:
            ray.shutdown()
        for kind, bx in boxes.items():
            add(f"store-loop-{kind}", bench_store_loop(uri, bx, cube, args.passes),
                "per-patient region read + cut + resize, one process, no Ray")
        if npy:
            for kind, bx in boxes.items():
                add(f"npy-mmap-{kind}", bench_npy(npy, bx, cube, args.passes),
                    "np.load(mmap_mode='r') + same cut/window/resize, one process")
        if args.naive_crops:
            add("zarr-per-crop-native", bench_zarr_per_crop(uri, boxes["native"][:args.naive_crops],
                                                            max(1, args.passes - 1)),
                "one store.read(region=box) per crop, one process")
        if args.resize_reps:
            result["resize"] = bench_resize(args.resize_reps)
        result["machine"]["loadavg_end"] = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    m = result["machine"]
    print(f"\n{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; load "
          f"{m['loadavg_at_start'][0]:.2f} → {m['loadavg_end'][0]:.2f}; {result['store']['patients']} patients "
          f"{tuple(args.shape)}, {args.crops_per_patient} crops each, cube {cube}")
    print("\n| pipeline | cubes/s (median) | passes |\n|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['name']} | {r['cubes_per_s_median']} | {r['cubes_per_s_passes']} |")
    s = result["store"]
    if s["disk_bytes"]:
        print(f"\nstore: {s['disk_bytes'] / 2**20:.1f} MiB on disk for {s['raw_int16_bytes'] / 2**20:.1f} MiB "
              f"raw int16 (ratio {s['compression_ratio']})")
    if "resize" in result:
        print("resize (ms):", json.dumps(result["resize"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
