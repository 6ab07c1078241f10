"""Every path of a run, resolved once from its config (docs/design.md, "Stages and artefacts").

Paths of the config (``store.uri``, the evaluation's weights and target store) are taken as given
when absolute or a URI, else inside the run folder (:func:`semgen_ray.runfolder.inside`); a relative
path with ``..`` is refused. The run folder itself is a local path or a URI alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from semgen_ray.stages import StageError


def _inside(run_dir: str, path: str, absolute: bool = False) -> str:
    from semgen_ray import runfolder

    try:
        return runfolder.inside(run_dir, path, absolute=absolute)
    except runfolder.RunFolderError as err:
        raise StageError(str(err)) from err


@dataclass(frozen=True)
class RunLayout:
    """The run folder's artefacts: ``config.yaml``, ``stream.json``, ``discovery/`` (with
    ``patterns.parquet``), ``train/`` (``train_<objective>/`` for the evaluation's baselines),
    ``evaluate/`` and ``target.zarr``; ``store`` is the volume store of the run."""

    run_dir: str
    store: str
    objective: str = "semantic_genesis"

    @classmethod
    def of(cls, config) -> RunLayout:
        """The layout of ``config``'s run (``run_dir``, ``store.uri``, ``train.objective``)."""
        return cls(str(config.run_dir), _inside(str(config.run_dir), config.store.uri), config.train.objective)

    def path(self, *parts: str) -> str:
        """``parts`` inside the run folder."""
        return _inside(self.run_dir, "/".join(parts))

    def absolute(self, path: str) -> str:
        """A configured ``path`` as an absolute path or URI (Ray Train and Tune work in their own
        working directories)."""
        return _inside(self.run_dir, str(path), absolute=True)

    @property
    def config_file(self) -> str:
        return self.path("config.yaml")

    @property
    def stream_record(self) -> str:
        return self.path("stream.json")

    @property
    def discovery(self) -> str:
        return self.path("discovery")

    @property
    def patterns(self) -> str:
        """The pattern manifest that self-discovery writes and pretraining reads."""
        return self.path("discovery", "patterns.parquet")

    def train(self, objective: str | None = None) -> str:
        """The pretraining folder of ``objective`` (``train/`` for the run's own objective)."""
        return self.path("train" if objective in (None, self.objective) else f"train_{objective}")

    @property
    def evaluate(self) -> str:
        return self.path("evaluate")


def train_storage(train_dir: str, storage_path: str) -> str:
    """Ray Train's storage of a pretraining folder: ``train.storage_path`` as given when absolute or a
    URI, else inside ``train_dir`` (a local folder or a URI: Ray Train writes checkpoints to object
    stores through pyarrow); always absolute, since Ray Train works in its own directory."""
    return _inside(str(train_dir), str(storage_path), absolute=True)


__all__ = ["RunLayout", "train_storage"]
