"""Pretraining across two Ray nodes on this machine (``ray start --head`` + ``ray start --address``).

The two Train workers are placed on different nodes (``train.placement=STRICT_SPREAD``); the driver
joins the cluster through ``RAY_ADDRESS`` as under ``ray job submit``. The second node is killed
mid-run: the run waits for a replacement node, resumes from its last checkpoint and ends with the
planned number of steps.
"""

import json
import subprocess
import sys
import time

import fsspec
import pytest
from local_cluster import LocalCluster

from semgen_ray.engine.checkpoint import checkpoint_problem, verify_checkpoint
from train_helpers import TINY

pytestmark = [pytest.mark.slow, pytest.mark.system]

DRIVER = """
import json, sys
from semgen_ray.config import load_config
from semgen_ray import logs
from semgen_ray.runtime import init_ray
from semgen_ray.stages.pretraining import run_pretraining
store, manifest, out, *overrides = sys.argv[1:]
config = load_config("cpu-tiny", overrides)
logs.configure()  # the progress lines (library code logs; a script chooses to show them)
init_ray(config.ray)  # RAY_ADDRESS is set: joins the cluster
run_pretraining(config, store, manifest, out)
"""


def _driver(cluster, store, manifest, out, extra):
    overrides = [*TINY, "train.placement=STRICT_SPREAD", "train.checkpoint_every=2", *extra]
    return subprocess.Popen([sys.executable, "-c", DRIVER, store, manifest, str(out), *overrides],
                            env={**cluster.env, "RAY_ADDRESS": cluster.address}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster("multinode", head_cpus=2)
    try:
        c.add_node(cpus=2)
        c.wait_for_nodes(2)
        yield c
    finally:
        c.stop()


def test_a_killed_node_costs_only_time(cluster, train_store, train_manifest, tmp_path):
    """Two workers on two nodes, the second node killed after the step-2 checkpoint: the run resumes on
    a replacement node, ends at the planned steps, and its last checkpoint holds both ranks' state."""
    before = cluster.wait_for_nodes(2)
    run = tmp_path / "run"
    driver = _driver(cluster, train_store, train_manifest, run, ["train.max_epochs=1", "train.max_failures=2"])
    first = str(run / "checkpoints" / "pretrain" / "step_00000002")
    fs = fsspec.filesystem("file")
    deadline = time.time() + 300
    # kill once the step-2 checkpoint is complete in storage (its directory appears while it is written)
    while checkpoint_problem(fs, first) is not None and driver.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert driver.poll() is None, "the run ended before the node could be killed:\n" + driver.stdout.read()[-4000:]
    victim = cluster.nodes[-1]
    cluster.kill_node(victim)
    cluster.wait_for_nodes(1)  # the GCS has noticed
    time.sleep(5)  # the run now waits for room for its second worker
    cluster.add_node(cpus=2)  # the replacement (an autoscaler's job on a real cluster)
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-6000:]
    record = json.loads((run / "train.json").read_text())
    assert record["steps"] == 4 and record["epochs"] == 1  # the planned steps, none lost or repeated
    (resume,) = record["resumes"]
    assert resume["resumed_at_step"] >= 2 and resume["checkpoint"].rsplit("/", 1)[-1].startswith("step_")
    assert resume["loaded_optimizer_fingerprint"] == pytest.approx(resume["saved_optimizer_fingerprint"], rel=1e-9)
    after = cluster.wait_for_nodes(2)
    # train.placement=STRICT_SPREAD: the two workers ran on two nodes
    assert len(set(record["nodes"])) == 2 and set(record["nodes"]) == set(after)
    assert set(before) & set(after) and set(before) != set(after)  # the head stayed, the second node is new
    assert f"recovered from a failure: resumed at step {resume['resumed_at_step']}" in out
    # the last checkpoint holds both ranks' state: two RNG files, two optimizer shards, records of both
    assert record["workers"] == 2 and record["history"][0]["train_loss"] > 0
    last = record["latest_checkpoint"]
    assert checkpoint_problem(fs, last) is None and verify_checkpoint(last) is None
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.find(last))
    assert sum(n.endswith("optim_states.pt") for n in names) == 2
    assert names.count("rank_0.json") == 2 and names.count("rank_1.json") == 2  # rng/ and integrity/
