"""Layer types by name and spatial dimension: one network class builds 2D or 3D (docs/design.md).

The networks never name ``Conv3d`` or ``Conv2d`` themselves: they ask for ``layer_type("conv", d)``
with the ``spatial_dims`` they were built with. 3D is the method (CT cubes); 2D is the paper's
chest-radiograph variant (224×224 inputs). The module names, and so the state-dict keys, are the
same in both; only the kernel shapes differ (3×3×3 vs 3×3).

>>> layer_type("conv", 2)
<class 'torch.nn.modules.conv.Conv2d'>
>>> layer_type("max_pool", 3)
<class 'torch.nn.modules.pooling.MaxPool3d'>
"""

from __future__ import annotations

from torch import nn

SPATIAL_DIMS = (2, 3)
"""Supported spatial dimensions: 2 (images, N C X Y) and 3 (volumes, N C X Y Z)."""

LAYERS: dict[str, dict[int, type[nn.Module]]] = {
    "conv": {2: nn.Conv2d, 3: nn.Conv3d},
    "conv_transpose": {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d},
    "max_pool": {2: nn.MaxPool2d, 3: nn.MaxPool3d},
    "adaptive_avg_pool": {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d},
    "batch_norm": {2: nn.BatchNorm2d, 3: nn.BatchNorm3d},
    "instance_norm": {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d},
}
"""The dimension-dependent torch layers by name, then by spatial dimension."""


def check_spatial_dims(spatial_dims: int) -> int:
    """``spatial_dims`` itself when it is 2 or 3.

    Raises:
        ValueError: anything else (1D and 4D networks are not supported).
    """
    if isinstance(spatial_dims, bool) or spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims!r}")
    return int(spatial_dims)


def layer_type(name: str, spatial_dims: int) -> type[nn.Module]:
    """The torch layer class ``name`` (a key of :data:`LAYERS`) for ``spatial_dims`` 2 or 3.

    Raises:
        ValueError: unknown name or unsupported dimension.
    """
    try:
        by_dims = LAYERS[name]
    except KeyError:
        raise ValueError(f"unknown layer {name!r}; choose one of {sorted(LAYERS)}") from None
    return by_dims[check_spatial_dims(spatial_dims)]
