"""Writing a phantom cohort into a volume store through the ingest runner (one Ray task each)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from semgen_ray.config.schema import IngestConfig, PhantomConfig, RayConfig, StoreConfig


@lru_cache(maxsize=1)
def generator_digest() -> str:
    """Hash of the generator's source code: a changed generator re-generates stored phantoms."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def phantom_id(index: int) -> str:
    return f"phantom_{index:05d}"


@dataclass(frozen=True)
class PhantomJob:
    """One synthetic patient, a pure function of (cohort seed, index, shape)."""

    index: int
    seed: int
    shape: tuple[int, int, int]

    @property
    def patient_id(self) -> str:
        return phantom_id(self.index)

    @property
    def source(self) -> str:
        return f"phantom://seed{self.seed}/{self.index}"

    def fingerprint(self) -> str:
        spec = json.dumps({"seed": self.seed, "index": self.index, "shape": list(self.shape),
                           "generator": generator_digest()}, sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()

    def load(self, config: IngestConfig):
        from semgen_ray.ingest.jobs import Item
        from semgen_ray.phantoms import generate_patient

        volume, label, nodules = generate_patient(self.index, cohort_seed=self.seed, shape=self.shape)
        volume.extra["nodules"] = nodules
        return [Item(self.patient_id, volume, label)]


def radiograph_id(index: int) -> str:
    return f"xray_{index:05d}"


@dataclass(frozen=True)
class RadiographJob(PhantomJob):
    """One patient's PA chest radiograph (:mod:`semgen_ray.phantoms.radiograph`), a 2D image labelled
    with its nodules' projected ids (``extra``: their boxes)."""

    @property
    def patient_id(self) -> str:
        return radiograph_id(self.index)

    @property
    def source(self) -> str:
        return f"phantom-radiograph://seed{self.seed}/{self.index}"

    def fingerprint(self) -> str:
        return hashlib.sha256(f"radiograph:{super().fingerprint()}".encode()).hexdigest()

    def load(self, config: IngestConfig):
        from semgen_ray.ingest.jobs import Item
        from semgen_ray.io.image2d import Image2D
        from semgen_ray.phantoms.radiograph import BITS, phantom_radiograph

        from semgen_ray.phantoms import sample_params

        film = phantom_radiograph(self.index, self.seed, self.shape)
        params = sample_params(self.seed, self.index)
        image = Image2D(film.image / float(2 ** BITS - 1), film.pixel_spacing, "DX", self.source,
                        extra={"cohort_seed": self.seed, "index": self.index, "nodule_boxes": film.boxes,
                               "habitus": params.habitus, "habitus_name": params.habitus_name})
        return [Item(self.patient_id, image, film.mask)]


def write_cohort(phantoms: PhantomConfig, store: StoreConfig, ingest: IngestConfig | None = None,
                 ray_config: RayConfig | None = None, progress: bool = True, force: bool = False,
                 radiographs: bool = False):
    """Generate ``phantoms.n`` patients into ``store``; unchanged patients are skipped on re-runs
    (``force``: generated and stored again). ``radiographs``: their PA chest radiographs instead (2D
    images ``xray_<i>``, :class:`RadiographJob`).

    Returns the :class:`semgen_ray.ingest.IngestReport`.
    """
    from semgen_ray.ingest.runner import run_jobs

    job = RadiographJob if radiographs else PhantomJob
    jobs = [job(i, phantoms.seed, tuple(phantoms.shape)) for i in range(phantoms.n)]
    return run_jobs(jobs, store, ingest or IngestConfig(), ray_config, progress=progress, force=force,
                    label="phantoms", unit="patient")
