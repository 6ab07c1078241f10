"""Coordinate draw (margins, separation, foreground, None when impossible) and correspondence."""

from __future__ import annotations

import numpy as np
import pytest

from semgen_ray.config.schema import DiscoveryConfig
from semgen_ray.discovery import foreground as fg
from semgen_ray.discovery.coordinates import (
    body_box,
    candidate_ranges,
    correspond,
    draw_coordinate,
    map_coordinate,
)
from semgen_ray.phantoms import generate_patient

CUBE = (32, 32, 16)
CFG = DiscoveryConfig(border_xy=16, border_z=8, min_patch=25, max_patch=40, max_offset=5)


@pytest.fixture(scope="module")
def phantom():
    volume, _, _ = generate_patient(0, cohort_seed=0, shape=(128, 128, 64))
    return np.asarray(volume.array)


def test_margins_separation_and_foreground(phantom):
    rng = np.random.default_rng(0)
    (xl, xh), (yl, yh), (zl, zh) = candidate_ranges(phantom.shape, CUBE, 16, 8)
    assert (xl, xh, zl, zh) == (16, 128 - 32 - 1 - 16, 8, 64 - 16 - 3 - 1 - 8)
    coords = []
    for _ in range(4):
        c = draw_coordinate(phantom, rng, coords, cube=CUBE, config=CFG)
        assert c is not None
        assert xl <= c[0] <= xh and yl <= c[1] <= yh and zl <= c[2] <= zh
        assert all(np.linalg.norm(np.subtract(c, p)) >= CFG.min_distance for p in coords)
        coords.append(c)
    accept = fg.make_foreground_test("lung", CUBE, threshold=-150, lung_max=CFG.lung_max).prepare(phantom)
    assert accept(np.array(coords)).all()
    # the literal rule on the normalised crop: at most lung_max of the window (weighted) is tissue
    unit = (np.clip(phantom, -1000, 1000).astype(np.float32) + 1000) / 2000
    sums = fg.lung_window_sums(unit, np.array(coords), CUBE, fg.hu_to_unit(-150))
    assert (sums <= CFG.lung_max * np.prod(CUBE)).all()


def test_deterministic_and_normalised_input(phantom):
    a = draw_coordinate(phantom, np.random.default_rng(7), [], cube=CUBE, config=CFG)
    b = draw_coordinate(phantom, np.random.default_rng(7), [], cube=CUBE, config=CFG)
    unit = (np.clip(phantom, -1000, 1000).astype(np.float32) + 1000) / 2000
    c = draw_coordinate(unit, np.random.default_rng(7), [], cube=CUBE, config=CFG, normalized=True)
    assert a == b == c


def test_none_when_impossible():
    soft = np.full((128, 128, 64), 40, dtype=np.int16)  # soft tissue only: never "mostly lung"
    assert draw_coordinate(soft, np.random.default_rng(0), [], cube=CUBE, config=CFG) is None
    lung = np.full((40, 40, 20), -800, dtype=np.int16)  # too small for the margins: None, no crash
    assert draw_coordinate(lung, np.random.default_rng(0), [], cube=CUBE, config=CFG) is None


def test_collision_flag_is_reset_per_try():
    # 3×3×3 candidate positions; all but one taken. The reference's never-reset flag would fail after
    # the first collision; the intended rule finds the free position.
    vol = np.full((6, 6, 9), -900, dtype=np.int16)
    cube = (4, 4, 2)
    ranges = candidate_ranges(vol.shape, cube, 0, 0)
    grid = [(x, y, z) for x in range(ranges[0][0], ranges[0][1] + 1)
            for y in range(ranges[1][0], ranges[1][1] + 1) for z in range(ranges[2][0], ranges[2][1] + 1)]
    free = grid[13]
    previous = [g for g in grid if g != free]
    c = draw_coordinate(vol, np.random.default_rng(1), previous, cube=cube, border_xy=0, border_z=0,
                        min_distance=0.5, max_tries=500)
    assert c == free
    assert draw_coordinate(vol, np.random.default_rng(1), grid, cube=cube, border_xy=0, border_z=0,
                           min_distance=0.5) is None


def test_mr_uses_the_fraction_rule():
    vol = np.zeros((64, 64, 40), dtype=np.float32)
    xx, yy, zz = np.meshgrid(*(np.arange(n) for n in vol.shape), indexing="ij")
    vol[(xx - 32) ** 2 + (yy - 32) ** 2 + ((zz - 20) * 1.5) ** 2 < 24 ** 2] = 500.0
    rng = np.random.default_rng(0)
    c = draw_coordinate(vol, rng, [], cube=(16, 16, 8), config=CFG, modality="MR", border_xy=4, border_z=2)
    assert c is not None
    frac = fg.foreground_fraction(vol, [c], (16, 16, 8), threshold=250.0)[0]
    assert frac >= 0.5
    assert draw_coordinate(np.zeros_like(vol), rng, [], cube=(16, 16, 8), modality="MR", border_xy=4,
                           border_z=2) is None


def test_body_box_and_mapping():
    vol = np.full((20, 30, 10), -1000, dtype=np.int16)
    vol[4:14, 5:25, 2:8] = 0
    assert body_box(vol) == ((4, 14), (5, 25), (2, 8))
    ref = ((0, 10), (0, 20), (0, 10))
    nbr = ((10, 30), (5, 15), (0, 10))
    assert map_coordinate((5, 10, 3), ref, ref) == (5, 10, 3)
    assert map_coordinate((5, 10, 3), ref, nbr) == (20, 10, 3)
    assert map_coordinate((3, 8, 3), ref, nbr, cube=(4, 4, 4)) == (18, 8, 3)  # the centre (5, 10, 5) is mapped
    assert correspond((1, 2, 3)) == (1, 2, 3)
    assert correspond((5, 10, 3), "body_box", ref, nbr) == (20, 10, 3)
    with pytest.raises(ValueError):
        correspond((1, 2, 3), "body_box")


def test_patient_body_box_by_modality():
    """CT: voxels > -500 HU; MR (any scale, here z-scored-like values around 0): above Otsu's threshold."""
    from semgen_ray.discovery.coordinates import patient_body_box

    ct = np.full((20, 30, 10), -1000, dtype=np.int16)
    ct[4:14, 5:25, 2:8] = 40
    ct[0, 0, 0] = -600  # lung-like: not body
    assert patient_body_box(ct, "CT") == ((4, 14), (5, 25), (2, 8))
    mr = np.full((20, 30, 10), -1.2, dtype=np.float32)
    mr[3:9, 6:20, 1:9] = 1.5
    assert patient_body_box(mr, "MR") == ((3, 9), (6, 20), (1, 9))
    assert body_box(mr) == ((0, 20), (0, 30), (0, 10))  # the CT rule would take the whole MR volume
