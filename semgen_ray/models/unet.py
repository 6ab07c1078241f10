"""The Models Genesis / Semantic Genesis U-Net, 2D or 3D, with an optional head (docs/method.md §4).

One class builds both: ``spatial_dims=3`` (default) is the method on CT cubes, with the reference
layout and module names (table in :mod:`semgen_ray.models.unet3d`); ``spatial_dims=2`` is the paper's
2D variant on chest radiographs (224×224 inputs, a 28×28 bottleneck at depth 4). Both have the same
module names and state-dict keys, only the kernels differ (3×3×3 vs 3×3), and the same surface.
Layers come from :func:`semgen_ray.models.layers.layer_type`, never from a 2D/3D branch.

Module names are kept from the reference so the official weights load; at other depths they continue
the pattern as if the width were 32 (level i is ``down_tr{64·2**i}``, decoder stage j is
``up_tr{64·2**j}``), at every width.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from semgen_ray.config.schema import ModelConfig
from semgen_ray.models.blocks import DownTransition, OutputTransition, UpTransition
from semgen_ray.models.heads import make_head
from semgen_ray.models.layers import check_spatial_dims, layer_type

Features = Sequence[torch.Tensor]
"""What :meth:`UNet.encode` returns: the output of every encoder level, the bottleneck last."""


def level_name(level: int) -> str:
    """Reference name of encoder level ``level`` (0-based): ``down_tr64``, ``down_tr128``, …"""
    return f"down_tr{64 * 2 ** level}"


def stage_name(level: int) -> str:
    """Reference name of the decoder stage that ends at encoder level ``level``: ``up_tr64``, …"""
    return f"up_tr{64 * 2 ** level}"


class UNet(nn.Module):
    """U-Net (+ classification head), 3D or 2D, with the reference module names (docs/method.md §4.1-§4.3).

    The surface every later stage uses: :meth:`encode` (input → per-level features),
    :meth:`decode` (features → reconstruction), :meth:`classify` (features → logits),
    :meth:`forward` (input → ``(reconstruction, logits)``, logits ``None`` without a head),
    :meth:`embed` (input → pooled bottleneck vector), :meth:`reset_head`.

    Args:
        width: channels of the first convolution (32 in the reference).
        depth: resolution levels (4 in the reference: 3 poolings). Inputs must have every spatial
            size divisible by ``2**(depth-1)`` (8 in the reference).
        in_channels: input channels (1).
        out_channels: output channels of ``out_tr`` (1: reconstruction).
        norm: ``batch`` (default), ``cont_bn`` (the reference: batch statistics in eval too),
            ``group`` or ``instance`` (see :mod:`semgen_ray.models.norms`).
        num_classes: classes of the head; ``None`` builds no head.
        head: ``torch`` (conv 1024 → GAP → fc, docs/method.md §4.2), ``keras`` (conv 512 → GAP → fc 1024 →
            fc, §4.3), ``linear`` (GAP → fc, the fine-tuning head of §6.1) or ``None`` (no head even
            when ``num_classes`` is given).
        embed_dim: bottleneck channels (``None``: ``width * 2**depth``, 512 at width 32).
        out_activation: ``sigmoid`` (reference) or ``None`` (the decoder returns logits).
        skips: concatenate the encoder features in the decoder (True: U-Net; False: a plain
            encoder-decoder, as the bottleneck auto-encoder of docs/method.md §1.3).
        upsample: ``transpose`` (ConvTranspose3d, reference) or ``nearest`` (Keras UpSampling3D).
        spatial_dims: 3 (default: volumes, N C X Y Z) or 2 (images, N C X Y; the paper's 2D variant).

    Raises:
        semgen_ray.config.ConfigError: (a ``ValueError``) an argument is out of range.
        ValueError: ``spatial_dims`` is not 2 or 3, or differs from the class's :attr:`fixed_spatial_dims`.

    Example:
        >>> model = UNet(width=4, num_classes=3)
        >>> recon, logits = model(torch.rand(2, 1, 16, 16, 8))
        >>> tuple(recon.shape), tuple(logits.shape)
        ((2, 1, 16, 16, 8), (2, 3))
        >>> UNet(width=4, spatial_dims=2)(torch.rand(2, 1, 64, 64))[0].shape
        torch.Size([2, 1, 64, 64])
    """

    fixed_spatial_dims: int | None = None
    """Set by subclasses that build one dimension only (:class:`~semgen_ray.models.UNet3D`)."""

    def __init__(self, width: int = 32, depth: int = 4, in_channels: int = 1, out_channels: int = 1,
                 norm: str = "batch", num_classes: int | None = None, head: str | None = "torch",
                 embed_dim: int | None = None, out_activation: str | None = "sigmoid", *,
                 skips: bool = True, upsample: str = "transpose", spatial_dims: int = 3) -> None:
        super().__init__()
        self.config = ModelConfig(width=width, norm=norm, head=head, num_classes=num_classes, depth=depth,
                                  in_channels=in_channels, out_channels=out_channels, embed_dim=embed_dim,
                                  out_activation=out_activation)
        if upsample not in ("transpose", "nearest"):
            raise ValueError(f"upsample must be 'transpose' or 'nearest', got {upsample!r}")
        self.spatial_dims = d = check_spatial_dims(spatial_dims)
        fixed = self.fixed_spatial_dims
        if fixed is not None and d != fixed:
            generic = type(self).__mro__[1].__name__
            raise ValueError(f"{type(self).__name__} is {fixed}D only; build a {d}D network with "
                             f"{generic}(spatial_dims={d}) or the builders' spatial_dims={d}")
        self.skips = bool(skips)
        self.upsample = upsample
        bottleneck = embed_dim or width * 2 ** depth
        self.bottleneck_channels = bottleneck

        self._down_names = [level_name(i) for i in range(depth)]
        for i, name in enumerate(self._down_names):
            last = i == depth - 1
            c_in = in_channels if i == 0 else width * 2 ** i
            c_out = bottleneck if last else width * 2 ** (i + 1)
            self.add_module(name, DownTransition(c_in, width * 2 ** i, c_out, norm, pool=not last,
                                                 spatial_dims=d))

        self._up_names = [stage_name(j) for j in range(depth - 2, -1, -1)]
        for j in range(depth - 2, -1, -1):
            c_in = bottleneck if j == depth - 2 else width * 2 ** (j + 2)
            c_skip = width * 2 ** (j + 1) if self.skips else 0
            self.add_module(stage_name(j), UpTransition(c_in, c_skip, width * 2 ** (j + 1), norm, upsample,
                                                        spatial_dims=d))

        self.out_tr = OutputTransition(2 * width, out_channels, out_activation, spatial_dims=d)
        self.clc_out = (make_head(head, bottleneck, num_classes, norm, d)
                        if head is not None and num_classes is not None else None)

    # ------------------------------------------------------------------ description

    @property
    def input_multiple(self) -> int:
        """Every spatial input size must be a multiple of this (``2**(depth-1)``, 8 in the reference)."""
        return 2 ** (self.config.depth - 1)

    @property
    def num_classes(self) -> int | None:
        """Classes of the head, ``None`` without one."""
        return None if self.clc_out is None else self.clc_out.classifier.out_features

    @property
    def head(self) -> nn.Module | None:
        """The classification head (module ``clc_out``), or ``None``."""
        return self.clc_out

    def arch_args(self) -> dict:
        """Everything needed to rebuild this architecture (written to the model card)."""
        return {"class": type(self).__name__, "config": dataclasses.asdict(self.config),
                "skips": self.skips, "upsample": self.upsample, "spatial_dims": self.spatial_dims}

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is (N, in_channels, X, Y[, Z]) with sizes divisible by 2**(depth-1)."""
        cfg = self.config
        if x.dim() != 2 + self.spatial_dims:
            axes = ", ".join(("X", "Y", "Z")[: self.spatial_dims])
            raise ValueError(f"{type(self).__name__} ({self.spatial_dims}D) expects a {2 + self.spatial_dims}-D "
                             f"input (N, C, {axes}), got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(f"{type(self).__name__} was built for {cfg.in_channels} input channel(s), got "
                             f"{x.shape[1]} (input shape {tuple(x.shape)})")
        m = self.input_multiple
        spatial = tuple(int(s) for s in x.shape[2:])
        if any(s % m or s < m for s in spatial):
            crop = tuple(max(m, (s // m) * m) for s in spatial)
            pad = tuple(-(-s // m) * m for s in spatial)
            raise ValueError(
                f"input spatial size {spatial} is not divisible by {m} = 2**(depth-1) (depth {cfg.depth}: "
                f"{cfg.depth - 1} poolings); crop it to {crop} or pad it to {pad}")

    # ------------------------------------------------------------------ the surface

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Encoder: the output of every level before pooling, bottleneck last (``out512`` in docs/method.md §4.1)."""
        self.check_input(x)
        feats = []
        h = x
        for name in self._down_names:
            level = getattr(self, name)
            h = level(h)
            feats.append(h)
            if level.maxpool is not None:
                h = level.maxpool(h)
        return tuple(feats)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck feature map (N, embed_dim, X/2**(depth-1), …)."""
        return self.encode(x)[-1]

    def decode(self, features: Features | torch.Tensor) -> torch.Tensor:
        """Decoder: features from :meth:`encode` → reconstruction (sigmoid unless ``out_activation=None``).

        A bare bottleneck tensor is accepted when the model has no skip connections.
        """
        if isinstance(features, torch.Tensor):
            if self.skips:
                raise ValueError("decode() of a U-Net with skips needs every level's features, as "
                                 "returned by encode(); a bare bottleneck is only enough when skips=False")
            features = (features,)
        h = features[-1]
        skips = features[:-1]
        for k, name in enumerate(self._up_names):
            skip = skips[len(skips) - 1 - k] if self.skips else None
            h = getattr(self, name)(h, skip)
        return self.out_tr(h)

    def classify(self, features: Features | torch.Tensor) -> torch.Tensor:
        """Head: features from :meth:`encode` (or the bottleneck alone) → logits (N, C); no softmax."""
        if self.clc_out is None:
            raise RuntimeError(f"{type(self).__name__} has no classification head; build it with "
                               "num_classes=C or call reset_head(C)")
        bottleneck = features if isinstance(features, torch.Tensor) else features[-1]
        return self.clc_out(bottleneck)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(reconstruction, logits)``; logits is ``None`` when there is no head."""
        feats = self.encode(x)
        logits = self.classify(feats) if self.clc_out is not None else None
        return self.decode(feats), logits

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool of the bottleneck: one ``embed_dim`` vector per input (docs/method.md §1.3)."""
        pool = layer_type("adaptive_avg_pool", self.spatial_dims)(1)
        return torch.flatten(pool(self.forward_features(x)), 1)

    def reset_head(self, num_classes: int | None, kind: str | None = None) -> None:
        """Replace the classification head by a freshly initialised one (or remove it).

        Args:
            num_classes: classes of the new head; ``None`` or 0 removes the head.
            kind: ``torch`` or ``keras``; default: the current kind (``config.head``, else ``torch``).
        """
        kind = kind or self.config.head or "torch"
        if not num_classes:
            self.clc_out = None
            self.config = dataclasses.replace(self.config, num_classes=None)
            return
        ref = next(self.parameters())
        head = make_head(kind, self.bottleneck_channels, num_classes, self.config.norm, self.spatial_dims)
        self.clc_out = head.to(device=ref.device, dtype=ref.dtype)
        self.config = dataclasses.replace(self.config, head=kind, num_classes=num_classes)
