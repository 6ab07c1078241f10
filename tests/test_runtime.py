"""Local mode listens on loopback only: GCS, raylet, object manager, dashboard and job server."""

import json
import os
import subprocess
import sys

import pytest
from local_cluster import free_port

pytestmark = pytest.mark.ray

PROBE = """
import json, sys, time, psutil
from semgen_ray.config import RayConfig
from semgen_ray.runtime import init_ray
ray = init_ray(RayConfig(num_cpus=1, object_store_mb=100, dashboard=True, dashboard_port=int(sys.argv[1])))
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
ray.shutdown()
"""


@pytest.mark.slow
def test_local_mode_listens_on_loopback_only():
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", PROBE, str(free_port())], capture_output=True, text=True,
                         timeout=300, env=env)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("LISTEN ")), None)
    assert line is not None, out.stdout[-3000:] + out.stderr[-3000:]
    listening = json.loads(line[len("LISTEN "):])
    assert {"gcs_server", "raylet"} <= set(listening), listening
    assert any("dashboard" in name or "python" in name for name in listening)  # the dashboard/job server
    public = {name: ips for name, ips in listening.items() if any(ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for ip in ips)}
    assert not public, f"listening beyond loopback: {public}"


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
