"""Classification heads on the U-Net bottleneck (docs/method.md §4.2, §4.3, §6.1). All return logits (no softmax).

``torch`` :class:`ClassificationHead`, the PyTorch reference (``YNet3D.clc_out``):
    Conv3d c→2c k=3 p=1 → norm → ReLU → global average pool → Linear(2c → C).
    Keys ``conv1.*``, ``bn1.*``, ``fc1.*``: the names of the reference and of the released
    ``semantic_genesis_chest_ct.pt`` head (``clc_out.conv1.weight`` …), so it loads as is.
    At width 32 (c = 512) the convolution alone has 14.16 M parameters.
``keras`` :class:`KerasClassificationHead`, the Keras reference and the paper's "fc layers":
    Conv3d c→c k=3 p=1 → norm → ReLU → global average pool → Linear(c → 2c) → ReLU → Linear(2c → C).
    Keys ``conv1.*``, ``bn1.*``, ``fc1.*`` (hidden, 1024 at width 32), ``fc2.*`` (classes).
``linear`` :class:`LinearHead`, the fine-tuning head of the SG usage snippet (docs/method.md §6.1, Keras:
    GAP of the encoder output → Dense(n)): global average pool → Linear(c → C), nothing else, so a
    target task tests the pretrained encoder rather than a large freshly initialised head. Key ``fc.*``.

The head's normalisation is the network's (the reference uses ContBatchNorm3d in the head too).
Each head is 3D (the reference) or 2D (``spatial_dims=2``: Conv2d and a 2D pool, same keys).
Softmax is left to the loss: train with ``F.cross_entropy(logits, labels)``, never log(softmax).
"""

from __future__ import annotations

import torch
from torch import nn

from semgen_ray.models.layers import layer_type
from semgen_ray.models.norms import make_norm

HEADS = ("torch", "keras", "linear")


class ClassificationHead(nn.Module):
    """The PyTorch reference head: conv 2c → norm → ReLU → GAP → fc (docs/method.md §4.2).

    Args:
        in_channels: bottleneck channels c (512 at width 32).
        num_classes: C.
        norm: normalisation name.
        hidden: conv output channels (default 2c = 1024 at width 32).
        spatial_dims: 3 (reference) or 2.
    """

    kind = "torch"

    def __init__(self, in_channels: int, num_classes: int, norm: str, hidden: int | None = None, *,
                 spatial_dims: int = 3) -> None:
        super().__init__()
        hidden = hidden or 2 * in_channels
        self.conv1 = layer_type("conv", spatial_dims)(in_channels, hidden, kernel_size=3, padding=1)
        self.bn1 = make_norm(norm, hidden, spatial_dims)
        self.activation = nn.ReLU(inplace=True)
        self.avgpool1 = layer_type("adaptive_avg_pool", spatial_dims)(1)
        self.fc1 = nn.Linear(hidden, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        """The last linear layer (its ``out_features`` is C)."""
        return self.fc1

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled head features (N, hidden)."""
        return torch.flatten(self.avgpool1(self.activation(self.bn1(self.conv1(x)))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.pre_logits(x))


class KerasClassificationHead(nn.Module):
    """The Keras reference head: conv c → norm → ReLU → GAP → fc 2c + ReLU → fc C (docs/method.md §4.3).

    Args:
        in_channels: bottleneck channels c (512 at width 32).
        num_classes: C.
        norm: normalisation name.
        hidden: width of the hidden fully-connected layer (default 2c = 1024 at width 32).
        spatial_dims: 3 (reference) or 2.
    """

    kind = "keras"

    def __init__(self, in_channels: int, num_classes: int, norm: str, hidden: int | None = None, *,
                 spatial_dims: int = 3) -> None:
        super().__init__()
        hidden = hidden or 2 * in_channels
        self.conv1 = layer_type("conv", spatial_dims)(in_channels, in_channels, kernel_size=3, padding=1)
        self.bn1 = make_norm(norm, in_channels, spatial_dims)
        self.activation = nn.ReLU(inplace=True)
        self.avgpool1 = layer_type("adaptive_avg_pool", spatial_dims)(1)
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        """The last linear layer (its ``out_features`` is C)."""
        return self.fc2

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden fully-connected features (N, hidden), after ReLU."""
        pooled = torch.flatten(self.avgpool1(self.activation(self.bn1(self.conv1(x)))), 1)
        return torch.relu(self.fc1(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.pre_logits(x))


class LinearHead(nn.Module):
    """Global average pool of the bottleneck → one Linear(c → C) (docs/method.md §6.1, fine-tuning).

    Args:
        in_channels: bottleneck channels c (512 at width 32).
        num_classes: C.
        norm: unused (no normalisation layer); kept for the common head signature.
        spatial_dims: 3 (reference) or 2.
    """

    kind = "linear"

    def __init__(self, in_channels: int, num_classes: int, norm: str | None = None, *,
                 spatial_dims: int = 3) -> None:
        super().__init__()
        self.avgpool = layer_type("adaptive_avg_pool", spatial_dims)(1)
        self.fc = nn.Linear(in_channels, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        """The only linear layer (its ``out_features`` is C)."""
        return self.fc

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled bottleneck features (N, c)."""
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pre_logits(x))


def make_head(kind: str, in_channels: int, num_classes: int, norm: str, spatial_dims: int = 3) -> nn.Module:
    """A classification head by name (``torch``, ``keras`` or ``linear``), 3D (default) or 2D.

    Raises:
        ValueError: unknown kind, a class count below 1 or an unsupported ``spatial_dims``.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    classes = {"torch": ClassificationHead, "keras": KerasClassificationHead, "linear": LinearHead}
    if kind not in classes:
        raise ValueError(f"unknown head {kind!r}; choose one of {list(HEADS)} (or None for no head)")
    return classes[kind](in_channels, num_classes, norm, spatial_dims=spatial_dims)
