"""Pretraining is a function of its config and seed, also across a failure: a run whose worker is
killed and resumed sees the same data and ends at the same weights as an uninterrupted one."""

import pytest
import torch
from safetensors.torch import load_file

from semgen_ray.config import load_config
from semgen_ray.train import run_pretraining

from train_helpers import TINY

pytestmark = pytest.mark.usefixtures("ray_local")

RUN = ["train.max_epochs=2", "train.checkpoint_every=2"]


def _run(store, manifest, out, extra=(), **kwargs):
    config = load_config("cpu-tiny", [*TINY, *RUN, *extra])
    rec = run_pretraining(config, store, manifest, str(out), log=lambda *_: None, **kwargs)
    return rec, load_file(f"{rec['export']}/model.safetensors")


def test_a_killed_and_resumed_run_ends_where_an_uninterrupted_one_does(train_store, train_manifest, tmp_path):
    """Rank 1's process dies at step 3; Ray Train restarts the group from the step-2 checkpoint, which
    costs only the step since then, skips the batches of the epoch it had trained on, and the run
    ends bit-identical to an uninterrupted run of the same config.

    Both runs exercise every seeded source at once: two gloo ranks with DeepSpeed ZeRO-2 in bf16,
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
    marker = tmp_path / "killed"
    killed, wk = _run(train_store, train_manifest, tmp_path / "killed_run", ["train.max_failures=1"],
                      fault_injection={"rank": 1, "step": 3, "marker": str(marker)})
    assert marker.read_text() == "killed rank 1 at step 3"
    (resume,) = killed["resumes"]
    assert resume["resumed_at_step"] == 2 and resume["batch_in_epoch"] == 2
    assert killed["steps"] == 8 and killed["epochs"] == 2  # the planned steps, none repeated or lost
    assert killed["history"][0]["resumed_at_batch"] == 2

    whole, ww = _run(train_store, train_manifest, tmp_path / "whole_run")
    assert whole["resumes"] == [] and whole["steps"] == 8 and wk.keys() == ww.keys()
    # the same rows in the same order every epoch (skipped batches of the resume included) ...
    digests = [h["rows_digest"] for h in whole["history"]]
    assert [h["rows_digest"] for h in killed["history"]] == digests and digests[0] != digests[1]
    # ... the same validation results and the same weights
    keys = ("val_loss", "val_rec_loss", "val_cls_loss", "val_acc")
    assert [{k: h[k] for k in keys} for h in killed["history"]] == [{k: h[k] for k in keys} for h in whole["history"]]
    different = [k for k in ww if not torch.equal(wk[k], ww[k])]
    assert different == [], f"{len(different)} tensors differ, e.g. {different[:5]}"
