"""Normalisation layers by name (docs/method.md §4.1; docs/design.md "Decisions and why": normalisation layer).

Each name builds the 3D layer (the method) or the 2D one (``spatial_dims=2``, the chest-radiograph
variant); the parameters and buffers are the same in both.

``batch``     :class:`torch.nn.BatchNorm3d` / ``2d``: batch statistics in training, running statistics in eval.
``cont_bn``   :class:`ContBatchNorm3d` / :class:`ContBatchNorm2d`: batch statistics always (the
              reference ``ContBatchNorm3d``).
``group``     :class:`torch.nn.GroupNorm` with ``gcd(8, channels)`` groups (any dimension).
``instance``  :class:`torch.nn.InstanceNorm3d` / ``2d`` with affine parameters, no running statistics.

``batch`` and ``cont_bn`` have the same parameters and buffers (``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``), so one state dict loads into either.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from semgen_ray.models.layers import check_spatial_dims, layer_type

GROUPS = 8
"""GroupNorm groups (fewer when the channel count is not a multiple: ``gcd(GROUPS, channels)``)."""


class _BatchStatistics:
    """Mixin for a torch BatchNorm class: normalise with the current batch's statistics in eval too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        running_mean = running_var = None
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            running_mean, running_var = self.running_mean, self.running_var
        return F.batch_norm(x, running_mean, running_var, self.weight, self.bias, True, factor, self.eps)


class ContBatchNorm3d(_BatchStatistics, nn.BatchNorm3d):
    """BatchNorm3d that normalises with the statistics of the current batch, in train *and* eval mode.

    This is the reference behaviour (docs/method.md §4.1): outputs depend on what else is in the batch and a
    batch of one cube is normalised by itself. Running statistics are still tracked, in training
    mode only (the reference also updates them during evaluation, a side effect we leave out), so a
    checkpoint trained with ``cont_bn`` can be evaluated later with ordinary ``batch`` norm.
    Defaults match PyTorch: momentum 0.1, eps 1e-5.
    """


class ContBatchNorm2d(_BatchStatistics, nn.BatchNorm2d):
    """:class:`ContBatchNorm3d` for 2D feature maps (N, C, X, Y): batch statistics in eval too."""


_CONT_BN = {2: ContBatchNorm2d, 3: ContBatchNorm3d}


def _batch(channels: int, spatial_dims: int) -> nn.Module:
    return layer_type("batch_norm", spatial_dims)(channels)


def _cont_bn(channels: int, spatial_dims: int) -> nn.Module:
    return _CONT_BN[check_spatial_dims(spatial_dims)](channels)


def _group(channels: int, spatial_dims: int) -> nn.Module:
    check_spatial_dims(spatial_dims)
    return nn.GroupNorm(math.gcd(GROUPS, channels), channels)


def _instance(channels: int, spatial_dims: int) -> nn.Module:
    return layer_type("instance_norm", spatial_dims)(channels, affine=True)


NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "batch": _batch,
    "cont_bn": _cont_bn,
    "group": _group,
    "instance": _instance,
}
"""Norm builders by name, each called as ``builder(channels, spatial_dims)``."""


def make_norm(name: str, channels: int, spatial_dims: int = 3) -> nn.Module:
    """A normalisation layer for ``channels`` feature maps.

    Args:
        name: ``batch``, ``cont_bn``, ``group`` or ``instance``.
        channels: number of channels.
        spatial_dims: 3 (volumes, default) or 2 (images).

    Raises:
        ValueError: unknown name or unsupported ``spatial_dims``.
    """
    try:
        factory = NORMS[name]
    except KeyError:
        raise ValueError(f"unknown norm {name!r}; choose one of {sorted(NORMS)}") from None
    return factory(channels, spatial_dims)
