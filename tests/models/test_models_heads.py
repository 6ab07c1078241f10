"""The fine-tuning head (docs/method.md §6.1): global average pool of the bottleneck + one linear layer."""

import pytest
import torch

from semgen_ray.models import build_model
from semgen_ray.models.heads import HEADS, LinearHead, make_head


def test_linear_head_by_name():
    assert "linear" in HEADS
    head = make_head("linear", 64, 3, "batch")
    assert isinstance(head, LinearHead) and head.kind == "linear" and head.classifier.out_features == 3
    x = torch.rand(2, 64, 2, 2, 1)
    assert torch.allclose(head.pre_logits(x), x.mean(dim=(2, 3, 4)))
    assert torch.allclose(head(x), head.fc(x.mean(dim=(2, 3, 4))))
    assert sum(p.numel() for p in head.parameters()) == 64 * 3 + 3
    with pytest.raises(ValueError, match="unknown head"):
        make_head("mlp", 64, 3, "batch")


def test_build_model_with_the_linear_head():
    model = build_model({"width": 4}, num_classes=2, head="linear")
    assert model.clc_out.kind == "linear" and model.num_classes == 2
    recon, logits = model(torch.rand(2, 1, 16, 16, 8))
    assert tuple(logits.shape) == (2, 2) and tuple(recon.shape) == (2, 1, 16, 16, 8)
    assert build_model({"width": 4}, head="linear").clc_out is None  # no classes, no head


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("kind", HEADS)
def test_every_head_in_2d_and_3d(kind, spatial_dims):
    head = make_head(kind, 16, 5, "cont_bn", spatial_dims)
    x = torch.rand(3, 16, *(4,) * spatial_dims)
    assert head(x).shape == (3, 5) and head.classifier.out_features == 5
    assert all(p.dim() in (1, 2, 2 + spatial_dims) for p in head.parameters())
    other = "3d" if spatial_dims == 2 else "2d"
    assert not any(type(m).__name__.lower().endswith(other) for m in head.modules())
    with pytest.raises((RuntimeError, ValueError)):  # the other dimension's input is refused by torch
        head(torch.rand(3, 16, *(4,) * (5 - spatial_dims)))
