"""Whether a stage runs on GPUs: decided from its ``use_gpu`` setting and the cluster, never silently.

Each stage that trains or runs a model (``discovery``, ``train``, ``evaluate``) has ``use_gpu``:

- ``true``: GPUs are required. When the cluster has fewer than the stage needs, the autoscaler is
  asked for them and the stage waits up to ``ray.gpu_wait_s`` seconds, saying so, then fails with a
  message that names the setting; it never falls back to CPUs.
- ``false``: CPUs only.
- ``auto`` (default): GPUs when the *cluster* can provide them: GPUs present now, or GPU node types
  in the autoscaler's configuration (GPU workers that scale from zero count, so a run started before
  they are up waits for them instead of training on CPUs). The driver's own CUDA is never asked: the
  head node of a cluster usually has none.

The decision and its reason are logged and recorded in the stage's JSON record.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

from semgen_ray.config.schema import normalise_use_gpu

logger = logging.getLogger(__name__)


class GpuUnavailableError(RuntimeError):
    """GPUs were required (``use_gpu: true``, or ``auto`` on a cluster with GPU node types) and did
    not come within ``ray.gpu_wait_s``."""


@dataclass(frozen=True)
class GpuDecision:
    use: bool
    setting: str
    gpus: float
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def cluster_gpus() -> float:
    """GPUs of the nodes in the cluster now."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def provisionable_gpus() -> float:
    """GPUs the autoscaler could provide at most, from its node types (0 without an autoscaler or
    without GPU node types). Ray Train reads the same record to refuse impossible worker groups."""
    from semgen_ray.runtime import provisionable

    return provisionable("GPU")


def expects_gpus(setting, ray_config=None) -> bool:
    """Whether :func:`decide_gpus` would put a stage of this ``use_gpu`` setting on GPUs, without
    waiting for them: ``true`` yes, ``false`` no, ``auto`` when the cluster has GPUs or GPU node types
    (Ray is started, or joined, with ``ray_config`` when it is not running yet)."""
    setting = normalise_use_gpu(setting)
    if setting != "auto":
        return setting == "true"
    import ray

    from semgen_ray.runtime import init_ray

    if not ray.is_initialized():
        init_ray(ray_config)
    return cluster_gpus() > 0 or provisionable_gpus() > 0


def decide_gpus(setting, stage: str, gpus: float, wait_s: float, poll_s: float = 5.0) -> GpuDecision:
    """Decide GPU use for ``stage``, which needs ``gpus`` GPUs in all; waits for them when required.

    Raises:
        GpuUnavailableError: GPUs required and not there after ``wait_s`` seconds, or more than the
            cluster's node types can ever provide.
    """
    setting = normalise_use_gpu(setting)
    if setting == "false":
        decision = GpuDecision(False, setting, 0.0, f"{stage}.use_gpu is false")
        logger.info(f"[{stage}] CPUs only ({decision.reason})")
        return decision
    now, most = cluster_gpus(), provisionable_gpus()
    if setting == "auto" and now == 0 and most == 0:
        decision = GpuDecision(False, setting, 0.0, "no GPU in the cluster and no GPU node type to scale up")
        logger.info(f"[{stage}] CPUs only: {decision.reason} ({stage}.use_gpu: auto)")
        return decision
    if most and max(now, most) < gpus:
        raise GpuUnavailableError(
            f"{stage}.use_gpu: {setting}: the stage needs {gpus:g} GPU(s), the cluster's node types provide "
            f"at most {max(now, most):g}; use fewer workers or {stage}.use_gpu: false")
    _wait_for_gpus(setting, stage, gpus, wait_s, poll_s)
    decision = GpuDecision(True, setting, float(gpus), f"{cluster_gpus():g} GPU(s) in the cluster")
    logger.info(f"[{stage}] on GPUs: {gpus:g} for this stage, {decision.reason} ({stage}.use_gpu: {setting})")
    return decision


def _wait_for_gpus(setting: str, stage: str, gpus: float, wait_s: float, poll_s: float) -> None:
    """Ask the autoscaler for ``gpus`` GPUs and wait until the cluster has them, or raise."""
    if cluster_gpus() >= gpus:
        return
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[{"GPU": 1}] * math.ceil(gpus))
    logger.info(f"[{stage}] waiting up to {wait_s:g} s (ray.gpu_wait_s) for {gpus:g} GPU(s); the cluster has "
        f"{cluster_gpus():g} now, the autoscaler was asked for them")
    start = last_note = time.monotonic()
    try:
        while cluster_gpus() < gpus:
            now = time.monotonic()
            if now - start >= wait_s:
                raise GpuUnavailableError(
                    f"{stage}.use_gpu: {setting}: {gpus:g} GPU(s) needed, the cluster has {cluster_gpus():g} "
                    f"after waiting {wait_s:g} s (ray.gpu_wait_s). Start GPU nodes (or let the autoscaler "
                    f"reach them), wait longer, or set {stage}.use_gpu: false to run on CPUs")
            if now - last_note >= 60:
                logger.info(f"[{stage}] still waiting for GPUs: {cluster_gpus():g} of {gpus:g} after {now - start:.0f} s")
                last_note = now
            time.sleep(min(poll_s, max(0.05, wait_s - (now - start))))
    finally:
        request_resources(bundles=[])  # the stage's own placement group holds them from here on
