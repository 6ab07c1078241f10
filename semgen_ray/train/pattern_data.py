"""Ray Data inputs of pretraining: the pattern manifest's cubes, cut from the store on read (docs/method.md §2.4).

The train and validation rows of the manifest become two lazy datasets of ``read_crops`` (one read
per patient for all its crops; resolutions 2-3 resized to the cube size) with only the numeric columns
the loop needs (``cube``, ``row_id``, ``class_id``). With ``train.corrupt_on=data`` the corruption runs
here, on Ray Data CPU workers (:func:`semgen_ray.data.restoration_pairs`): training cubes get fresh
draws every epoch, seeded by (run seed, epoch, row id) with the epoch read from the run's epoch clock
(:mod:`semgen_ray.data.epoch_clock`; without a clock each pass draws OS entropy and records the seeds
per cube), validation cubes the same draws all run (seed epoch :data:`semgen_ray.train.loop.VAL_EPOCH`).
During the classification warm-up (``train.cls_warmup_epochs``) training cubes pass through
uncorrupted and validation rows keep their uncorrupted ``cube`` next to ``input`` / ``target``.

Order: the training patients (one read task and block each) are read in a new order every epoch,
seeded by (run seed, the clock's epoch) (``read_crops(order=...)``; without a clock:
``randomize_block_order`` seeded by the run seed and Ray Data's execution count); Train workers
shuffle rows further in a local buffer seeded by (run seed, epoch, rank) (:mod:`semgen_ray.train.loop`),
and the trainer asks Ray Data to preserve order, so the rows each rank sees, and their order, follow
from the seeds alone, and a resumed epoch re-reads its rows in the order it had.
"""

from __future__ import annotations

from dataclasses import dataclass

from semgen_ray.config.schema import SemGenConfig

COLUMNS = ("cube", "row_id", "class_id")


class PretrainDataError(ValueError):
    """The pattern manifest cannot feed pretraining (empty split, unknown patients, bad classes)."""


@dataclass(frozen=True)
class PatternData:
    """The two datasets and what the trainer needs to know about them."""

    train: object
    val: object
    num_classes: int
    train_rows: int
    val_rows: int
    config_hash: str | None


def pattern_datasets(config: SemGenConfig, store_uri: str, manifest_path: str,
                     epoch_clock: str | None = None) -> PatternData:
    """Datasets of the manifest's train / val cubes (corrupted here when ``corrupt_on=data``).

    ``epoch_clock``: the name of the run's epoch clock (see the module docstring).
    """
    import pyarrow.compute as pc
    from ray.data import RandomSeedConfig

    from semgen_ray.data import read_crops, restoration_pairs
    from semgen_ray.discovery.pattern_manifest import read_manifest
    from semgen_ray.train.loop import VAL_EPOCH
    from semgen_ray.train.objectives import objective, warmup_epochs

    table = read_manifest(manifest_path)
    hashes = set(table.column("config_hash").to_pylist())
    splits = {s: table.filter(pc.equal(table.column("split"), s)) for s in ("train", "val")}
    for name, part in splits.items():
        if part.num_rows == 0:
            raise PretrainDataError(f"{manifest_path}: no {name} rows; re-run discovery with K > 0 for {name}")
    classes = sorted(set(table.column("class_id").to_pylist()))
    if classes != list(range(len(classes))):
        raise PretrainDataError(f"{manifest_path}: class ids must be 0..C-1, got {classes[:10]}…")
    t = config.train
    obj = objective(t.objective)
    cube = tuple(config.data.cube_size)
    warmup = warmup_epochs(t.objective, t.cls_warmup_epochs)

    def cubes(part, train: bool):
        order = (int(config.seed), epoch_clock) if train and epoch_clock else None
        ds = read_crops(store_uri, part, cube, columns=COLUMNS, num_cpus=config.data.read_cpus, order=order)
        if train and order is None:
            ds = ds.randomize_block_order(seed=RandomSeedConfig(seed=int(config.seed), reseed_after_execution=True))
        if t.corrupt_on == "data" and obj.corrupts:
            fixed = not train and t.fixed_val_corruption
            ds = ds.map_batches(
                restoration_pairs, batch_format="numpy", batch_size=16, num_cpus=config.data.read_cpus,
                fn_kwargs={"policy": t.corruption_policy,  # the run's policy object, pickled to the workers
                           "run_seed": config.seed, "epoch": VAL_EPOCH if fixed else None,
                           "epoch_clock": None if fixed else epoch_clock, "warmup_epochs": warmup,
                           "keep_cube": fixed and warmup > 0, "id_column": "row_id", "target": t.target})
        return ds

    return PatternData(cubes(splits["train"], True), cubes(splits["val"], False), len(classes),
                       splits["train"].num_rows, splits["val"].num_rows,
                       next(iter(hashes)) if len(hashes) == 1 else None)
