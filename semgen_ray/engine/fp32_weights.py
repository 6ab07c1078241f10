"""fp32 model weights of a pretraining checkpoint: DeepSpeed's master weights, at every ZeRO stage.

With bf16 (or fp16) the module trains in 16 bits and the optimizer steps fp32 master copies; the
export takes the masters, so its values carry the full precision the optimizer reached.

- ZeRO-1/2/3: the masters are partitioned over the optimizer shards; DeepSpeed's
  ``zero_to_fp32`` reassembles them.
- ZeRO-0: the mixed-precision optimizer wrapper's state in ``mp_rank_00_model_states.pt`` holds them,
  per parameter (``fp32_groups``, the wrapper of a torch optimizer) or as one flat tensor per
  parameter group (``fp32_groups_flat``), in the module's parameter order. In fp32 there is no
  wrapper: the module itself is the master.

Buffers (BatchNorm statistics) have no master; they come from the module, cast to fp32.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """A checkpoint's weights cannot be exported; the message says why."""


def fp32_state_dict(checkpoint_dir: str | os.PathLike, zero_stage: int) -> dict:
    """fp32 model weights of a pretraining checkpoint (the master weights, not the bf16 copies).

    Raises:
        ExportError: the checkpoint fails its integrity or weights-only check, or its masters do
            not match the module's parameters.
    """
    from semgen_ray.engine.checkpoint import DS_TAG, verify_checkpoint

    d = Path(checkpoint_dir)
    problem = verify_checkpoint(d)  # DeepSpeed's reader unpickles: only after a weights-only check
    if problem is not None:
        raise ExportError(f"cannot export from {d}: {problem}")
    if zero_stage >= 1:
        import contextlib
        import io

        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        said = io.StringIO()  # its progress lines and bar print to the console: to the debug log instead
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            state = get_fp32_state_dict_from_zero_checkpoint(str(d), tag=DS_TAG)
        logger.debug(said.getvalue())
    else:
        state = _stage0_state(d / DS_TAG / "mp_rank_00_model_states.pt")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _stage0_state(model_file: Path) -> dict:
    """The module's state with every trained parameter replaced by its fp32 master (ZeRO-0)."""
    import torch

    from semgen_ray.engine.checkpoint import weights_only_globals

    with torch.serialization.safe_globals(weights_only_globals()):
        saved = torch.load(model_file, map_location="cpu", weights_only=True)
    module, wrapper = dict(saved["module"]), saved.get("optimizer") or {}
    masters = _flat_masters(wrapper)
    if masters is None:  # fp32 training: no mixed-precision wrapper, the module is the master
        return module
    buffers = set(saved.get("buffer_names") or ())
    names = [k for k in module if k not in buffers]
    sizes = [module[k].numel() for k in names]
    if sum(sizes) != masters.numel():
        raise ExportError(f"{model_file}: {masters.numel()} fp32 master values for {sum(sizes)} parameter values "
                          "(frozen parameters or several parameter groups out of the module's order?)")
    for name, values in zip(names, masters.split(sizes)):
        module[name] = values.view(module[name].shape).clone()
    return module


def _flat_masters(wrapper_state: dict):
    """All fp32 masters of a ZeRO-0 mixed-precision optimizer's state as one flat tensor, or None."""
    import torch

    if wrapper_state.get("fp32_groups"):  # unfused wrapper: one master per parameter
        pieces = [t.reshape(-1) for group in wrapper_state["fp32_groups"] for t in group]
    elif wrapper_state.get("fp32_groups_flat"):  # fused wrapper: one flat master per group
        pieces = [t.reshape(-1) for t in wrapper_state["fp32_groups_flat"]]
    else:
        return None
    return torch.cat([p.float() for p in pieces])
