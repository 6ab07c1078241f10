"""The self-discovery auto-encoder (docs/method.md §1.3): skip-less by default, 16w-d pooled embedding."""

from __future__ import annotations

import pytest
import torch

from semgen_ray.config import ConfigError, load_config
from semgen_ray.models import AutoEncoder3D, build_autoencoder


def test_default_is_a_bottleneck_autoencoder():
    ae = AutoEncoder3D(width=4)
    assert not ae.skips and ae.clc_out is None and ae.upsample == "nearest"
    assert not any("up_conv" in k for k in ae.state_dict())  # nearest up-sampling, no transposed conv
    assert tuple(ae.up_tr256.ops[0].conv1.weight.shape[:2]) == (32, 64)  # no concat: 64 → 32
    x = torch.rand(2, 1, 32, 32, 16)
    recon, logits = ae(x)
    assert logits is None and recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1
    torch.nn.functional.mse_loss(recon, x).backward()
    emb = ae.eval().embed(x)
    assert emb.shape == (2, 64)
    torch.testing.assert_close(emb, ae.forward_features(x).mean(dim=(2, 3, 4)))
    # without skips the bottleneck alone decodes to the reconstruction
    torch.testing.assert_close(ae.decode(ae.forward_features(x)), ae(x)[0])


def test_skip_variant_and_embed_dim():
    ae = AutoEncoder3D(width=4, skips=True, embed_dim=40)
    assert tuple(ae.up_tr256.ops[0].conv1.weight.shape[:2]) == (32, 40 + 32)
    assert ae.embed(torch.rand(1, 1, 16, 16, 8)).shape == (1, 40)


def test_reference_sizes():
    ae = build_autoencoder("paper")
    assert ae.bottleneck_channels == 512  # the 512-d patient embedding
    with torch.device("meta"):  # 128×128×64 input → 16×16×8 bottleneck, without computing anything
        meta = AutoEncoder3D(width=32)
        assert meta.forward_features(torch.empty(1, 1, 128, 128, 64)).shape == (1, 512, 16, 16, 8)


def test_build_autoencoder_follows_discovery_config():
    assert not build_autoencoder("cpu-tiny").skips
    config = load_config("cpu-tiny", ["discovery.autoencoder=unet"])
    assert build_autoencoder(config).skips and not build_autoencoder(config, skips=False).skips
    ae = build_autoencoder(config.model, width=2, norm="group")
    assert ae.config.width == 2 and ae.config.norm == "group" and not ae.skips
    with pytest.raises(ConfigError, match="no classification head"):
        build_autoencoder("cpu-tiny", num_classes=4)
