"""``ray job submit -- python -m semgen_ray.pretrain`` against a Ray head started on loopback."""

import json
import subprocess
import sys
import time

import pytest
from local_cluster import RAY, LocalCluster
from test_pretrain import CHAIN as PRETRAIN_CHAIN

# the no-argument chain at its smallest size (tests/test_pretrain.py), with two Train workers
CHAIN = [*(s for s in PRETRAIN_CHAIN if not s.startswith("train.num_workers")), "train.num_workers=2"]


@pytest.mark.slow
def test_job_submit_runs_the_chain_on_a_local_head(tmp_path):
    cluster = LocalCluster("job", head_cpus=4, dashboard=True, multinode=False, object_store_mb=300)
    try:
        run = tmp_path / "run"
        deadline = time.time() + 120
        cmd = [RAY, "job", "submit", "--address", f"http://127.0.0.1:{cluster.dashboard_port}", "--",
               sys.executable, "-m", "semgen_ray.pretrain", "--run-dir", str(run),
               *[a for s in CHAIN for a in ("--set", s)]]
        while True:  # the job server may need a few seconds after `ray start`
            job = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=900)
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
        cluster.stop()
