"""The reference 3D U-Net of Models Genesis / Semantic Genesis (docs/method.md §4): ``UNet`` with ``spatial_dims=3``.

Layout at the reference settings (width 32, depth 4), for a 64×64×32 cube:

========================  ==================================  ==========================
module                    convolutions                        output
========================  ==================================  ==========================
``down_tr64``             1→32, 32→64, then ``maxpool``        64 ch, 64×64×32
``down_tr128``            64→64, 64→128, then ``maxpool``      128 ch, 32×32×16
``down_tr256``            128→128, 128→256, then ``maxpool``   256 ch, 16×16×8
``down_tr512``            256→256, 256→512 (bottleneck)        512 ch, 8×8×4
``up_tr256``              ``up_conv`` 512→512, cat 256, 768→256, 256→256
``up_tr128``              ``up_conv`` 256→256, cat 128, 384→128, 128→128
``up_tr64``               ``up_conv`` 128→128, cat 64, 192→64, 64→64
``out_tr``                ``final_conv`` 64→1 (1×1×1), sigmoid
``clc_out`` (optional)    the classification head on the bottleneck (docs/method.md §4.2)
========================  ==================================  ==========================

19.07 M parameters without the head; the ``torch`` head with C = 44 adds 14.2 M. Module names are
kept from the reference so the official weights load; at other depths they continue the pattern as if
the width were 32 (level i is ``down_tr{64·2**i}``, decoder stage j is ``up_tr{64·2**j}``), at every
width.
"""

from __future__ import annotations

from semgen_ray.models.unet import UNet

__all__ = ["UNet3D"]


class UNet3D(UNet):
    """The 3D U-Net (+ classification head) of the table above: :class:`~semgen_ray.models.unet.UNet` in 3D.

    The same class, arguments and surface as ``UNet``, pinned to ``spatial_dims=3``. It keeps its
    own name because model cards record it (``architecture.class: UNet3D``) and the reference
    weights are 3D; :func:`semgen_ray.models.build_model` returns it for 3D and a plain ``UNet``
    for 2D.

    Raises:
        ValueError: ``spatial_dims`` other than 3.

    Example:
        >>> import torch
        >>> model = UNet3D(width=4, num_classes=3)
        >>> recon, logits = model(torch.rand(2, 1, 16, 16, 8))
        >>> tuple(recon.shape), tuple(logits.shape)
        ((2, 1, 16, 16, 8), (2, 3))
    """

    fixed_spatial_dims = 3
