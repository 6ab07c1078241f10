"""Ray Data plumbing shared by the readers: a list of read tasks → a ``ray.data.Dataset``.

A read task is a small picklable :class:`ReadSpec` (a module-level function plus its arguments: the
store URI, a patient id, that patient's slice of the box table). Every task opens the store itself,
so nothing large travels from the driver, and the same code runs in local mode and on a cluster.

Construction: ``ray.data.read_datasource`` over a ``StoreDatasource`` (one ``ReadTask`` per spec,
with a row count and a byte estimate so the streaming executor can budget memory). The alternative,
``from_items(pickled specs).map_batches(run)``, is kept behind ``construction="items"`` for the
benchmark that compared them (``benchmarks/crop_read.py``; numbers in :mod:`semgen_ray.data`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Target bytes of one output block (Ray's default target maximum block size is 128 MiB).
BLOCK_BYTES = 64 * 1024**2


@dataclass
class ReadSpec:
    """One read task: ``fn(**kwargs)`` yields ``pyarrow.Table`` blocks of ``num_rows`` rows in all."""

    fn: Callable[..., Iterator[Any]]
    kwargs: dict = field(default_factory=dict)
    num_rows: int = 0
    size_bytes: int = 0

    def __call__(self) -> Iterator[Any]:
        yield from self.fn(**self.kwargs)


@functools.lru_cache(maxsize=8)
def cached_store(uri: str):
    """One read-only store handle per URI and worker process (the open costs a metadata read)."""
    from semgen_ray.store import open_store

    return open_store(uri)


def _datasource_class():
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class StoreDatasource(Datasource):
        """A fixed list of :class:`ReadSpec` as Ray ``ReadTask`` s (one block stream each).

        With ``order=(run_seed, epoch_clock)`` the tasks are permuted every pass by a seed from
        (run seed, the clock's epoch): Ray asks for the read tasks when a pass starts, after the
        Train ranks set the clock, so with ``preserve_order`` an epoch's block order is a function of
        the seed and the epoch alone, and a resumed epoch re-reads its blocks in the same order.
        """

        def __init__(self, specs: Sequence[ReadSpec], name: str, order: tuple[int, str] | None = None):
            self._specs = list(specs)
            self._name = name
            self._order = order

        def _ordered_specs(self) -> list:
            if self._order is None:
                return self._specs
            import numpy as np

            from semgen_ray.data.epoch_clock import peek_epoch

            run_seed, clock = self._order
            epoch = peek_epoch(clock)  # unset (a schema or size probe before training): epoch 0
            rng = np.random.default_rng(np.random.SeedSequence([int(run_seed), int(epoch or 0), 0xB10C]))
            return [self._specs[i] for i in rng.permutation(len(self._specs))]

        def get_name(self) -> str:
            return self._name

        def estimate_inmemory_data_size(self) -> int:
            return int(sum(s.size_bytes for s in self._specs))

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context=None) -> list:
            # One task per spec whatever `parallelism` says: a spec is the unit that reads a region once.
            return [
                ReadTask(s, BlockMetadata(num_rows=int(s.num_rows), size_bytes=int(s.size_bytes),
                                          input_files=None, exec_stats=None),
                         per_task_row_limit=per_task_row_limit)
                for s in self._ordered_specs()
            ]

    return StoreDatasource


def _run_pickled(batch):
    """``map_batches`` body of the from_items construction: run each pickled spec of the batch."""
    import pickle

    for blob in batch["spec"].to_pylist():
        yield from pickle.loads(blob)()


def build_dataset(specs: Sequence[ReadSpec], name: str, *, num_cpus: float = 1.0,
                  concurrency: int | None = None, ray_remote_args: dict | None = None,
                  construction: str = "datasource", order: tuple[int, str] | None = None):
    """Turn read specs into a lazy ``ray.data.Dataset`` (see the module docstring).

    ``order``: ``(run_seed, epoch_clock_name)`` permutes the read tasks every pass by (run seed,
    epoch) (``StoreDatasource``; datasource construction only); ``None`` keeps the spec order.
    """
    import ray

    remote = dict(ray_remote_args or {})
    if order is not None and construction != "datasource":
        raise ValueError("order= needs construction='datasource'")
    if construction == "datasource":
        ds_cls = _datasource_class()
        return ray.data.read_datasource(
            ds_cls(specs, name, order), override_num_blocks=max(1, len(specs)), num_cpus=num_cpus,
            concurrency=concurrency, ray_remote_args=remote or None,
        )
    if construction == "items":
        import pickle

        items = [{"spec": pickle.dumps(s)} for s in specs]
        compute = ray.data.TaskPoolStrategy(size=concurrency) if concurrency else None
        return ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
            _run_pickled, batch_size=1, batch_format="pyarrow", num_cpus=num_cpus, compute=compute, **remote,
        )
    raise ValueError(f"construction must be 'datasource' or 'items', got {construction!r}")
