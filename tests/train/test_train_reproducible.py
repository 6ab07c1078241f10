"""Pretraining is a function of its config and seed: the same command twice, the same weights."""

import pytest
import torch
from safetensors.torch import load_file

from semgen_ray.config import load_config
from semgen_ray.train import run_pretraining

from train_helpers import TINY

pytestmark = pytest.mark.usefixtures("ray_local")


def _weights(store, manifest, out):
    config = load_config("cpu-tiny", [*TINY, "train.max_epochs=2"])
    rec = run_pretraining(config, store, manifest, str(out), log=lambda *_: None)
    return rec, load_file(f"{rec['export']}/model.safetensors")


def test_two_runs_with_one_seed_export_the_same_weights(train_store, train_manifest, tmp_path):
    """Two runs of the same config into two folders give bit-identical exported weights.

    The run exercises every seeded source at once: two gloo ranks with DeepSpeed ZeRO-2 in bf16,
    corruptions on Ray Data CPU workers (seeded by run seed, epoch from the epoch clock, row id),
    a per-epoch seeded block order, a local shuffle buffer smaller than the shard (seeded by run seed,
    epoch and rank), Ray Data's preserved order and the order-dependent split between the ranks.

    Tolerance: none (``torch.equal``), measured on this 2-core machine. Every Train worker computes
    with the same fixed number of intra-op threads (Ray sets it from the worker's CPUs), the same
    batches arrive in the same order, and the two-rank gloo all-reduce adds two operands, which is
    order-independent; bf16 rounds the same inputs the same way. What is not promised: equality
    across machines, CPU kinds, thread counts or library versions (other kernels, other reduction
    orders), nor for more than two ranks, where a ring all-reduce may sum in a different order; there
    the weights agree to bf16 precision (relative ~1e-2 per step) at best.
    """
    a, wa = _weights(train_store, train_manifest, tmp_path / "a")
    b, wb = _weights(train_store, train_manifest, tmp_path / "b")
    assert a["steps"] == b["steps"] > 0 and wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert different == [], f"{len(different)} tensors differ, e.g. {different[:5]}"
    keys = ("train_loss", "val_loss", "train_rec_loss", "train_cls_loss", "val_acc")
    assert [{k: h[k] for k in keys} for h in a["history"]] == [{k: h[k] for k in keys} for h in b["history"]]
