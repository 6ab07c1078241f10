"""Local mode listens on loopback only (GCS, raylet, object manager, dashboard and job server); a running
session is reused with a warning; CPU requests that no node can hold are refused."""

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest
from local_cluster import free_port

pytestmark = pytest.mark.ray

PROBE = """
import json, sys, time, psutil, urllib.request
from semgen_ray.config import RayConfig
from semgen_ray.runtime import init_ray
port = int(sys.argv[1])
ray = init_ray(RayConfig(num_cpus=1, object_store_mb=100, dashboard=True, dashboard_port=port))
time.sleep(8)  # let the dashboard and its agents open their ports
found = {}
for proc in psutil.Process().children(recursive=True) + [psutil.Process()]:
    try:
        for c in proc.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN:
                found.setdefault(proc.name(), []).append(c.laddr.ip)
    except psutil.Error:
        pass
print("LISTEN " + json.dumps(found))
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
try:
    with direct.open(f"http://127.0.0.1:{port}/api/version", timeout=30) as answer:  # the dashboard's API
        print("DASHBOARD " + json.dumps({"status": answer.status, "body": json.loads(answer.read())}))
finally:
    ray.shutdown()
"""


@pytest.mark.slow
def test_local_mode_listens_on_loopback_only():
    """ray.dashboard starts the dashboard, on ray.dashboard_port (a free port, not the default 8265)
    of 127.0.0.1, where its HTTP API answers; nothing of local Ray listens beyond loopback."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    dashboard_port = free_port()
    out = subprocess.run([sys.executable, "-c", PROBE, str(dashboard_port)], capture_output=True, text=True,
                         timeout=300, env=env)
    lines = {ln.split(" ", 1)[0]: json.loads(ln.split(" ", 1)[1]) for ln in out.stdout.splitlines()
             if ln.startswith(("LISTEN ", "DASHBOARD "))}
    assert set(lines) == {"LISTEN", "DASHBOARD"}, out.stdout[-3000:] + out.stderr[-3000:]
    listening = lines["LISTEN"]
    assert {"gcs_server", "raylet"} <= set(listening), listening
    assert any("dashboard" in name or "python" in name for name in listening)  # the dashboard/job server
    public = {name: ips for name, ips in listening.items() if any(ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for ip in ips)}
    assert not public, f"listening beyond loopback: {public}"
    # the dashboard answers on the port it was given
    assert dashboard_port != 8265 and lines["DASHBOARD"]["status"] == 200
    assert lines["DASHBOARD"]["body"]["ray_version"] == version("ray")


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("asked,named", [
    ({"num_cpus": 2, "object_store_mb": 512}, ["num_cpus=2 (running: 4)", "object_store_mb=512 (running: 256)"]),
    ({"address": "10.9.8.7:6379"}, ["address='10.9.8.7:6379' (running: 127.0.0.1:"]),
])
def test_a_running_session_is_reused_with_a_warning_naming_what_differs(asked, named):
    """ray_local runs 4 CPUs and a 256 MB object store: a RayConfig asking for else cannot apply."""
    import warnings

    from semgen_ray.config import RayConfig
    from semgen_ray.runtime import init_ray

    with pytest.warns(RuntimeWarning, match="already running") as caught:
        ray = init_ray(RayConfig(**asked))
    assert ray.is_initialized()
    message = " ".join(str(w.message) for w in caught)
    assert all(part in message for part in named), message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init_ray(RayConfig(num_cpus=4, object_store_mb=256))  # what is running: reused silently


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("key,stage", [("data.read_cpus", "discover"), ("train.cpus_per_worker", "train"),
                                       ("evaluate.cpus_per_trial", "evaluate"), ("data.read_cpus", "train")])
def test_a_cpu_request_no_node_can_hold_is_refused_before_the_stage_works(key, stage, make_phantom_store,
                                                                          tmp_path):
    """Ray would queue a task, Train worker or Tune trial asking for more CPUs than any node has forever,
    in local mode without a word: each stage refuses it first, naming the setting (the tests' Ray has 4)."""
    from semgen_ray.config import load_config
    from semgen_ray.stages.discovery import run_discovery
    from semgen_ray.stages.evaluation import run_evaluation
    from semgen_ray.stages.pretraining import run_pretraining

    store = make_phantom_store(tmp_path / "store.zarr", n=5)  # 2 train, 2 validation patients
    config = load_config("cpu-tiny", [f"{key}=5", f"run_dir={tmp_path / 'run'}", "discovery.k_train=2",
                                      "discovery.num_classes=2", "discovery.k_val=1"])
    run = {"discover": lambda: run_discovery(config, store, str(tmp_path / "discovery")),
           "train": lambda: run_pretraining(config, store, str(tmp_path / "none.parquet"), str(tmp_path / "train")),
           "evaluate": lambda: run_evaluation(config)}[stage]
    with pytest.raises(ValueError, match=rf"{re.escape(key)} asks for 5 CPUs .* largest node .* has 4"):
        run()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "store.zarr" not in p.parts]  # no file written
