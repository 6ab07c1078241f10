"""Benchmark: one training step of the Ray Train + DeepSpeed loop against a bare PyTorch loop.

Claim measured (issue: training): the step time of the Ray Train + DeepSpeed loop is within 10 % of a
bare PyTorch loop on the same model, batch and machine, and what one vs two Train workers give on
this machine. Every configuration trains the ``cpu-tiny`` U-Net 3D + classification head (``--width``,
``--classes``) in bf16 (parameters cast with ``.to(torch.bfloat16)``, as
:mod:`semgen_ray.train.loop` does) with Adam on one fixed in-memory batch of ``--batch`` random cubes
in [0, 1] (same seed, same initial weights everywhere); loss = the ``semantic_genesis`` objective
(λ_rec · MSE + λ_cls · CE, λ = 1, 0.01). One step = forward, loss, backward, optimiser step,
``loss.item()``; ``--warmup`` untimed steps, then ``--steps`` timed ones.

* ``bare``: a plain loop in the driver process (``loss.backward()``, ``torch.optim.Adam.step()``),
  once per thread count used by the Ray rows, so every Ray row has a bare reference with the same
  per-worker thread count and batch.
* ``ray+ds``: a ``TorchTrainer`` (gloo, ``resources_per_worker={"CPU": 1}``) whose workers build the
  model like :func:`semgen_ray.train.loop.train_loop` (``make_optimizer``, ``deepspeed.initialize``
  with :func:`semgen_ray.train.deepspeed_config.deepspeed_config`, ZeRO ``--zero``) and step
  ``engine(x)`` → ``loss_terms`` → ``engine.backward`` → ``engine.step``; with W workers each trains
  the same per-worker batch (global batch W × ``--batch``), and the step includes the gradient
  all-reduce. Timings come from inside the workers (rank 0's, the ranks being in lock step).

Threads: ``--threads 0`` (default) gives each worker ``max(1, cores // W)`` torch threads (2 then 1
on a 2-core machine, so 1 and 2 workers use the same cores); the bare loop runs at each of those
counts. Reported: seconds/step (median, mean), global cubes/s and ``vs bare`` = t / t_bare − 1 at the
same thread count (the overhead target, ≤ 10 %, is for the 1-worker row); the 2-worker row's
``vs bare`` also holds the all-reduce and the two workers sharing the machine. Run it on an idle
machine: with another job on the cores, multi-threaded steps slow down by 10-100× (OpenMP threads
waiting on a descheduled sibling) and the comparison means nothing; the JSON records the load average
at start and ``machine_busy_at_start``.

    ./venv-run python benchmarks/train_step.py                    # about 2-4 min on 2 idle cores
    ./venv-run python benchmarks/train_step.py --width 4 --cube 16 16 8 --batch 2 --steps 3 --warmup 1 \\
        --out /tmp/train_step_smoke.json                          # smoke run

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
from machine import describe as machine  # noqa: E402

LAMBDA_CLS, LAMBDA_REC = 0.01, 1.0


def make_batch(seed: int, batch: int, cube, classes: int):
    """The fixed batch: ``(x, labels)``, x float32 (N, 1, X, Y, Z) in [0, 1], the same for a seed."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, *cube, generator=g)
    labels = torch.randint(0, classes, (batch,), generator=g)
    return x, labels


def summary(times: list[float]) -> dict:
    return {"step_s": [round(t, 4) for t in times], "step_s_median": statistics.median(times),
            "step_s_mean": statistics.fmean(times)}


def bare_loop(width: int, cube, batch: int, classes: int, warmup: int, steps: int, threads: int,
              lr: float, seed: int) -> dict:
    """The plain PyTorch loop on this process: bf16 model, torch Adam, the same loss."""
    import torch

    from semgen_ray.models import build_model
    from semgen_ray.train.objectives import loss_terms, objective

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_model("cpu-tiny", width=width, num_classes=classes).to(torch.bfloat16).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    obj = objective("semantic_genesis")
    x, labels = make_batch(seed, batch, cube, classes)
    inp = x.to(torch.bfloat16)

    def one_step() -> float:
        t0 = time.perf_counter()
        restored, logits = model(inp)
        loss, _ = loss_terms(obj, restored, x, logits, labels, LAMBDA_CLS, LAMBDA_REC)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        return time.perf_counter() - t0

    for _ in range(warmup):
        one_step()
    times = [one_step() for _ in range(steps)]
    return {"threads": torch.get_num_threads(), "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
            "parallel_info": torch.__config__.parallel_info().splitlines()[1:4],
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3), **summary(times)}


def ds_worker(cfg: dict) -> None:
    """Ray Train worker: the model as :func:`semgen_ray.train.loop.train_loop` builds it, fixed batch."""
    import deepspeed
    import ray.train
    import torch

    from semgen_ray.models import build_model
    from semgen_ray.train.deepspeed_config import deepspeed_config, make_optimizer
    from semgen_ray.train.objectives import loss_terms, objective

    torch.set_num_threads(cfg["threads"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    train_cfg = cfg["train_config"]
    t0 = time.perf_counter()
    torch.manual_seed(cfg["seed"])  # the same initial weights on every rank and in the bare loop
    model = build_model("cpu-tiny", width=cfg["width"], num_classes=cfg["classes"]).to(torch.bfloat16)
    optimizer = make_optimizer(train_cfg, model.parameters())
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # no JIT build of the CPU shm op
    engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                                   config=deepspeed_config(train_cfg, gpu=False),
                                                   dist_init_required=False)
    setup_s = time.perf_counter() - t0
    engine.train()
    obj = objective("semantic_genesis")
    x, labels = make_batch(cfg["seed"], train_cfg.batch_size, cfg["cube"], cfg["classes"])
    inp = x.to(torch.bfloat16)

    def one_step() -> float:
        t = time.perf_counter()
        restored, logits = engine(inp)
        loss, _ = loss_terms(obj, restored, x, logits, labels, train_cfg.lambda_cls, train_cfg.lambda_rec)
        engine.backward(loss)
        engine.step()
        loss.item()
        return time.perf_counter() - t

    for _ in range(cfg["warmup"]):
        one_step()
    times = [one_step() for _ in range(cfg["steps"])]
    out = {"rank": rank, "world": world, "threads": torch.get_num_threads(),
           "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"), "cpu_affinity": sorted(os.sched_getaffinity(0)),
           "parallel_info": torch.__config__.parallel_info().splitlines()[1:4], "setup_s": round(setup_s, 3),
           "zero_stage": engine.zero_optimization_stage(), "bf16": bool(engine.bfloat16_enabled()),
           **summary(times)}
    Path(cfg["result_dir"], f"rank_{rank}.json").write_text(json.dumps(out))
    ray.train.report({k: v for k, v in out.items() if k != "step_s"})  # metrics only, no checkpoint


def ray_ds(workers: int, args, threads: int, tmp: str) -> dict:
    """One TorchTrainer run of :func:`ds_worker` with ``workers`` workers; rank 0's timings."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from semgen_ray.config import load_config

    train_cfg = load_config("cpu-tiny", [f"train.zero_stage={args.zero}", f"train.batch_size={args.batch}"]).train
    result_dir = Path(tmp, f"timings_w{workers}")
    result_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"train_config": train_cfg, "width": args.width, "classes": args.classes, "cube": list(args.cube),
           "seed": args.seed, "warmup": args.warmup, "steps": args.steps, "threads": threads,
           "result_dir": str(result_dir)}
    trainer = TorchTrainer(
        ds_worker, train_loop_config=cfg, torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"train_step_w{workers}", storage_path=str(Path(tmp, "ray_storage"))))
    t0 = time.perf_counter()
    result = trainer.fit()
    fit_s = time.perf_counter() - t0
    if result.error is not None:
        raise RuntimeError(f"{workers}-worker run failed: {result.error}") from result.error
    ranks = [json.loads((result_dir / f"rank_{r}.json").read_text()) for r in range(workers)]
    rank0 = ranks[0]
    metrics = result.metrics or {}
    # Ray Train V2 fills result.metrics only from reports that carried a checkpoint: then the files
    source = "result.metrics" if metrics.get("step_s_median") is not None else "rank_0.json"
    median = metrics["step_s_median"] if source == "result.metrics" else rank0["step_s_median"]
    return {"threads": rank0["threads"], "omp_num_threads_env": rank0["omp_num_threads_env"],
            "cpu_affinity": rank0["cpu_affinity"], "parallel_info": rank0["parallel_info"],
            "zero_stage": rank0["zero_stage"], "bf16": rank0["bf16"],
            "setup_s": rank0["setup_s"], "fit_s": round(fit_s, 1), "timings_from": source,
            "rank_step_s_median": [round(r["step_s_median"], 4) for r in ranks],
            "step_s": rank0["step_s"], "step_s_median": median, "step_s_mean": rank0["step_s_mean"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=8, help="U-Net base width (cpu-tiny: 8)")
    p.add_argument("--cube", type=int, nargs=3, default=[32, 32, 16], metavar=("X", "Y", "Z"))
    p.add_argument("--batch", type=int, default=8, help="cubes per worker per step")
    p.add_argument("--classes", type=int, default=4, help="classification head classes C")
    p.add_argument("--zero", type=int, default=2, choices=[0, 1, 2, 3], help="DeepSpeed ZeRO stage")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray Train worker counts")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per worker (and of the bare loop); 0: max(1, cores // workers)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_step.json"))
    args = p.parse_args(argv)

    import torch

    from semgen_ray.config import RayConfig, load_config
    from semgen_ray.runtime import init_ray

    started = time.perf_counter()
    desc = machine()  # before anything runs: the load average at start
    cores = os.cpu_count() or 1
    busy = desc["loadavg_at_start"][0] > 0.25 * cores  # another job on the cores: OpenMP threads get descheduled
    threads_of = {w: args.threads or max(1, cores // w) for w in args.workers}
    lr = load_config("cpu-tiny").train.lr

    # bare loops first, before Ray starts (nothing else of ours on the cores)
    bare = {}
    for threads in sorted(set(threads_of.values()), reverse=True):
        bare[threads] = bare_loop(args.width, args.cube, args.batch, args.classes, args.warmup, args.steps,
                                  threads, lr, args.seed)
        print(f"  bare, {threads} thread(s): {bare[threads]['step_s_median']:.4f} s/step", flush=True)
    rows = [{"config": "bare", "workers": 1, "zero_stage": None, **b} for b in bare.values()]

    init_ray(RayConfig(num_cpus=4, object_store_mb=512))
    import ray

    try:
        with tempfile.TemporaryDirectory(prefix="train_step_") as tmp:
            for w in args.workers:
                r = ray_ds(w, args, threads_of[w], tmp)
                rows.append({"config": "ray+ds", "workers": w, **r})
                print(f"  ray+ds, {w} worker(s) × {r['threads']} thread(s): {r['step_s_median']:.4f} s/step "
                      f"(fit {r['fit_s']} s)", flush=True)
    finally:
        ray.shutdown()

    for r in rows:
        r["batch_per_worker"] = args.batch
        r["cubes_per_s"] = round(r["workers"] * args.batch / r["step_s_median"], 2)
        ref = bare.get(r["threads"])
        r["vs_bare"] = round(r["step_s_median"] / ref["step_s_median"] - 1, 4) if ref else None
        r["step_s_median"], r["step_s_mean"] = round(r["step_s_median"], 4), round(r["step_s_mean"], 4)
    one = next((r for r in rows if r["config"] == "ray+ds" and r["workers"] == 1), None)
    result = {"benchmark": "train_step",
              "command": " ".join(["python", "benchmarks/train_step.py", *(argv or sys.argv[1:])]),
              "machine": desc, "torch_threads_default": torch.get_num_threads(),
              "threads_per_worker": {str(w): t for w, t in threads_of.items()},
              "model": {"preset": "cpu-tiny", "width": args.width, "classes": args.classes,
                        "params_m": rows[0]["params_m"], "dtype": "bf16"},
              "args": vars(args), "rows": rows,
              "overhead_1_worker": one["vs_bare"] if one else None, "overhead_target": 0.10,
              "machine_busy_at_start": busy,
              "total_s": round(time.perf_counter() - started, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    m = desc
    if busy:
        print(f"\nWARNING: load average {m['loadavg_at_start'][0]:.2f} on {cores} cores at start: the machine "
              "was not idle; timings (multi-threaded ones above all) are not representative")
    print(f"\n{m['cpu']}, {m['cores']} cores; load {m['loadavg_at_start'][0]:.2f} at start; "
          f"cpu-tiny width {args.width}, C = {args.classes}, {rows[0]['params_m']} M params, bf16, "
          f"cube {'×'.join(map(str, args.cube))}; {args.warmup} warm-up + {args.steps} timed steps; "
          f"{result['total_s']} s total")
    print("\n| config | workers | threads/worker | ZeRO | batch/worker | s/step (median) | s/step (mean) | "
          "cubes/s (global) | vs bare |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        vs = "—" if r["config"] == "bare" or r["vs_bare"] is None else f"{r['vs_bare']:+.1%}"
        zero = "—" if r["zero_stage"] is None else r["zero_stage"]
        print(f"| {r['config']} | {r['workers']} | {r['threads']} | {zero} | {r['batch_per_worker']} | "
              f"{r['step_s_median']} | {r['step_s_mean']} | {r['cubes_per_s']} | {vs} |")
    if one is not None:
        verdict = "meets" if one["vs_bare"] <= 0.10 else "misses"
        print(f"\n1-worker overhead {one['vs_bare']:+.1%} vs bare at {one['threads']} thread(s): {verdict} "
              f"the ≤ 10 % target")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
