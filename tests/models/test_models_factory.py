"""build_model: presets, configs, dicts and overrides (docs/design.md "Public surface")."""

from __future__ import annotations

import pytest

from semgen_ray.config import ConfigError, ModelConfig, load_config
from semgen_ray.models import AutoEncoder3D, UNet3D, build_from_card, build_model


def test_presets():
    tiny = build_model("cpu-tiny")
    assert isinstance(tiny, UNet3D) and tiny.config.width == 8 and tiny.clc_out is None
    assert tiny.down_tr64.ops[0].conv1.out_channels == 8
    paper = build_model("paper", num_classes=44)
    assert paper.config.width == 32 and paper.num_classes == 44 and paper.clc_out.kind == "torch"
    assert build_model(load_config("paper")).config == load_config("paper").model


def test_configs_dicts_and_overrides():
    assert build_model().config == ModelConfig()
    m = build_model(ModelConfig(width=4), norm="group", num_classes=3, head="keras")
    assert m.config.norm == "group" and m.clc_out.kind == "keras" and m.num_classes == 3
    assert build_model({"width": 2, "num_classes": 5}, head=None).clc_out is None
    assert not build_model({"width": 2}, skips=False).skips


@pytest.mark.parametrize("kwargs, match", [
    ({"widht": 8}, "did you mean 'width'"),
    ({"norm": "layer"}, "model.norm must be one of"),
    ({"head": "mlp"}, "model.head must be one of"),
    ({"num_classes": 0}, "num_classes"),
    ({"depth": 1}, "depth"),
])
def test_invalid_options_are_clear(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_model("cpu-tiny", **kwargs)


def test_unknown_preset_and_type():
    with pytest.raises(ConfigError, match="does not exist"):
        build_model("no-such-preset")
    with pytest.raises(ConfigError, match="expected a preset name"):
        build_model(3.5)


def test_build_from_card_round_trips_architecture():
    model = build_model("cpu-tiny", num_classes=4, norm="cont_bn", depth=3)
    again = build_from_card({"architecture": model.arch_args()})
    assert type(again) is UNet3D and again.config == model.config
    ae = AutoEncoder3D(width=2, embed_dim=24)
    assert build_from_card({"architecture": ae.arch_args()}).arch_args() == ae.arch_args()
    with pytest.raises(ValueError, match="unknown class"):
        build_from_card({"architecture": {"class": "ResNet", "config": {}}})


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, semgen_ray.models; assert 'safetensors' not in sys.modules, 'eager safetensors import'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_in_channels_and_embed_dim_change_the_network():
    """model.in_channels sets the channels the network reads, model.embed_dim its bottleneck (the
    embedding size); the defaults are 1 and width·2**depth (16·width here)."""
    import torch

    default = build_model({"width": 2})
    assert default.embed(torch.rand(1, 1, 16, 16, 8)).shape == (1, 32)
    changed = build_model(ModelConfig(width=2, in_channels=2, embed_dim=24))
    assert changed.embed(torch.rand(1, 2, 16, 16, 8)).shape == (1, 24)
    recon, _ = changed(torch.rand(1, 2, 16, 16, 8))
    assert recon.shape == (1, 1, 16, 16, 8)
    with pytest.raises(ValueError, match="1 input channel"):
        default(torch.rand(1, 2, 16, 16, 8))
