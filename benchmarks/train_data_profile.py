"""Benchmark: where the pretraining data path spends its CPU time (issue: data path ≥ 100 cubes/s per core).

Profiles the pipeline, not the pieces. On the store and manifest of ``benchmarks/train_data.py``
(same phantoms, same reference mix of crops), it measures side by side in one run:

1. **serial**: the same functions the pipeline runs, in this process on one core, with no Ray
   (``read_patient_crops`` per patient, then ``restoration_pairs`` in batches of 16): CPU ms per cube
   for the crop-on-read and for the corruptions;
2. **pipeline**: the ``train`` stage's own dataset (``pattern_datasets``) iterated to the driver as
   ``benchmarks/train_data.py`` does, while the CPU time of every process of the Ray session is
   sampled (``psutil``) and grouped by role (the read + corrupt workers, the driver, Ray's own
   daemons, idle). Ray Data's own per-operator statistics are kept (``stats``).

The difference between the pipeline's CPU ms per cube and the serial sum is the pipeline's overhead;
the role table says who spends it.

    ./venv-run python benchmarks/train_data_profile.py --passes 4 \
        --out benchmarks/results/train_data_profile_512mb.json            # cpu-tiny's 512 MB object store
    ./venv-run python benchmarks/train_data_profile.py --passes 4 --set ray.object_store_mb=2048   # paper's
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# one BLAS / OpenMP thread, as in a Ray worker that holds 1 CPU (Ray sets it there), so that the
# serial CPU times compare with the workers' (set before numpy loads its BLAS)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402
from train_data import prepare, recorded_params  # noqa: E402


def _role(proc) -> str:
    """What a process of the Ray session is, from its command line."""
    try:
        cmd = " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - it exited
        return "gone"
    if proc.pid == os.getpid():
        return "driver"
    for key, role in (("raylet", "ray daemons"), ("gcs_server", "ray daemons"), ("dashboard", "ray daemons"),
                      ("log_monitor", "ray daemons"), ("monitor.py", "ray daemons"),
                      ("runtime_env", "ray daemons"), ("ray::", "ray workers"), ("default_worker", "ray workers")):
        if key in cmd:
            return role
    return "other"


def _cpu_by_role(procs: dict) -> dict:
    out: dict[str, float] = {}
    for p, role in procs.items():
        try:
            t = p.cpu_times()
            out[role] = out.get(role, 0.0) + t.user + t.system + getattr(t, "children_user", 0.0)
        except Exception:  # noqa: BLE001 - it exited; its time is lost to the sum
            pass
    return out


def _session_processes() -> dict:
    import psutil

    me = psutil.Process()
    found = {me: "driver"}
    for p in psutil.process_iter():
        if p.pid != me.pid:
            role = _role(p)
            if role != "other" and role != "gone":
                found[p] = role
    return found


def serial(store_uri: str, rows: list[dict], cube, policy, read_batch: int = 16) -> dict:
    """CPU ms per cube of crop-on-read and of the corruptions, in this process, no Ray."""
    import torch

    from semgen_ray.data.patient_crops import read_patient_crops
    from semgen_ray.data.restoration import restoration_pairs
    from semgen_ray.store import open_store

    torch.set_num_threads(1)
    store = open_store(store_uri)
    by_patient: dict[str, list[dict]] = {}
    for r in rows:
        if r["split"] == "train":
            by_patient.setdefault(r["patient_id"], []).append(r)
    cubes, ids = [], []
    t0, w0 = time.process_time(), time.perf_counter()
    for pid, prs in sorted(by_patient.items()):
        lo = np.array([[r["x0"], r["y0"], r["z0"]] for r in prs])
        hi = np.array([[r["x1"], r["y1"], r["z1"]] for r in prs])
        for idx, crops, _ in read_patient_crops(store, pid, lo, hi, tuple(cube), True, True, len(prs)):
            cubes.append(crops)
            ids += [prs[i]["row_id"] for i in idx]
    read_s, read_wall = time.process_time() - t0, time.perf_counter() - w0
    cubes = np.concatenate(cubes)
    ids = np.asarray(ids)
    t0 = time.process_time()
    for s in range(0, len(cubes), read_batch):
        restoration_pairs({"cube": cubes[s:s + read_batch], "row_id": ids[s:s + read_batch]}, policy=policy,
                          run_seed=0, epoch=1, id_column="row_id")
    corrupt_s = time.process_time() - t0
    n = len(cubes)
    return {"cubes": n, "read_ms_per_cube": round(1e3 * read_s / n, 2),
            "read_wall_ms_per_cube": round(1e3 * read_wall / n, 2),
            "corrupt_ms_per_cube": round(1e3 * corrupt_s / n, 2),
            "total_ms_per_cube": round(1e3 * (read_s + corrupt_s) / n, 2)}


def pipeline(data, passes: int, column: str, clock: str | None) -> dict:
    """Iterate the training dataset like benchmarks/train_data.py; CPU seconds per role per pass
    (with ``clock``, each pass an epoch of its own, as in training)."""
    rounds = []
    for epoch in range(1, passes + 1):
        if clock:
            from semgen_ray.data.epoch_clock import set_epoch

            set_epoch(clock, epoch)
        procs = _session_processes()
        before, wall0 = _cpu_by_role(procs), time.perf_counter()
        n = 0
        for batch in data.train.iter_batches(batch_size=32, batch_format="numpy"):
            n += len(batch[column])
        wall = time.perf_counter() - wall0
        procs.update({p: r for p, r in _session_processes().items() if p not in procs})  # started this pass
        after = _cpu_by_role(procs)
        cpu = {r: round(after.get(r, 0.0) - before.get(r, 0.0), 2) for r in sorted(after)}
        busy = sum(cpu.values())
        rounds.append({"cubes": n, "wall_s": round(wall, 2), "cubes_per_s": round(n / wall, 1), "cpu_s": cpu,
                       "idle_core_s": round(max(0.0, os.cpu_count() * wall - busy), 2),
                       "cpu_ms_per_cube": {r: round(1e3 * v / n, 2) for r, v in cpu.items()}})
        print(rounds[-1], flush=True)
    return {"passes": rounds, "stats": data.train.stats()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=16)
    ap.add_argument("--shape", type=int, nargs=3, default=[256, 256, 128])
    ap.add_argument("--cube", type=int, nargs=3, default=[64, 64, 32])
    ap.add_argument("--classes", type=int, default=16)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--read-cpus", type=float, default=1.0)
    ap.add_argument("--corrupt-on", choices=("data", "device"), default="data")
    ap.add_argument("--no-clock", action="store_true",
                    help="no epoch clock: the patients' order by randomize_block_order, as before training "
                         "had a clock (an extra operator between the read and the corruptions)")
    ap.add_argument("--set", action="append", default=[], help="config override (e.g. ray.object_store_mb=2048)")
    ap.add_argument("--work", help="folder for the store (default: temporary; an existing store is reused)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_data_profile.json"))
    args = ap.parse_args(argv)

    from semgen_ray.train.pattern_data import pattern_datasets

    config, store_uri, rows, manifest = prepare(args, "train_data_profile")
    ser = serial(store_uri, rows, args.cube, config.train.corruption_policy)
    print("serial", ser, flush=True)
    if args.corrupt_on == "device":
        ser["total_ms_per_cube"] = ser["read_ms_per_cube"]
    from semgen_ray.data.epoch_clock import create_epoch_clock

    clock, _handle = (None, None) if args.no_clock else create_epoch_clock()
    data = pattern_datasets(config, store_uri, manifest, epoch_clock=clock)
    pipe = pipeline(data, args.passes, "input" if args.corrupt_on == "data" else "cube", clock)
    steady = pipe["passes"][1:] or pipe["passes"]
    cores = os.cpu_count()
    median = float(np.median([p["cubes_per_s"] for p in steady]))
    result = {"benchmark": "train_data_profile", "machine": describe(), "params": recorded_params(args), "cores": cores,
              "serial": ser,
              **pipe, "steady_cubes_per_s": median, "core_ms_per_cube_pipeline": round(1e3 * cores / median, 2),
              "overhead_vs_serial": round(1e3 * cores / median / ser["total_ms_per_cube"], 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"serial {ser['total_ms_per_cube']} ms of a core per cube; pipeline {result['core_ms_per_cube_pipeline']} "
          f"ms of a core per cube ({median:.0f} cubes/s on {cores} cores): {result['overhead_vs_serial']}x")
    return result


if __name__ == "__main__":
    main()
