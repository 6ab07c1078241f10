"""Export and the one loader (docs/method.md §7): round trips, official-style files, strictness, errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from semgen_ray.config import load_config
from semgen_ray.models import (
    UNet3D, WeightsError, build_model, export_weights, load_pretrained, load_weights, read_card,
)

CARD = {"input_size": [16, 16, 8], "name": "tiny",
        "lineage": {"store_uri": "s3://bucket/store.zarr", "pattern_manifest_hash": "abc123",
                    "training_config": load_config("cpu-tiny")}}


def tiny(seed: int = 0, **kwargs) -> UNet3D:
    torch.manual_seed(seed)
    return UNet3D(**{"width": 4, "num_classes": 3, **kwargs})


def trained(model: UNet3D) -> UNet3D:
    model.train()
    model(torch.rand(2, 1, 16, 16, 8))  # moves running statistics, so buffers are checked too
    return model.eval()


def same_outputs(a: UNet3D, b: UNet3D) -> bool:
    x = torch.rand(2, 1, 16, 16, 8)
    with torch.no_grad():
        (ra, la), (rb, lb) = a.eval()(x), b.eval()(x)
    return torch.equal(ra, rb) and (la is None and lb is None or torch.equal(la, lb))


def test_export_round_trip_is_bit_exact(tmp_path):
    src = trained(tiny(0, norm="cont_bn"))
    out = export_weights(src, tmp_path / "export", CARD)
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "model.safetensors", "model_card.json"]
    for path in (out, out / "model.safetensors", out / "model.pt"):
        dst = tiny(1, norm="cont_bn")
        assert not same_outputs(src, dst)
        load_weights(dst, path)
        assert same_outputs(src, dst)
        assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
    pt = torch.load(out / "model.pt", weights_only=True)
    assert list(pt) == ["state_dict"] and list(pt["state_dict"]) == list(src.state_dict())
    again = load_pretrained(out)
    assert again.config == src.config and same_outputs(src, again)


def test_model_card_contract(tmp_path):
    model = tiny(0, head="keras")
    card = json.loads((export_weights(model, tmp_path, CARD) / "model_card.json").read_text())
    assert card == read_card(tmp_path / "model.safetensors")
    assert card["architecture"]["class"] == "UNet3D" and card["architecture"]["config"]["width"] == 4
    assert card["input"]["size"] == [16, 16, 8] and card["input"]["axis_order"] == ["x", "y", "z"]
    assert card["intensity"]["window"] == [-1000.0, 1000.0] and card["intensity"]["range"] == [0.0, 1.0]
    assert card["normalisation"] == "batch" and card["num_classes"] == 3 and card["head"] == "keras"
    assert card["lineage"]["store_uri"] == "s3://bucket/store.zarr"
    assert card["lineage"]["pattern_manifest_hash"] == "abc123"
    assert card["lineage"]["training_config"]["model"]["width"] == 8
    assert len(card["files"]["safetensors"]["sha256"]) == 64 and card["name"] == "tiny"
    with pytest.raises(WeightsError, match="input_size"):
        export_weights(model, tmp_path / "x", {})
    with pytest.raises(WeightsError, match="divisible by 8"):
        export_weights(model, tmp_path / "x", {"input_size": [20, 16, 8]})
    with pytest.raises(WeightsError, match="contradicts"):
        export_weights(model, tmp_path / "x", {**CARD, "num_classes": 44})
    assert not (tmp_path / "x").exists()


def official_style(model: UNet3D, *, extra_prefix: str = "") -> dict:
    """A state dict laid out like the released files: DataParallel ``module.`` keys in a training dict."""
    state = {f"module.{extra_prefix}{k}": v.clone() for k, v in model.state_dict().items()}
    return {"epoch": 17, "state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []},
            "best_loss": 0.1}


def test_official_file_at_reference_size(tmp_path):
    src = UNet3D(width=32, num_classes=44, norm="cont_bn")
    path = tmp_path / "semantic_genesis_chest_ct.pt"
    torch.save(official_style(src), path)
    ynet = load_weights(build_model("paper", num_classes=44, norm="cont_bn"), path)
    assert torch.equal(ynet.up_tr64.ops[1].bn1.running_var, src.up_tr64.ops[1].bn1.running_var)
    assert torch.equal(ynet.clc_out.fc1.weight, src.clc_out.fc1.weight)
    with pytest.raises(WeightsError, match=r"(?s)clc_out\.conv1\.weight.*ignore_head=True"):
        load_weights(build_model("paper"), path)  # head in the file, none in the model: explicit only
    unet, report = load_weights(build_model("paper"), path, ignore_head=True, return_report=True)
    assert len(report.dropped_head) == 9 and report.exact and len(report.loaded) == 106
    assert torch.equal(unet.down_tr512.ops[1].conv1.weight, src.down_tr512.ops[1].conv1.weight)


def test_classficationnet_prefix_and_auxiliary_keys(tmp_path):
    src = trained(tiny(0))
    obj = official_style(src, extra_prefix="classficationNet.")
    obj["state_dict"]["module.projection_head.0.weight"] = torch.zeros(8, 64)
    obj["state_dict"]["module.prototypes.weight"] = torch.zeros(10, 8)
    torch.save(obj, tmp_path / "released.pt")
    dst, report = load_weights(tiny(1), tmp_path / "released.pt", return_report=True)
    assert same_outputs(src, dst)
    assert report.dropped == ["module.projection_head.0.weight", "module.prototypes.weight"]
    assert report.stripped == len(src.state_dict()) and report.exact


def test_models_genesis_file_into_model_with_head(tmp_path):
    mg = trained(tiny(0, num_classes=None))
    torch.save(official_style(mg), tmp_path / "Genesis_Chest_CT.pt")
    with pytest.raises(WeightsError, match=r"(?s)8 missing key\(s\): clc_out\.conv1\.weight.*ignore_head"):
        load_weights(tiny(1), tmp_path / "Genesis_Chest_CT.pt")
    model = tiny(1)
    head_before = model.clc_out.fc1.weight.clone()
    load_weights(model, tmp_path / "Genesis_Chest_CT.pt", ignore_head=True)
    assert torch.equal(model.clc_out.fc1.weight, head_before)
    assert torch.equal(model.down_tr64.ops[0].conv1.weight, mg.down_tr64.ops[0].conv1.weight)


def test_training_checkpoint_layouts(tmp_path):
    src = trained(tiny(0))
    sd = src.state_dict()
    layouts = {
        "deepspeed": {"module": sd, "buffer_names": [], "global_steps": 3},
        "plain": sd,
        "trainer": {"model": sd, "optimizer": {"state": {}}, "epoch": 2},
        "nested": {"state_dict": {"module": {f"_orig_mod.{k}": v for k, v in sd.items()}}},
    }
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        assert same_outputs(src, load_weights(tiny(1), tmp_path / f"{name}.pt")), name
    ds_dir = tmp_path / "ds"
    (ds_dir / "global_step3").mkdir(parents=True)
    (ds_dir / "latest").write_text("global_step3\n")
    torch.save(layouts["deepspeed"], ds_dir / "global_step3" / "mp_rank_00_model_states.pt")
    assert same_outputs(src, load_weights(tiny(1), ds_dir))
    ray_dir = tmp_path / "ray_ckpt"
    export_weights(src, ray_dir, CARD)
    (ray_dir / "model.pt").unlink()
    (ray_dir / "model_card.json").unlink()
    assert same_outputs(src, load_weights(tiny(1), ray_dir))
    assert same_outputs(src, load_weights(tiny(1), dict(sd)))


def test_strict_error_names_the_keys_and_loads_nothing():
    src = tiny(0).state_dict()
    bad = dict(src)
    del bad["down_tr64.ops.0.conv1.weight"]
    bad["down_tr64.ops.0.extra.weight"] = torch.zeros(1)
    bad["up_tr64.ops.0.conv1.weight"] = torch.zeros(8, 8, 3, 3, 3)
    for i in range(12):
        bad[f"junk.{i}"] = torch.zeros(1)
    model = tiny(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        load_weights(model, bad)
    msg = str(info.value)
    assert "1 missing key(s): down_tr64.ops.0.conv1.weight" in msg
    assert "13 unexpected key(s): down_tr64.ops.0.extra.weight" in msg and "and 3 more" in msg
    assert "1 shape mismatch(es): up_tr64.ops.0.conv1.weight: file [8, 8, 3, 3, 3] vs model [8, 24, 3, 3, 3]" in msg
    assert "nothing was loaded" in msg
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_shape_mismatch_and_non_strict(tmp_path):
    torch.save({"state_dict": tiny(0, width=8).state_dict()}, tmp_path / "wide.pt")
    with pytest.raises(WeightsError, match=r"(?s)98 shape mismatch.*check width, depth"):
        load_weights(tiny(1), tmp_path / "wide.pt")
    with pytest.raises(WeightsError, match=r"clc_out\.fc1\.weight: file \[3, 128\] vs model \[5, 128\]"):
        load_weights(tiny(1, num_classes=5), {"state_dict": tiny(0).state_dict()})
    src = tiny(0)
    model = tiny(1, num_classes=5)
    with pytest.warns(UserWarning, match=r"clc_out\.fc1\.weight"):
        _, report = load_weights(model, src.state_dict(), strict=False, return_report=True)
    assert {k for k, _, _ in report.mismatched} == {"clc_out.fc1.weight", "clc_out.fc1.bias"}
    assert torch.equal(model.clc_out.conv1.weight, src.clc_out.conv1.weight)


def test_norm_hints_and_missing_counter():
    src = tiny(0).state_dict()
    with pytest.raises(WeightsError, match="norm='batch' or 'cont_bn'"):
        load_weights(tiny(1, norm="group"), src)
    old = {k: v for k, v in src.items() if not k.endswith("num_batches_tracked")}  # pre-0.4 BatchNorm files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_weights(tiny(1), old)


class Opaque:
    """Not a tensor: torch.load(weights_only=True) refuses to unpickle it."""


def test_not_a_weights_file(tmp_path):
    torch.save({"state_dict": {"a": Opaque()}}, tmp_path / "pickled.pt")
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_weights(tiny(), tmp_path / "pickled.pt")
    torch.save({"epoch": 3, "notes": {"x": 1}}, tmp_path / "nostate.pt")
    with pytest.raises(WeightsError, match="no state dict found.*'epoch'"):
        load_weights(tiny(), tmp_path / "nostate.pt")
    (tmp_path / "many").mkdir()
    for name in ("a.pt", "b.pt"):
        torch.save({}, tmp_path / "many" / name)
    with pytest.raises(WeightsError, match="cannot tell which file"):
        load_weights(tiny(), tmp_path / "many")
    with pytest.raises(FileNotFoundError):
        load_weights(tiny(), tmp_path / "absent.pt")


def test_wrapped_models_keep_reference_names(tmp_path):
    src = trained(tiny(0))
    wrapped = torch.nn.DataParallel(src)  # keys "module.…" on the wrapper
    out = export_weights(wrapped, tmp_path / "e", {**CARD, "epoch": 12})
    pt = torch.load(out / "model.pt", weights_only=True)
    assert pt["epoch"] == 12 and next(iter(pt["state_dict"])) == "down_tr64.ops.0.conv1.weight"
    dst = torch.nn.DataParallel(tiny(1))
    assert load_weights(dst, out) is dst and same_outputs(src, dst.module)
