"""The machine description every benchmark writes next to its figures."""

from __future__ import annotations

import os
import platform


def describe() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem_gib = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    versions = {}
    for mod in ("numpy", "zarr", "numcodecs", "ray", "pyarrow", "SimpleITK", "pydicom", "scipy", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing module is just not listed
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": os.getloadavg(), "versions": versions,
            **_torch_cpu()}


def _torch_cpu() -> dict:
    """torch's CPU kernel level (``AVX2``, ``AVX512``, ...) and whether it has native bf16 kernels: bf16
    the cpu-tiny step ran 36x slower in bf16 than in fp32 on a CPU without them (benchmarks/results/unet_avx2.json)."""
    try:
        import torch

        from semgen_ray.engine.deepspeed_config import native_bf16

        return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16(gpu=False)}
    except Exception:  # noqa: BLE001 - no torch here: nothing to say
        return {}
