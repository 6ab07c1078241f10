"""``ray job submit -- python -m semgen_ray.pretrain`` against a Ray head started on loopback."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_pretrain import CHAIN as PRETRAIN_CHAIN

# the no-argument chain at its smallest size (tests/test_pretrain.py), with two Train workers
CHAIN = [*(s for s in PRETRAIN_CHAIN if not s.startswith("train.num_workers")), "train.num_workers=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_cluster(temp_dir: str) -> None:
    """Stop only this head's processes (``ray stop`` would also stop the tests' in-process Ray)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if temp_dir in args and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_job_submit_runs_the_chain_on_a_local_head(tmp_path):
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = f"/tmp/sgr_job_{os.getpid()}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    gcs, dash, agent, agent_grpc, metrics = (_free_port() for _ in range(5))
    start = subprocess.run(
        [str(ray_bin), "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", "--num-cpus=4",
         # own agent and metrics ports: the tests' in-process Ray already holds the default ones
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--metrics-export-port={metrics}", "--object-store-memory=300000000",
         f"--temp-dir={temp_dir}", "--disable-usage-stats", "--include-dashboard=true"],
        env=env, capture_output=True, text=True, timeout=180)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        run = tmp_path / "run"
        deadline = time.time() + 120
        cmd = [str(ray_bin), "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--",
               sys.executable, "-m", "semgen_ray.pretrain", "--run-dir", str(run),
               *[a for s in CHAIN for a in ("--set", s)]]
        while True:  # the job server may need a few seconds after `ray start`
            job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            text = job.stderr + job.stdout
            starting = "Connection refused" in text or "No available agent" in text
            if job.returncode == 0 or time.time() > deadline or not starting:
                break
            time.sleep(3)
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
        assert "succeeded" in job.stdout
        record = json.loads((run / "train" / "train.json").read_text())
        assert record["steps"] == 2 and record["workers"] == 2
        assert (run / "train" / "export" / "model_card.json").is_file()
    finally:
        _kill_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
