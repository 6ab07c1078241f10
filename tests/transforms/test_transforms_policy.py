"""CorruptionPolicy: presets carry the reference numbers (docs/method.md §3), overrides validate."""

import dataclasses

import pytest

from semgen_ray.transforms import PRESETS, CorruptionPolicy, PolicyError, policy_from_preset
from semgen_ray.transforms.policy import check_geometry, resolve_range

CUBE = (64, 64, 32)


def test_sg_is_the_default_and_matches_the_pytorch_reference():
    p = PRESETS["sg"]
    assert p == dataclasses.replace(CorruptionPolicy(), name="sg")
    assert (p.flip, p.elastic, p.mode) == (False, True, "one_of")
    assert (p.elastic_alpha, p.elastic_sigma, p.elastic_axes) == (991.0, 8.0, (0, 1))
    assert p.one_of_weights == (0.25, 0.25, 0.25, 0.25)
    assert (p.shuffle_blocks, p.inpaint_holes, p.inpaint_hole_rate, p.outpaint_windows) == (5, 1, 1.0, 1)
    assert p.paint_fill == "noise"
    assert p.probabilities() == pytest.approx(dict.fromkeys(p.probabilities(), 0.25))


def test_mg_preset_matches_models_genesis():
    p = PRESETS["mg"]
    assert (p.flip, p.flip_rate, p.flip_max, p.flip_axes) == (True, 0.4, 3, (0, 1, 2))
    assert (p.elastic, p.mode, p.shuffle_blocks) == (False, "chain", 10_000)
    assert (p.shuffle_rate, p.nonlinear_rate, p.paint_rate, p.inpaint_rate) == (0.5, 0.9, 0.9, 0.2)
    assert (p.inpaint_holes, p.inpaint_hole_rate, p.outpaint_windows, p.outpaint_window_rate) == (5, 0.95, 5, 0.95)
    assert p.probabilities() == pytest.approx({"local_pixel_shuffle": 0.5, "nonlinear_intensity": 0.9,
                                               "in_painting": 0.18, "out_painting": 0.72})


def test_sg_keras_preset_uses_constant_fills_and_absolute_sizes():
    p = PRESETS["sg_keras"]
    assert (p.paint_fill, p.inpaint_size, p.outpaint_shrink, p.shuffle_blocks) == ("constant", (10, 20), (10, 20), 5)
    assert (p.elastic, p.mode, p.flip) == (True, "one_of", False)


def test_sizes_resolve_to_the_reference_voxel_ranges_on_64x64x32():
    sg = PRESETS["sg"]
    assert resolve_range(sg.shuffle_block_size, CUBE) == ((1, 1, 1), (6, 6, 3))
    assert resolve_range(sg.inpaint_size, CUBE) == ((10, 10, 5), (21, 21, 10))
    lo, hi = resolve_range(sg.outpaint_shrink, CUBE)
    assert [d - h for d, h in zip(CUBE, hi)] == [28, 28, 14] and [d - l for d, l in zip(CUBE, lo)] == [37, 37, 19]
    assert resolve_range(PRESETS["sg_keras"].inpaint_size, CUBE) == ((10, 10, 10), (20, 20, 20))
    # relative bounds never resolve below one voxel
    assert resolve_range((1, "D/10"), (16, 16, 8)) == ((1, 1, 1), (1, 1, 1))


def test_overrides_replace_fields_and_are_validated():
    p = policy_from_preset("mg", shuffle_rate=0.7, flip_axes=[1, 2], inpaint_size=["D/5", 12])
    assert (p.shuffle_rate, p.flip_axes, p.inpaint_size, p.name) == (0.7, (1, 2), ("D/5", 12), "mg+custom")
    assert PRESETS["mg"].shuffle_rate == 0.5                     # presets are untouched
    assert policy_from_preset(p) is p


@pytest.mark.parametrize("overrides, match", [
    ({"shuffle_rat": 0.3}, "did you mean 'shuffle_rate'"),
    ({"nonsense": 1}, "unknown corruption policy field"),
    ({"paint_rate": 1.5}, "paint_rate must be a probability"),
    ({"mode": "both"}, "mode must be"),
    ({"inpaint_size": ("D/6",)}, "inpaint_size must be a pair"),
    ({"inpaint_size": ("E/6", 3)}, "cannot parse bound"),
    ({"outpaint_shrink": (20, 10)}, "lo must be <= hi"),
    ({"one_of_weights": (1, 1, 1)}, "one_of_weights"),
    ({"elastic_axes": (0, 0)}, "elastic_axes"),
    ({"paint_fill": "zeros"}, "paint_fill"),
    ({"outpaint_windows": 0}, "outpaint_windows"),
    ({"flip": "yes"}, "flip must be True or False"),
])
def test_bad_overrides_raise_clear_errors(overrides, match):
    with pytest.raises(PolicyError, match=match):
        policy_from_preset("sg", **overrides)


def test_unknown_preset():
    with pytest.raises(PolicyError, match="unknown corruption preset 'mg_original'"):
        policy_from_preset("mg_original")


def test_policy_is_frozen_hashable_and_serialisable():
    p = PRESETS["mg"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.flip = False
    assert hash(p) == hash(dataclasses.replace(p))
    d = p.to_dict()
    assert d["shuffle_blocks"] == 10_000 and d["inpaint_size"] == ["D/6", "D/3"]
    assert CorruptionPolicy(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}) == p


def test_geometry_is_checked_against_the_cube():
    for p in PRESETS.values():
        check_geometry(p, CUBE)
    check_geometry(PRESETS["sg"], (32, 32, 16))
    with pytest.raises(PolicyError, match="inpaint_size .* need 1 <= lo <= hi <= 10"):
        check_geometry(PRESETS["sg_keras"], (32, 32, 16))
    with pytest.raises(PolicyError, match="outpaint_shrink"):
        check_geometry(PRESETS["mg"], (16, 16, 8))
    # an operation that is never drawn does not constrain the cube
    check_geometry(policy_from_preset("mg", inpaint_rate=0.0, paint_rate=0.0), (16, 16, 8))
