"""Building blocks of the U-Net (docs/method.md §4.1), 2D or 3D, with the reference attribute names.

The attribute names (``ops.{0,1}.conv1`` / ``bn1``, ``maxpool``, ``up_conv``, ``final_conv``) are what
the state-dict keys are made of, so the official Models Genesis / Semantic Genesis weights load
without renaming. Parameter-free modules (ReLU, pooling, nearest up-sampling) add no keys. Every block
takes ``spatial_dims`` (3, the reference, or 2); layers come from :func:`semgen_ray.models.layers.layer_type`.
"""

from __future__ import annotations

import torch
from torch import nn

from semgen_ray.models.layers import layer_type
from semgen_ray.models.norms import make_norm


class ConvUnit(nn.Module):
    """Conv k=3 p=1 (with bias) → norm → ReLU: the reference ``LUConv`` (keys ``conv1.*``, ``bn1.*``).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        norm: normalisation name (:func:`semgen_ray.models.norms.make_norm`).
        spatial_dims: 3 (Conv3d, the reference) or 2 (Conv2d).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str, *, spatial_dims: int = 3) -> None:
        super().__init__()
        self.conv1 = layer_type("conv", spatial_dims)(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn1 = make_norm(norm, out_channels, spatial_dims)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn1(self.conv1(x)))


class DownTransition(nn.Module):
    """One encoder level: two :class:`ConvUnit` (``ops``), then ``maxpool`` (2×2×2 or 2×2) for the next level.

    Args:
        in_channels, mid_channels, out_channels: channels into, between and out of the two units.
        norm: normalisation name.
        pool: whether a next level follows (False for the bottleneck: no ``maxpool``).
        spatial_dims: 3 (reference) or 2.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, norm: str, pool: bool, *,
                 spatial_dims: int = 3) -> None:
        super().__init__()
        self.ops = nn.Sequential(ConvUnit(in_channels, mid_channels, norm, spatial_dims=spatial_dims),
                                 ConvUnit(mid_channels, out_channels, norm, spatial_dims=spatial_dims))
        self.maxpool = layer_type("max_pool", spatial_dims)(2) if pool else None
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The level's output before pooling (the skip connection); pool it with ``maxpool``."""
        return self.ops(x)


class UpTransition(nn.Module):
    """One decoder stage: up-sample ×2, concatenate the skip (up-sampled first), two :class:`ConvUnit`.

    Args:
        in_channels: channels coming up from the level below.
        skip_channels: channels of the skip connection (0: no skip, as in the bottleneck auto-encoder).
        out_channels: channels of both units.
        norm: normalisation name.
        upsample: ``transpose`` (ConvTranspose3d k=2 s=2 keeping the channels, module ``up_conv``: the
            reference U-Net) or ``nearest`` (parameter-free repeat, module ``upsample``: Keras
            UpSampling3D as in the self-discovery auto-encoder, docs/method.md §1.3).
        spatial_dims: 3 (reference) or 2 (ConvTranspose2d / 2D repeat).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str,
                 upsample: str = "transpose", *, spatial_dims: int = 3) -> None:
        super().__init__()
        if upsample == "transpose":
            self.up_conv = layer_type("conv_transpose", spatial_dims)(in_channels, in_channels, kernel_size=2,
                                                                      stride=2)
        elif upsample == "nearest":
            self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        else:
            raise ValueError(f"upsample must be 'transpose' or 'nearest', got {upsample!r}")
        self._up = "up_conv" if upsample == "transpose" else "upsample"
        self.skip_channels = skip_channels
        self.ops = nn.Sequential(ConvUnit(in_channels + skip_channels, out_channels, norm, spatial_dims=spatial_dims),
                                 ConvUnit(out_channels, out_channels, norm, spatial_dims=spatial_dims))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        up = getattr(self, self._up)(x)
        if self.skip_channels:
            if skip is None:
                raise ValueError("this decoder stage was built with a skip connection; pass skip=")
            up = torch.cat((up, skip), dim=1)
        return self.ops(up)


class OutputTransition(nn.Module):
    """1×1×1 (or 1×1) convolution to the output channels (``final_conv``), then sigmoid unless disabled.

    Args:
        in_channels: channels of the last decoder stage.
        out_channels: output channels (1 in the reference).
        activation: ``sigmoid`` or ``None`` (logits).
        spatial_dims: 3 (reference) or 2.
    """

    def __init__(self, in_channels: int, out_channels: int, activation: str | None = "sigmoid", *,
                 spatial_dims: int = 3) -> None:
        super().__init__()
        self.final_conv = layer_type("conv", spatial_dims)(in_channels, out_channels, kernel_size=1)
        if activation not in ("sigmoid", None):
            raise ValueError(f"activation must be 'sigmoid' or None, got {activation!r}")
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.final_conv(x)
        return torch.sigmoid(out) if self.activation == "sigmoid" else out
