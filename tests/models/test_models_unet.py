"""The dimension-generic U-Net (``spatial_dims`` 2 or 3): 2D shapes, one dimension of layers, builders, cards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semgen_ray.models.autoencoder import AutoEncoder, AutoEncoder3D
from semgen_ray.models.factory import build_autoencoder, build_from_card, build_model, load_pretrained
from semgen_ray.models.layers import LAYERS, layer_type
from semgen_ray.models.unet import UNet
from semgen_ray.models.unet3d import UNet3D
from semgen_ray.models.weights import WeightsError, export_weights, load_weights, read_card


def test_layer_type_lookup():
    assert layer_type("conv", 2) is nn.Conv2d and layer_type("conv", 3) is nn.Conv3d
    assert layer_type("conv_transpose", 2) is nn.ConvTranspose2d
    assert all(set(by_dims) == {2, 3} for by_dims in LAYERS.values())
    with pytest.raises(ValueError, match="spatial_dims must be 2 .* or 3"):
        layer_type("conv", 1)
    with pytest.raises(ValueError, match="unknown layer 'conv4d'"):
        layer_type("conv4d", 3)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("norm", ["batch", "cont_bn", "group", "instance"])
@pytest.mark.parametrize("head", ["torch", "keras", "linear"])
def test_only_layers_of_its_dimension(spatial_dims, norm, head):
    model = UNet(width=2, norm=norm, num_classes=3, head=head, spatial_dims=spatial_dims)
    other = "3d" if spatial_dims == 2 else "2d"
    names = {type(m).__name__ for m in model.modules()}
    assert not [n for n in names if n.lower().endswith(other)], names
    assert any(n.endswith(f"{spatial_dims}d") for n in names)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d,
                                                           nn.ConvTranspose3d))]
    assert convs and all(m.weight.dim() == 2 + spatial_dims for m in convs)


def test_2d_and_3d_have_the_same_keys_and_kernels_one_axis_apart():
    two = UNet(width=4, num_classes=5, spatial_dims=2).state_dict()
    three = UNet3D(width=4, num_classes=5).state_dict()
    assert list(two) == list(three)
    for key, value in three.items():
        shape2, shape3 = tuple(two[key].shape), tuple(value.shape)
        if value.dim() >= 4:  # conv kernels: (out, in, k, k, k) vs (out, in, k, k)
            assert shape3 == shape2 + shape2[-1:], key
        else:
            assert shape3 == shape2, key


def test_2d_forward_backward_and_surface():
    torch.manual_seed(0)
    model = UNet(width=4, num_classes=3, spatial_dims=2)
    x = torch.rand(2, 1, 64, 64)
    feats = model.encode(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 64, 64), (16, 32, 32), (32, 16, 16), (64, 8, 8)]
    recon, logits = model(x)
    assert recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1 and logits.shape == (2, 3)
    (recon.mean() + nn.functional.cross_entropy(logits, torch.tensor([0, 2]))).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    torch.testing.assert_close(model.embed(x), model.forward_features(x).mean(dim=(2, 3)))
    model.reset_head(2, kind="keras")
    assert model.clc_out.conv1.weight.dim() == 4 and model(x)[1].shape == (2, 2)


def test_paper_2d_size_224():
    with torch.device("meta"):  # the width-32 network on a 224×224 radiograph, without computing anything
        model = UNet(width=32, num_classes=10, spatial_dims=2)
        x = torch.empty(1, 1, 224, 224)
        assert model.forward_features(x).shape == (1, 512, 28, 28)
        recon, logits = model(x)
        assert recon.shape == (1, 1, 224, 224) and logits.shape == (1, 10)
    recon, _ = UNet(width=2, spatial_dims=2)(torch.rand(1, 1, 224, 224))  # and a real small one
    assert recon.shape == (1, 1, 224, 224)


@pytest.mark.parametrize("spatial_dims, shape, match", [
    (2, (1, 1, 64, 64, 8), r"\(2D\) expects a 4-D input \(N, C, X, Y\)"),
    (3, (1, 1, 64, 64), r"\(3D\) expects a 5-D input \(N, C, X, Y, Z\)"),
    (2, (1, 1, 60, 64), r"\(60, 64\) is not divisible by 8.*crop it to \(56, 64\)"),
])
def test_input_checks_name_the_dimension(spatial_dims, shape, match):
    with pytest.raises(ValueError, match=match):
        UNet(width=2, spatial_dims=spatial_dims)(torch.rand(*shape))


def test_spatial_dims_errors():
    with pytest.raises(ValueError, match="spatial_dims must be 2"):
        UNet(width=2, spatial_dims=4)
    with pytest.raises(ValueError, match=r"UNet3D is 3D only.*UNet\(spatial_dims=2\)"):
        UNet3D(width=2, spatial_dims=2)
    with pytest.raises(ValueError, match=r"AutoEncoder3D is 3D only.*AutoEncoder\(spatial_dims=2\)"):
        AutoEncoder3D(width=2, spatial_dims=2)
    with pytest.raises(ValueError, match="spatial_dims must be 2"):
        build_model("cpu-tiny", spatial_dims=1)


def test_builders_and_cards_keep_the_dimension():
    net = build_model("cpu-tiny", num_classes=4, spatial_dims=2)
    assert type(net) is UNet and net.spatial_dims == 2 and net.arch_args()["spatial_dims"] == 2
    assert type(build_model("cpu-tiny")) is UNet3D and build_model("cpu-tiny").spatial_dims == 3
    again = build_from_card({"architecture": net.arch_args()})
    assert type(again) is UNet and again.arch_args() == net.arch_args()
    ae = build_autoencoder("cpu-tiny", spatial_dims=2)
    assert type(ae) is AutoEncoder and not ae.skips and ae.spatial_dims == 2
    assert build_from_card({"architecture": ae.arch_args()}).arch_args() == ae.arch_args()
    assert type(build_autoencoder("cpu-tiny")) is AutoEncoder3D
    old = {k: v for k, v in UNet3D(width=2).arch_args().items() if k != "spatial_dims"}  # pre-2D card
    assert build_from_card({"architecture": old}).spatial_dims == 3


def test_2d_autoencoder_round_trip_shapes():
    ae = AutoEncoder(width=4, spatial_dims=2)
    x = torch.rand(2, 1, 32, 32)
    recon, logits = ae(x)
    assert logits is None and recon.shape == x.shape
    assert not any("up_conv" in k for k in ae.state_dict())  # nearest up-sampling in 2D too
    ae.eval()
    assert ae.embed(x).shape == (2, 64)
    torch.testing.assert_close(ae.decode(ae.forward_features(x)), ae(x)[0])


def test_2d_export_and_load(tmp_path):
    torch.manual_seed(0)
    src = UNet(width=2, num_classes=3, spatial_dims=2).eval()
    out = export_weights(src, tmp_path / "e", {"input_size": [224, 224]})
    card = read_card(out)
    assert card["input"]["axis_order"] == ["x", "y"] and card["input"]["layout"] == "N C x y"
    assert card["architecture"]["class"] == "UNet" and card["architecture"]["spatial_dims"] == 2
    again = load_pretrained(out).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(src(x), again(x)))
    assert type(again) is UNet and again.spatial_dims == 2
    with pytest.raises(WeightsError, match=r"2 positive integers \(x, y\)"):
        export_weights(src, tmp_path / "x", {"input_size": [224, 224, 8]})
    with pytest.raises(WeightsError, match="the file holds a 3D network and the model is 2D: build it with "
                                           "spatial_dims=3"):
        load_weights(UNet(width=2, num_classes=3, spatial_dims=2), UNet3D(width=2, num_classes=3).state_dict())
