"""Issue 7: an ingest killed mid-way and re-run leaves no duplicate and no half-written patient.

A real ``python -m semgen_ray.ingest`` subprocess (with its own local Ray) is SIGKILLed, together
with every process it started, while one Ray task is in the middle of writing a patient's voxels;
then the same ingest runs again to completion.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from semgen_ray.config import IngestConfig, StoreConfig
from semgen_ray.ingest import ingest
from semgen_ray.store import StoreError, open_store

psutil = pytest.importorskip("psutil")

N_PATIENTS = 8
SHAPE = (96, 96, 64)  # int16; with 16³ chunks each patient is 144 chunk files, written one by one
CHUNKS = (16, 16, 16)
FIRST_PATIENT_TIMEOUT_S = 60.0  # Ray start-up plus one patient, on a busy 2-core machine
POLL_S = 0.02


def _write_sources(folder: Path) -> dict[str, np.ndarray]:
    """N_PATIENTS uncompressed NRRD scans (LPS, identity direction); returns id -> (x, y, z) array."""
    import SimpleITK as sitk

    folder.mkdir()
    rng = np.random.default_rng(7)
    arrays = {}
    for i in range(N_PATIENTS):
        pid = f"killed_{i:02d}"
        # Random HU values: blosc cannot shrink them, so every chunk is a real write.
        array = rng.integers(-1000, 1500, SHAPE, dtype=np.int16)
        image = sitk.GetImageFromArray(array.transpose(2, 1, 0))
        image.SetSpacing((0.8, 0.8, 2.0))
        sitk.WriteImage(image, str(folder / f"{pid}.nrrd"), useCompression=False)
        arrays[pid] = array
    return arrays


def _read_source(path: Path) -> np.ndarray:
    """What SimpleITK reads from a source file, in LPS and (x, y, z) order."""
    import SimpleITK as sitk

    image = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def _store_state(uri: str) -> tuple[set[str], set[str]]:
    """(complete, half-written) patient ids, from ``volumes/<id>/zarr.json`` on disk.

    A patient is complete once its ``semgen_ray.complete`` attribute is true (the store's commit
    point); anything else under ``volumes/`` (no metadata yet, or ``complete: false``) is half-written.
    """
    complete, partial = set(), set()
    volumes = Path(uri) / "volumes"
    if not volumes.is_dir():
        return complete, partial
    for entry in volumes.iterdir():
        if not entry.is_dir():
            continue
        try:
            meta = json.loads((entry / "zarr.json").read_text())
            done = bool(meta.get("attributes", {}).get("semgen_ray", {}).get("complete"))
        except (OSError, ValueError):
            done = False
        (complete if done else partial).add(entry.name)
    return complete, partial


class _ProcessTree:
    """The ingest subprocess and everything it started: Ray's GCS, raylet, agents, workers, reaper.

    Ray's reaper calls ``setpgrp()``, so the subprocess's process group is not enough: processes
    are also found as descendants, and by the run's private Ray temp dir in their command line.
    """

    def __init__(self, popen: subprocess.Popen, ray_tmp: str):
        self.popen = popen
        self.ray_tmp = ray_tmp
        self.known: dict[tuple[int, float], psutil.Process] = {}

    def _remember(self, procs) -> None:
        for proc in procs:
            try:
                self.known.setdefault((proc.pid, proc.create_time()), proc)
            except psutil.Error:
                pass

    def by_marker(self) -> list:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if proc.pid != os.getpid() and self.ray_tmp in " ".join(proc.info["cmdline"] or ()):
                    found.append(proc)
            except psutil.Error:
                pass
        return found

    def refresh(self, marker: bool = False) -> list:
        """Remember the live tree (and the processes naming the Ray temp dir); return those alive."""
        try:
            root = psutil.Process(self.popen.pid)
            self._remember([root, *root.children(recursive=True)])
        except psutil.Error:
            pass
        if marker:
            self._remember(self.by_marker())
        return [p for p in self.known.values() if _alive(p)]

    def signal(self, sig: int) -> None:
        if self.popen.returncode is None:  # until reaped, its pid is its process group's id
            try:
                os.killpg(self.popen.pid, sig)  # the subprocess leads its own session and group
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.known.values():
            try:
                proc.send_signal(sig)  # psutil checks the pid still names the same process
            except psutil.Error:
                pass

    def freeze(self, timeout: float = 15.0) -> None:
        """SIGSTOP every process of the run and wait until all of them are stopped."""
        deadline = time.monotonic() + timeout
        while True:
            procs = self.refresh()
            self.signal(signal.SIGSTOP)
            running = [p for p in procs if _alive(p) and _status(p) not in _HALTED]
            if not running and len(self.refresh()) == len(procs):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"could not stop the ingest's processes: {running}")
            time.sleep(0.01)

    def kill(self, timeout: float = 30.0) -> None:
        """SIGKILL the whole run (group, tree, Ray temp dir) and wait until none of it is left."""
        self.refresh(marker=True)
        self.signal(signal.SIGKILL)
        self.signal(signal.SIGCONT)  # a stopped process dies of SIGKILL anyway; this is harmless
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + timeout
        while True:
            alive = self.refresh(marker=True)
            if not alive:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"processes of the killed ingest survived SIGKILL: {alive}")
            self.signal(signal.SIGKILL)
            time.sleep(0.1)


_HALTED = {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD}


def _alive(proc) -> bool:
    try:
        return proc.is_running() and proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def _status(proc) -> str:
    try:
        return proc.status()
    except psutil.Error:
        return psutil.STATUS_DEAD


def _log_tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:] or "(no output yet)"
    except OSError:
        return "(no output)"


@pytest.fixture
def ray_tmp():
    """A private, short Ray temp dir for the subprocess (Unix socket paths must stay < 108 chars)."""
    path = tempfile.mkdtemp(prefix="sgk", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_killed_ingest_rerun_has_no_duplicate_and_no_half_written_patient(tmp_path, ray_tmp, request):
    src = tmp_path / "src"
    arrays = _write_sources(src)
    expected_ids = sorted(arrays)
    uri = str(tmp_path / "k.zarr")
    log = tmp_path / "first_run.log"

    env = dict(os.environ, RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)  # start a private local Ray, never join another cluster
    cmd = [sys.executable, "-m", "semgen_ray.ingest", str(src), "--out", uri, "--num-cpus", "1",
           "--no-progress", "--modality", "CT", "--set", f"store.chunks=[{','.join(map(str, CHUNKS))}]",
           "--set", "ray.object_store_mb=100"]

    # ---- first run: SIGKILL it (Ray included) while a patient is half-written
    with log.open("wb") as out:
        popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 cwd=str(Path(__file__).resolve().parents[2]), start_new_session=True)
    tree = _ProcessTree(popen, ray_tmp)
    try:
        started = time.monotonic()
        deadline = started + FIRST_PATIENT_TIMEOUT_S
        seen_complete = False
        frozen_tries = 0
        last_refresh = 0.0
        while True:
            if popen.poll() is not None:
                complete, partial = _store_state(uri)
                pytest.fail(
                    f"the first ingest ended (exit {popen.returncode}) before it could be killed mid-way "
                    f"({len(complete)}/{N_PATIENTS} stored): make the input bigger or slower.\n"
                    f"{_log_tail(log)}"
                )
            complete, partial = _store_state(uri)
            if complete and not seen_complete:
                seen_complete = True
                deadline = time.monotonic() + 30.0  # the next write starts within seconds
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out {time.monotonic() - started:.0f} s after the ingest started, waiting for a "
                    f"patient to be stored and the next one half-written (state: {sorted(complete)} "
                    f"complete, {sorted(partial)} half-written):\n"
                    f"{_log_tail(log)}"
                )
            mid_write = bool(complete and partial)
            running_out = len(complete) >= N_PATIENTS - 2  # kill between patients rather than never
            if mid_write or running_out:
                tree.freeze()
                frozen_tries += 1
                complete, partial = _store_state(uri)
                if complete and len(complete) < N_PATIENTS and (partial or running_out):
                    break
                tree.signal(signal.SIGCONT)  # the write finished just before the freeze: go on
            if time.monotonic() - last_refresh > 0.5:  # remember the tree while it is intact
                tree.refresh()
                last_refresh = time.monotonic()
            time.sleep(POLL_S)
        tree.kill()
    finally:
        tree.kill()
    stray = tree.by_marker()
    assert not stray, f"processes of the killed run's Ray are still running: {stray}"
    seconds_to_kill = time.monotonic() - started

    # What the kill left behind, read once every writer is gone.
    complete_at_kill, partial_at_kill = _store_state(uri)
    assert complete_at_kill, "the kill happened before any patient was stored"
    assert len(complete_at_kill) < N_PATIENTS, "the kill happened after every patient was stored"
    assert complete_at_kill | partial_at_kill <= set(expected_ids)
    print(f"\nkilled after {seconds_to_kill:.1f} s ({frozen_tries} freeze(s)): "
          f"complete {sorted(complete_at_kill)}, half-written {sorted(partial_at_kill)}")
    before = open_store(uri)
    assert set(before.patient_ids) <= complete_at_kill  # the manifest never lists a half-written patient
    for pid in partial_at_kill:
        if (Path(uri) / "volumes" / pid / "zarr.json").exists():
            with pytest.raises(StoreError, match="incomplete"):
                before.read(pid)
    for pid in complete_at_kill:
        assert np.array_equal(before.read(pid)[0], arrays[pid]), pid
    commit_files = {pid: (Path(uri) / "volumes" / pid / "zarr.json").stat() for pid in complete_at_kill}

    # ---- second run, to completion (in-process, on the test session's Ray)
    request.getfixturevalue("ray_local")
    report = ingest([src], StoreConfig(uri=uri, chunks=CHUNKS), IngestConfig(modality="CT"), progress=False)
    assert report.ok, report.summary()
    assert sorted(report.skipped) == sorted(complete_at_kill), report.summary()
    assert sorted(report.written) == sorted(set(expected_ids) - complete_at_kill), report.summary()
    assert partial_at_kill <= set(report.written)  # rewritten, never skipped
    for pid, old in commit_files.items():  # skipped patients were not touched
        new = (Path(uri) / "volumes" / pid / "zarr.json").stat()
        assert (new.st_ino, new.st_mtime_ns) == (old.st_ino, old.st_mtime_ns), pid

    store = open_store(uri)
    assert store.patient_ids == expected_ids  # each patient exactly once
    assert store.stored_ids() == expected_ids
    rows = store.manifest_rows()
    assert sorted(r["patient_id"] for r in rows) == expected_ids  # one manifest row per patient
    assert all(r["status"] == "ok" and r["source_sha256"] for r in rows), rows
    assert _store_state(uri) == (set(expected_ids), set())
    assert not list((Path(uri) / "volumes").rglob("*.partial"))  # no leftovers of killed writes
    for pid in expected_ids:
        array, meta = store.read(pid)
        assert array.dtype == np.int16 and meta["modality"] == "CT"
        assert np.array_equal(array, arrays[pid]), pid
        assert np.array_equal(array, _read_source(src / f"{pid}.nrrd")), pid
