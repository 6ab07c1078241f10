"""Every ``train.*`` setting changes what a pretraining run does (issue 15: "every option does what it says").

Two runs of :func:`semgen_ray.stages.pretraining.run_pretraining` on 16 training and 4 validation cubes share the
work: ``BASELINE`` (two workers, ZeRO 2, bf16, Adam, a step schedule, Ray Data corruptions) and
``CHANGED`` (one worker, ZeRO 0, fp32, SGD, no schedule, corruptions on the device, ...). Between
them every setting below has another value than the tiny preset gives (``train_helpers.TINY`` over
``cpu-tiny``), and each test reads one setting's effect from what the runs leave behind:
``train.json`` (its history and placement), the DeepSpeed checkpoints and the checkpoint folder.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from semgen_ray.config import load_config
from semgen_ray.stages.pretraining import run_pretraining

from train_helpers import TINY

pytestmark = pytest.mark.slow  # the two runs (their fixtures start the tests' Ray)

#: The values the tiny preset would give where a run does not set them: every one differs from the
#: value one of the two runs sets, so a setting that were ignored would show.
PRESET = {"train.batch_size": 4, "train.grad_accum": 1, "train.lr": 1e-3, "train.schedule": "step",
          "train.gamma": 0.5, "train.patience": 5, "train.lambda_cls": 0.01, "train.lambda_rec": 1.0,
          "train.num_workers": 2, "train.cpus_per_worker": 0.5, "train.precision": "bf16",
          "train.zero_stage": 2, "train.optimizer": "adam", "train.corruption": "sg",
          "train.target": "original", "train.corrupt_on": "auto", "train.fixed_val_corruption": True,
          "train.keep_checkpoints": 2, "train.shuffle_buffer": 8}

BASELINE = {"train.num_workers": 2, "train.cpus_per_worker": 0.5, "train.zero_stage": 2, "train.precision": "bf16",
            "train.optimizer": "adam", "train.batch_size": 4, "train.grad_accum": 1,
            "train.lr": 0.004, "train.schedule": "step", "train.step_epochs": 1, "train.gamma": 0.25,
            "train.lambda_cls": 0.5, "train.lambda_rec": 2.0, "train.patience": 5, "train.max_epochs": 2,
            "train.corruption": "sg", "train.target": "deformed", "train.corrupt_on": "auto",
            "train.fixed_val_corruption": True, "train.keep_checkpoints": 2, "train.shuffle_buffer": 8}

CHANGED = {"train.num_workers": 1, "train.cpus_per_worker": 1.0, "train.zero_stage": 0, "train.precision": "fp32",
           "train.optimizer": "sgd", "train.batch_size": 3, "train.grad_accum": 4,
           "train.lr": 0.002, "train.schedule": "none",
           # no loss at all: nothing is learned, every validation loss is 0 and none improves on the first
           "train.lambda_cls": 0.0, "train.lambda_rec": 0.0, "train.patience": 1, "train.max_epochs": 3,
           "train.corruption": "mg", "train.target": "original", "train.corrupt_on": "device",
           "train.fixed_val_corruption": False, "train.keep_checkpoints": 3, "train.checkpoint_every": 1,
           "train.shuffle_buffer": 0}

TRAIN_PATIENTS, VAL_PATIENTS = 4, 1  # x 4 crops each: 16 training and 4 validation cubes


def _run(store: str, manifest: str, out: Path, settings: dict) -> dict:
    config = load_config("cpu-tiny", [*TINY, *(f"{k}={v}" for k, v in settings.items())])
    return run_pretraining(config, store, manifest, str(out))


@pytest.fixture(scope="module")
def settings_manifest(train_store, train_manifest, tmp_path_factory) -> str:
    """``train_manifest`` cut to four training patients and one validation patient, rows renumbered."""
    from semgen_ray.discovery.pattern_manifest import read_manifest, write_manifest

    rows = read_manifest(train_manifest).to_pylist()
    keep = {split: sorted({r["patient_id"] for r in rows if r["split"] == split})[:n]
            for split, n in (("train", TRAIN_PATIENTS), ("val", VAL_PATIENTS))}
    rows = [dict(r, row_id=i) for i, r in enumerate(r for r in rows if r["patient_id"] in keep[r["split"]])]
    path = tmp_path_factory.mktemp("settings") / "patterns.parquet"
    write_manifest(rows, str(path), {"store": train_store}, config_hash="test")
    return str(path)


@pytest.fixture(scope="module")
def baseline(ray_local, train_store, settings_manifest, tmp_path_factory) -> dict:
    return _run(train_store, settings_manifest, tmp_path_factory.mktemp("baseline") / "run", BASELINE)


@pytest.fixture(scope="module")
def changed(ray_local, train_store, settings_manifest, tmp_path_factory) -> dict:
    return _run(train_store, settings_manifest, tmp_path_factory.mktemp("changed") / "run", CHANGED)


def test_each_setting_differs_from_the_preset_in_a_run():
    """The premise of the tests below: the tiny preset gives ``PRESET``, and one of the runs sets
    another value for every setting, so each one's effect can show."""
    from semgen_ray.config import to_dict

    train = to_dict(load_config("cpu-tiny", TINY).train)
    assert {k: train[k.split(".")[1]] for k in PRESET} == PRESET
    same = [k for k, v in PRESET.items() if BASELINE[k] == v and CHANGED[k] == v]
    assert not same, same


def _ds_files(record: dict) -> Path:
    """The DeepSpeed files of the run's last checkpoint."""
    return Path(record["latest_checkpoint"]) / "ds"


def _model_states(record: dict) -> dict:
    import torch

    return torch.load(_ds_files(record) / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)


def _optimizer_shards(record: dict) -> list[dict]:
    """ZeRO's per-rank optimizer files (none at ZeRO 0), by rank."""
    import torch

    return [torch.load(f, map_location="cpu", weights_only=False)["optimizer_state_dict"]
            for f in sorted(_ds_files(record).glob("*zero_pp_rank_*_optim_states.pt"))]


def test_batch_size_and_grad_accum_set_the_cubes_per_optimizer_step(baseline, changed):
    """``batch_size`` cubes per worker per micro-batch and ``grad_accum`` micro-batches per optimizer
    step, the epoch's last step taking the micro-batches left: the steps of each epoch, and DeepSpeed's
    own step and sample counters (equal to the run's: no gradient is carried into the next epoch)."""
    for record, s in ((baseline, BASELINE), (changed, CHANGED)):
        workers, batch_size, grad_accum = s["train.num_workers"], s["train.batch_size"], s["train.grad_accum"]
        assert record["train_cubes"] == 4 * TRAIN_PATIENTS
        micro_batches = math.ceil(record["train_cubes"] / workers / batch_size)  # per worker and epoch
        per_epoch = math.ceil(micro_batches / grad_accum)
        assert [h["step"] for h in record["history"]] == [per_epoch * e for e in range(1, record["epochs"] + 1)]
        ds = _model_states(record)
        assert ds["global_steps"] == record["steps"]  # DeepSpeed stepped once every grad_accum micro-batches
        assert ds["global_samples"] == record["steps"] * batch_size * grad_accum * workers
    # 8 cubes per worker in batches of 4; 16 cubes in 6 batches of 3 (4 with the preset's batch_size),
    # four and then two per optimizer step (6 steps without grad_accum)
    assert [h["step"] for h in baseline["history"]] == [2, 4]
    assert [h["step"] for h in changed["history"]] == [2, 4]
    assert _model_states(changed)["global_samples"] == 4 * 3 * 4


def _optimizer_lr(record: dict) -> float:
    """The learning rate the optimizer held when the last checkpoint was written (set for the next epoch)."""
    shards = _optimizer_shards(record)
    groups = ([g for shard in shards for g in shard["base_optimizer_state"]["param_groups"]] if shards
              else _model_states(record)["optimizer"]["param_groups"])
    lrs = {g["lr"] for g in groups}
    assert len(lrs) == 1, lrs
    return lrs.pop()


def test_lr_schedule_step_epochs_and_gamma_set_each_epochs_learning_rate(baseline, changed):
    """``lr`` is the first epoch's rate; ``schedule: step`` multiplies it by ``gamma`` every
    ``step_epochs`` epochs, ``schedule: none`` keeps it. Read from the history (the rate each epoch
    trained with) and from the optimizer state in the last checkpoint (the rate set after it)."""
    s = BASELINE
    lr, gamma, step_epochs = s["train.lr"], s["train.gamma"], s["train.step_epochs"]
    assert s["train.schedule"] == "step"
    assert [h["lr"] for h in baseline["history"]] == pytest.approx([lr, lr * gamma])  # 0.004, 0.001
    assert _optimizer_lr(baseline) == pytest.approx(lr * gamma ** (2 // step_epochs))  # after epoch 2
    # the preset's gamma 0.5 would give 0.002, its step_epochs (int(0.8 * patience) = 4) 0.004
    assert baseline["history"][1]["lr"] == pytest.approx(0.001)
    s = CHANGED
    assert s["train.schedule"] == "none"  # step (step_epochs int(0.8 * patience 1) -> 1) would halve it
    assert [h["lr"] for h in changed["history"]] == [s["train.lr"]] * 2
    assert _optimizer_lr(changed) == pytest.approx(s["train.lr"])


def test_lambda_cls_and_lambda_rec_weight_the_loss(baseline, changed):
    """loss = lambda_rec · restoration MSE + lambda_cls · classification CE, on training and
    validation cubes (every term is logged)."""
    for record, s in ((baseline, BASELINE), (changed, CHANGED)):
        lambda_cls, lambda_rec = s["train.lambda_cls"], s["train.lambda_rec"]
        for h in record["history"]:
            for split in ("train", "val"):
                rec, cls = h[f"{split}_rec_loss"], h[f"{split}_cls_loss"]
                assert rec > 0 and cls > 0
                assert h[f"{split}_loss"] == pytest.approx(lambda_rec * rec + lambda_cls * cls, rel=1e-5, abs=1e-12)
    assert all(h["train_loss"] == 0 == h["val_loss"] for h in changed["history"])  # both weights 0


def test_patience_stops_after_that_many_epochs_without_improvement(baseline, changed):
    """``patience: 1``: the second epoch's validation loss (0, as the first: no loss, nothing learned)
    is no improvement, so the run stops there, before ``max_epochs`` (3)."""
    patience = CHANGED["train.patience"]
    assert changed["stopped"] == "patience" and changed["epochs"] == 1 + patience < CHANGED["train.max_epochs"]
    assert [h["bad_epochs"] for h in changed["history"]] == [0, patience] and changed["best_epoch"] == 1
    assert baseline["stopped"] == "max_epochs" and baseline["epochs"] == BASELINE["train.max_epochs"]


def test_num_workers_and_cpus_per_worker_set_the_ray_train_workers(baseline, changed):
    """``num_workers`` Ray Train workers (ranks: one RNG state each in a checkpoint), each holding the
    ``cpus_per_worker`` CPUs Ray reserved for it."""
    for record, s in ((baseline, BASELINE), (changed, CHANGED)):
        num_workers, cpus_per_worker = s["train.num_workers"], s["train.cpus_per_worker"]
        assert len(record["nodes"]) == num_workers
        assert [r["CPU"] for r in record["worker_resources"]] == [cpus_per_worker] * num_workers
        rng = sorted(p.name for p in (Path(record["latest_checkpoint"]) / "rng").iterdir())
        assert rng == [f"rank_{r}.json" for r in range(num_workers)]
    assert [r["CPU"] for r in changed["worker_resources"]] == [1.0]


def test_precision_zero_stage_and_optimizer_shape_the_checkpoint(baseline, changed):
    """``precision``: the dtype of the model DeepSpeed trains (its module state); ``zero_stage``: ZeRO 2
    partitions the optimizer state and gradients over the ranks (one optimizer file per rank), ZeRO 0
    keeps the whole optimizer with the model; ``optimizer``: Adam's moments or SGD's momentum."""
    import torch

    def module_dtypes(record):
        return {v.dtype for v in _model_states(record)["module"].values() if v.is_floating_point()}

    assert BASELINE["train.precision"] == "bf16" and module_dtypes(baseline) == {torch.bfloat16}
    assert CHANGED["train.precision"] == "fp32" and module_dtypes(changed) == {torch.float32}
    assert (baseline["precision"], changed["precision"]) == ("bf16", "fp32")  # what train.json records

    shards = _optimizer_shards(baseline)
    assert len(shards) == BASELINE["train.num_workers"] == 2
    assert all(int(s["zero_stage"]) == BASELINE["train.zero_stage"] == 2 and s["partition_count"] == [2]
               for s in shards)
    assert _optimizer_shards(changed) == [] and CHANGED["train.zero_stage"] == 0
    whole = _model_states(changed)["optimizer"]  # ZeRO 0: the torch optimizer's state, unpartitioned

    assert BASELINE["train.optimizer"] == "adam"
    for s in shards:
        assert {k for state in s["base_optimizer_state"]["state"].values() for k in state} == {
            "step", "exp_avg", "exp_avg_sq"}
    assert CHANGED["train.optimizer"] == "sgd"
    assert {k for state in whole["state"].values() for k in state} == {"momentum_buffer"}
    assert whole["param_groups"][0]["momentum"] == 0.9


def test_corruption_target_corrupt_on_and_fixed_val_corruption_change_what_the_model_is_fed(baseline, changed):
    """What the training loop fed the model, from each epoch's history:

    - ``corrupt_on``: where the inputs were corrupted (Ray Data workers, or the training device;
      ``auto`` on these CPU workers is the Ray Data workers);
    - ``corruption``: the operations applied (recorded when corrupted on the device): ``mg`` flips
      and never deforms elastically, ``sg`` deforms every cube and never flips;
    - ``target``: ``sg`` deforms every input, so an input identical to its target (a 1-voxel local
      shuffle, which changes nothing on these small cubes) means the target was deformed as well;
      with the ``original`` target no input equals its target;
    - ``fixed_val_corruption``: the validation inputs are the same every epoch, or redrawn.
    """
    assert BASELINE["train.corrupt_on"] == "auto" and CHANGED["train.corrupt_on"] == "device"
    assert baseline["corrupt_on"] == "data" and changed["corrupt_on"] == "device"  # auto without GPUs: data
    assert {h["corrupted_on"] for h in baseline["history"]} == {"data"}
    assert {h["corrupted_on"] for h in changed["history"]} == {"device"}

    assert CHANGED["train.corruption"] == "mg"
    for h in changed["history"]:
        ops = h["corruptions"]
        assert ops["flip"] > 0 and ops["elastic_deformation"] == 0, ops
        assert ops["nonlinear_intensity"] > 0 and sum(ops.values()) > 16  # chained: several per cube

    assert BASELINE["train.corruption"] == "sg" and BASELINE["train.target"] == "deformed"
    assert sum(h["unchanged_inputs"] for h in baseline["history"]) > 0

    assert BASELINE["train.fixed_val_corruption"] is True and CHANGED["train.fixed_val_corruption"] is False
    first, second = baseline["history"]
    assert first["val_inputs_digest"] == second["val_inputs_digest"]
    first, second = changed["history"]
    assert first["val_inputs_digest"] != second["val_inputs_digest"]


def _rows_digest(orders: list[list[int]]) -> str:
    """The loop's ``rows_digest`` of the row ids each rank iterated (semgen_ray.train.loop._rows_digest)."""
    ranks = [hashlib.sha256(np.asarray(rows, "<i8").tobytes()).hexdigest() for rows in orders]
    return hashlib.sha256("|".join(ranks).encode()).hexdigest()[:16]


def test_shuffle_buffer_zero_feeds_each_patients_crops_together(changed, settings_manifest):
    """Crops arrive grouped by patient (one read per patient) in a new patient order every epoch; the
    local shuffle buffer mixes them. With ``shuffle_buffer: 0`` the one worker's row order of each
    epoch is some order of the patients, each patient's crops in a row (the preset's buffer of 8
    would interleave them)."""
    from semgen_ray.discovery.pattern_manifest import read_manifest

    assert CHANGED["train.shuffle_buffer"] == 0 and CHANGED["train.num_workers"] == 1
    crops: dict[str, list[int]] = {}
    for r in read_manifest(settings_manifest).to_pylist():
        if r["split"] == "train":
            crops.setdefault(r["patient_id"], []).append(r["row_id"])
    grouped = {_rows_digest([[i for p in order for i in crops[p]]]): order
               for order in itertools.permutations(sorted(crops))}
    orders = [grouped.get(h["rows_digest"]) for h in changed["history"]]
    assert all(orders), "rows of a patient were not fed together"
    assert orders[0] != orders[1]  # a new patient order each epoch


def test_keep_checkpoints_sets_how_many_checkpoints_remain(changed):
    """``keep_checkpoints: 3`` of the 6 written (every step, mid-epoch, and at both epoch ends): the
    two epoch ends (validation loss 0, the latest among them) and one of the mid-epoch ones, which
    rank last (the preset's 2 would keep the epoch ends alone)."""
    folders = sorted(p.name for p in Path(changed["checkpoints"]).glob("step_*"))
    assert len(folders) == CHANGED["train.keep_checkpoints"] == 3, folders
    assert {"step_00000002_epoch_end", "step_00000004_epoch_end"} <= set(folders)
    assert Path(changed["latest_checkpoint"]).name == "step_00000004_epoch_end"
