"""The step engine every training loop drives: DeepSpeed, or plain torch behind the same calls.

Auto-encoder training, pretraining and fine-tuning hand a built model and a torch optimizer to
:func:`build_engine` and then only call what DeepSpeed's engine offers: ``engine(x)``,
``engine.backward(loss)``, ``engine.set_gradient_accumulation_boundary(last)``, ``engine.step()``,
``engine.module``, ``train()`` / ``eval()``, ``save_checkpoint(dir, tag, client_state)`` and
``load_checkpoint(dir, tag)``. So one checkpoint format (:mod:`~semgen_ray.engine.checkpoint`) and
one fp32 export (:mod:`~semgen_ray.engine.fp32_weights`) serve all three.

- ``deepspeed``: ZeRO stages 0-3; bf16, fp16 (dynamic loss scaling, GPUs only) or fp32, the
  optimizer stepping fp32 master weights; needs a process group (Ray Train sets one up;
  :func:`ensure_process_group` makes a one-rank group for a lone process such as a Tune trial).
- ``torch``: plain torch, DDP when the process group has several ranks; bf16 as autocast over
  fp32 weights. Its checkpoint has DeepSpeed's ZeRO-0 fp32 layout (``<tag>/mp_rank_00_model_states.pt``
  with the module, ``<tag>/optimizer.pt``, ``latest``), so every reader of checkpoints reads both.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("torch", "deepspeed")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
MODEL_STATES = "mp_rank_00_model_states.pt"
OPTIMIZER_STATES = "optimizer.pt"


@dataclass(frozen=True)
class EngineSettings:
    """How a loop trains, in the fields :func:`~semgen_ray.engine.deepspeed_config.deepspeed_config`
    reads (pretraining passes its ``TrainConfig``, which has them all)."""

    batch_size: int
    lr: float = 1e-3
    optimizer: str = "adam"
    precision: str = "fp32"
    zero_stage: int = 0
    grad_accum: int = 1


@dataclass
class Engine:
    """A built step engine: the engine, its (DeepSpeed-wrapped) optimizer, the precision it trains
    in, the dtype its inputs must have, and the autocast context of a loop that calls the module's
    own methods (``engine.module.encode``) instead of ``engine(x)``."""

    engine: object
    optimizer: object
    precision: str
    dtype: object

    def autocast(self):
        return getattr(self.engine, "autocast", contextlib.nullcontext)()


def check_engine(backend: str, precision: str, zero_stage: int = 0) -> None:
    """Raise ``ValueError`` unless the step engine can train this way: a known back end and
    precision, fp16 and ZeRO only on DeepSpeed (the torch engine has neither loss scaling nor shards)."""
    if backend not in BACKENDS:
        raise ValueError(f"engine must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, got {precision!r}")
    if backend == "torch" and (precision == "fp16" or zero_stage):
        raise ValueError("fp16 and ZeRO stages need engine='deepspeed'")
    if not 0 <= zero_stage <= 3:
        raise ValueError(f"zero_stage must be 0..3, got {zero_stage}")


def allreduce_sum(values, device):
    """Sum a list of floats over ranks (float64; gloo-friendly CPU tensors on CPU)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def agreed_precision(requested: str, device) -> str:
    """The precision every rank trains in: ``auto`` is bf16 only if every rank's device computes it
    natively (a collective); an explicit precision is kept."""
    from semgen_ray.engine.deepspeed_config import native_bf16, resolve_precision

    if requested != "auto":
        return requested
    lacking = allreduce_sum([0.0 if native_bf16(device.type == "cuda") else 1.0], device)[0]
    return resolve_precision(requested, native=lacking == 0)


def ensure_process_group() -> None:
    """A one-rank gloo process group on 127.0.0.1 when this process has none (DeepSpeed needs one).

    It stays for the life of the process: DeepSpeed caches the groups it derives from it, so a later
    engine in the same process (the next trial of a reused Tune actor) needs the same group. The
    variables DeepSpeed reads (``LOCAL_RANK``, ``RANK``, ``WORLD_SIZE``) are set where missing."""
    import os
    import socket

    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    for name in ("LOCAL_RANK", "RANK"):
        os.environ.setdefault(name, "0")
    os.environ.setdefault("WORLD_SIZE", "1")


class TorchEngine:
    """Plain torch behind DeepSpeed's engine calls (see the module docstring)."""

    def __init__(self, module, optimizer, precision: str, device) -> None:
        import torch
        import torch.distributed as dist

        self.module, self.optimizer, self.device = module, optimizer, device
        self.network = module
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.network = DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)
        self.autocast = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) \
            if precision == "bf16" else contextlib.nullcontext
        self.boundary = True

    def __call__(self, *args):
        with self.autocast():
            return self.network(*args)

    def train(self, mode: bool = True):
        self.network.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def backward(self, loss) -> None:
        loss.backward()

    def set_gradient_accumulation_boundary(self, boundary: bool) -> None:
        self.boundary = boundary

    def step(self) -> None:
        """An optimizer step at an accumulation boundary (gradients cleared after it)."""
        if self.boundary:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def save_checkpoint(self, directory, tag: str, client_state: dict) -> None:
        """Rank 0 writes the module (with the client state) and the optimizer in DeepSpeed's ZeRO-0 layout."""
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        d = Path(directory) / tag
        d.mkdir(parents=True, exist_ok=True)
        module = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        torch.save({"module": module, "client_state": client_state}, d / MODEL_STATES)
        torch.save(self.optimizer.state_dict(), d / OPTIMIZER_STATES)
        (Path(directory) / "latest").write_text(tag)

    def load_checkpoint(self, directory, tag: str, load_optimizer_states: bool = True, **_):
        """``(path, client_state)`` of a checkpoint :meth:`save_checkpoint` wrote (weights-only loads)."""
        import torch

        d = Path(directory) / tag
        saved = torch.load(d / MODEL_STATES, map_location="cpu", weights_only=True)
        self.module.load_state_dict(saved["module"])
        if load_optimizer_states:
            self.optimizer.load_state_dict(torch.load(d / OPTIMIZER_STATES, map_location="cpu", weights_only=True))
        return str(d), saved["client_state"]


def build_engine(model, settings, backend: str, device, precision: str | None = None) -> Engine:
    """Wrap ``model`` (built, on the CPU) and a fresh optimizer from ``settings`` in a step engine.

    ``precision`` (default ``settings.precision``; ``auto`` agreed over ranks) decides the dtype:
    DeepSpeed holds 16-bit parameters and buffers with fp32 masters; the torch engine keeps fp32
    weights and runs bf16 by autocast, so its inputs stay fp32.
    """
    import torch

    from semgen_ray.engine.deepspeed_config import deepspeed_config, make_optimizer

    check_engine(backend, precision or settings.precision, settings.zero_stage)
    precision = agreed_precision(precision or settings.precision, device)
    if backend == "torch":
        model = model.to(device)
        optimizer = make_optimizer(settings, model.parameters())
        return Engine(TorchEngine(model, optimizer, precision, device), optimizer, precision, torch.float32)
    import deepspeed

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    model = model.to(dtype)  # parameters and buffers (BatchNorm statistics) in the training dtype
    optimizer = make_optimizer(settings, model.parameters())
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # no JIT build of the CPU shm op
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=deepspeed_config(settings, device.type == "cuda", precision),
        dist_init_required=False)
    return Engine(engine, optimizer, precision, dtype)


__all__ = ["BACKENDS", "PRECISIONS", "Engine", "EngineSettings", "TorchEngine", "agreed_precision", "allreduce_sum",
           "build_engine", "check_engine", "ensure_process_group"]
