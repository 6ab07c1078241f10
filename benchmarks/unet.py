"""Benchmark: U-Net 3D + classification head, one training step (forward + backward) on this CPU.

Claim measured: what one self-classification + self-restoration step costs on CPU workers, for the
``paper`` preset (width 32, 64×64×32 cubes, C = 44, torch head: 19.07 M + 14.2 M parameters) and the
``cpu-tiny`` preset (width 8, 32×32×16 cubes, C = 4), in fp32 and bf16 (``torch.autocast("cpu",
bfloat16)``). One step = forward, loss (MSE on the sigmoid reconstruction + 0.01 · cross-entropy on
the logits, docs/method.md §5), backward; no optimiser step. Rows report cubes/s (median over timed steps,
after one warm-up step) and GFLOP/s, with FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``
on the meta device (convolutions and matmuls, forward + backward; the same count for both dtypes).
``--layouts contiguous channels_last`` times each row in both memory orders of the weights and
cubes (``N C X Y Z`` and ``N X Y Z C``), side by side in one run: fine-tuning on CPU uses the second.

    ./venv-run python benchmarks/unet.py                          # about 2-3 min on 2 cores
    ./venv-run python benchmarks/unet.py --presets cpu-tiny --steps 5
    ./venv-run python benchmarks/unet.py --dtypes fp32 --threads 1 --layouts contiguous channels_last \
        --json benchmarks/results/unet_layout.json

Writes JSON (default ``benchmarks/results/unet.json``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe as machine  # noqa: E402

# preset -> (cube (x, y, z), classes, batch)
SETTINGS = {"paper": ((64, 64, 32), 44, 2), "cpu-tiny": ((32, 32, 16), 4, 8)}


def step_flops(preset: str, cube, classes: int, batch: int) -> int:
    """FLOPs of one forward + backward, counted on the meta device (nothing is computed)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from semgen_ray.models import build_model

    with torch.device("meta"):
        model = build_model(preset, num_classes=classes)
        x = torch.empty(batch, 1, *cube)
    counter = FlopCounterMode(display=False)
    with counter:
        recon, logits = model(x)
        (recon.mean() + logits.mean()).backward()
    return int(counter.get_total_flops())


def run_row(preset: str, dtype: str, batch: int, steps: int, seed: int, layout: str = "contiguous") -> dict:
    import torch
    import torch.nn.functional as F

    from semgen_ray.models import build_model

    cube, classes, default_batch = SETTINGS[preset]
    batch = batch or default_batch
    torch.manual_seed(seed)
    model = build_model(preset, num_classes=classes).train()
    x = torch.rand(batch, 1, *cube)
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, classes, (batch,))

    def one_step() -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            recon, logits = model(x)
            loss = F.mse_loss(recon.float(), x) + 0.01 * F.cross_entropy(logits.float(), y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    warmup = one_step()
    times = [one_step() for _ in range(steps)]
    flops = step_flops(preset, cube, classes, batch)
    med = statistics.median(times)
    return {"preset": preset, "dtype": dtype, "layout": layout, "width": model.config.width, "cube": list(cube), "classes": classes,
            "batch": batch, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "warmup_s": round(warmup, 3), "step_s": [round(t, 3) for t in times], "step_s_median": round(med, 3),
            "cubes_per_s": round(batch / med, 3), "gflop_per_step": round(flops / 1e9, 2),
            "gflop_per_s": round(flops / 1e9 / med, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["cpu-tiny", "paper"], choices=sorted(SETTINGS))
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--layouts", nargs="+", default=["contiguous"], choices=["contiguous", "channels_last"],
                   help="memory order of weights and cubes")
    p.add_argument("--steps", type=int, default=0, help="timed steps per row after one warm-up "
                   "(0: 3 for paper, 5 for cpu-tiny)")
    p.add_argument("--batch", type=int, default=0, help="cubes per step (0: 2 for paper, 8 for cpu-tiny)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "unet.json"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    for preset, dtype, layout in itertools.product(args.presets, args.dtypes, args.layouts):
        steps = args.steps or (3 if preset == "paper" else 5)
        row = run_row(preset, dtype, args.batch, steps, args.seed, layout)
        rows.append(row)
        print(f"  {preset} {dtype} {layout}: {row['cubes_per_s']} cubes/s, {row['gflop_per_s']} GFLOP/s "
              f"(steps {row['step_s']} s)", flush=True)

    result = {"benchmark": "unet", "command": " ".join(["python", "benchmarks/unet.py", *(argv or sys.argv[1:])]),
              "machine": machine(), "torch_threads": torch.get_num_threads(),
              "mkldnn": bool(torch.backends.mkldnn.is_available()),
              "args": vars(args), "rows": rows, "total_s": round(time.perf_counter() - started, 1)}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    m = result["machine"]
    print(f"\n{m['cpu']}, {m['cores']} cores, torch threads {result['torch_threads']}; load "
          f"{m['loadavg_at_start'][0]:.2f} at start; {result['total_s']} s total")
    print("\n| preset | width | cube | C | batch | params (M) | dtype | layout | s/step | cubes/s | GFLOP/step | GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['width']} | {'×'.join(map(str, r['cube']))} | {r['classes']} | {r['batch']} | "
              f"{r['params_m']} | {r['dtype']} | {r.get('layout', 'contiguous')} | {r['step_s_median']} | {r['cubes_per_s']} | "
              f"{r['gflop_per_step']} | {r['gflop_per_s']} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
