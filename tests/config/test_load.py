import dataclasses

import pytest

from semgen_ray.config import ConfigError, SemGenConfig, from_dict, load_config, to_dict


def test_presets_load_and_match_the_paper():
    paper = load_config("paper")
    d = paper.discovery
    assert (d.num_classes, d.k_train, d.k_val, d.resolutions) == (44, 200, 30, 3)
    assert paper.data.cube_size == (64, 64, 32) and paper.model.width == 32
    assert (paper.train.batch_size, paper.train.lr, paper.train.lambda_cls, paper.train.patience) == (64, 1e-3, 0.01, 50)
    # local mode: 64x64x32 cubes' 25-50 MB blocks starved in 512 MB (benchmarks/results/train_data_profile*.json)
    assert paper.ray.object_store_mb == 2048 and load_config("cpu-tiny").ray.object_store_mb == 512
    tiny = load_config("cpu-tiny")
    assert tiny.model.width == 8 and max(tiny.data.cube_size) <= 32
    assert load_config() == tiny
    films = load_config("cpu-tiny-2d")  # Semantic Genesis 2D: a flat volume shape and cube
    assert films.data.flat and films.data.cube_size == (32, 32, 1) and films.phantoms == tiny.phantoms
    paper_2d = load_config("paper-2d")  # the paper's 2D sizes: K = 1000, C = 100, 224x224 patches
    assert paper_2d.data.flat and paper_2d.data.cube_size == (224, 224, 1)
    assert (paper_2d.discovery.k_train, paper_2d.discovery.num_classes) == (1000, 100)
    assert paper_2d.discovery.max_patch > paper_2d.discovery.min_patch and paper_2d.model == paper.model


def test_roundtrip_through_plain_data():
    cfg = load_config("paper")
    assert from_dict(to_dict(cfg)) == cfg


def test_yaml_file_on_top_of_a_preset_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: paper\ntrain:\n  lr: 3e-4\nstore:\n  uri: s3://bucket/c.zarr\n")
    cfg = load_config(path, ["discovery.num_classes=50", "ingest.target_spacing=[1, 1, 2.5]"])
    assert cfg.train.lr == 3e-4 and cfg.train.batch_size == 64
    assert cfg.store.uri == "s3://bucket/c.zarr" and cfg.discovery.num_classes == 50
    assert cfg.ingest.target_spacing == (1.0, 1.0, 2.5)


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "did you mean 'lr'"),
    ("trian.lr=1", "did you mean 'train'"),
    ("phantoms.shape=[1, 2]", "must have 3 items"),
    ("train.precision=fp8", "train.precision must be one of"),
    ("data.cube_size=[30, 30, 16]", "divisible by 8"),
    ("data.cube_size=[30, 30, 1]", "divisible by 8"),             # a flat (2D) cube: x and y still
    ("data.cube_size=[32, 32, 1]", "flat .z = 1: 2D images. together"),  # the volume shape is not flat
    ("discovery.min_patch=90", "min_patch < max_patch"),
    ("ingest.split_fractions=[0.5, 0.5, 0.5]", "summing to 1"),
    ("train.batch_size=1.5", "must be an integer"),
    ("ingest.allow_failures=maybe", "true or false"),
    ("train.storage_path=../../elsewhere", "leaves the run folder"),
    ("train.placement=ANYWHERE", "train.placement must be one of"),
])
def test_bad_values_get_specific_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cpu-tiny", [override])


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "p.yaml").write_text("preset: huge\n")
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_config(tmp_path / "p.yaml")


def test_configs_are_frozen_and_side_effect_free(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = SemGenConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3
    load_config("paper")
    assert list(tmp_path.iterdir()) == []


def test_corruption_policy_fields_are_config_fields():
    cfg = load_config("paper", ["train.corruption=mg",
                                "train.corruption_overrides={shuffle_blocks: 100, nonlinear_rate: 0.5}"])
    assert cfg.train.corruption_overrides == {"shuffle_blocks": 100, "nonlinear_rate": 0.5}
    assert from_dict(to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="did you mean 'shuffle_blocks'"):
        load_config("paper", ["train.corruption_overrides={shufle_blocks: 100}"])
