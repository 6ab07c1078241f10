"""The README's local job submission, run as written: a Ray head on 127.0.0.1 with token
authentication, the main job submitted to it with ``ray job submit``, the head stopped.

The lines run in ``bash`` from the checkout, as a user pastes them (the submit line again while the
fresh head answers "No available agent", as the README says), with three things of the
harness in their environment: ``HOME`` and ``RAY_TMPDIR`` in the test's folder (the token, the run
folder ``~/semgen-runs/job`` and the head's session files stay there, whatever the machine holds) and
``SEMGEN_CONFIG=tests/local_job.yaml``, the job's default ``--config`` as the README says, for the
smallest run. The last line, ``ray stop``, stops every Ray process of the machine, this test session's
own Ray included; the test checks that it is the README's last line and stops exactly the head it
started instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from local_cluster import LOCAL_RAY, kill_processes_of, marked_block, submit_while_starting

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- local-job:"


def documented() -> list[str]:
    """The command lines of the README's local-job block."""
    return marked_block(REPO / "README.md", MARKER)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_block_starts_a_head_submits_the_main_job_and_stops():
    lines = documented()
    assert lines[0].startswith("export RAY_AUTH_MODE=token")
    assert any(" ray start --head " in line and "--dashboard-host 127.0.0.1" in line for line in lines)
    submit = [line for line in lines if " ray job submit " in line]
    assert len(submit) == 1 and submit[0].rstrip().endswith("-- python -m semgen_ray.pretrain --run-dir ~/semgen-runs/job")
    assert lines[-1].split("#")[0].strip() == "./venv-run ray stop"


@pytest.fixture
def no_ray_in_process():
    """The README's head takes Ray's default ports, the dashboard agent's 52365 among them, which the
    test session's in-process Ray holds (a head whose agent cannot bind it answers every submission
    with "No available agent"): that Ray is stopped for this test and started again after it."""
    from semgen_ray.runtime import init_ray

    import ray

    running = ray.is_initialized()
    if running:
        ray.shutdown()
    yield
    if running:
        init_ray(LOCAL_RAY)


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_local_job_submission_as_written(tmp_path, no_ray_in_process):
    lines = documented()
    busy = [port for port in (6379, 8265, 52365) if not _port_free(port)]
    assert not busy, f"the README's head needs Ray's default ports; taken here: {busy}"
    home = tmp_path / "home"
    home.mkdir()
    session_root = Path(tempfile.mkdtemp(prefix="sgr_job_", dir="/tmp"))  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(HOME=str(home), RAY_TMPDIR=str(session_root), SEMGEN_CONFIG=str(REPO / "tests" / "local_job.yaml"))
    submit = next(i for i, line in enumerate(lines) if " ray job submit " in line)
    exports = [line for line in lines[:submit] if line.startswith("export ")]

    def bash(script_lines: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", "set -e\n" + "\n".join(script_lines) + "\n"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=840)

    try:
        started = bash(lines[:submit])
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        # as the README says: a head that has just started may not take jobs yet; submit again
        done = submit_while_starting(lambda: bash([*exports, lines[submit]]))
        # the head has token authentication on: a client without RAY_AUTH_MODE=token is refused
        refused = subprocess.run(["./venv-run", "ray", "job", "list", "--address", "http://127.0.0.1:8265"],
                                 cwd=REPO, env={**env, "RAY_AUTH_MODE": "disabled"}, capture_output=True,
                                 text=True, timeout=120)
    finally:
        kill_processes_of(str(session_root))
        shutil.rmtree(session_root, ignore_errors=True)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in out, out[-6000:]
    assert refused.returncode != 0 and "Authentication" in refused.stdout + refused.stderr

    run = home / "semgen-runs" / "job"
    for name in ("config.yaml", "train/train.json", "train/export/model.safetensors",
                 "train/export/model_card.json", "discovery/discovery.json"):
        assert (run / name).is_file(), name
    assert f"run directory: {run}" in out
    assert json.loads((run / "train" / "train.json").read_text())["steps"] == 2  # tests/local_job.yaml's run
    # the token is Ray's own, in the test's home, and never printed
    token = (home / ".ray" / "auth_token").read_text().strip()
    assert token and token not in out
