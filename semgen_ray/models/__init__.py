"""Networks: the U-Net 3D with its classification heads, the self-discovery auto-encoder, weights I/O.

docs/method.md §1.3 (auto-encoder), §4 (U-Net 3D and heads), §7 (released weights); docs/design.md
"Public surface" and "Decisions and why".

Every model has the same small surface: ``encode(x)`` → per-level features (bottleneck last),
``decode(features)`` → reconstruction, ``classify(features)`` → logits, ``forward(x)`` →
``(reconstruction, logits or None)``, ``embed(x)`` → pooled bottleneck vector, ``reset_head(C)``.

>>> import torch
>>> from semgen_ray.models import build_model, export_weights, load_weights
>>> net = build_model("cpu-tiny", num_classes=4)
>>> recon, logits = net(torch.rand(2, 1, 32, 32, 16))
>>> out = export_weights(net, "/tmp/sg-export", {"input_size": [32, 32, 16]})   # doctest: +SKIP
>>> load_weights(build_model("cpu-tiny", num_classes=4), out)                    # doctest: +SKIP
"""

from semgen_ray.models.autoencoder import AutoEncoder, AutoEncoder3D
from semgen_ray.models.factory import MODELS, build_autoencoder, build_from_card, build_model, load_pretrained
from semgen_ray.models.unet import UNet
from semgen_ray.models.unet3d import UNet3D
from semgen_ray.models.weights import LoadReport, WeightsError, export_weights, load_weights, make_card, read_card

# The public surface: building, loading and exporting networks. The layers (blocks, heads, norms,
# layer factories) and the weight-file internals are used through their own modules.
__all__ = [
    "AutoEncoder", "AutoEncoder3D", "LoadReport", "MODELS", "UNet", "UNet3D", "WeightsError", "build_autoencoder",
    "build_from_card", "build_model", "export_weights", "load_pretrained", "load_weights", "make_card", "read_card",
]
