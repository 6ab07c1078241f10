"""Run ingest jobs as Ray tasks (one per source) and keep the store's manifest up to date.

Guarantees (README, "Ingest"):
- one bad source never stops the run: its failure becomes a manifest row with a one-line reason,
  even when the worker process itself dies;
- each patient is committed atomically by the store, and the manifest is rewritten every few
  seconds, so an interrupted run loses at most the patients in flight;
- a re-run skips sources whose fingerprint matches what is stored and rewrites changed ones.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import warnings
from dataclasses import dataclass, field, replace

from semgen_ray.config.schema import IngestConfig, RayConfig, StoreConfig
from semgen_ray.ingest.checks import check_volume
from semgen_ray.ingest.jobs import Job
from semgen_ray.ingest.split import assign_split
from semgen_ray.io.volume import ReadError
from semgen_ray.store import IntensityWarning, InvalidPatientId, StoreError, check_patient_id, open_store


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, (ReadError, InvalidPatientId, StoreError)):
        text = f"{type(err).__name__}: {text}"
    return text[:500]


def _failed(patient_id: str, source: str, error: str) -> dict:
    return {"patient_id": patient_id, "status": "failed", "error": error, "source": source,
            "updated_at": _dt.datetime.now(_dt.timezone.utc)}


def _check_not_taken(vol_store, patient_id: str, source: str) -> None:
    """Refuse to overwrite a patient that another source, still on disk, wrote (two DICOM folders
    with one PatientID under ``--id-from dicom``, say). A source that moved may take its id back."""
    import os

    try:
        owner = vol_store.meta(patient_id).get("source", "")
    except StoreError:
        return
    # stores written before sources were recorded absolute hold paths relative to that ingest's folder
    if (owner and owner != source and "://" not in owner and os.path.abspath(owner) != source
            and os.path.exists(owner)):
        raise StoreError(f"patient id {patient_id!r} already holds {owner}; give explicit ids in a CSV list")


def run_job(store: StoreConfig, job: Job, config: IngestConfig, known: dict[str, str], force: bool = False) -> dict:
    """Fingerprint, skip or load, check and store one job; never raises for bad input.

    Args:
        known: ``{patient_id: source_sha256}`` of the manifest's ok rows for this source.
        force: store the source again even when the store holds it unchanged.

    Returns:
        ``{"rows": [manifest rows], "skipped": bool, "bytes": source bytes, "seconds": float}``.
    """
    t0 = time.perf_counter()
    out = {"rows": [], "skipped": False, "bytes": 0, "seconds": 0.0}
    try:
        vol_store = open_store(store.uri, mode="a", chunks=store.chunks, clevel=store.clevel)
        fingerprint = job.fingerprint()
        candidates = known or {job.patient_id: fingerprint}
        if not force and all(vol_store.is_current(pid, fingerprint, config.mr_intensity, config.mr_window)
                             for pid in candidates):
            out["rows"] = [vol_store.row_from_meta(pid, vol_store.meta(pid)) for pid in candidates]
            out["skipped"] = True
            return out
        items = job.load(config)
        if not items:
            raise ReadError("no image found in the source")
        for item in items:
            try:
                check_patient_id(item.patient_id)
                _check_not_taken(vol_store, item.patient_id, job.source)
                volume = item.volume
                label = item.label
                if config.target_spacing is not None:
                    from semgen_ray.io import resample

                    volume = resample(volume, config.target_spacing, order=1)
                    if label is not None:
                        label = resample(replace(item.volume, array=label), config.target_spacing,
                                         order=0).array
                check_volume(volume, config)
                split = item.split or assign_split(item.patient_id, config.split_fractions)
                with warnings.catch_warnings():  # the driver warns (run_jobs), not the worker
                    warnings.simplefilter("ignore", IntensityWarning)
                    out["rows"].append(vol_store.write(
                        item.patient_id, volume, label=label, split=split, source_sha256=fingerprint,
                        mr_intensity=config.mr_intensity, mr_window=config.mr_window))
                out["bytes"] += int(item.volume.array.nbytes)
            except Exception as err:  # noqa: BLE001 - one bad series must not drop its siblings
                out["rows"].append(_failed(item.patient_id, job.source, _one_line(err)))
    except Exception as err:  # noqa: BLE001 - bad input becomes a row, never a crash
        out["rows"].append(_failed(job.patient_id, job.source, _one_line(err)))
    finally:
        out["seconds"] = time.perf_counter() - t0
    return out


@dataclass
class IngestReport:
    """What a run did; ``ok`` is False when any source failed."""

    store_uri: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (patient_id, source, error)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    bytes_written: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """A human-readable multi-line summary (one line per failure)."""
        n = len(self.written)
        rate = f", {n / self.seconds:.2f} volumes/s, {self.bytes_written / 2**20 / self.seconds:.1f} MB/s" \
            if self.seconds > 0 and n else ""
        lines = [
            f"ingest into {self.store_uri}: {n} written, {len(self.skipped)} unchanged (skipped), "
            f"{len(self.failed)} failed in {self.seconds:.1f} s{rate}"
        ]
        lines += [f"  WARN   {pid}: {msg}" for pid, msg in self.warnings]
        lines += [f"  FAILED {pid} ({src}): {err}" for pid, src, err in self.failed]
        return "\n".join(lines)


def run_jobs(jobs: list[Job], store: StoreConfig, config: IngestConfig | None = None,
             ray_config: RayConfig | None = None, problems: list[dict] = (), progress: bool = True,
             flush_seconds: float = 5.0, force: bool = False, label: str = "ingest",
             unit: str = "scan") -> IngestReport:
    """Ingest ``jobs`` into the store with one Ray task each.

    Args:
        problems: failures found before any task ran (missing paths, bad lists); reported as rows.
        progress: show a progress bar (tqdm) on stderr, named ``label``, counting in ``unit``.
        force: store every job again, unchanged ones included.
        flush_seconds: how often the manifest is rewritten while tasks finish.
    """
    from semgen_ray.runtime import init_ray

    config = config or IngestConfig()
    t0 = time.perf_counter()
    vol_store = open_store(store.uri, mode="a", chunks=store.chunks, clevel=store.clevel)
    rows = vol_store.manifest_rows()
    if set(vol_store.stored_ids()) - {r["patient_id"] for r in rows}:
        rows = vol_store.rebuild_manifest()  # a previous run died before writing its manifest
    by_source: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["status"] == "ok":
            by_source.setdefault(r["source"], {})[r["patient_id"]] = r["source_sha256"]

    report = IngestReport(store_uri=vol_store.uri)
    problems = list(problems)
    claimed: dict[str, str] = {}
    unique_jobs = []
    for job in jobs:  # two sources with one id would overwrite each other
        if job.patient_id in claimed and claimed[job.patient_id] != job.source:
            problems.append({"patient_id": job.patient_id, "source": job.source,
                             "error": f"patient id {job.patient_id!r} is also produced by "
                                      f"{claimed[job.patient_id]}; give explicit ids in a CSV list"})
        else:
            claimed[job.patient_id] = job.source
            unique_jobs.append(job)
    jobs = unique_jobs
    pending_rows = [_failed(p["patient_id"], p["source"], p["error"]) for p in problems]

    ray = init_ray(ray_config)
    task = ray.remote(num_cpus=1, max_retries=0)(run_job)
    futures = {task.remote(store, job, config, by_source.get(job.source, {}), force): job for job in jobs}

    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), unit=unit, desc=label)
    last_flush = time.perf_counter()
    remaining = list(futures)
    while remaining:
        done, remaining = ray.wait(remaining, num_returns=1, timeout=flush_seconds)
        for ref in done:
            job = futures[ref]
            try:
                result = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - the worker died (segfault, out of memory)
                result = {"rows": [_failed(job.patient_id, job.source, f"worker crashed: {_one_line(err)}")],
                          "skipped": False, "bytes": 0}
            for row in result["rows"]:
                if row["status"] == "ok":
                    (report.skipped if result["skipped"] else report.written).append(row["patient_id"])
                    if row.get("warnings") and not result["skipped"]:
                        report.warnings.append((row["patient_id"], row["warnings"]))
                        for note in json.loads(row.get("intensity") or "{}").get("warnings", []):
                            warnings.warn(f"{row['patient_id']}: {note}", IntensityWarning, stacklevel=2)
                else:
                    report.failed.append((row["patient_id"], row["source"], row["error"]))
            report.bytes_written += result["bytes"]
            pending_rows += result["rows"]
            if bar is not None:
                bar.update(1)
        if pending_rows and (time.perf_counter() - last_flush >= flush_seconds or not remaining):
            vol_store.update_manifest(pending_rows)
            pending_rows, last_flush = [], time.perf_counter()
    if pending_rows:
        vol_store.update_manifest(pending_rows)
    if bar is not None:
        bar.close()
    report.failed += [(p["patient_id"], p["source"], p["error"]) for p in problems]
    report.seconds = time.perf_counter() - t0
    report.failed.sort()
    return report

