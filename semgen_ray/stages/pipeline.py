"""The stage chain behind ``python -m semgen_ray.pretrain`` (docs/design.md, "Stages and artefacts").

Stages read the previous stage's artefact and write their own under the run directory, and skip
work whose artefact is already there. The run directory and the store are local paths or fsspec URIs
(``s3://``, ``gs://``, ``file://``) alike (:mod:`semgen_ray.runfolder`); a URI's bucket and
credentials are checked before any stage runs. Stages in this release:

- ``data``: make sure the volume store exists. A run-local store (``store.uri`` relative to the run
  directory, the default) is filled with the built-in phantom cohort (``config.phantoms``; their
  radiographs when the run is on 2D images, a flat ``data.volume_shape``, ``DataConfig.flat``); a store
  given by absolute path or URI is the user's: it must already hold patients (``python -m
  semgen_ray.ingest`` or ``python -m semgen_ray.phantoms``) and is only read, never written, whatever
  patients it holds, so that a mistyped ``s3://`` address fails instead of silently training on
  phantoms.
- ``stream`` (a check, not in the default chain): stream the store through Ray Data as later stages
  will: whole volumes resized to ``data.volume_shape`` (auto-encoder input), random ``data.cube_size``
  sub-volumes (crop-on-read), and those cubes as restoration pairs (``train.corruption``), checking
  shapes and value ranges and recording throughput in ``stream.json``.
- ``discover``: self-discovery (:func:`semgen_ray.stages.discovery.run_discovery`) into
  ``run_dir/discovery``: the pattern manifest ``patterns.parquet``, montages, ``discovery.json``;
  reused when it is already there for the same config.

- ``train``: pretraining (:func:`semgen_ray.stages.pretraining.run_pretraining`) on the discovery's pattern
  manifest (a 2D U-Net on film patches when the run is on 2D images) into ``run_dir/train``: Ray Train + DeepSpeed, checkpoints (resumed when the run stopped),
  the exported weights and model card (``train/export``), the report (``train/report``) and
  ``train.json``; skipped when ``train.json`` exists for the same config.

Reuse records (``discovery/discovery.json``, ``train/train.json``) are written last, only when the
stage has finished; ``force`` deletes a stage's record before the stage starts (and, for ``train``,
the export and report that described the checkpoints it deletes), so an interrupted forced run is
never mistaken for a finished one. :func:`preflight` checks the stages, every URI's protocol and
package, buckets and credentials, and that a store named by the user holds patients, before the run
folder is created or anything is written.

- ``evaluate`` (not in the default chain; also ``python -m semgen_ray.evaluate``): ten seeded
  fine-tuning trials per arm on the target tasks with Ray Tune, statistics and the report
  (:func:`semgen_ray.stages.evaluation.run_evaluation`) into ``run_dir/evaluate``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from semgen_ray.config.schema import SemGenConfig
from semgen_ray.stages import StageError
from semgen_ray.stages.layout import RunLayout

STAGES = ("data", "stream", "discover", "train", "evaluate")
DEFAULT_STAGES = ("data", "discover", "train")
#: the stages built for 2D images (a flat ``data.volume_shape``)
FLAT_STAGES = ("data", "discover", "train", "evaluate")

logger = logging.getLogger(__name__)


def run_local_store(config: SemGenConfig) -> bool:
    """True when ``store.uri`` is relative, i.e. the run folder's own store (the only one the pipeline
    fills with phantoms); a store given by absolute path or URI is the user's and only read."""
    return "://" not in config.store.uri and not config.store.uri.startswith("/")


# stages that read config.store (the others read the run folder's artefacts)
READS_STORE = ("data", "stream", "discover", "train")


def preflight(config: SemGenConfig, stages: tuple[str, ...]) -> None:
    """Every check that needs no writing, so that a configuration error stops the run before the run
    folder is created or ``config.yaml`` written: known stage names; for every URI of the config
    (run folder, store, ``train.storage_path``, ``evaluate.target_store``) a protocol fsspec knows
    and its package installed; a remote run folder's bucket writable (a probe object, removed); the
    store's bucket readable; and a store named by the user holding patients. Raises ``StageError``.
    """
    from semgen_ray import runfolder

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise StageError(f"unknown stage(s) {unknown}; available: {list(STAGES)}")
    store = RunLayout.of(config).store
    uris = [config.run_dir, store, config.train.storage_path, config.evaluate.target_store]
    try:
        for uri in uris:
            if uri:
                runfolder.check_backend(uri)
        if runfolder.is_remote(config.run_dir):  # a local one is created by prepare(), later
            runfolder.prepare(config.run_dir)
        runfolder.check_readable(store)  # not "no patients" later
    except runfolder.RunFolderError as err:
        raise StageError(str(err)) from err
    if config.data.flat and (unbuilt := [s for s in stages if s not in FLAT_STAGES]):
        raise StageError(f"a flat data.volume_shape and data.cube_size (z = 1: 2D images) run the "
                         f"{', '.join(FLAT_STAGES)} stages; 2D {', '.join(unbuilt)} is not built yet")
    if not run_local_store(config) and any(s in READS_STORE for s in stages):
        _named_store_patients(store, images=config.data.flat)
    elif config.data.flat and any(s in READS_STORE for s in stages):
        _check_phantom_films(config)


def _check_phantom_films(config: SemGenConfig) -> None:
    """The phantom cohort's films (rows = the phantoms' z, columns = their x) hold ``data.cube_size``."""
    from semgen_ray.phantoms.radiograph import film_shape

    shape, cube = list(config.phantoms.shape), list(config.data.cube_size)[:2]
    film = film_shape(shape)
    if any(c > f for c, f in zip(cube, film)):
        raise StageError(f"the phantom cohort's films (phantoms.shape {shape}) are {film[0]}×{film[1]} pixels, "
                         f"smaller than data.cube_size {cube}: give a store of radiographs (--store URI, made by "
                         "python -m semgen_ray.ingest FILMS --kind 2d --out STORE), or use the cpu-tiny-2d preset")



def _named_store_patients(uri: str, images: bool = False) -> list[str]:
    """The patients (``images``: the 2D images) of the user's store ``uri`` (opened read-only); a
    ``StageError`` when it has none."""
    from semgen_ray.store import StoreError, open_store

    try:
        store = open_store(uri)
        existing = store.image_ids if images else store.patient_ids
    except StoreError:
        existing = []
    if not existing:
        raise StageError(
            f"store {uri} has no patients: ingest scans into it first (python -m semgen_ray.ingest), "
            "or leave store.uri relative to the run directory to generate the phantom cohort; a store "
            "given by path or URI is only read, never filled"
        )
    return existing


def _write_json(uri: str, data: dict) -> None:
    from semgen_ray import runfolder

    runfolder.write_json(uri, data)


def stage_data(config: SemGenConfig, force: bool = False) -> dict:
    """Use the configured store; only the run folder's own store is filled with the phantom cohort.

    A store named by the user (absolute path or URI) is read, never written, whatever it holds
    (phantoms made with ``python -m semgen_ray.phantoms`` included); it must hold patients.
    """
    from semgen_ray.phantoms.cohort import write_cohort
    from semgen_ray.store import StoreError, open_store

    uri, films = RunLayout.of(config).store, config.data.flat
    if not run_local_store(config):
        existing = _named_store_patients(uri, images=films)
        logger.info(f"[data] using the existing store {uri}: {len(existing)} patients (read only)")
        return {"store": uri, "patients": len(existing), "generated": 0}
    try:
        store = open_store(uri)
        existing = store.image_ids if films else store.patient_ids
    except StoreError:
        existing = []
    generated = [i for i in existing if i.startswith("xray_" if films else "phantom_")]
    if existing and len(generated) < len(existing):
        logger.info(f"[data] using the existing store {uri}: {len(existing)} patients")
        return {"store": uri, "patients": len(existing), "generated": 0}
    what = "radiographs of the phantom cohort" if films else "phantom cohort"  # 2D images: their films
    logger.info(f"[data] {what}: {config.phantoms.n} patients of {config.phantoms.shape} → {uri}")
    report = write_cohort(config.phantoms, replace(config.store, uri=uri), config.ingest, config.ray,
                          radiographs=films)
    logger.info(report.summary())
    if not report.ok:
        raise StageError(f"{len(report.failed)} phantom patients failed; see the manifest of {uri}")
    return {"store": uri, "patients": len(report.written) + len(report.skipped),
            "generated": len(report.written), "seconds": round(report.seconds, 2)}


def stage_stream(config: SemGenConfig, force: bool = False) -> dict:
    """Stream whole volumes and random cubes through Ray Data and check what arrives."""
    from semgen_ray.store import open_store

    layout = RunLayout.of(config)
    uri = layout.store
    store = open_store(uri)
    if not store.patient_ids:
        raise StageError(f"store {uri} has no complete patients; run the data stage or ingest first")
    summary = {"store": uri, "patients": len(store.patient_ids), "volumes": _stream_volumes(config, uri)}
    summary["cubes"], cubes, cube = _stream_cubes(config, uri, store)
    summary["restoration_pairs"] = _stream_pairs(config, cubes, cube)
    summary["record"] = record = layout.stream_record
    _write_json(record, summary)
    logger.info(f"[stream] throughput record: {record}")
    return summary


def _stream_volumes(config: SemGenConfig, uri: str) -> dict:
    """Whole volumes resized to ``data.volume_shape``: shape and [0, 1] range checked, rate measured."""
    from semgen_ray.data import read_volumes

    shape = tuple(config.data.volume_shape)
    t0, n = time.perf_counter(), 0
    for batch in read_volumes(uri, shape, num_cpus=config.data.read_cpus,
                              columns=("volume", "patient_id", "spacing")).iter_batches(batch_size=4):
        vol = batch["volume"]
        if vol.shape[1:] != shape or vol.min() < 0 or vol.max() > 1:
            raise StageError(f"volume batch of shape {vol.shape} outside [0, 1] or of the wrong shape")
        n += len(vol)
    dt = time.perf_counter() - t0
    logger.info(f"[stream] {n} whole volumes resized to {config.data.volume_shape} in {dt:.1f} s")
    return {"rows": n, "shape": list(shape), "seconds": round(dt, 2), "per_second": round(n / dt, 2)}


def _stream_cubes(config: SemGenConfig, uri: str, store):
    """8 random cubes per patient, cropped on read (the cube size capped by the smallest volume):
    ``(record, the cube dataset, the cube size)``."""
    import numpy as np

    from semgen_ray.data import read_subvolumes

    smallest = np.min(list(store.shapes().values()), axis=0)
    cube = tuple(int(min(c, s)) for c, s in zip(config.data.cube_size, smallest))
    t0, n, means = time.perf_counter(), 0, []
    ds = read_subvolumes(uri, size=cube, per_patient=8, seed=config.seed, epoch=0,
                         num_cpus=config.data.read_cpus, columns=("cube", "patient_id", "spacing", "box_index"))
    for batch in ds.iter_batches(batch_size=32):
        n += len(batch["cube"])
        means.append(float(np.mean(batch["cube"])))
    dt = time.perf_counter() - t0
    logger.info(f"[stream] {n} random {cube} cubes (crop-on-read) in {dt:.1f} s ({n / dt:.0f} cubes/s)")
    return ({"rows": n, "shape": list(cube), "seconds": round(dt, 2), "per_second": round(n / dt, 1),
             "mean_intensity": round(float(np.mean(means)), 4)}, ds, cube)


def _stream_pairs(config: SemGenConfig, cubes, cube: tuple) -> dict:
    """The same cubes as restoration pairs, corrupted in the read pipeline (docs/method.md §3) with
    the policy training uses (the objective's fields included)."""
    import numpy as np

    from semgen_ray.data import restoration_pairs
    from semgen_ray.transforms.policy import PolicyError, check_geometry

    policy = config.train.corruption_policy
    try:  # a policy whose sizes do not fit the cube fails here, not inside a Ray task
        check_geometry(policy, cube)
    except PolicyError as err:
        raise StageError(f"train.corruption does not fit {cube} cubes: {err}") from err
    t0, n, changed = time.perf_counter(), 0, []
    pairs = cubes.map_batches(restoration_pairs, batch_format="numpy", batch_size=16, num_cpus=config.data.read_cpus,
                              fn_kwargs={"policy": policy, "run_seed": config.seed, "epoch": 0,
                                         "target": config.train.target})
    for batch in pairs.iter_batches(batch_size=32):
        x, y = batch["input"], batch["target"]
        if x.shape != y.shape or x.shape[1:] != (1, *cube) or x.min() < 0 or x.max() > 1:
            raise StageError(f"restoration pair batch of shape {x.shape} / {y.shape} is malformed")
        n += len(x)
        changed.append(float(np.mean(np.abs(x - y) > 1e-6)))
    dt = time.perf_counter() - t0
    logger.info(f"[stream] {n} restoration pairs ({config.train.corruption} corruptions) in {dt:.1f} s")
    return {"rows": n, "preset": config.train.corruption, "policy": policy.to_dict(), "seconds": round(dt, 2),
            "per_second": round(n / dt, 1), "fraction_voxels_changed": round(float(np.mean(changed)), 4)}


def stage_discover(config: SemGenConfig, force: bool = False) -> dict:
    """Self-discovery on the store into ``run_dir/discovery`` (reused when already done)."""
    from semgen_ray.stages.discovery import run_discovery

    layout = RunLayout.of(config)
    record = run_discovery(config, layout.store, layout.discovery, force=force)
    keep = ("manifest", "cubes", "config_hash", "habitus_purity", "index", "reused", "reused_steps")
    return {k: record[k] for k in keep if k in record} | {"classes": len(record["classes"])}


def stage_train(config: SemGenConfig, force: bool = False) -> dict:
    """Pretraining on the discovery's pattern manifest into ``run_dir/train`` (reused when its reuse
    record holds these settings and this manifest, :func:`semgen_ray.stages.pretraining.pretrain_or_reuse`)."""
    from semgen_ray import runfolder
    from semgen_ray.stages.pretraining import pretrain_or_reuse

    layout = RunLayout.of(config)
    if not runfolder.isfile(layout.patterns):
        raise StageError(f"no pattern manifest at {layout.patterns}: run the discover stage first")
    record = pretrain_or_reuse(config, layout.store, layout.patterns, layout.train(), force=force)
    if not record["reused"]:
        logger.info(f"[train] weights and model card: {record['export']}; report: {record['report']}")
    keep = ("export", "report", "best_val_loss", "steps", "epochs", "fit_seconds", "reused")
    return {k: record[k] for k in keep if k in record}


def stage_evaluate(config: SemGenConfig, force: bool = False) -> dict:
    """Target-task evaluation of the run's exports against the baselines (Ray Tune)."""
    from semgen_ray.stages.evaluation import run_evaluation

    record = run_evaluation(config, force=force)
    return {k: record[k] for k in ("report", "results", "trials", "best")}


RUNNERS = {"data": stage_data, "stream": stage_stream, "discover": stage_discover, "train": stage_train,
           "evaluate": stage_evaluate}


def prepare_run(config: SemGenConfig, stages: tuple[str, ...] = DEFAULT_STAGES) -> None:
    """Check ``config`` for ``stages``, then create the run folder and write its ``config.yaml``.

    Nothing is created or written before the config passes. ``config.yaml`` is what ``pretrain
    --resume`` reads: URIs and options only, credentials never enter a config. A local folder is
    created; a URI's bucket and credentials are checked, never created.
    """
    import yaml

    from semgen_ray import runfolder
    from semgen_ray.config import to_dict

    preflight(config, stages)
    try:
        runfolder.prepare(config.run_dir)
    except runfolder.RunFolderError as err:
        raise StageError(str(err)) from err
    runfolder.write_text(RunLayout.of(config).config_file, yaml.safe_dump(to_dict(config), sort_keys=False))


def run_stages(config: SemGenConfig, stages: tuple[str, ...] = DEFAULT_STAGES, force: bool = False) -> dict:
    """Run ``stages`` in order in a run folder made by :func:`prepare_run`; returns ``{stage: summary}``.
    Ray is started or joined once."""
    from semgen_ray import runfolder
    from semgen_ray.runtime import init_ray

    init_ray(config.ray)
    results = {}
    for stage in stages:
        t0 = time.perf_counter()
        try:
            results[stage] = RUNNERS[stage](config, force=force)
        except runfolder.RunFolderError as err:  # storage trouble mid-run (e.g. credentials expired)
            raise StageError(f"{stage}: {err}") from err
        logger.info(f"[{stage}] done in {time.perf_counter() - t0:.1f} s")
    return results


def run_pipeline(config: SemGenConfig, stages: tuple[str, ...] = DEFAULT_STAGES,
                 force: bool = False) -> dict:
    """:func:`prepare_run`, then :func:`run_stages`: the whole run from a config."""
    prepare_run(config, stages)
    return run_stages(config, stages, force=force)
