"""The epoch clock: tells Ray Data workers which training epoch they are producing data for.

Per-sample corruption seeds derive from (run seed, epoch, sample id) (docs/design.md, "Decisions and why").
On the training device the epoch is known; a ``map_batches`` function on a Ray Data CPU worker does
not know it, because Ray Train re-executes the same dataset every epoch. Drawing fresh OS entropy
per pass instead made pretraining irreproducible. The clock is a tiny named actor (no CPU) owned by
the driver of one pretraining run: every Train rank sets the epoch before it starts iterating its
shard, and the corruption function reads it per batch. Ray Data starts a new pass of a
``streaming_split`` only when *all* ranks have asked for it, and ranks only ask after setting the
clock, so every batch of a pass reads that pass's epoch. A restarted worker group sets the clock
again before it re-reads the epoch it resumes, so a resume replays the same corruptions.
"""

from __future__ import annotations

import functools
import uuid


def _clock_class():
    import ray

    @ray.remote(num_cpus=0, max_restarts=-1)
    class EpochClock:
        """Holds one integer: the epoch whose data is being produced (``None`` until set)."""

        def __init__(self) -> None:
            self.epoch = None

        def set(self, epoch: int) -> int:
            self.epoch = int(epoch)
            return self.epoch

        def get(self):
            return self.epoch

    return EpochClock


def create_epoch_clock(prefix: str = "semgen-epoch-clock"):
    """Start a clock actor with a unique name; returns ``(name, handle)`` (keep the handle alive).

    The actor needs no CPU, so Ray could place it on any node; it is kept on the caller's node (the
    driver's, the head node under ``ray job submit``), so losing a worker node does not lose it.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    name = f"{prefix}-{uuid.uuid4().hex[:16]}"
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
    return name, _clock_class().options(name=name, scheduling_strategy=here).remote()


@functools.lru_cache(maxsize=16)
def _handle(name: str):
    import ray

    return ray.get_actor(name)


def set_epoch(name: str, epoch: int) -> None:
    """Set the clock ``name`` to ``epoch`` and wait until it holds it."""
    import ray

    ray.get(_handle(name).set.remote(int(epoch)))


def peek_epoch(name: str):
    """The epoch the clock ``name`` holds, or ``None`` when it is not set yet."""
    import ray

    return ray.get(_handle(name).get.remote())


def current_epoch(name: str) -> int:
    """The epoch the clock ``name`` holds (raises when no rank has set it yet)."""
    import ray

    epoch = ray.get(_handle(name).get.remote())
    if epoch is None:
        raise RuntimeError(f"epoch clock {name!r} was read before any Train rank set it")
    return int(epoch)
