"""Run ingest jobs as Ray tasks (one per source) and keep the store's manifest up to date.

Guarantees (README, "Ingest"):
- one bad source never stops the run: its failure becomes a manifest row with a one-line reason,
  even when the worker process itself dies;
- each patient is committed atomically by the store, and the manifest is rewritten every few
  seconds, so an interrupted run loses at most the patients in flight;
- a re-run skips sources whose fingerprint matches what is stored and whose patients were stored with
  the settings of this run (:func:`shaping_settings`, the store's chunks and compression, the MR
  intensity rule), and rewrites the others, saying why when settings changed;
- a source's patients follow the run's ids and splits: a stored patient whose split the run's
  settings change is moved (its ``split`` attribute, voxels kept); a source stored under ids it no
  longer gets is stored under the new ones and the old ones are removed.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import warnings
from dataclasses import dataclass, field, replace

from semgen_ray.config.schema import IngestConfig, RayConfig, StoreConfig
from semgen_ray.ingest.checks import check_image, check_volume
from semgen_ray.ingest.jobs import Job
from semgen_ray.ingest.split import assign_split
from semgen_ray.io.dicom import UNEVEN_NOTE
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


def shaping_settings(job: Job, config: IngestConfig) -> dict:
    """The ingest settings that shape what ``job`` stores, recorded with each patient (its ``ingest``
    attribute) and compared on re-runs: the job's own reading settings (:class:`SourceJob`: the
    ``modality`` override, ``uneven_spacing`` for DICOM; a job without ``reading_settings``, such as
    a phantom, obeys none) and ``target_spacing``.

    Not among them: the MR intensity rule and the store's chunks and compression, which the patient's
    ``intensity`` attribute and its array metadata record (compared too); ids and splits, which the
    runner handles apart; the refusal limits (``max_voxels``, ``min_extent``, ``max_spacing_mm``),
    which never change what is stored.
    """
    own = getattr(job, "reading_settings", None)
    settings = {"modality": None, **(own(config) if own is not None else {})}
    settings["target_spacing"] = None if config.target_spacing is None else [float(v) for v in config.target_spacing]
    return settings


def _recorded(settings: dict, volume) -> dict:
    """The settings a written patient records: ``uneven_spacing`` only for a series the reader found
    uneven (the policy changes nothing for an even one, so switching it does not rewrite those)."""
    if any(note.startswith(UNEVEN_NOTE) for note in volume.warnings):
        return settings
    return {key: value for key, value in settings.items() if key != "uneven_spacing"}


def _produces(job: Job, patient_id: str) -> bool:
    """Whether ``job`` stores a patient under this id now (its id, or ``<id>_s<N>`` for a series)."""
    return patient_id == job.patient_id or patient_id.startswith(f"{job.patient_id}_s")


def _keep(vol_store, patient_id: str, job: Job, config: IngestConfig, notes: list) -> dict:
    """The manifest row of an unchanged patient, its split moved first when the run gives another."""
    meta = vol_store.meta(patient_id)
    split = getattr(job, "split", None) or assign_split(patient_id, config.split_fractions)
    if meta.get("split") == split:
        return vol_store.row_from_meta(patient_id, meta)
    notes.append((patient_id, f"split {meta.get('split')} -> {split} (ingest.split_fractions or the list's "
                              "split changed; voxels kept)"))
    return vol_store.set_split(patient_id, split)


def run_job(store: StoreConfig, job: Job, config: IngestConfig, known: dict[str, str], force: bool = False) -> dict:
    """Fingerprint, skip or load, check and store one job; never raises for bad input.

    A stored patient is skipped when it is current (``VolumeStore.check_current``): same source
    hash, the same :func:`shaping_settings`, the store's chunks and compression level, the run's MR
    intensity rule, and an id the job still produces. Otherwise the job is read and stored again,
    with a note naming the setting that changed.

    Args:
        known: ``{patient_id: source_sha256}`` of the manifest's ok rows for this source.
        force: store the source again even when the store holds it unchanged.

    Returns:
        ``{"rows": [manifest rows], "skipped": bool, "bytes": source bytes, "seconds": float,
        "notes": [(patient_id, note)], "replaced": [ids of this source it no longer stores under]}``.
    """
    t0 = time.perf_counter()
    out = {"rows": [], "skipped": False, "bytes": 0, "seconds": 0.0, "notes": [], "replaced": []}
    try:
        vol_store = open_store(store.uri, mode="a", chunks=store.chunks, clevel=store.clevel)
        fingerprint = job.fingerprint()
        settings = shaping_settings(job, config)
        candidates = list(known) or [job.patient_id]
        reasons = {}
        if not force:
            checks = {pid: vol_store.check_current(pid, fingerprint, settings, config.mr_intensity,
                                                   config.mr_window, check_layout=True) for pid in candidates}
            if all(c.current for c in checks.values()) and all(_produces(job, pid) for pid in candidates):
                out["skipped"] = True
                for pid, check in checks.items():
                    out["rows"].append(_keep(vol_store, pid, job, config, out["notes"]))
                    if check.reason:
                        out["notes"].append((pid, check.reason))
                return out
            reasons = {pid: c.reason for pid, c in checks.items() if c.settings_changed}
        items = job.load(config)
        if not items:
            raise ReadError("no image found in the source")
        written = []
        for item in items:
            try:
                check_patient_id(item.patient_id)
                _check_not_taken(vol_store, item.patient_id, job.source)
                out["rows"].append(_store(vol_store, item, config, settings, fingerprint))
                written.append(item.patient_id)
                if item.patient_id in reasons:
                    out["notes"].append((item.patient_id, f"rewritten: {reasons[item.patient_id]}"))
                out["bytes"] += int(item.volume.array.nbytes)
            except Exception as err:  # noqa: BLE001 - one bad series must not drop its siblings
                out["rows"].append(_failed(item.patient_id, job.source, _one_line(err)))
        if len(written) == len(items):  # old ids go only once every patient of the source is stored anew
            out["replaced"] = [pid for pid in known if pid not in written]
    except Exception as err:  # noqa: BLE001 - bad input becomes a row, never a crash
        out["rows"].append(_failed(job.patient_id, job.source, _one_line(err)))
    finally:
        out["seconds"] = time.perf_counter() - t0
    return out


def _store(vol_store, item, config: IngestConfig, settings: dict, fingerprint: str) -> dict:
    """Check and store one item; its manifest row. A 3D volume is resampled to ``target_spacing``
    when one is set; a 2D image (:class:`~semgen_ray.io.image2d.Image2D`) is stored as read (no
    target spacing applies to it, and none is recorded)."""
    from semgen_ray.io.image2d import Image2D

    split = item.split or assign_split(item.patient_id, config.split_fractions)
    if isinstance(item.volume, Image2D):
        check_image(item.volume, config)
        return vol_store.write_image(item.patient_id, item.volume, label=item.label, split=split,
                                     source_sha256=fingerprint,
                                     ingest_settings={k: v for k, v in settings.items() if k != "target_spacing"})
    volume, label = item.volume, item.label
    if config.target_spacing is not None:
        from semgen_ray.io import resample

        volume = resample(volume, config.target_spacing, order=1)
        if label is not None:
            label = resample(replace(item.volume, array=label), config.target_spacing, order=0).array
    check_volume(volume, config)
    with warnings.catch_warnings():  # the driver warns (run_jobs), not the worker
        warnings.simplefilter("ignore", IntensityWarning)
        return vol_store.write(item.patient_id, volume, label=label, split=split, source_sha256=fingerprint,
                               mr_intensity=config.mr_intensity, mr_window=config.mr_window,
                               ingest_settings=_recorded(settings, item.volume))


@dataclass
class IngestReport:
    """What a run did; ``ok`` is False when any source failed."""

    store_uri: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (patient_id, source, error)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (patient_id, what was done and why)
    removed: list[str] = field(default_factory=list)  # ids a source is no longer stored under
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
        lines += [f"  NOTE   {who}: {msg}" for who, msg in _grouped(self.notes)]
        lines += [f"  FAILED {pid} ({src}): {err}" for pid, src, err in self.failed]
        return "\n".join(lines)


def _grouped(notes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One line per distinct note: a rewrite of a whole store for a changed setting is one line."""
    by_note: dict[str, list[str]] = {}
    for pid, note in notes:
        by_note.setdefault(note, []).append(pid)
    out = []
    for note, pids in by_note.items():
        pids = sorted(pids)
        who = pids[0] if len(pids) == 1 else \
            f"{len(pids)} patients ({', '.join(pids[:5])}{', …' if len(pids) > 5 else ''})"
        out.append((who, note))
    return sorted(out)


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
    by_source = _stored_sources(vol_store)
    report = IngestReport(store_uri=vol_store.uri)
    problems = list(problems)
    jobs = _unique_jobs(jobs, problems)
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
    replaced: list[tuple[str, str, list[str]]] = []  # (old id, source, the ids it is stored under now)
    while remaining:
        done, remaining = ray.wait(remaining, num_returns=1, timeout=flush_seconds)
        for ref in done:
            job = futures[ref]
            try:
                result = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - the worker died (segfault, out of memory)
                result = {"rows": [_failed(job.patient_id, job.source, f"worker crashed: {_one_line(err)}")],
                          "skipped": False, "bytes": 0}
            _add_result(report, result)
            replaced += [(pid, job.source, [r["patient_id"] for r in result["rows"]])
                         for pid in result.get("replaced", [])]
            pending_rows += result["rows"]
            if bar is not None:
                bar.update(1)
        if pending_rows and (time.perf_counter() - last_flush >= flush_seconds or not remaining):
            vol_store.update_manifest(pending_rows)
            pending_rows, last_flush = [], time.perf_counter()
    report.removed = _remove_replaced(vol_store, replaced, set(report.written), report.notes)
    if pending_rows or report.removed:
        vol_store.update_manifest(pending_rows, remove=report.removed)
    if bar is not None:
        bar.close()
    report.failed += [(p["patient_id"], p["source"], p["error"]) for p in problems]
    report.seconds = time.perf_counter() - t0
    report.failed.sort()
    return report


def _stored_sources(vol_store) -> dict[str, dict[str, str]]:
    """Source → {patient id: source hash} of the patients stored ``ok`` (the manifest rebuilt first
    when a previous run died before writing it)."""
    rows = vol_store.manifest_rows()
    if set(vol_store.stored_ids()) - {r["patient_id"] for r in rows}:
        rows = vol_store.rebuild_manifest()
    by_source: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["status"] == "ok":
            by_source.setdefault(r["source"], {})[r["patient_id"]] = r["source_sha256"]
    return by_source


def _unique_jobs(jobs: list[Job], problems: list[dict]) -> list[Job]:
    """``jobs`` without those whose patient id another source already claims (two sources with one id
    would overwrite each other): each of those is added to ``problems``."""
    claimed: dict[str, str] = {}
    unique = []
    for job in jobs:
        if job.patient_id in claimed and claimed[job.patient_id] != job.source:
            problems.append({"patient_id": job.patient_id, "source": job.source,
                             "error": f"patient id {job.patient_id!r} is also produced by "
                                      f"{claimed[job.patient_id]}; give explicit ids in a CSV list"})
        else:
            claimed[job.patient_id] = job.source
            unique.append(job)
    return unique


def _add_result(report: IngestReport, result: dict) -> None:
    """Count one task's rows in the report (written, skipped, failed, warnings, notes, bytes)."""
    for row in result["rows"]:
        if row["status"] == "ok":
            (report.skipped if result["skipped"] else report.written).append(row["patient_id"])
            if row.get("warnings") and not result["skipped"]:
                report.warnings.append((row["patient_id"], row["warnings"]))
                for note in json.loads(row.get("intensity") or "{}").get("warnings", []):
                    warnings.warn(f"{row['patient_id']}: {note}", IntensityWarning, stacklevel=3)
        else:
            report.failed.append((row["patient_id"], row["source"], row["error"]))
    report.notes += result.get("notes", [])
    report.bytes_written += result["bytes"]


def _remove_replaced(vol_store, replaced: list[tuple[str, str, list[str]]], in_use: set[str],
                     notes: list[tuple[str, str]]) -> list[str]:
    """Delete the patients a source was stored under before and no longer is (its id changed with
    ``ingest.id_from`` or the list's ``patient_id``; a series left its folder), once the source is
    stored anew: one scan under two ids would sit in two splits. Runs after every task has ended; an
    id written in this run, or that holds another source by now, stays."""
    removed = []
    for pid, source, now in replaced:
        if pid in in_use:
            continue
        try:
            if vol_store.meta(pid).get("source") != source:
                continue
        except StoreError:
            continue
        vol_store.delete(pid)
        removed.append(pid)
        notes.append((pid, f"removed: its source {source} is stored as {', '.join(now)} now"))
    return removed

