"""UNet3D: reference layout and names (docs/method.md §4.1-§4.3), sizes, the model surface, input checks."""

from __future__ import annotations

import pytest
import torch

from semgen_ray.models import UNet3D, build_model

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def reference_shapes(num_classes: int | None = None) -> dict[str, tuple]:
    """Every state-dict key and shape of the reference UNet3D / YNet3D, written from the docs/method.md §4 tables."""
    shapes: dict[str, tuple] = {}

    def unit(prefix: str, c_in: int, c_out: int) -> None:
        shapes[f"{prefix}.conv1.weight"] = (c_out, c_in, 3, 3, 3)
        shapes[f"{prefix}.conv1.bias"] = (c_out,)
        for b in BN:
            shapes[f"{prefix}.bn1.{b}"] = () if b == "num_batches_tracked" else (c_out,)

    # encoder: level | convs (docs/method.md §4.1 table)
    for name, convs in (("down_tr64", [(1, 32), (32, 64)]), ("down_tr128", [(64, 64), (64, 128)]),
                        ("down_tr256", [(128, 128), (128, 256)]), ("down_tr512", [(256, 256), (256, 512)])):
        for i, (a, b) in enumerate(convs):
            unit(f"{name}.ops.{i}", a, b)
    # decoder: transposed conv keeping channels, concat, two units
    for name, up, cat, out in (("up_tr256", 512, 768, 256), ("up_tr128", 256, 384, 128), ("up_tr64", 128, 192, 64)):
        shapes[f"{name}.up_conv.weight"] = (up, up, 2, 2, 2)
        shapes[f"{name}.up_conv.bias"] = (up,)
        unit(f"{name}.ops.0", cat, out)
        unit(f"{name}.ops.1", out, out)
    shapes["out_tr.final_conv.weight"] = (1, 64, 1, 1, 1)
    shapes["out_tr.final_conv.bias"] = (1,)
    if num_classes:  # docs/method.md §4.2: conv 512→1024 k3, ContBatchNorm3d(1024), fc 1024→C
        shapes["clc_out.conv1.weight"] = (1024, 512, 3, 3, 3)
        shapes["clc_out.conv1.bias"] = (1024,)
        for b in BN:
            shapes[f"clc_out.bn1.{b}"] = () if b == "num_batches_tracked" else (1024,)
        shapes["clc_out.fc1.weight"] = (num_classes, 1024)
        shapes["clc_out.fc1.bias"] = (num_classes,)
    return shapes


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_reference_size_and_key_names_at_width_32():
    unet = build_model("paper")
    assert abs(count(unet) - 19.07e6) < 0.05e6, count(unet)
    ref = reference_shapes()
    assert list(unet.state_dict()) == list(ref)
    assert {k: tuple(v.shape) for k, v in unet.state_dict().items()} == ref

    for norm in ("cont_bn", "batch"):  # same keys: official weights load into either
        ynet = UNet3D(width=32, norm=norm, num_classes=44)
        assert {k: tuple(v.shape) for k, v in ynet.state_dict().items()} == reference_shapes(44)
    assert abs(count(ynet.clc_out.conv1) - 14.2e6) < 0.05e6
    assert count(ynet) - count(unet) == count(ynet.clc_out)
    keras = UNet3D(width=32, num_classes=44, head="keras")
    assert tuple(keras.clc_out.conv1.weight.shape) == (512, 512, 3, 3, 3)
    assert tuple(keras.clc_out.fc1.weight.shape) == (1024, 512)
    assert tuple(keras.clc_out.fc2.weight.shape) == (44, 1024)


@pytest.mark.parametrize("norm", ["batch", "cont_bn", "group", "instance"])
@pytest.mark.parametrize("head", [None, "torch", "keras"])
def test_forward_backward_every_norm_and_head(norm, head):
    torch.manual_seed(0)
    model = UNet3D(width=4, norm=norm, num_classes=3, head=head)
    x = torch.rand(2, 1, 16, 16, 8)
    recon, logits = model(x)
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1  # sigmoid
    if head is None:
        assert logits is None and model.num_classes is None
        loss = recon.mean()
    else:
        assert logits.shape == (2, 3)
        loss = recon.mean() + torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2]))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.down_tr64.ops[0].conv1.weight.grad.abs().sum() > 0


def test_surface_is_consistent():
    torch.manual_seed(1)
    model = UNet3D(width=4, num_classes=5).eval()
    x = torch.rand(3, 1, 16, 16, 8)
    feats = model.encode(x)
    assert [f.shape[1] for f in feats] == [8, 16, 32, 64]
    assert feats[-1].shape[2:] == (2, 2, 1)
    recon, logits = model(x)
    assert torch.equal(model.decode(feats), recon)
    assert torch.equal(model.classify(feats), logits)
    assert torch.equal(model.classify(feats[-1]), logits)
    assert torch.equal(model.forward_features(x), feats[-1])
    assert model.embed(x).shape == (3, 64)
    with pytest.raises(ValueError, match="skips"):
        model.decode(feats[-1])


def test_reset_head_and_logits_not_probabilities():
    model = UNet3D(width=4)
    with pytest.raises(RuntimeError, match="no classification head"):
        model.classify(torch.zeros(1, 64, 2, 2, 1))
    model.reset_head(7)
    assert model.num_classes == 7 and model.config.num_classes == 7 and model.config.head == "torch"
    model.reset_head(2, kind="keras")
    assert model.num_classes == 2 and "fc2.weight" in dict(model.clc_out.named_parameters())
    _, logits = model(torch.rand(2, 1, 16, 16, 8) * 10)
    assert not torch.allclose(logits.sum(1), torch.ones(2))  # logits, no softmax
    model.reset_head(None)
    assert model.clc_out is None and model(torch.rand(2, 1, 16, 16, 8))[1] is None


def test_out_activation_none_gives_logits():
    model = UNet3D(width=2, out_activation=None, out_channels=3)
    recon, _ = model(torch.rand(2, 1, 8, 8, 8))
    assert recon.shape == (2, 3, 8, 8, 8) and (recon < 0).any()


def test_depth_changes_names_and_input_multiple():
    model = UNet3D(width=2, depth=3)
    assert model.input_multiple == 4
    names = [n for n, _ in model.named_children()]
    assert names == ["down_tr64", "down_tr128", "down_tr256", "up_tr128", "up_tr64", "out_tr"]
    assert model(torch.rand(1, 1, 12, 8, 4))[0].shape == (1, 1, 12, 8, 4)
    deep = UNet3D(width=2, depth=5)
    assert [n for n, _ in deep.named_children()][:5] == ["down_tr64", "down_tr128", "down_tr256",
                                                         "down_tr512", "down_tr1024"]
    assert deep.input_multiple == 16


@pytest.mark.parametrize("shape, match", [
    ((1, 1, 30, 32, 16),
     r"\(30, 32, 16\) is not divisible by 8.*crop it to \(24, 32, 16\) or pad it to \(32, 32, 16\)"),
    ((1, 1, 4, 8, 8), "not divisible by 8"),
    ((1, 2, 16, 16, 8), "1 input channel"),
    ((1, 16, 16, 8), "5-D input"),
])
def test_invalid_input_size_is_a_clear_error(shape, match):
    model = UNet3D(width=2)
    with pytest.raises(ValueError, match=match):
        model(torch.rand(*shape))


def test_bf16_autocast_forward():
    model = UNet3D(width=2, num_classes=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recon, logits = model(torch.rand(2, 1, 16, 16, 8))
    assert recon.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
