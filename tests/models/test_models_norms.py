"""Normalisation choices (docs/method.md §4.1, §9; docs/design.md "Decisions and why"): batch vs cont_bn vs group/instance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semgen_ray.models import UNet3D
from semgen_ray.models.norms import ContBatchNorm2d, ContBatchNorm3d, make_norm


def _pair_outputs(norm: str):
    torch.manual_seed(0)
    model = UNet3D(width=4, norm=norm, num_classes=3)
    model.train()
    model(torch.rand(4, 1, 16, 16, 8))  # one training batch: running statistics move off their init
    model.eval()
    a = torch.rand(1, 1, 16, 16, 8)
    other = torch.rand(1, 1, 16, 16, 8) * 3
    with torch.no_grad():
        alone = model(a)
        mixed = model(torch.cat([a, other]))
    return alone, tuple(t[:1] for t in mixed)


def test_cont_bn_eval_depends_on_batch_composition():
    (r1, l1), (r2, l2) = _pair_outputs("cont_bn")
    assert not torch.allclose(r1, r2, atol=1e-4) and not torch.allclose(l1, l2, atol=1e-4)


@pytest.mark.parametrize("norm", ["batch", "group", "instance"])
def test_other_norms_eval_do_not(norm):
    (r1, l1), (r2, l2) = _pair_outputs(norm)
    torch.testing.assert_close(r1, r2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(l1, l2, rtol=1e-4, atol=1e-5)


def test_cont_bn_matches_batch_norm_in_training_and_tracks_stats_only_in_training():
    torch.manual_seed(0)
    cont, ref = ContBatchNorm3d(3), nn.BatchNorm3d(3)
    x = torch.randn(2, 3, 4, 4, 4) * 2 + 1
    torch.testing.assert_close(cont(x), ref(x))
    torch.testing.assert_close(cont.running_mean, ref.running_mean)
    torch.testing.assert_close(cont.running_var, ref.running_var)
    assert int(cont.num_batches_tracked) == 1
    cont.eval()
    before = cont.running_mean.clone()
    y = cont(x + 5)  # eval: still batch statistics, running stats untouched
    torch.testing.assert_close(y.mean(dim=(0, 2, 3, 4)), torch.zeros(3), atol=1e-5, rtol=0)
    assert torch.equal(cont.running_mean, before) and int(cont.num_batches_tracked) == 1


def test_make_norm():
    assert isinstance(make_norm("cont_bn", 8), ContBatchNorm3d)
    assert make_norm("group", 12).num_groups == 4 and make_norm("group", 64).num_groups == 8
    assert make_norm("instance", 5).affine
    with pytest.raises(ValueError, match="unknown norm 'layer'"):
        make_norm("layer", 4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_make_norm_builds_the_layer_of_its_dimension(spatial_dims):
    expected = {"batch": (nn.BatchNorm2d, nn.BatchNorm3d), "cont_bn": (ContBatchNorm2d, ContBatchNorm3d),
                "instance": (nn.InstanceNorm2d, nn.InstanceNorm3d), "group": (nn.GroupNorm, nn.GroupNorm)}
    for name, types in expected.items():
        assert type(make_norm(name, 8, spatial_dims)) is types[spatial_dims - 2], name
    with pytest.raises(ValueError, match="spatial_dims must be 2"):
        make_norm("group", 8, 1)


def test_cont_bn_2d_uses_batch_statistics_in_eval():
    torch.manual_seed(0)
    cont, ref = ContBatchNorm2d(3), nn.BatchNorm2d(3)
    x = torch.randn(2, 3, 4, 4) * 2 + 1
    torch.testing.assert_close(cont(x), ref(x))
    torch.testing.assert_close(cont.running_var, ref.running_var)
    cont.eval()
    y = cont(x + 5)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="4D input"):
        cont(torch.rand(2, 3, 4, 4, 4))
