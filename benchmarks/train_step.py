"""Benchmark: the real pretraining loop (Ray Data input, Ray Train, the DeepSpeed engine) against a bare PyTorch loop.

Claim measured (issue 15): with ZeRO-1, the default, the training loop of the ``train`` stage trains
within 10 % of the cubes/s of a bare PyTorch loop on the same model, cubes, batch size, threads and
machine.

* **The real loop** is :func:`semgen_ray.stages.pretraining.run_pretraining`, unchanged: the pattern manifest's
  cubes cut from the volume store by Ray Data (crop-on-read), streamed to the Train workers
  (``get_dataset_shard`` through the local shuffle buffer), the DeepSpeed engine (ZeRO ``--zero``,
  ``--precision``), the ``semantic_genesis`` objective, corruptions where ``--corrupt-on`` puts them. Its
  throughput is each epoch's ``cubes_per_s`` from ``train.json``'s history: training cubes over the
  epoch's training time, data waits included, validation and checkpoints excluded.
* **Bare PyTorch** runs in this process, no Ray, no DeepSpeed: the same cubes (cut from the same
  store once, before timing, and held in memory), a seeded permutation per epoch, the same batch
  size, the same corruptions (``--corrupt-on device``: the torch back end inside the loop, as the real
  loop does; ``data``: the numpy back end inside the loop, serially), the same model and loss, torch
  Adam, and the number of torch threads a Train worker gets (probed with a Ray task holding the
  worker's CPUs). In bf16 two recipes, both measured: **bf16 + fp32 masters** (bf16 weights for
  forward and backward, Adam on fp32 master copies: what DeepSpeed's bf16 does) and **bf16 only** (Adam
  on the bf16 weights: less work than DeepSpeed does, so the overhead against it is an upper bound).
  In fp32 (``--precision fp32``, what ``train.precision: auto`` trains in on a CPU without native
  bf16 kernels) one: **fp32**, Adam on the fp32 weights.

Each of ``--rounds`` rounds runs the bare loops and then the real loop (one fresh run per ZeRO stage),
``--epochs`` epochs each; the first epoch of every run is warm-up and not counted; a run's figure
is the median of its other epochs. Reported: per configuration the median over rounds (and the
range), and the overhead = bare cubes/s ÷ loop cubes/s − 1 taken within each round, median over rounds.

**Idle machine required.** Another process on the cores makes the figures meaningless (OpenMP
threads wait on descheduled siblings). Before the first round the 1-minute load average must be at most
``--max-load`` × cores, and before, between and during the rounds the CPU used by processes outside
this benchmark's own process tree (Ray's processes are inside it) is sampled every second; above
``--max-foreign`` cores the run stops with a message and exit status 3, writing nothing.
``--allow-busy`` records the run anyway, flagged ``machine_busy`` with the reason; such a record is
never quoted as the figure (``benchmarks/readme_tables.py``).

    ./venv-run python benchmarks/train_step.py                  # ~15 min on 2 idle cores; writes the record
    ./venv-run python benchmarks/train_step.py --precision fp32 --out benchmarks/results/train_step_fp32.json
    ./venv-run python benchmarks/train_step.py --rounds 1 --epochs 2 --train-cubes 32 --allow-busy \\
        --out /tmp/train_step_smoke.json                        # smoke run

Writes JSON (default ``benchmarks/results/train_step.json``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

EXIT_BUSY = 3


# ------------------------------------------------------------------------------------------- machine load


class BusyMachine(RuntimeError):
    """Other processes use the CPU: timings would not be representative."""


def _own_pids(root: int) -> set[int]:
    """``root`` and its descendants: this benchmark, Ray's processes and their workers."""
    import psutil

    try:
        me = psutil.Process(root)
        return {root} | {c.pid for c in me.children(recursive=True)}
    except psutil.Error:
        return {root}


def _cpu_times() -> dict[int, float]:
    import psutil

    out = {}
    for p in psutil.process_iter(["pid"]):
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def foreign_cpu(interval: float = 1.0, root: int | None = None) -> tuple[float, list[tuple[str, float]]]:
    """CPU cores used over ``interval`` s by processes outside ``root``'s process tree, and the top users."""
    import psutil

    root = os.getpid() if root is None else root
    a = _cpu_times()
    time.sleep(interval)
    b = _cpu_times()
    own = _own_pids(root) | {os.getpid()}
    used = {pid: (b[pid] - a.get(pid, 0.0)) / interval for pid in b if pid not in own}
    total = sum(max(0.0, u) for u in used.values())
    top = []
    for pid, u in sorted(used.items(), key=lambda kv: -kv[1])[:3]:
        if u < 0.05:
            break
        try:
            top.append((psutil.Process(pid).name(), round(u, 2)))
        except psutil.Error:
            top.append((str(pid), round(u, 2)))
    return total, top


def _watch(root: int, conn, stop) -> None:
    """Child process of :class:`LoadWatch`: one foreign-CPU sample per second until ``stop`` is set."""
    samples, top = [], []
    while not stop.is_set():
        used, t = foreign_cpu(1.0, root)
        samples.append(used)
        if t and used >= max(samples):
            top = t
    conn.send((samples, top))


class LoadWatch:
    """Samples the foreign CPU use every second while a round runs, in a child process (so that the
    sampling costs neither loop any time in this process)."""

    def __init__(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._recv, send = ctx.Pipe(duplex=False)
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_watch, args=(os.getpid(), send, self._stop), daemon=True)
        self.samples: list[float] = []
        self.top: list = []

    def __enter__(self):
        self._proc.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._recv.poll(10):
            self.samples, self.top = self._recv.recv()
        self._proc.join(timeout=5)

    def summary(self) -> dict:
        s = self.samples or [0.0]
        return {"foreign_cores_mean": round(statistics.fmean(s), 3), "foreign_cores_max": round(max(s), 3),
                "samples": len(self.samples), "top_foreign": self.top}


def check_idle(args, where: str, log: list, busy: list) -> None:
    """Refuse (raise :class:`BusyMachine`) or, with ``--allow-busy``, note the reason in ``busy``."""
    cores = os.cpu_count() or 1
    reasons = []
    if where == "start":
        load1 = os.getloadavg()[0]
        if load1 > args.max_load * cores:
            reasons.append(f"1-minute load average {load1:.2f} > {args.max_load} × {cores} cores")
    used, top = foreign_cpu(args.sample_s)
    log.append({"where": where, "foreign_cores": round(used, 3), "top_foreign": top, "loadavg": os.getloadavg()})
    if used > args.max_foreign:
        reasons.append(f"other processes use {used:.2f} cores (> {args.max_foreign}): "
                       + ", ".join(f"{n} {u}" for n, u in top))
    if reasons:
        _busy(args, where, "; ".join(reasons), busy)


def _busy(args, where: str, reason: str, busy: list) -> None:
    msg = f"machine busy ({where}): {reason}"
    if not args.allow_busy:
        raise BusyMachine(msg)
    print(f"WARNING: {msg}; recording anyway (--allow-busy): the record is flagged machine_busy", flush=True)
    busy.append(msg)


# ------------------------------------------------------------------------------------------- workload


def manifest_rows(shapes: dict, splits: dict, cube, classes: int, train_cubes: int, val_cubes: int,
                  seed: int) -> list[dict]:
    """Native crops (resolution 1) at random places: ``train_cubes`` + ``val_cubes`` rows, classes cycled."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pids = {s: sorted(p for p in shapes if splits[p] == s) for s in ("train", "val")}
    rows = []
    for split, count in (("train", train_cubes), ("val", val_cubes)):
        for i in range(count):
            pid = pids[split][i % len(pids[split])]
            lo = [int(rng.integers(0, n - c + 1)) for c, n in zip(cube, shapes[pid])]
            rows.append({"row_id": len(rows), "class_id": i % classes, "reference_id": pid, "patient_id": pid,
                         "x0": lo[0], "y0": lo[1], "z0": lo[2], "x1": lo[0] + cube[0], "y1": lo[1] + cube[1],
                         "z1": lo[2] + cube[2], "resolution": 1, "split": split, "rank": 0, "distance": 0.0})
    return rows


def make_workload(args, work: Path):
    from dataclasses import replace

    from semgen_ray.config import load_config
    from semgen_ray.discovery.pattern_manifest import write_manifest
    from semgen_ray.phantoms.cohort import write_cohort
    from semgen_ray.store import open_store

    config = load_config("cpu-tiny", [
        f"train.batch_size={args.batch}", f"train.num_workers={args.workers}",
        f"train.cpus_per_worker={args.cpus_per_worker}", f"train.corrupt_on={args.corrupt_on}",
        f"train.max_epochs={args.epochs}", f"train.patience={args.epochs + 1}", "train.max_steps=0",
        "train.cls_warmup_epochs=0", "train.objective=semantic_genesis", f"train.precision={args.precision}",
        f"model.width={args.width}", f"data.cube_size={list(args.cube)}", f"seed={args.seed}"])
    store_uri = str(work / "store.zarr")
    write_cohort(replace(config.phantoms, n=args.patients, shape=tuple(args.shape)),
                 replace(config.store, uri=store_uri), config.ingest, config.ray, progress=False)
    store = open_store(store_uri)
    shapes = store.shapes()
    splits = {p: ("val" if store.meta(p).get("split") == "val" else "train") for p in shapes}
    if "val" not in splits.values():  # hash splits of a small cohort: make one validation patient
        splits[sorted(shapes)[-1]] = "val"
    rows = manifest_rows(shapes, splits, args.cube, args.classes, args.train_cubes, args.val_cubes, args.seed)
    manifest = str(work / "patterns.parquet")
    write_manifest(rows, manifest, {"benchmark": "train_step"}, config_hash="benchmark")
    return config, store_uri, manifest, rows


def worker_threads(cpus: float) -> int:
    """The torch thread count a Ray process holding ``cpus`` CPUs gets (Ray sets OMP_NUM_THREADS)."""
    import ray

    @ray.remote(num_cpus=cpus)
    def probe() -> int:
        import torch

        return torch.get_num_threads()

    return int(ray.get(probe.remote()))


# ------------------------------------------------------------------------------------------- bare loop


def load_cubes(store_uri: str, rows: list[dict]):
    """The training rows' cubes as one float32 tensor (N, 1, X, Y, Z) in [0, 1], labels, row ids."""
    import numpy as np
    import torch

    from semgen_ray.store import open_store

    store = open_store(store_uri)
    train = [r for r in rows if r["split"] == "train"]
    cubes = [store.read(r["patient_id"], region=((r["x0"], r["x1"]), (r["y0"], r["y1"]), (r["z0"], r["z1"])),
                        normalize=True)[0] for r in train]
    x = torch.from_numpy(np.stack(cubes).astype(np.float32)).unsqueeze(1)
    labels = torch.tensor([r["class_id"] for r in train], dtype=torch.long)
    ids = np.array([r["row_id"] for r in train], dtype=np.int64)
    return x, labels, ids


def bare_loop(config, data, threads: int, epochs: int, recipe: str) -> list[float]:
    """Cubes/s of each epoch of a plain PyTorch loop (see the module docstring)."""
    import numpy as np
    import torch

    from semgen_ray.models import build_model
    from semgen_ray.train.objectives import loss_terms, objective
    from semgen_ray.transforms import make_corruption, sample_seed

    t = config.train
    x_all, labels_all, ids = data
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    dtype = torch.float32 if recipe == "bare_fp32" else torch.bfloat16
    masters = recipe == "bare_masters"
    model = build_model({**_model_dict(config), "num_classes": int(labels_all.max()) + 1}).to(dtype).train()
    params = list(model.parameters())
    if masters:  # DeepSpeed's bf16 recipe: Adam on fp32 copies, copied back into the bf16 weights
        master = [p.detach().float().clone().requires_grad_(True) for p in params]
        optimizer = torch.optim.Adam(master, lr=t.lr)
    else:
        optimizer = torch.optim.Adam(params, lr=t.lr)
    obj = objective(t.objective)
    backend = "torch" if t.corrupt_on == "device" else "numpy"
    corrupt = make_corruption(t.corruption_policy, backend=backend)
    rates = []
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([config.seed, epoch]).permutation(len(ids))
        n = 0
        t0 = time.perf_counter()
        for start in range(0, len(order), t.batch_size):
            idx = order[start:start + t.batch_size]
            cube = x_all[idx]
            seeds = np.array([sample_seed(config.seed, epoch, int(i)) for i in ids[idx]], dtype=np.uint64)
            if backend == "torch":
                inp, cp = corrupt(cube, seeds)
                target = corrupt.target(cube, cp)
            else:
                c = cube.numpy()
                inp, cp = corrupt(c, seeds)
                inp, target = torch.from_numpy(np.ascontiguousarray(inp)), torch.from_numpy(
                    np.ascontiguousarray(corrupt.target(c, cp)))
            restored, logits = model(inp.to(dtype))
            loss, _ = loss_terms(obj, restored, target, logits, labels_all[idx], t.lambda_cls, t.lambda_rec)
            if masters:
                for p in params:
                    p.grad = None
                loss.backward()
                for m, p in zip(master, params):
                    m.grad = p.grad.float()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    for m, p in zip(master, params):
                        p.copy_(m)
            else:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            loss.item()
            n += len(idx)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def _model_dict(config) -> dict:
    from dataclasses import asdict

    return {**asdict(config.model), "head": config.model.head or "torch"}


# ------------------------------------------------------------------------------------------- the real loop


def real_loop(config, store_uri: str, manifest: str, zero: int, out: Path) -> dict:
    """One fresh ``run_pretraining``; the cubes/s of each epoch from its history."""
    from dataclasses import replace

    from semgen_ray.stages.pretraining import run_pretraining

    cfg = replace(config, train=replace(config.train, zero_stage=zero))
    t0 = time.perf_counter()
    record = run_pretraining(cfg, store_uri, manifest, str(out), force=True)
    return {"rates": [h["cubes_per_s"] for h in record["history"]],
            "data_wait_fraction": [round(h.get("data_wait_fraction", 0.0), 4) for h in record["history"]],
            "steps": record["steps"], "run_s": round(time.perf_counter() - t0, 1)}


def steady(rates: list[float]) -> float:
    """A run's figure: the median epoch after the first (the first when there is only one)."""
    return statistics.median(rates[1:] or rates)


# ------------------------------------------------------------------------------------------- main


#: The bare recipes per precision; the first is the one the overhead is taken against.
BARE = {"bf16": {"bare_masters": "bare PyTorch, bf16 + fp32 masters (DeepSpeed's recipe)",
                 "bare_bf16": "bare PyTorch, bf16 weights only"},
        "fp32": {"bare_fp32": "bare PyTorch, fp32"}}


def summarise(rounds: list[dict], zeros: list[int], workers: int, precision: str = "bf16") -> list[dict]:
    out = []
    bare = BARE[precision]
    reference = next(iter(bare))
    for key, label in bare.items():
        vals = [r[key]["cubes_per_s"] for r in rounds]
        out.append({"config": "bare", "key": key, "label": label, "cubes_per_s_rounds": [round(v, 2) for v in vals],
                    "cubes_per_s_median": round(statistics.median(vals), 2)})
    for z in zeros:
        key = f"zero{z}"
        vals = [r[key]["cubes_per_s"] for r in rounds]
        over = [r[reference]["cubes_per_s"] / r[key]["cubes_per_s"] - 1 for r in rounds]
        over_bf16 = [r["bare_bf16"]["cubes_per_s"] / r[key]["cubes_per_s"] - 1 for r in rounds if "bare_bf16" in r]
        out.append({"config": "ray+ds", "key": key, "zero_stage": z,
                    "label": f"real loop: Ray Data + Ray Train ({workers} worker{'s' if workers > 1 else ''}) + "
                             f"DeepSpeed ZeRO-{z}",
                    "cubes_per_s_rounds": [round(v, 2) for v in vals], "cubes_per_s_median": round(statistics.median(vals), 2),
                    "overhead_rounds": [round(o, 4) for o in over], "overhead_median": round(statistics.median(over), 4),
                    "overhead_min": round(min(over), 4), "overhead_max": round(max(over), 4),
                    **({"overhead_vs_bf16_only_median": round(statistics.median(over_bf16), 4)} if over_bf16 else {}),
                    "data_wait_fraction_median": round(statistics.median(
                        w for r in rounds for w in (r[key]["data_wait_fraction"][1:] or r[key]["data_wait_fraction"])), 4)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up")
    p.add_argument("--zero", type=int, nargs="+", default=[1], choices=[0, 1, 2, 3], help="ZeRO stages of the real loop")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--corrupt-on", choices=("device", "data"), default="device")
    p.add_argument("--precision", choices=sorted(BARE), default="bf16",
                   help="of the real loop (train.precision) and the bare recipes")
    p.add_argument("--width", type=int, default=8, help="U-Net width (cpu-tiny: 8)")
    p.add_argument("--cube", type=int, nargs=3, default=[32, 32, 16], metavar=("X", "Y", "Z"))
    p.add_argument("--batch", type=int, default=8, help="cubes per worker per step")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--train-cubes", type=int, default=400,
                   help="training cubes per epoch (long epochs: the per-epoch start of Ray Data is amortised as in real runs)")
    p.add_argument("--val-cubes", type=int, default=16)
    p.add_argument("--patients", type=int, default=8)
    p.add_argument("--shape", type=int, nargs=3, default=[128, 128, 64])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-load", type=float, default=0.25, help="at start: 1-minute load average per core, at most")
    p.add_argument("--max-foreign", type=float, default=0.25,
                   help="CPU cores other processes may use (sampled before, between and during rounds)")
    p.add_argument("--sample-s", type=float, default=3.0, help="seconds of each between-round load sample")
    p.add_argument("--allow-busy", action="store_true", help="record a busy-machine run, flagged machine_busy")
    p.add_argument("--work", help="folder for the store and runs (default: temporary)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_step.json"))
    args = p.parse_args(argv)

    started = time.perf_counter()
    load_log: list = []
    busy: list = []
    try:
        check_idle(args, "start", load_log, busy)  # before anything of ours runs (or is imported)
    except BusyMachine as err:
        print(f"REFUSED: {err}.\nRun on an idle machine (or pass --allow-busy to record a run flagged "
              f"machine_busy, which is never quoted as the figure). Nothing written.", file=sys.stderr)
        return EXIT_BUSY
    desc = describe()

    from semgen_ray.runtime import init_ray

    tmp = tempfile.TemporaryDirectory(prefix="train_step_")
    work = Path(args.work or tmp.name)
    config, store_uri, manifest, rows = make_workload(args, work)
    ray = init_ray(config.ray)
    rounds = []
    try:
        threads = worker_threads(args.cpus_per_worker)
        data = load_cubes(store_uri, rows)
        for i in range(args.rounds):
            check_idle(args, f"before round {i + 1}", load_log, busy)
            rnd: dict = {}
            with LoadWatch() as watch:
                for key, label in BARE[args.precision].items():
                    rates = bare_loop(config, data, threads, args.epochs, key)
                    rnd[key] = {"epoch_cubes_per_s": [round(r, 2) for r in rates], "cubes_per_s": steady(rates)}
                    print(f"  round {i + 1}: {label}: {rnd[key]['cubes_per_s']:.1f} cubes/s", flush=True)
                for z in args.zero:
                    r = real_loop(config, store_uri, manifest, z, work / f"run_r{i}_z{z}")
                    rnd[f"zero{z}"] = {"epoch_cubes_per_s": [round(v, 2) for v in r["rates"]],
                                       "cubes_per_s": steady(r["rates"]), **{k: r[k] for k in r if k != "rates"}}
                    print(f"  round {i + 1}: real loop, ZeRO-{z}: {rnd[f'zero{z}']['cubes_per_s']:.1f} cubes/s "
                          f"(run {r['run_s']} s)", flush=True)
            rnd["load"] = watch.summary()
            rounds.append(rnd)
            if rnd["load"]["foreign_cores_mean"] > args.max_foreign:
                _busy(args, f"during round {i + 1}",
                      f"other processes used {rnd['load']['foreign_cores_mean']:.2f} cores on average "
                      f"(> {args.max_foreign}): {rnd['load']['top_foreign']}", busy)
    except BusyMachine as err:
        print(f"REFUSED: {err}.\nThe run stopped; nothing written. Run on an idle machine (or pass --allow-busy).",
              file=sys.stderr)
        return EXIT_BUSY
    finally:
        ray.shutdown()
        tmp.cleanup()

    summary = summarise(rounds, args.zero, args.workers, args.precision)
    result = {"benchmark": "train_step", "method": "real_loop",
              "command": " ".join(["python", "benchmarks/train_step.py", *(argv if argv is not None else sys.argv[1:])]),
              "machine": desc, "machine_busy": bool(busy), "busy_reason": "; ".join(busy) or None,
              "load_checks": load_log,
              "args": {**vars(args), "out": os.path.relpath(args.out, Path(__file__).resolve().parents[1])},
              "rounds": len(rounds), "train_cubes": args.train_cubes, "precision": args.precision,
              "torch_threads": threads, "round_records": rounds, "summary": summary, "overhead_target": 0.10,
              "total_s": round(time.perf_counter() - started, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")

    print(f"\n{desc['cpu']}, {desc['cores']} cores; {threads} torch thread(s) per loop; {len(rounds)} rounds × "
          f"{args.epochs} epochs of {args.train_cubes} cubes; {result['total_s']} s"
          + ("; MACHINE BUSY: " + result["busy_reason"] if busy else ""))
    print(f"\n| loop | cubes/s (median over rounds) | rounds | overhead vs {next(iter(BARE[args.precision].values()))} |")
    print("|---|---|---|---|")
    for r in summary:
        vs = "–" if r["config"] == "bare" else f"{r['overhead_median']:+.1%}"
        print(f"| {r['label']} | {r['cubes_per_s_median']} | {r['cubes_per_s_rounds']} | {vs} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
