"""The documented object-store run, for real: store and run folder on ``s3://``, every stage.

cluster/README.md ("A smoke run on the bucket") and the README's cluster section show three
``ray job submit`` lines. This test submits those lines from cluster/README.md as they are (with the
test's bucket for ``YOUR-BUCKET``, this checkout for ``~/semgen_ray`` and the head's dashboard port)
to a Ray head started on loopback whose environment holds the credentials, as a cloud node's would,
against an S3-API server on 127.0.0.1 with the real clients (s3fs, pyarrow for Ray Train / Tune,
botocore): the phantom store is written to the bucket, the run stops after 2 steps, then resumes from
its checkpoints on the bucket (discovery reused by its config hash there), and the evaluation writes
its report there. Nothing is written locally in place of the bucket, and the secret key appears in
no object, no output and no Ray log. Bad input (missing bucket, no credentials) fails before Ray
starts, naming the URI.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from local_cluster import RAY, LocalCluster, marked_block, submit_while_starting

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- smoke-run:"
JOB = "ray job submit --address http://127.0.0.1:8265 -- "
RUN = "semgen_ray/runs/smoke"


def documented(path: Path) -> list[str]:
    """The command lines of the smoke-run block of a README."""
    return marked_block(path, MARKER)


def _command(line: str, bucket: str, dashboard_port: int) -> list[str]:
    """The ``ray job submit`` line as this machine runs it."""
    assert line.startswith(JOB), line
    words = shlex.split(line[len(JOB):].replace("YOUR-BUCKET", bucket).replace("~/semgen_ray/", f"{REPO}/"))
    assert words[:2] == ["python", "-m"], words
    return [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard_port}", "--", sys.executable,
            *words[1:]]


def test_the_readmes_show_the_same_smoke_run():
    lines = documented(REPO / "cluster" / "README.md")
    assert lines == documented(REPO / "README.md")
    assert len(lines) == 3 and all(line.startswith(JOB) for line in lines)
    assert all("s3://YOUR-BUCKET/" in line for line in lines)


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.timeout(1200)  # a Ray head and three jobs: ~4 min on a quiet 2-core machine
def test_documented_smoke_run_on_s3_resumes_and_evaluates(s3, tmp_path):
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(name)
    run = f"s3://{name}/{RUN}"
    cluster = LocalCluster("s3", head_cpus=4, dashboard=True, multinode=False, object_store_mb=300,
                           env=s3.env, cwd=str(tmp_path))
    try:
        outputs, seconds = [], []
        for line in documented(REPO / "cluster" / "README.md"):
            t0 = time.perf_counter()
            cmd = _command(line, name, cluster.dashboard_port)
            done = submit_while_starting(lambda: subprocess.run(cmd, env=cluster.env, capture_output=True,
                                                                text=True, timeout=900))
            seconds.append(round(time.perf_counter() - t0, 1))
            outputs.append(done.stdout + done.stderr)
            (tmp_path / f"command_{len(outputs)}.log").write_text(outputs[-1])  # for a failing run
            assert done.returncode == 0 and "succeeded" in done.stdout, \
                f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        print(f"seconds per command: {seconds}")
        logs = [p for node in cluster.nodes for p in Path(node).rglob("*") if p.is_file() and not p.is_socket()]
        leaked = [p for p in logs if s3.secret.encode() in p.read_bytes()]
    finally:
        cluster.stop()
    objects = s3.objects(name)

    def load(key: str) -> dict:
        return json.loads(objects[f"{RUN}/{key}"])

    # the store and every stage's artefacts are on the bucket
    assert any(k.startswith("semgen_ray/smoke.zarr/") for k in objects)
    for key in ("config.yaml", "discovery/patterns.parquet", "discovery/discovery.json",
                "discovery/embeddings.parquet", "discovery/neighbour_distances.png",
                "discovery/montages/class_000.png", "discovery/index_train/params.json",
                "train/export/model.safetensors", "train/export/model_card.json",
                "train/report/loss_curves.png", "evaluate/report.md", "evaluate/results.csv",
                "evaluate/evaluate.json"):
        assert f"{RUN}/{key}" in objects, key
    for prefix in ("discovery/autoencoder_run/", "train/checkpoints/pretrain/", "train/tensorboard/",
                   "evaluate/tune/", "target.zarr/"):
        assert any(k.startswith(f"{RUN}/{prefix}") for k in objects), prefix

    # the first run stopped at step 2; the resumed one found the discovery and the checkpoint there
    assert "already holds this discovery" in outputs[2]
    record = load("train/train.json")
    assert record["steps"] == 4 and [r["resumed_at_step"] for r in record["resumes"]] == [2]
    assert f"{name}/{RUN}/train/checkpoints/pretrain/" in record["resumes"][0]["checkpoint"]
    assert record["export"] == f"{run}/train/export"
    # no GPU anywhere: every stage's `use_gpu: auto` ran on CPUs and recorded why
    assert record["gpu"] is False and record["gpu_decision"]["setting"] == "auto"
    assert load("discovery/discovery.json")["gpu_decision"]["use"] is False
    assert load("evaluate/evaluate.json")["gpu_decision"]["use"] is False
    assert load("discovery/autoencoder.json")["model_dir"] == f"{run}/discovery/autoencoder_run/autoencoder"
    evaluation = load("evaluate/evaluate.json")
    assert evaluation["report"] == "evaluate/report.md" and evaluation["trials"] == 2
    assert evaluation["arms"] == {"semantic_genesis": "train/export"}
    assert f"run directory: {run}" in outputs[2] and "'report': 'evaluate/report.md'" in outputs[2]
    assert "8 patients (read only)" in outputs[1]  # the data stage read the store the first command wrote

    # nothing landed on local disk in place of the bucket
    assert not [p for p in tmp_path.rglob("*") if "s3:" in str(p) or name in str(p)]
    # the secret is nowhere: not in an object, an output, or a Ray log (the jobs' logs included)
    assert not [k for k, v in objects.items() if s3.secret.encode() in v]
    assert not [i for i, text in enumerate(outputs) if s3.secret in text]
    assert any("job-driver" in p.name for p in logs) and leaked == []


def test_bad_object_store_input_fails_naming_the_uri(s3, monkeypatch, tmp_path, capsys):
    """Checked before Ray starts: a missing bucket, a missing store bucket, no credentials."""
    import fsspec

    from semgen_ray.pretrain import main

    name = f"bad-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(name)
    config = str(REPO / "cluster" / "smoke-s3.yaml")
    assert main(["--config", config, "--run-dir", "s3://no-such-bucket/run", "--store", f"s3://{name}/s.zarr"]) == 1
    assert "s3://no-such-bucket/run: the bucket 'no-such-bucket' does not exist" in capsys.readouterr().err
    assert main(["--config", config, "--run-dir", f"s3://{name}/run", "--store", "s3://no-such-store/s.zarr"]) == 1
    assert "s3://no-such-store/s.zarr: the bucket 'no-such-store' does not exist" in capsys.readouterr().err
    assert main(["--resume", f"s3://{name}/nothing"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    fsspec.get_filesystem_class("s3").clear_instance_cache()
    assert main(["--config", config, "--run-dir", f"s3://{name}/run", "--store", f"s3://{name}/s.zarr"]) == 1
    assert f"s3://{name}/run: no credentials found" in capsys.readouterr().err
    assert "no-such-bucket" not in s3.buckets()
