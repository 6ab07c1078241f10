"""Restoration pairs for Ray Data: a batch of cubes → (corrupted input, restoration target).

The corruption (docs/method.md §3) runs in the read pipeline with the numpy back end
(``ds.map_batches(restoration_pairs, fn_kwargs=...)``), or on the training device with the torch
back end. Each sample's draws derive from (run seed, epoch, sample id), so the same cube gets the
same corruption whichever worker, batch or rank sees it, and a fixed epoch gives the fixed
validation corruptions of docs/design.md's decisions. A dataset that Ray Train re-reads every epoch
takes the epoch from an epoch clock (:mod:`semgen_ray.data.epoch_clock`), so its corruptions are
fresh every epoch and still a function of the run seed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def _corruption(policy):
    """The numpy corruption of ``policy`` (a frozen, hashable policy or a preset name), made once per worker."""
    from semgen_ray.transforms import make_corruption

    return make_corruption(policy, backend="numpy")


def restoration_pairs(batch: dict, policy="sg", run_seed: int = 0,
                      epoch: int | None = 0, id_column: str = "box_index", target: str = "original",
                      epoch_clock: str | None = None, warmup_epochs: int = 0, keep_cube: bool = False) -> dict:
    """``map_batches`` body: replace ``cube`` (N, X, Y, Z) by ``input`` and ``target`` (N, 1, X, Y, Z).

    Args:
        batch: a numpy batch with a ``cube`` column and a per-sample id column.
        policy: the run's :class:`~semgen_ray.transforms.CorruptionPolicy` object
            (``config.train.corruption_policy``, handed over as it is), or a preset name.
        run_seed, epoch: with the sample id, the seed of each sample's draws. ``epoch=None`` draws a
            fresh nonce (OS entropy) for the batch instead, so every pass of a re-executed dataset
            gets new corruptions; the per-sample seeds are then recorded in an int64 ``seed``
            column (the uint64 bit pattern), from which any cube's corruption can be replayed.
        id_column: the column holding a stable sample id (``box_index`` of ``read_crops`` rows, or the
            pattern manifest's row id).
        target: ``original`` (the un-deformed cube, the reference) or ``deformed``.
        epoch_clock: name of an epoch clock (:mod:`semgen_ray.data.epoch_clock`): the epoch is read
            from it for every batch (``epoch`` is then ignored). For a dataset re-read every epoch.
        warmup_epochs: with ``epoch_clock``: in epochs 1..``warmup_epochs`` (the classification
            warm-up, :mod:`semgen_ray.train.objectives`) the batch passes through uncorrupted, with its
            ``cube`` column and no ``input`` / ``target``.
        keep_cube: keep the uncorrupted ``cube`` column next to ``input`` and ``target`` (validation
            batches serve both the warm-up and the joint phase).

    Returns:
        the batch without ``cube`` (unless ``keep_cube``), with float32 ``input`` and ``target``.
    """
    from semgen_ray.transforms import sample_seed

    if epoch_clock is not None:
        from semgen_ray.data.epoch_clock import current_epoch

        epoch = current_epoch(epoch_clock)
        if epoch <= warmup_epochs:
            return batch
    corruption = _corruption(policy)
    cubes = np.asarray(batch["cube"], dtype=np.float32)[:, None]
    pass_id = int(np.random.SeedSequence().entropy % 2**63) if epoch is None else epoch
    seeds = np.array([sample_seed(run_seed, pass_id, int(i)) for i in batch[id_column]], dtype=np.uint64)
    corrupted, params = corruption(cubes, seeds)
    out = {k: v for k, v in batch.items() if keep_cube or k != "cube"}
    if epoch is None:
        out["seed"] = seeds.view(np.int64)
    out["input"] = corrupted
    out["target"] = corruption.target(cubes, params, deformed=(target == "deformed"))
    return out
