"""A real multi-node Ray cluster on this machine, for the tests: ``ray start`` on loopback.

Each node gets its own ports and its own ``--temp-dir``, so a node can be killed alone (its raylet
and every process under it) and the whole cluster stopped without touching any other Ray instance
(``ray stop`` would stop the tests' in-process Ray too).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from semgen_ray.config import RayConfig
from semgen_ray.runtime import local_worker_pool

RAY = str(Path(sys.executable).with_name("ray"))
LOCAL_RAY = RayConfig(num_cpus=4, object_store_mb=256)  # the tests' in-process Ray (conftest's ray_local)
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
       # idle workers kept for reuse, as semgen_ray's local mode does
       **{f"RAY_{key}": str(value) for key, value in local_worker_pool(LOCAL_RAY.num_cpus).items()}}
ENV.pop("RAY_ADDRESS", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_ports() -> list[str]:
    """Agent, metrics and node ports of one node (the defaults are taken by the first Ray on the box)."""
    names = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
             "node-manager-port", "object-manager-port", "runtime-env-agent-port")
    return [f"--{name}={free_port()}" for name in names]


def marked_block(path: Path, marker: str) -> list[str]:
    """The non-empty lines of the ```bash block after ``marker`` (an HTML comment) in a README."""
    text = path.read_text()
    assert marker in text, f"{path} has no {marker} block"
    block = text.split(marker, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def submit_while_starting(submit: Callable[[], subprocess.CompletedProcess],
                          timeout: float = 120) -> subprocess.CompletedProcess:
    """Call ``submit`` (a ``ray job submit``) again while a fresh head answers that its job server or
    agent is not up yet, as the READMEs say to do; returns the last attempt."""
    deadline = time.time() + timeout
    while True:
        done = submit()
        text = done.stdout + done.stderr
        starting = "Connection refused" in text or "No available agent" in text
        if done.returncode == 0 or time.time() > deadline or not starting:
            return done
        time.sleep(3)


def kill_processes_of(temp_dir: str) -> None:
    """SIGKILL every process whose command line names ``temp_dir`` (a Ray node's session files), and
    the processes under them: one node stopped, whatever other Ray runs on the machine."""
    import psutil

    victims = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if temp_dir in " ".join(proc.info["cmdline"] or []):
            victims.append(proc)
            try:
                victims += proc.children(recursive=True)
            except psutil.NoSuchProcess:
                pass
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


class LocalCluster:
    """``ray start --head`` plus ``ray start --address`` nodes, all on 127.0.0.1."""

    def __init__(self, tag: str, head_cpus: int = 2, dashboard: bool = False, multinode: bool = True,
                 object_store_mb: int = 200, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        """``multinode=False``: a single-node head bound to loopback only, as semgen_ray's local mode
        (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); ``True`` lets other nodes join (Ray's services then
        listen on every interface of this machine, for the length of the test). ``env`` adds to the
        nodes' environment (which jobs and workers inherit, as instance credentials on a cloud node);
        ``cwd`` is where the nodes start, the working directory of jobs without a ``working_dir``."""
        self.tag = f"/tmp/sgr_{tag}_{os.getpid()}"
        self.env = {**ENV, **(env or {}), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1" if multinode else "0"}
        self.cwd = cwd
        self.object_store_mb = object_store_mb
        self.nodes: list[str] = []  # temp dirs, one per node
        self.gcs = free_port()
        self.dashboard_port = free_port() if dashboard else None
        extra = ([f"--dashboard-port={self.dashboard_port}", "--dashboard-host=127.0.0.1", "--include-dashboard=true"]
                 if dashboard else ["--include-dashboard=false"])
        try:
            self._start(["--head", f"--port={self.gcs}", f"--num-cpus={head_cpus}", *extra])
        except BaseException:
            self.stop()
            raise

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs}"

    def _start(self, args: list[str]) -> str:
        temp_dir = f"{self.tag}_n{len(self.nodes)}"
        self.nodes.append(temp_dir)
        started = subprocess.run([RAY, "start", *args, *_own_ports(), "--node-ip-address=127.0.0.1",
                                  f"--object-store-memory={self.object_store_mb * 10**6}",
                                  f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                                 env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=180)
        if started.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{started.stdout}\n{started.stderr}")
        return temp_dir

    def add_node(self, cpus: int = 2) -> str:
        """Start one more node; returns its temp dir (its handle for :meth:`kill_node`)."""
        return self._start([f"--address={self.address}", f"--num-cpus={cpus}"])

    def kill_node(self, temp_dir: str) -> None:
        """SIGKILL a node as a crash would: its raylet, the workers under it, its other processes."""
        kill_processes_of(temp_dir)

    def wait_for_nodes(self, alive: int, timeout: float = 120) -> list[str]:
        """Node ids once exactly ``alive`` nodes are alive (a killed one takes the GCS some seconds)."""
        code = ("import ray; ray.init(address='%s', logging_level='ERROR'); "
                "print(','.join(n['NodeID'] for n in ray.nodes() if n['Alive']))" % self.address)
        deadline = time.time() + timeout
        while True:
            out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                                 timeout=120)
            ids = [i for i in out.stdout.strip().splitlines()[-1].split(",") if i] if out.stdout.strip() else []
            if len(ids) == alive:
                return ids
            if time.time() > deadline:
                raise TimeoutError(f"{len(ids)} nodes alive after {timeout} s, expected {alive}: {out.stderr[-2000:]}")
            time.sleep(2)

    def stop(self) -> None:
        for temp_dir in self.nodes:
            self.kill_node(temp_dir)
        for temp_dir in self.nodes:
            shutil.rmtree(temp_dir, ignore_errors=True)
