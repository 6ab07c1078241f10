"""Networks: the U-Net 3D with its classification heads, the self-discovery auto-encoder, weights I/O.

SPEC.md §1.3 (auto-encoder), §4 (U-Net 3D and heads), §7 (released weights); ARCHITECTURE.md
"Public surface" and "Decisions".

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

from semgen_ray.models.autoencoder import AutoEncoder3D
from semgen_ray.models.blocks import ConvUnit, DownTransition, OutputTransition, UpTransition
from semgen_ray.models.factory import (
    MODELS, build_autoencoder, build_from_card, build_model, load_pretrained, resolve_config,
)
from semgen_ray.models.heads import ClassificationHead, KerasClassificationHead, make_head
from semgen_ray.models.norms import NORMS, ContBatchNorm3d, make_norm
from semgen_ray.models.unet3d import UNet3D
from semgen_ray.models.weights import (
    LoadReport, WeightsError, export_weights, load_weights, make_card, normalize_keys, read_card,
    read_state_dict,
)

__all__ = [
    "AutoEncoder3D", "ClassificationHead", "ContBatchNorm3d", "ConvUnit", "DownTransition",
    "KerasClassificationHead", "LoadReport", "MODELS", "NORMS", "OutputTransition", "UNet3D",
    "UpTransition", "WeightsError", "build_autoencoder", "build_from_card", "build_model",
    "export_weights", "load_pretrained", "load_weights", "make_card", "make_head", "make_norm",
    "normalize_keys", "read_card", "read_state_dict", "resolve_config",
]
