"""The exported weights are DeepSpeed's fp32 master weights at every ZeRO stage (one process, gloo)."""


import pytest
import torch

from semgen_ray.config import load_config
from semgen_ray.engine.checkpoint import DS_TAG, write_rank_files
from semgen_ray.engine.fp32_weights import fp32_state_dict

from train_helpers import TINY

#: A small model is enough: the export does not depend on the architecture (batch norm gives buffers).
MODEL = {"width": 4, "depth": 2, "head": "linear", "num_classes": 2}
CUBE = (8, 8, 8)


@pytest.fixture(scope="module")
def process_group():
    """A one-rank gloo process group for ``deepspeed.initialize`` in this process."""
    from semgen_ray.engine.backends import ensure_process_group

    ensure_process_group()  # kept for the process: DeepSpeed caches the groups it derives from it


def _trained_engine(stage: int):
    """A bf16 DeepSpeed engine at ZeRO ``stage`` after three Adam steps (the training loop's setup)."""
    import deepspeed

    from semgen_ray.models import build_model
    from semgen_ray.engine.deepspeed_config import deepspeed_config, make_optimizer

    config = load_config("cpu-tiny", [*TINY, f"train.zero_stage={stage}", "train.batch_size=2", "train.lr=0.01"])
    torch.manual_seed(0)
    model = build_model(None, **MODEL).to(torch.bfloat16)
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    engine, *_ = deepspeed.initialize(model=model, optimizer=make_optimizer(config.train, model.parameters()),
                                      config=deepspeed_config(config.train, gpu=False), dist_init_required=False)
    for _ in range(3):
        restored, logits = engine(torch.rand(2, 1, *CUBE, dtype=torch.bfloat16))
        engine.backward(restored.float().mean() + logits.float().logsumexp(1).mean())
        engine.step()
    return engine


def _masters(engine, stage: int) -> dict:
    """The engine's fp32 master weights by parameter name."""
    from deepspeed.utils import safe_get_full_fp32_param

    if stage > 0:
        return {n: safe_get_full_fp32_param(p) for n, p in engine.module.named_parameters()}
    # ZeRO-0 with bf16: DeepSpeed's mixed-precision wrapper holds the masters (per parameter when
    # unfused, the wrapper of a torch optimizer; one flat tensor per parameter group when fused)
    from torch._utils import _unflatten_dense_tensors

    name = {p: n for n, p in engine.module.named_parameters()}
    wrapper = engine.optimizer
    fp32 = getattr(wrapper, "fp32_groups", None) or [
        _unflatten_dense_tensors(flat, group) for flat, group in zip(wrapper.fp32_groups_flat, wrapper.fp16_groups)]
    return {name[p]: t for group, masters in zip(wrapper.fp16_groups, fp32) for p, t in zip(group, masters)}


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_the_export_holds_the_fp32_master_weights(process_group, tmp_path, stage):
    engine = _trained_engine(stage)
    masters = _masters(engine, stage)
    # the masters carry more than bf16 precision: a bf16 copy would not match them
    assert any(not torch.equal(m, m.bfloat16().float()) for m in masters.values())
    engine.save_checkpoint(str(tmp_path), tag=DS_TAG)
    write_rank_files(tmp_path, 0)

    exported = fp32_state_dict(tmp_path, stage)
    assert set(masters) <= set(exported)
    assert {v.dtype for k, v in exported.items() if k in masters} == {torch.float32}
    differ = [k for k, m in masters.items() if not torch.equal(exported[k], m.float())]
    assert not differ, f"ZeRO-{stage}: {len(differ)} of {len(masters)} tensors are not the fp32 masters: {differ[:3]}"
