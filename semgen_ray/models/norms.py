"""Normalisation layers by name (SPEC.md §4.1; ARCHITECTURE.md "Decisions": normalisation layer).

``batch``     :class:`torch.nn.BatchNorm3d`: batch statistics in training, running statistics in eval.
``cont_bn``   :class:`ContBatchNorm3d`: batch statistics always (the reference ``ContBatchNorm3d``).
``group``     :class:`torch.nn.GroupNorm` with ``gcd(8, channels)`` groups.
``instance``  :class:`torch.nn.InstanceNorm3d` with affine parameters, no running statistics.

``batch`` and ``cont_bn`` have the same parameters and buffers (``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``), so one state dict loads into either.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = 8
"""GroupNorm groups (fewer when the channel count is not a multiple: ``gcd(GROUPS, channels)``)."""


class ContBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d that normalises with the statistics of the current batch, in train *and* eval mode.

    This is the reference behaviour (SPEC.md §4.1): outputs depend on what else is in the batch and a
    batch of one cube is normalised by itself. Running statistics are still tracked, in training
    mode only (the reference also updates them during evaluation, a side effect we leave out), so a
    checkpoint trained with ``cont_bn`` can be evaluated later with ordinary ``batch`` norm.
    Defaults match PyTorch: momentum 0.1, eps 1e-5.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        running_mean = running_var = None
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            running_mean, running_var = self.running_mean, self.running_var
        return F.batch_norm(x, running_mean, running_var, self.weight, self.bias, True, factor, self.eps)


def _group(channels: int) -> nn.Module:
    return nn.GroupNorm(math.gcd(GROUPS, channels), channels)


def _instance(channels: int) -> nn.Module:
    return nn.InstanceNorm3d(channels, affine=True)


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm3d,
    "cont_bn": ContBatchNorm3d,
    "group": _group,
    "instance": _instance,
}


def make_norm(name: str, channels: int) -> nn.Module:
    """A normalisation layer for ``channels`` feature maps.

    Args:
        name: ``batch``, ``cont_bn``, ``group`` or ``instance``.
        channels: number of channels.

    Raises:
        ValueError: unknown name.
    """
    try:
        factory = NORMS[name]
    except KeyError:
        raise ValueError(f"unknown norm {name!r}; choose one of {sorted(NORMS)}") from None
    return factory(channels)
