"""Ingest: raw scans (or generated phantoms) → the volume store, one Ray task per source."""

from semgen_ray.ingest.checks import check_volume
from semgen_ray.ingest.jobs import Item, Job, SourceJob, jobs_from_paths
from semgen_ray.ingest.runner import IngestReport, run_job, run_jobs
from semgen_ray.ingest.split import assign_split

__all__ = ["check_volume", "Item", "Job", "SourceJob", "jobs_from_paths", "IngestReport", "run_job",
           "run_jobs", "assign_split", "ingest"]


def ingest(paths, store, config=None, ray_config=None, progress=True, force=False) -> IngestReport:
    """Ingest files, folders or CSV lists into ``store`` (a :class:`StoreConfig` or a URI); ``force``
    stores unchanged sources again."""
    from semgen_ray.config import IngestConfig, StoreConfig

    config = config or IngestConfig()
    store = store if isinstance(store, StoreConfig) else StoreConfig(uri=str(store))
    jobs, problems = jobs_from_paths([str(p) for p in paths], config)
    return run_jobs(jobs, store, config, ray_config, problems=problems, progress=progress, force=force)
