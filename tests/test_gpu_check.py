"""The GPU check (benchmarks/gpu_check.sh): its dry mode runs on the CPU and writes a complete record;
the tests marked ``gpu`` run on a GPU node (the check runs them there) and skip elsewhere."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _numbers(obj):
    """Every int/float in a JSON value (bools excluded)."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


@pytest.mark.slow
def test_dry_run_writes_a_complete_record(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["dry_run"] is True and record["device"] == "cpu"
    for name in ("unet", "deepspeed", "corruptions", "data_path", "gpu_tests"):
        assert record[name]["status"] in ("ok", "skipped"), (name, record[name])
    assert all(math.isfinite(v) for v in _numbers(record))

    unet = record["unet"]
    assert [r["dtype"] for r in unet["rows"]] == ["fp32", "bf16", "fp16"]
    assert unet["rows"][2]["status"] == "skipped"          # CPU fp16 convolutions: far too slow
    assert all(r["cubes_per_s"] > 0 and r["tflop_per_s"] > 0 for r in unet["rows"][:2])
    assert unet["bf16_peak_tflops"] is None and all(r["pct_of_bf16_peak"] is None for r in unet["rows"][:2])

    corr = record["corruptions"]
    assert [r["preset"] for r in corr["rows"]] == ["sg", "mg", "sg_keras"]
    for r in corr["rows"]:
        assert r["same_operations"] and r["agree_1e-5"], r
        assert r["max_abs_diff_vs_numpy"] <= 1e-5 and r["max_abs_diff_apply_vs_numpy"] <= 1e-5
        assert r["cubes_per_s"] > 0 and r["cubes_per_s_apply_only"] > 0

    data = record["data_path"]
    assert sorted((r["corrupt_on"], r["workers"]) for r in data["rows"]) == [
        ("data", 1), ("data", 2), ("device", 1), ("device", 2)]
    for r in data["rows"]:
        assert 0.0 <= r["wait_fraction"] <= 1.0 and r["train_cubes_per_s"] > 0 and r["loader_only_cubes_per_s"] > 0

    ds = record["deepspeed"]
    if ds["status"] == "ok":  # DeepSpeed is installed by ./venv-run; the GPU node may lack it
        bf16 = ds["runs"]["bf16"]
        assert bf16["status"] == "ok" and bf16["losses_finite_after_warmup"], bf16
        assert bf16["deepspeed_step_s"] > 0 and bf16["bare_step_s"] > 0
        assert ds["runs"]["fp16"]["status"] == "skipped"          # no fp16 in DeepSpeed on CPUs
    else:
        assert "deepspeed" in ds["reason"]

    tests = record["gpu_tests"]
    assert tests["returncode"] == 0 and "skipped" in tests["summary"], tests   # no CUDA here: all skip


@pytest.mark.gpu
@needs_cuda
def test_torch_corruptions_on_the_gpu_agree_with_numpy():
    from semgen_ray.transforms import PRESETS, make_corruption, sample_seed

    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 64, 64, 32), dtype=np.float32)
    seeds = np.array([sample_seed(3, 1, i) for i in range(4)], dtype=np.uint64)
    for preset in PRESETS:
        y, params = make_corruption(preset)(x, seeds)
        yt, params_t = make_corruption(preset, backend="torch")(torch.from_numpy(x).cuda(), seeds)
        assert yt.is_cuda and params_t.names() == params.names()
        np.testing.assert_allclose(yt.cpu().numpy(), y, atol=1e-5)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_paper_unet_trains_on_the_gpu_in_half_precision(dtype):
    from semgen_ray.models import build_model

    torch.manual_seed(0)
    model = build_model("paper", num_classes=44).cuda()
    x = torch.rand(2, 1, 64, 64, 32, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        recon, logits = model(x)
        loss = torch.nn.functional.mse_loss(recon.float(), x) + logits.float().logsumexp(1).mean()
    loss.backward()
    assert recon.shape == x.shape and logits.shape == (2, 44)
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
