"""Starting or joining Ray the same way from every entry point.

Local mode (a laptop, the tests, CI) starts Ray in-process, bound to loopback, with a small object
store. Under ``ray job submit`` (``RAY_ADDRESS`` is set) or with an explicit address, it joins the
cluster and passes no resources: Ray refuses ``num_cpus`` when connecting (docs/operations.md §5).
"""

from __future__ import annotations

import os

from semgen_ray.config.schema import RayConfig

_LOCAL_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # single-node Ray listens on 127.0.0.1 only
}


def local_worker_pool(num_cpus: int | None) -> dict:
    """Ray settings that keep idle worker processes for reuse in local mode.

    A fresh Ray worker imports torch, Ray Data and zarr again: several CPU-seconds per process. By
    default Ray kills an idle worker after 1 s once more than ``num_cpus`` exist, so each Ray Train
    run, Tune trial and Ray Data pipeline of a local run paid for new processes. Kept for a minute, up
    to twice the CPUs, the next stage's tasks reuse them (docs/operations.md §7: a second 4-step
    training run took 53 s before, 36-37 s after, on 2 cores). The raylet's startup concurrency goes
    up to the same limit: it warns ("N PYTHON worker processes have been started ... the maximum
    expected startup concurrency") whenever the workers alive reach 4× it, which fractional CPU
    requests (0.5 CPU per Train worker) and the kept pool reached on every local run, on the console
    among the run's own lines (the same run, 2 warnings → none, 116 → 109 s). Cluster nodes keep Ray's
    defaults.
    """
    limit = 2 * (num_cpus or os.cpu_count() or 1)
    return {"idle_worker_killing_time_threshold_ms": 60_000, "num_workers_soft_limit": limit,
            "worker_maximum_startup_concurrency": limit}


def init_ray(config: RayConfig | None = None, quiet: bool = True):
    """Start (local) or join (cluster) Ray unless it is already running; returns the ``ray`` module.

    A running session is reused as it is, with a ``RuntimeWarning`` naming every setting of
    ``config`` it does not have (Ray cannot change them without a restart).

    ``quiet`` (the default; ``--verbose`` turns it off) keeps the workers' output, Ray's INFO lines and
    Ray Data's per-dataset INFO lines off the console: they stay in the session's log directory
    (``/tmp/ray/session_latest/logs``). Progress of training runs reaches the driver through
    :class:`semgen_ray.logs.ReportRelay` instead.
    """
    import ray

    config = config or RayConfig()
    if ray.is_initialized():
        _warn_if_different(config)
        return ray
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=not quiet)
    else:
        for key, value in _LOCAL_ENV.items():
            os.environ.setdefault(key, value)
        ray.init(
            num_cpus=config.num_cpus,
            object_store_memory=config.object_store_mb * 1024 * 1024,
            include_dashboard=config.dashboard,
            dashboard_host="127.0.0.1",  # never open to the network; use an SSH tunnel from elsewhere
            dashboard_port=config.dashboard_port,
            log_to_driver=not quiet,
            configure_logging=True,
            logging_level="ERROR" if quiet else "INFO",  # quiet: not even the warnings of local setup
            _system_config=local_worker_pool(config.num_cpus),
        )
    import logging

    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    if quiet:
        # local mode: errors only (a cluster job keeps Ray Data's warnings, e.g. about resources)
        logging.getLogger("ray.data").setLevel(logging.WARNING if address else logging.ERROR)
    return ray


def provisionable(resource: str) -> float:
    """How much of ``resource`` the autoscaler could provide at most, from its node types (0 without
    an autoscaler: local mode, a fixed cluster)."""
    try:
        from ray._private.state import state

        return float((state.get_max_resources_from_cluster_config() or {}).get(resource, 0))
    except Exception:  # noqa: BLE001 - no autoscaler configuration to read
        return 0.0


def require_cpus(requests: dict[str, float]) -> None:
    """Refuse CPU requests (setting → CPUs of one task, actor or trial) that no node can hold.

    Ray would queue such a request forever, in local mode without a word (its "may hang" warnings are
    kept off the console there). Nodes that the autoscaler can add count. Does nothing before Ray runs.

    Raises:
        ValueError: naming the setting, what it asks and the largest node.
    """
    import ray

    if not ray.is_initialized():
        return
    largest = max((float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=0.0)
    most = max(largest, provisionable("CPU"))
    for key, cpus in requests.items():
        if cpus > most:
            raise ValueError(f"{key} asks for {cpus:g} CPUs at once, but the largest node of this Ray cluster "
                             f"has {largest:g} (and no node type of the autoscaler more): Ray would wait for "
                             f"it forever. Set {key} to at most {largest:g}, or start Ray with more CPUs "
                             f"(ray.num_cpus in local mode)")


def _warn_if_different(config: RayConfig) -> None:
    """Warn that the running Ray session is reused without ``config``'s settings, naming those that differ."""
    import warnings

    differences = session_differences(config)
    if differences:
        warnings.warn("Ray is already running and is reused as it is, without this RayConfig's "
                      + ", ".join(differences) + " (call ray.shutdown() first to apply them)",
                      RuntimeWarning, stacklevel=3)


def session_differences(config: RayConfig) -> list[str]:
    """What ``config`` asks for that the running Ray session does not have, as ``"asked (running: …)"``.

    Joining a cluster (an address) compares the address; a local instance compares ``num_cpus`` and
    ``object_store_mb`` (what ``ray.init`` would have been given). ``auto`` and ``ray://`` addresses
    cannot be compared with the session's GCS address and are not.
    """
    import ray

    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        running = ray.get_runtime_context().gcs_address
        comparable = address != "auto" and "://" not in address
        return [f"address={address!r} (running: {running})"] if comparable and address != running else []
    resources = ray.cluster_resources()
    found = []
    if config.num_cpus is not None and resources.get("CPU") != config.num_cpus:
        found.append(f"num_cpus={config.num_cpus} (running: {resources.get('CPU', 0):g})")
    store_mb = resources.get("object_store_memory", 0) / 2**20
    if round(store_mb) != config.object_store_mb:
        found.append(f"object_store_mb={config.object_store_mb} (running: {store_mb:.0f})")
    return found
