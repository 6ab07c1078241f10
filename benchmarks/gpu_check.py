"""The GPU check: everything below Ray that a GPU node runs, measured in one go (``benchmarks/gpu_check.sh``).

Sections of the JSON it writes (``<out>/gpu_check.json``), each with ``status`` ``ok``, ``skipped``
(and ``reason``) or ``error`` (and ``error``), so that one failing part never hides the others:

* ``unet``: the U-Net + classification head at paper size (width 32, C = 44, 64×64×32), one
  training step = forward, MSE + 0.01 · cross-entropy, backward, in fp32 / bf16 / fp16 (autocast):
  cubes/s, TFLOP/s (FLOPs counted by ``torch.utils.flop_counter`` on the meta device, as
  ``benchmarks/unet.py``) and % of the GPU's dense bf16 peak (a table of known GPUs; ``null`` when
  the GPU is not in it).
* ``deepspeed``: the DeepSpeed engine in one process (a one-rank process group), ZeRO-1, bf16 and fp16
  with dynamic loss scaling (the project's ``deepspeed_config``), against a bare PyTorch loop
  (autocast, torch Adam, ``GradScaler`` for fp16) on the same model and batch: step times, their
  ratio, and for fp16 the loss scale and the number of overflowing (skipped) steps after warm-up,
  with every loss finite. Skipped, with the reason, when DeepSpeed is not installed; fp16 is skipped
  without a GPU (DeepSpeed has no fp16 on CPUs).
* ``corruptions``: the torch back end on the device for ``sg``, ``mg``, ``sg_keras``: cubes/s with
  the parameters drawn on the host (the real cost) and applying pre-drawn parameters only, and the
  largest difference from the numpy back end on the same per-sample seeds.
* ``data_path``: a torch ``DataLoader`` with N worker processes (N = 1, 2, 4, 8) reading random
  64×64×32 crops of a phantom Zarr volume store (:func:`semgen_ray.data.patient_crops.read_patient_crops`,
  one region read per batch as the Ray Data read tasks do) feeding the bf16 training step on the
  device; corruptions on the device (torch back end, ``corrupt_on: device``) or in the workers
  (``sg``, numpy, ``corrupt_on: data``). Reported: cubes/s and the fraction of the wall time the
  training loop waited for data; and, per worker, the loader alone (no training).

``--dry-run`` shrinks every size (the ``cpu-tiny`` U-Net, 32×32×16 cubes, a few steps, N = 1, 2) and
runs on the CPU: it checks that the script works, not how fast anything is.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu          # on a GPU node (gpu_check.sh)
    ./venv-run python benchmarks/gpu_check.py --dry-run --out /tmp/gc    # tiny, CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch  # the whole check is about torch (and a DataLoader dataset class below)
import torch.utils.data

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: Dense bf16 tensor-core peak in TFLOP/s by device-name fragment (vendor data sheets; SXM unless named).
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4, "GH200": 989.4,
                    "A100": 312.0, "L40S": 362.1, "A10G": 70.0, "L4": 121.0}

FULL = {"model": "paper", "classes": 44, "cube": (64, 64, 32), "corr_cube": (64, 64, 32), "unet_batch": 16,
        "unet_steps": 10, "warmup": 3, "ds_steps": 20, "ds_warmup": 8, "corr_batch": 64, "corr_rounds": 5,
        "workers": (1, 2, 4, 8), "loader_batch": 16, "loader_batches": 30, "patients": 8, "volume": (160, 160, 96)}
#: Dry mode: the smallest sizes that run every code path (``sg_keras`` holes need 32-voxel sides).
DRY = {"model": "cpu-tiny", "classes": 4, "cube": (16, 16, 16), "corr_cube": (32, 32, 32), "unet_batch": 1,
       "unet_steps": 1, "warmup": 1, "ds_steps": 2, "ds_warmup": 1, "corr_batch": 2, "corr_rounds": 1,
       "workers": (1, 2), "loader_batch": 2, "loader_batches": 3, "patients": 1, "volume": (32, 32, 32)}


def _device():

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device) -> None:

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_peak(name: str) -> float | None:
    """The dense bf16 peak (TFLOP/s) of a GPU by its name, or None when unknown."""
    for key, peak in BF16_PEAK_TFLOPS.items():  # longer (more specific) keys come first
        if key in name:
            return peak
    return None


def section(name: str, results: dict, fn, *args) -> None:
    """Run one section; record its result, or the error with its traceback, and the time it took."""
    t0 = time.perf_counter()
    try:
        out = fn(*args)
        out.setdefault("status", "ok")
    except Exception as err:  # noqa: BLE001 - one failing section must not hide the others
        out = {"status": "error", "error": f"{type(err).__name__}: {err}",
               "traceback": traceback.format_exc(limit=6)}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    results[name] = out
    print(f"[gpu_check] {name}: {out['status']} ({out['seconds']} s)", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ U-Net step
def _loss(recon, logits, x, y):
    import torch.nn.functional as F

    return F.mse_loss(recon.float(), x.float()) + 0.01 * F.cross_entropy(logits.float(), y)


def _step_flops(s: dict, batch: int) -> int:
    from unet import step_flops

    return step_flops(s["model"], s["cube"], s["classes"], batch)


def unet_section(s: dict, device) -> dict:

    from semgen_ray.models import build_model

    torch.backends.cudnn.benchmark = True
    batch = s["unet_batch"]
    flops = _step_flops(s, batch)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = bf16_peak(name)
    rows = []
    for dtype in ("fp32", "bf16", "fp16"):
        if dtype == "fp16" and device.type == "cpu":  # CPU fp16 convolutions: 30 s for one 16³ cube
            rows.append({"dtype": dtype, "status": "skipped", "reason": "fp16 convolutions are unusably slow on CPUs"})
            continue
        torch.manual_seed(0)
        model = build_model(s["model"], num_classes=s["classes"]).to(device).train()
        x = torch.rand(batch, 1, *s["cube"], device=device)
        y = torch.randint(0, s["classes"], (batch,), device=device)
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)

        def one() -> float:
            _sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                recon, logits = model(x)
                loss = _loss(recon, logits, x, y)
            loss.backward()
            model.zero_grad(set_to_none=True)
            _sync(device)
            return time.perf_counter() - t0

        for _ in range(s["warmup"]):
            one()
        times = [one() for _ in range(s["unet_steps"])]
        med = statistics.median(times)
        tflops = flops / med / 1e12
        rows.append({"dtype": dtype, "batch": batch, "step_s_median": round(med, 5),
                     "cubes_per_s": round(batch / med, 2), "tflop_per_s": round(tflops, 3),
                     "pct_of_bf16_peak": round(100 * tflops / peak, 2) if peak else None})
        del model
    return {"model": s["model"], "classes": s["classes"], "cube": list(s["cube"]), "device_name": name,
            "bf16_peak_tflops": peak, "gflop_per_cube": round(flops / batch / 1e9, 1), "rows": rows}


# -------------------------------------------------------------------------------------------- DeepSpeed
def _process_group(device) -> None:
    import socket

    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0"})
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)


def _loss_scale(engine):
    opt = engine.optimizer
    for attr in ("cur_scale", "loss_scale"):
        value = getattr(opt, attr, None)
        if isinstance(value, (int, float)):
            return float(value)
    scaler = getattr(opt, "loss_scaler", None)
    return float(scaler.cur_scale) if scaler is not None and hasattr(scaler, "cur_scale") else None


def _deepspeed_run(s: dict, device, precision: str) -> dict:
    import deepspeed

    from semgen_ray.config import load_config
    from semgen_ray.models import build_model
    from semgen_ray.engine.deepspeed_config import deepspeed_config, make_optimizer

    batch = s["unet_batch"]
    cfg = load_config(s["model"], [f"train.precision={precision}", "train.zero_stage=1",
                                   f"train.batch_size={batch}", "train.grad_accum=1"])
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    torch.manual_seed(0)
    x = torch.rand(batch, 1, *s["cube"], device=device)
    y = torch.randint(0, s["classes"], (batch,), device=device)
    steps, warm = s["ds_steps"], s["ds_warmup"]

    # the engine, as the training loop sets it up (model in the training dtype, fp32 masters in DeepSpeed)
    model = build_model(s["model"], num_classes=s["classes"]).to(dtype).to(device)
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    engine, *_ = deepspeed.initialize(model=model, optimizer=make_optimizer(cfg.train, model.parameters()),
                                      config=deepspeed_config(cfg.train, gpu=device.type == "cuda"),
                                      dist_init_required=False)
    ds_times, losses, skipped_after, scales = [], [], 0, []
    for i in range(steps):
        before = int(getattr(engine, "skipped_steps", 0))
        _sync(device)
        t0 = time.perf_counter()
        recon, logits = engine(x.to(dtype))
        loss = _loss(recon, logits, x, y)
        engine.backward(loss)
        engine.step()
        _sync(device)
        ds_times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
        scales.append(_loss_scale(engine))
        if i >= warm and int(getattr(engine, "skipped_steps", 0)) > before:
            skipped_after += 1
    skipped_total = int(getattr(engine, "skipped_steps", 0))
    del engine, model

    # bare PyTorch: fp32 weights, autocast, torch Adam (GradScaler for fp16)
    model = build_model(s["model"], num_classes=s["classes"]).to(device)
    opt = make_optimizer(cfg.train, model.parameters())
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    bare_times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype):
            recon, logits = model(x)
            loss = _loss(recon, logits, x, y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        bare_times.append(time.perf_counter() - t0)
    del model, opt
    ds_med, bare_med = statistics.median(ds_times[warm:]), statistics.median(bare_times[warm:])
    finite = all(math.isfinite(v) for v in losses[warm:])
    return {"precision": precision, "zero_stage": 1, "batch": batch, "steps": steps, "warmup_steps": warm,
            "deepspeed_step_s": round(ds_med, 5), "bare_step_s": round(bare_med, 5),
            "deepspeed_over_bare": round(ds_med / bare_med, 3), "losses_finite_after_warmup": finite,
            "skipped_steps_total": skipped_total, "skipped_steps_after_warmup": skipped_after,
            "loss_scale_final": scales[-1], "first_loss": losses[0], "last_loss": losses[-1],
            "ok": finite and skipped_after == 0}


def deepspeed_section(s: dict, device) -> dict:
    try:
        import deepspeed  # noqa: F401
    except Exception as err:  # noqa: BLE001 - absent or broken: either way not measurable here
        return {"status": "skipped", "reason": f"deepspeed is not importable ({type(err).__name__}: {err}); "
                                               "carry its wheel (benchmarks/gpu_wheels.sh --deepspeed)"}
    _process_group(device)
    runs = {}
    for precision in ("bf16", "fp16"):
        if precision == "fp16" and device.type != "cuda":
            runs[precision] = {"status": "skipped", "reason": "DeepSpeed has no fp16 on CPUs"}
            continue
        try:
            runs[precision] = {"status": "ok", **_deepspeed_run(s, device, precision)}
        except Exception as err:  # noqa: BLE001
            runs[precision] = {"status": "error", "error": f"{type(err).__name__}: {err}",
                               "traceback": traceback.format_exc(limit=6)}
    return {"runs": runs}


# ------------------------------------------------------------------------------------------ corruptions
def cubes(n: int, shape, seed: int):
    """Smooth random cubes in [0, 1] (float32, (N, 1, *shape)): coarse noise, linearly upsampled."""
    import numpy as np
    from scipy.ndimage import zoom

    coarse = np.random.default_rng(seed).random((n, 1, *(max(2, d // 8) for d in shape)))
    x = zoom(coarse, (1, 1, *(d / c for d, c in zip(shape, coarse.shape[2:]))), order=1)
    return np.clip(x, 0, 1).astype(np.float32)


def corruption_section(s: dict, device) -> dict:
    import numpy as np

    from semgen_ray.transforms import make_corruption, sample_seed

    x = cubes(s["corr_batch"], s["corr_cube"], 1)
    seeds = np.array([sample_seed(7, 1, i) for i in range(len(x))], dtype=np.uint64)
    xt = torch.from_numpy(x).to(device)
    rows = []
    for preset in ("sg", "mg", "sg_keras"):
        f_np = make_corruption(preset)
        f_t = make_corruption(preset, backend="torch")
        y_np, params = f_np(x, seeds)
        y_t, params_t = f_t(xt, seeds)            # its own sampling from the same seeds
        same_names = params_t.names() == params.names()
        diff = float(np.abs(y_t.cpu().numpy() - y_np).max())
        diff_apply = float(np.abs(f_t.apply(xt, params).cpu().numpy() - y_np).max())
        f_t(xt, seeds)                             # warm-up
        full, apply_only = [], []
        for _ in range(s["corr_rounds"]):
            _sync(device)
            t0 = time.perf_counter()
            f_t(xt, seeds)
            _sync(device)
            full.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            f_t.apply(xt, params)
            _sync(device)
            apply_only.append(time.perf_counter() - t0)
        rows.append({"preset": preset, "batch": len(x),
                     "cubes_per_s": round(len(x) / statistics.median(full), 1),
                     "cubes_per_s_apply_only": round(len(x) / statistics.median(apply_only), 1),
                     "max_abs_diff_vs_numpy": diff, "max_abs_diff_apply_vs_numpy": diff_apply,
                     "same_operations": same_names, "agree_1e-5": same_names and max(diff, diff_apply) <= 1e-5})
    return {"cube": list(s["corr_cube"]), "device": str(device), "rows": rows}


# ------------------------------------------------------------------------------------------- data path
def make_store(root: str, s: dict) -> tuple[str, list[str]]:
    """A phantom volume store (volumes only; the Parquet manifest is not needed to read crops)."""
    from semgen_ray.phantoms import generate_patient
    from semgen_ray.store import open_store

    uri = os.path.join(root, "store.zarr")
    store = open_store(uri, mode="w", chunks=(64, 64, 32))
    ids = []
    for i in range(s["patients"]):
        vol, _, _ = generate_patient(i, cohort_seed=0, shape=tuple(s["volume"]))
        pid = f"phantom_{i:03d}"
        store.write(pid, vol)
        ids.append(pid)
    return uri, ids


class CropBatches(torch.utils.data.IterableDataset):
    """A torch ``IterableDataset``: batches of random crops, one region read per batch (one patient),
    optionally corrupted with the numpy back end in the worker. Each worker draws its own stream."""

    def __init__(self, uri: str, ids: list[str], volume, cube, batch: int, batches: int, corrupt: str | None):
        super().__init__()
        self.uri, self.ids, self.volume, self.cube = uri, ids, tuple(volume), tuple(cube)
        self.batch, self.batches, self.corrupt = batch, batches, corrupt

    def __iter__(self):
        import numpy as np

        from semgen_ray.data.patient_crops import read_patient_crops
        from semgen_ray.store import open_store
        from semgen_ray.transforms import make_corruption

        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng(1000 + wid)
        store = open_store(self.uri)
        f = make_corruption(self.corrupt) if self.corrupt else None
        cube, vol = np.asarray(self.cube), np.asarray(self.volume)
        for k in range(wid, self.batches, nw):
            pid = self.ids[int(rng.integers(len(self.ids)))]
            lo = rng.integers(0, vol - cube + 1, size=(self.batch, 3))
            (_, x, _), = read_patient_crops(store, pid, lo, lo + cube, self.cube, normalize=True)
            x = x[:, None]
            if f is not None:
                y, _ = f(x, seed=k)
                yield torch.from_numpy(x), torch.from_numpy(y)
            else:
                yield torch.from_numpy(x), None


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # one core per worker: the per-core figures


def _loader(ds, workers: int):
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=torch.cuda.is_available(),
                                       prefetch_factor=2 if workers else None, worker_init_fn=_one_thread)


def data_path_section(s: dict, device, tmp: str) -> dict:
    import numpy as np

    import semgen_ray.data.patient_crops  # noqa: F401 - imported once here, inherited by the forked workers
    from semgen_ray.models import build_model
    from semgen_ray.transforms import make_corruption

    uri, ids = make_store(tmp, s)
    model = build_model(s["model"], num_classes=s["classes"]).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    on_device = make_corruption("sg", backend="torch")
    y_cls = torch.zeros(s["loader_batch"], dtype=torch.long, device=device)
    rows = []
    for mode in ("device", "data"):
        for n in s["workers"]:
            ds = CropBatches(uri, ids, s["volume"], s["cube"], s["loader_batch"], s["loader_batches"],
                             "sg" if mode == "data" else None)
            # the loader alone (no training): what N workers produce
            t0 = time.perf_counter()
            got = sum(int(x.shape[0]) for x, _ in _loader(ds, n))
            loader_only = got / (time.perf_counter() - t0)
            # feeding the training step: time blocked on the loader vs total
            wait, cubes_done, k = 0.0, 0, 0
            it = iter(_loader(ds, n))
            t_start = None
            while True:
                tw = time.perf_counter()
                try:
                    x, y = next(it)
                except StopIteration:
                    break
                if k == 0:  # the first batch includes worker start-up: not counted
                    t_start = time.perf_counter()
                else:
                    wait += time.perf_counter() - tw
                x = x.to(device, non_blocking=True)
                if mode == "device":
                    y, _ = on_device(x, seed=np.arange(k * len(x), (k + 1) * len(x), dtype=np.uint64))
                else:
                    y = y.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    recon, logits = model(y)
                    loss = _loss(recon, logits, x, y_cls[: len(x)])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                _sync(device)
                if k > 0:
                    cubes_done += int(x.shape[0])
                k += 1
            total = time.perf_counter() - t_start
            rows.append({"corrupt_on": mode, "workers": n, "batch": s["loader_batch"], "batches": k,
                         "loader_only_cubes_per_s": round(loader_only, 1),
                         "loader_only_cubes_per_s_per_worker": round(loader_only / n, 1),
                         "train_cubes_per_s": round(cubes_done / total, 1),
                         "wait_fraction": round(wait / total, 3)})
    return {"store": {"patients": len(ids), "volume": list(s["volume"]), "chunks": [64, 64, 32]},
            "cube": list(s["cube"]), "model": s["model"], "rows": rows}


# ------------------------------------------------------------------------------------------ gpu tests
def gpu_tests_section(dry: bool) -> dict:
    import subprocess

    root = HERE.parent
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
           str(root / "tests" / "test_gpu_check.py")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=240)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return {"status": "ok" if proc.returncode in (0, 5) else "error", "command": " ".join(cmd[1:]),
            "returncode": proc.returncode, "summary": lines[-1] if lines else proc.stderr[-500:],
            "wall_s": round(time.perf_counter() - t0, 1)}


# -------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (checks the script only)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["unet", "deepspeed", "corruptions", "data_path",
                                                              "gpu_tests"])
    args = ap.parse_args(argv)
    s = DRY if args.dry_run else FULL


    from machine import describe

    device = torch.device("cpu") if args.dry_run else _device()
    if not args.dry_run and device.type != "cuda":
        print("gpu_check: no CUDA device (use --dry-run on a CPU machine)", file=sys.stderr)
        return 2
    if args.dry_run:
        torch.set_num_threads(1)

    t0 = time.perf_counter()
    results = {"benchmark": "gpu_check", "dry_run": args.dry_run,
               "command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "torch": torch.__version__, "cuda": torch.version.cuda,
               "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "machine": describe(), "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()}}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        if "unet" not in args.skip:
            section("unet", results, unet_section, s, device)
        if "deepspeed" not in args.skip:
            section("deepspeed", results, deepspeed_section, s, device)
        if "corruptions" not in args.skip:
            section("corruptions", results, corruption_section, s, device)
        if "data_path" not in args.skip:
            section("data_path", results, data_path_section, s, device, tmp)
        if "gpu_tests" not in args.skip:
            section("gpu_tests", results, gpu_tests_section, args.dry_run)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_check.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    bad = [k for k in ("unet", "deepspeed", "corruptions", "data_path", "gpu_tests")
           if results.get(k, {}).get("status") == "error"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
