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
