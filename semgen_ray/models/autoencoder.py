"""The self-discovery auto-encoder, 3D or 2D (docs/method.md §1.3; docs/design.md "Decisions and why").

The reference trains the 4-level U-Net of §1.3 on whole scans resized to 128×128×64 (target = input,
sigmoid output, MSE) and embeds each patient as the global average pool of its 512-channel bottleneck
(16×16×8 for that input). Its current default keeps the skip connections, which lets the network copy
its input and weakens the bottleneck (SemanticGenesis issue #3); the older ``Vnet`` default removed
them. Here the skip-less bottleneck auto-encoder is the default and ``skips=True`` gives the U-Net.

Same encoder as :class:`~semgen_ray.models.unet.UNet` (convs 32→64 | 64→128 | 128→256 | 256→512, norm,
ReLU, max-pool); the decoder up-samples by nearest-neighbour repetition (Keras UpSampling3D, no
transposed convolution), then two convolutions of 256, 128, 64 channels; 1×1×1 conv + sigmoid.
"""

from __future__ import annotations

import torch

from semgen_ray.models.unet import UNet


class AutoEncoder(UNet):
    """Whole-scan auto-encoder whose pooled bottleneck is the patient embedding (docs/method.md §1.3), 3D or 2D.

    ``forward`` returns ``(reconstruction, None)`` like every model here; :meth:`embed` returns the
    (N, embed_dim) patient vectors (512-d at the reference width 32).

    Args:
        width, depth, in_channels, out_channels, norm, embed_dim, out_activation: as :class:`UNet`.
        skips: False (default): bottleneck auto-encoder; True: the reference's U-Net with skips.
        upsample: ``nearest`` (default, as the reference) or ``transpose``.
        spatial_dims: 3 (default: whole scans) or 2 (whole radiographs).

    Example:
        >>> ae = AutoEncoder(width=4)
        >>> ae.embed(torch.rand(2, 1, 32, 32, 16)).shape
        torch.Size([2, 64])
        >>> AutoEncoder(width=4, spatial_dims=2).embed(torch.rand(2, 1, 64, 64)).shape
        torch.Size([2, 64])
    """

    def __init__(self, width: int = 32, depth: int = 4, in_channels: int = 1, out_channels: int = 1,
                 norm: str = "batch", embed_dim: int | None = None, out_activation: str | None = "sigmoid", *,
                 skips: bool = False, upsample: str = "nearest", spatial_dims: int = 3) -> None:
        super().__init__(width=width, depth=depth, in_channels=in_channels, out_channels=out_channels,
                         norm=norm, num_classes=None, head=None, embed_dim=embed_dim,
                         out_activation=out_activation, skips=skips, upsample=upsample,
                         spatial_dims=spatial_dims)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patient embeddings: global average pool of the bottleneck, (N, embed_dim)."""
        return super().embed(x)


class AutoEncoder3D(AutoEncoder):
    """The 3D self-discovery auto-encoder: :class:`AutoEncoder` pinned to ``spatial_dims=3``.

    Its own name because model cards record it (``architecture.class: AutoEncoder3D``);
    :func:`semgen_ray.models.build_autoencoder` returns it for 3D and a plain ``AutoEncoder`` for 2D.
    """

    fixed_spatial_dims = 3
