"""Target-task cubes from a real phantom store: candidate negatives, shortcut AUCs, physical-size cubes,
segmentation jitter and background cubes, and the task files' info."""

import logging

import numpy as np
import pytest

from semgen_ray.evaluate.candidates import body_and_lung, candidate_centres
from semgen_ray.evaluate.shortcuts import cube_statistics, shortcut_aucs
from semgen_ray.evaluate.tasks import TaskData, _candidate_negatives, _Grid, _jittered, build_tasks, subsample
from semgen_ray.store import CT_WINDOW

CUBE = (32, 32, 16)
MM = (45.0, 45.0, 45.0)
SHAPE = (128, 128, 64)
#: Patients of cohort seed 7 with nodules of >= 8 voxels at 128×128×64, and their splits.
PATIENTS = {1: "train", 2: "train", 6: "train", 8: "train", 5: "val", 0: "test"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    from semgen_ray.phantoms import generate_patient
    from semgen_ray.store import open_store

    path = tmp_path_factory.mktemp("tasks") / "store.zarr"
    s = open_store(str(path), mode="w")
    rows = []
    for i, split in PATIENTS.items():
        volume, label, _ = generate_patient(i, cohort_seed=7, shape=SHAPE)
        rows.append(s.write(f"target_{i:02d}", volume, label=label, split=split))
    s.update_manifest(rows)
    return str(path)


@pytest.fixture(scope="module")
def built(store):
    """build_tasks by keyword settings, each built once per module."""
    cache = {}

    def get(**kw):
        key = tuple(sorted((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in kw.items()))
        if key not in cache:
            cache[key] = build_tasks(store, CUBE, seed=0, **kw)
        return cache[key]

    return get


def _all(data, key):
    return np.concatenate([p[key] for p in data.splits.values()])


def test_candidate_negatives_are_inside_the_lung_and_hold_no_label(store, built):
    from semgen_ray.store import open_store

    cand = built(cube_mm=MM)["classification"]
    rand = built(cube_mm=MM, negatives="random", negatives_per_positive=8)["classification"]
    for data in (cand, rand):
        assert set(_all(data, "y").tolist()) == {0, 1}
        assert all(p["x"].shape[1:] == (1, *CUBE) for p in data.splits.values())
    air = {name: cube_statistics(_all(d, "x"))["fraction_air"][_all(d, "y") == 0]
           for name, d in (("candidates", cand), ("random", rand))}
    assert air["candidates"].max() < 0.3  # never mostly air
    assert air["random"].max() > 0.5  # random boxes outside the body
    assert cand.info["counts"]["train"]["negatives"] == 2 * cand.info["counts"]["train"]["positives"]

    s = open_store(store)
    volume, meta = s.read("target_02", normalize=True)
    label = s.read_label("target_02")
    grid = _Grid.make(volume.shape, CUBE, meta["spacing"], MM)
    _, lung = body_and_lung(volume, meta["spacing"])
    assert lung[tuple(np.argwhere(label > 0).T)].all()  # the nodules lie inside the lung mask
    centres = candidate_centres(volume, lung, label, meta["spacing"])
    assert len(centres) > 20 and lung[tuple(centres.T)].all()
    positives = grid.origins(np.argwhere(label == 1).mean(0)[None])
    origins, pool = _candidate_negatives(grid, volume, label, lung, meta["spacing"], CT_WINDOW,
                                         positives, 2, np.random.default_rng(0))
    assert len(origins) == 2 and pool > 10
    assert not grid.holds_label(label, origins).any()
    assert not grid.extract(label, origins, mask=True).any()


def test_body_and_lung_masks_of_a_drawn_chest():
    """Air outside, a soft-tissue body, two lungs (one reaching the top slice, like the trachea) with a
    dense vessel inside: the lungs include the vessel, the outside air is neither body nor lung."""
    x, y, z = np.indices((48, 40, 20)).astype(float)
    hu = np.full(x.shape, -1000.0)
    hu[((x - 24) / 20) ** 2 + ((y - 20) / 16) ** 2 < 1] = 40.0
    for cx in (14, 34):
        hu[((x - cx) / 7) ** 2 + ((y - 20) / 10) ** 2 + ((z - 10) / 8) ** 2 < 1] = -850.0
    hu[(x - 14) ** 2 + (y - 20) ** 2 < 4] = -850.0  # an airway column up to the last slice
    hu[(x - 34) ** 2 + (y - 20) ** 2 + (z - 10) ** 2 < 3] = 40.0  # a vessel spot in the right lung
    volume = CT_WINDOW.apply(hu)
    body, lung = body_and_lung(volume, (2.5, 2.5, 2.5))
    assert not body[0, 0].any() and body[24, 20].all()
    assert lung[34, 20, 10] and lung[14, 20, 10] and lung[14, 20, 19]  # vessel, lung, airway at the top
    assert not lung[24, 20, 10] and not lung[2, 2, 2]  # mediastinum, outside air
    centres = candidate_centres(volume, lung, None, (2.5, 2.5, 2.5))
    assert [34, 20, 10] in centres.tolist()


def test_shortcut_aucs_candidates_low_random_high(built):
    cand = built(cube_mm=MM)["classification"].info["shortcut_auc"]
    # 8 random negatives per positive (80 cubes): their shortcut AUC is 0.74-0.76 over seeds 0-3, while 2
    # per positive (30 cubes) scatter it over 0.65-0.83 (it read >= 0.8 only while every patient drew from
    # one random stream)
    rand = built(cube_mm=MM, negatives="random", negatives_per_positive=8)["classification"].info["shortcut_auc"]
    print(f"shortcut AUC best: candidates {cand['best']}, random {rand['best']}")
    assert set(cand) == {"mean", "sd", "fraction_air", "fraction_lung", "fraction_soft", "centre", "max", "best"}
    assert cand["best"] == max(v for k, v in cand.items() if k != "best")
    assert cand["best"] <= 0.7
    assert rand["best"] >= 0.72 and rand["best"] - cand["best"] >= 0.05


def test_shortcut_aucs_of_known_cubes():
    x = np.zeros((4, 1, 4, 4, 4), np.float32)
    x[2:] = 0.5  # two soft-tissue cubes (HU 0) after two air cubes
    stats = cube_statistics(x)
    assert stats["fraction_air"].tolist() == [1, 1, 0, 0] and stats["fraction_soft"].tolist() == [0, 0, 1, 1]
    assert stats["fraction_lung"].tolist() == [1, 1, 0, 0] and np.allclose(stats["centre"], [0, 0, 0.5, 0.5])
    aucs = shortcut_aucs(x, [0, 0, 1, 1])
    assert aucs["mean"] == 1.0 and aucs["fraction_air"] == 1.0 and aucs["sd"] == 0.5 and aucs["best"] == 1.0


def test_physical_cubes_sample_the_given_extent():
    """A ramp in mm along each axis: the first and last samples lie (cube - 1) × cube_mm / cube apart,
    and samples outside the volume are padded with its minimum."""
    spacing = np.array([2.0, 2.5, 5.0])
    shape = (40, 30, 20)
    idx = np.indices(shape).astype(np.float32)
    grid = _Grid.make(shape, (8, 8, 4), spacing, (40.0, 40.0, 40.0))
    centre = np.array([[20.0, 15.0, 10.0]])
    for axis in range(3):
        ramp = idx[axis] * spacing[axis]
        cubes = grid.extract(ramp, grid.origins(centre))
        assert cubes.shape == (1, 8, 8, 4)
        first = cubes[0].take(0, axis).mean()
        last = cubes[0].take(-1, axis).mean()
        n = grid.cube[axis]
        assert last - first == pytest.approx((n - 1) * 40.0 / n, abs=1e-3)
        assert cubes[0].mean() == pytest.approx(centre[0, axis] * spacing[axis], abs=1e-3)
    volume = np.ones(shape, np.float32)
    volume[0, 0, 0] = 0.25
    corner = grid.extract(volume, grid.origins(np.array([[0.0, 0.0, 0.0]])))
    assert corner.min() == 0.25 and corner.max() == 1.0 and (corner == 0.25).mean() > 0.3


def _central_object(mask: np.ndarray) -> np.ndarray:
    """The connected foreground component at the cube's centre voxel (others may share the cube)."""
    from scipy import ndimage

    comps, _ = ndimage.label(mask)
    centre = comps[tuple(n // 2 for n in mask.shape)]
    return comps == centre if centre else np.zeros_like(mask, bool)


def test_cube_mm_scales_the_nodule(built):
    """Halving cube_mm (same voxels) doubles a nodule's diameter in voxels: 8× its voxel count."""
    big = built(cube_mm=(90.0, 90.0, 90.0), seg_jitter=0.0)["segmentation"].splits["train"]["y"][:, 0]
    small = built(cube_mm=MM, seg_jitter=0.0)["segmentation"].splits["train"]["y"][:, 0]
    assert big.shape == small.shape and big.shape[1:] == CUBE
    big = np.stack([_central_object(m) for m in big])
    small = np.stack([_central_object(m) for m in small])
    vb, vs = big.reshape(len(big), -1).sum(1), small.reshape(len(small), -1).sum(1)
    largest = int(np.argmax(vb))
    assert vb[largest] > 30
    assert 6.0 < vs[largest] / vb[largest] < 10.0
    for axis in range(3):  # the extent along every axis doubles
        others = tuple(a for a in range(3) if a != axis)
        wb, ws = (np.ptp(np.flatnonzero(m[largest].any(others))) + 1 for m in (big, small))
        assert 1.6 < ws / wb < 2.5


def test_jitter_moves_objects_off_centre_but_keeps_them(built):
    """Cubes that hold one object only (others may enter a moved cube): the object is off-centre after
    the jitter and whole (as many voxels as when centred)."""
    from scipy import ndimage

    centred = _all(built(cube_mm=MM, seg_jitter=0.0)["segmentation"], "y")[:, 0]
    moved = _all(built(cube_mm=MM, seg_jitter=0.25)["segmentation"], "y")[:, 0]
    assert all(m.any() for m in moved)
    alone = [k for k in range(len(moved))
             if ndimage.label(centred[k])[1] == 1 and ndimage.label(moved[k])[1] == 1]
    assert len(alone) >= 4

    def offset(mask):
        return np.abs(np.argwhere(mask).mean(0) - (np.array(CUBE) - 1) / 2).max()

    ratio = np.array([moved[k].sum() / centred[k].sum() for k in alone])
    assert ((ratio > 0.8) & (ratio < 1.25)).all()
    assert max(offset(centred[k]) for k in alone) < 1.0
    assert np.median([offset(moved[k]) for k in alone]) > 1.5


def test_jitter_keeps_the_object_box_inside_the_cube():
    rng = np.random.default_rng(0)
    extent = np.array([16.0, 16.0, 9.0])
    for _ in range(200):
        lo = rng.uniform(0, 50, 3)
        box = np.stack([lo, lo + rng.uniform(1, 8, 3)], 1)
        centre = box.mean(1) + rng.uniform(-1, 1, 3)
        c = _jittered(centre, box, extent, 0.25, rng)
        assert (c - extent / 2 <= box[:, 0]).all() and (box[:, 1] <= c + extent / 2).all()
        assert (np.abs(c - centre) <= 0.25 * extent + 1e-9).all()
    big = np.array([[0.0, 30.0], [0.0, 4.0], [0.0, 4.0]])  # larger than the cube along x: centred on it
    assert _jittered(np.array([14.0, 2.0, 2.0]), big, extent, 0.25, rng)[0] == 15.0


def test_background_cubes_and_segmentation_counts(built):
    plain = built(cube_mm=MM)["segmentation"]
    more = built(cube_mm=MM, seg_background=2)["segmentation"]
    for s in ("train", "val", "test"):
        c0, c1 = plain.info["counts"][s], more.info["counts"][s]
        assert c1["cubes"] == 3 * c0["cubes"] == 3 * c1["object_cubes"] and c1["background_cubes"] == 2 * c0["cubes"]
        assert c1["with_foreground"] + c1["without_foreground"] == c1["cubes"] == len(more.splits[s]["x"])
        assert c0["without_foreground"] == 0 and c1["without_foreground"] > 0
        assert 0 < c0["foreground_fraction_median"] < 0.5
    background = more.splits["train"]["x"][plain.info["counts"]["train"]["cubes"]:]
    assert (cube_statistics(background)["fraction_air"] < 0.9).all()  # inside the body, not outside air


def test_info_round_trips_and_same_seed_same_cubes(built, store, tmp_path):
    tasks = built(cube_mm=MM)
    cls = tasks["classification"]
    assert cls.info["settings"] == {"negatives": "candidates", "negatives_per_positive": 2, "cube": list(CUBE),
                                    "cube_mm": list(MM), "seg_jitter": 0.25, "seg_background": 0,
                                    "min_voxels": 8, "seed": 0}
    for data in tasks.values():
        data.save(tmp_path / f"{data.task}.npz")
        again = TaskData.load(tmp_path / f"{data.task}.npz")
        assert again.info == data.info and again.sizes() == data.sizes()
        assert again.digest() == data.digest()
    half = subsample(cls, 0.5, seed=0)
    assert half.info["shortcut_auc"] == cls.info["shortcut_auc"] and half.info["label_fraction"] == 0.5
    assert half.digest() != cls.digest()

    repeat = build_tasks(store, CUBE, seed=0, cube_mm=MM)
    other = build_tasks(store, CUBE, seed=1, cube_mm=MM)
    for task in ("classification", "segmentation"):
        for s, part in tasks[task].splits.items():
            for k in ("x", "y", "patient"):
                assert np.array_equal(part[k], repeat[task].splits[s][k])
        assert repeat[task].digest() == tasks[task].digest() != other[task].digest()
    assert not np.array_equal(_all(other["segmentation"], "x"), _all(tasks["segmentation"], "x"))


def test_the_task_cache_follows_the_cube_size_not_timestamps(store, tmp_path, caplog):
    """Issue 16: the evaluation's task cache (its reuse record ``tasks.json``) is rebuilt when
    ``data.cube_size`` changes, and reused when only a file's timestamp did."""
    import os

    from semgen_ray.config import load_config
    from semgen_ray.stages.evaluation import load_tasks

    caplog.set_level(logging.INFO, logger="semgen_ray")

    def load(cube):
        caplog.clear()
        data = load_tasks(load_config(None, [f"data.cube_size={list(cube)}"]), store, tmp_path)
        return data, any("reusing the target-task cubes" in line for line in caplog.messages)

    first, reused = load(CUBE)
    assert not reused and first["classification"].splits["train"]["x"].shape[2:] == CUBE
    os.utime(tmp_path / "tasks_classification.npz", (1, 1))
    again, reused = load(CUBE)
    assert reused and again["classification"].digest() == first["classification"].digest()
    small, reused = load((16, 16, 8))
    assert not reused
    assert {p["x"].shape[2:] for d in small.values() for p in d.splits.values()} == {(16, 16, 8)}


def test_voxel_boxes_without_cube_mm(built):
    cls = built(negatives="random")["classification"]
    assert cls.info["settings"]["cube_mm"] is None
    assert all(p["x"].shape[1:] == (1, *CUBE) for p in cls.splits.values())
    with pytest.raises(ValueError, match="negatives"):
        build_tasks("unused", CUBE, negatives="nearby")


# ------------------------------------------------------------------------------------ low-label subsets

def _one_positive_patient(task="classification", n_patients=10) -> TaskData:
    """Training patients p0 … p9 with 2 cubes each; only p0 has a positive (its other cube is negative)."""
    patient = np.repeat([f"p{i}" for i in range(n_patients)], 2)
    y = np.zeros(len(patient), np.int64)
    y[0] = 1
    x = np.zeros((len(patient), 1, 2, 2, 2), np.float32)
    part = {"x": x, "y": y, "patient": patient}
    return TaskData(task, {"train": part, "val": part, "test": part})


def test_subset_lacking_a_class_is_redrawn_within_the_fraction():
    """20 % of 10 patients is 2; most pairs lack p0, the only patient with a positive. Every seed gets 2
    patients holding both classes (never all 10), and ``subset_draws`` says how many draws it took."""
    data = _one_positive_patient()
    draws = []
    for seed in range(20):
        sub = subsample(data, 0.2, seed)
        train = sub.splits["train"]
        assert sub.info["train_patients"] == 2 == len(set(train["patient"])), seed
        assert set(train["y"].tolist()) == {0, 1} and "p0" in set(train["patient"])
        draws.append(sub.info["subset_draws"])
        assert subsample(data, 0.2, seed).splits["train"]["patient"].tolist() == train["patient"].tolist()
    assert min(draws) == 1 and max(draws) > 1  # some first draws held p0, others were redrawn


def test_subset_first_draw_kept_when_it_holds_both_classes():
    """Every patient holds both classes: the first draw is the subset, as before the redraw rule."""
    from semgen_ray.evaluate.tasks import subset_patients

    patient = np.repeat([f"p{i}" for i in range(10)], 2)
    y = np.tile([0, 1], 10)
    for seed in range(5):
        keep, draws = subset_patients(patient, y, "classification", 0.3, seed)
        want = sorted(np.random.default_rng(seed).choice(np.unique(patient), size=3, replace=False).tolist())
        assert (keep, draws) == (want, 1)
    assert subset_patients(patient, y, "classification", 1.0, 0) == (sorted(set(patient.tolist())), 0)


def test_subset_that_cannot_hold_both_classes_fails_clearly():
    """10 % of 10 patients is one patient, and none holds both classes: an error naming the fraction,
    not a silent fall-back to every training patient. Segmentation has no classes to keep."""
    from semgen_ray.evaluate.tasks import TaskError

    data = _one_positive_patient()
    data.splits["train"]["y"][1] = 1  # p0: positives only
    with pytest.raises(TaskError, match=r"label fraction 0.1 keeps 1 of 10 training patients.*both classes"):
        subsample(data, 0.1, seed=0)
    seg = subsample(_one_positive_patient("segmentation"), 0.1, seed=0)
    assert seg.info["train_patients"] == 1 and seg.info["subset_draws"] == 1


def test_trial_grid_checks_subsets_before_any_trial(monkeypatch, caplog):
    """The grid's cells are checked up front: a redrawn subset is logged, an impossible one raises."""
    from semgen_ray.evaluate.tasks import TaskError
    from semgen_ray.evaluate.trials import check_subsets

    data = {"classification": _one_positive_patient()}
    caplog.set_level(logging.INFO, logger="semgen_ray")
    check_subsets(data, [("classification", 0.2, s) for s in range(6)] + [("classification", 1.0, 0)])
    assert caplog.messages and all("lacked a class; redrawn within the fraction" in m for m in caplog.messages)
    data["classification"].splits["train"]["y"][1] = 1
    with pytest.raises(TaskError, match="label fraction 0.1"):
        check_subsets(data, [("classification", 0.1, 0)])


# ------------------------------------------------------------------ settings through build_tasks / the stage

def _per_patient(data, y=None) -> dict:
    """Patient → number of cubes (of label ``y`` when given) over every split."""
    patients = _all(data, "patient") if y is None else _all(data, "patient")[_all(data, "y") == y]
    ids, counts = np.unique(patients, return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist()))


def test_negatives_per_positive_sets_the_negatives_per_nodule(built):
    """evaluate.negatives_per_positive (build_tasks' ``negatives_per_positive``): each patient gets that
    many non-nodule cubes per nodule cube (none short on these phantoms); the positives do not change.
    Voxel boxes and random negatives: the cheapest build."""
    by = {2: built(negatives="random")["classification"],  # the default
          3: built(negatives="random", negatives_per_positive=3)["classification"]}
    for negatives_per_positive, cls in by.items():
        assert cls.info["settings"]["negatives_per_positive"] == negatives_per_positive
        positives, negatives = _per_patient(cls, 1), _per_patient(cls, 0)
        assert negatives == {p: negatives_per_positive * n for p, n in positives.items()}
        for s, counts in cls.info["counts"].items():
            assert counts["negatives"] == negatives_per_positive * counts["positives"] == \
                int((cls.splits[s]["y"] == 0).sum())
            assert counts["negatives_short"] == 0
    assert sum(_per_patient(by[3], 0).values()) == 24 + 3 + 3  # 8 / 1 / 1 nodules per split
    assert np.array_equal(by[2].splits["train"]["x"][by[2].splits["train"]["y"] == 1],
                          by[3].splits["train"]["x"][by[3].splits["train"]["y"] == 1])


def test_min_voxels_decides_which_nodules_qualify(built, store):
    """evaluate.min_voxels (build_tasks' ``min_voxels``): a nodule of fewer labelled voxels makes no
    positive cube. These phantoms hold three one-voxel objects in the training split: min_voxels 1
    adds their cubes to both tasks, the default 8 leaves them out; the counts follow the label arrays."""
    from semgen_ray.store import open_store

    s = open_store(store)
    sizes = {r["patient_id"]: np.bincount(s.read_label(r["patient_id"]).ravel().astype(np.int64))[1:]
             for r in s.manifest_rows()}
    by = {8: built(negatives="random"), 1: built(negatives="random", min_voxels=1)}  # 8: the default
    for min_voxels, tasks in by.items():
        want = {p: int((n >= min_voxels).sum()) for p, n in sizes.items() if (n >= min_voxels).any()}
        cls, seg = tasks["classification"], tasks["segmentation"]
        assert cls.info["settings"]["min_voxels"] == min_voxels
        assert _per_patient(cls, 1) == want  # one positive cube per qualifying nodule
        assert _per_patient(seg) == want  # one segmentation cube per qualifying nodule
        assert {sp: c["objects"] for sp, c in cls.info["counts"].items()} == {
            sp: sum(n for p, n in want.items() if PATIENTS[int(p[-2:])] == sp) for sp in ("train", "val", "test")}
    assert by[1]["classification"].info["counts"]["train"]["objects"] == 11
    assert by[8]["classification"].info["counts"]["train"]["objects"] == 8


def test_a_named_target_store_is_used_instead_of_a_phantom_cohort(built, store, tmp_path):
    """evaluate.target_store: the stage's target store (run.target_store) is the labelled store named,
    no phantom cohort is written into the run folder, and the stage's task cubes (run.load_tasks) are
    that store's cubes."""
    from semgen_ray.config import load_config
    from semgen_ray.stages.evaluation import load_tasks, target_store

    run = tmp_path / "run"
    config = load_config(None, [f"run_dir={run}", f"evaluate.target_store={store}", f"data.cube_size={list(CUBE)}",
                                "evaluate.cube_mm=null", "evaluate.negatives=random"])
    assert config.evaluate.target_store == store
    uri = target_store(config)
    assert uri == store
    assert not (run / "target.zarr").exists()
    data = load_tasks(config, uri, tmp_path)
    want = built(negatives="random")
    for task in ("classification", "segmentation"):
        assert set(_all(data[task], "patient")) == {f"target_{i:02d}" for i in PATIENTS}
        assert data[task].digest() == want[task].digest()


# ------------------------------------------------------------------------------ 2D images (films)
@pytest.fixture(scope="module")
def films(tmp_path_factory) -> str:
    """A store of 16 phantom radiographs (64×128 films of 128×128×64 phantoms, cohort seed 5) with
    their nodule masks: the first two films with nodules are the test split, the next two val."""
    from semgen_ray.io.image2d import Image2D
    from semgen_ray.phantoms.radiograph import BITS, phantom_radiograph
    from semgen_ray.store import open_store

    s = open_store(str(tmp_path_factory.mktemp("films") / "films.zarr"), mode="w")
    rows, with_nodules = [], 0
    for i in range(16):
        film = phantom_radiograph(i, 5, SHAPE)
        split = "train"
        if film.boxes:
            split = ("test", "test", "val", "val")[with_nodules] if with_nodules < 4 else "train"
            with_nodules += 1
        image = Image2D(film.image / float(2 ** BITS - 1), film.pixel_spacing, "DX", f"phantom-film://{i}")
        rows.append(s.write_image(f"xray_{i:05d}", image, label=film.mask, split=split))
    s.update_manifest(rows)
    assert with_nodules >= 6
    return s.uri


def test_film_tasks_are_2d_patches_of_the_films_with_their_nodule_masks(films):
    """On 2D images the tasks are (N, 1, X, Y) patches of ``cube``'s first two sizes: a nodule patch per
    projected nodule, two label-free negatives per nodule, and segmentation patches whose masks hold
    the nodule; the same arguments give the same patches."""
    from semgen_ray.store import open_store

    kwargs = dict(seed=0, min_voxels=2, negatives="matched", seg_background=1, images=True, cube_mm=None)
    out = build_tasks(films, (32, 32, 16), **kwargs)
    cls, seg = out["classification"], out["segmentation"]
    store = open_store(films)
    objects = 0
    for pid in store.image_ids:
        label = store.read_label(pid)
        objects += int(sum(np.count_nonzero(label == i) >= 2 for i in np.unique(label[label > 0])))
    counts = cls.info["counts"]
    assert sum(c["positives"] for c in counts.values()) == objects
    assert all(c["negatives"] + c["negatives_short"] == 2 * c["positives"] for c in counts.values())
    for s in ("train", "val", "test"):
        assert cls.splits[s]["x"].shape[1:] == (1, 32, 32) and cls.splits[s]["x"].dtype == np.float32
        assert seg.splits[s]["x"].shape[1:] == seg.splits[s]["y"].shape[1:] == (1, 32, 32)
        c = seg.info["counts"][s]
        assert c["object_cubes"] == c["background_cubes"] and c["with_foreground"] >= c["object_cubes"]
    assert cls.info["settings"]["images"] is True
    assert build_tasks(films, (32, 32, 16), **kwargs)["classification"].digest() == cls.digest()


def _nearest_positive_gap(data) -> float:
    """Mean over the negatives of the L1 gap in (mean, s.d.) to the nearest positive of their film."""
    gaps = []
    for v in data.splits.values():
        stats = cube_statistics(v["x"][..., None])
        f = np.stack([stats["mean"], stats["sd"]], 1)
        for pid in np.unique(v["patient"]):
            mine = v["patient"] == pid
            pos, neg = f[mine & (v["y"] == 1)], f[mine & (v["y"] == 0)]
            gaps.extend(np.abs(neg[:, None] - pos[None]).sum(-1).min(1))
    return float(np.mean(gaps))


def test_matched_film_negatives_resemble_the_nodule_patches_more_than_random_ones(films):
    """Random negatives on a film fall anywhere (the black air beside the body, the white abdomen);
    negatives matched to the nodule patches' statistics (drawn from each film's label-free patches)
    lie less than half as far from them in mean intensity and s.d. (0.09 against 0.20 here)."""
    kwargs = dict(seed=0, min_voxels=2, images=True, cube_mm=None)
    matched = build_tasks(films, (32, 32, 1), negatives="matched", **kwargs)["classification"]
    random = build_tasks(films, (32, 32, 1), negatives="random", **kwargs)["classification"]
    assert _nearest_positive_gap(matched) < 0.5 * _nearest_positive_gap(random)
    assert matched.info["counts"]["train"]["pool"] > 0 and random.info["counts"]["train"]["pool"] == 0


def test_film_tasks_refuse_what_needs_a_ct_volume(films):
    from semgen_ray.evaluate.tasks import TaskError

    with pytest.raises(TaskError, match="on 2D images use evaluate.negatives: matched"):
        build_tasks(films, (32, 32, 1), negatives="candidates", images=True)
    with pytest.raises(TaskError, match="set evaluate.cube_mm: null"):
        build_tasks(films, (32, 32, 1), negatives="matched", cube_mm=MM, images=True)
    with pytest.raises(TaskError, match="no patient of .* has a label array"):  # a film store holds no volume
        build_tasks(films, (32, 32, 16), negatives="matched")


def test_a_film_task_fine_tunes_a_2d_network_and_refuses_a_3d_one(films):
    from semgen_ray.evaluate.finetune import run_trial

    data = build_tasks(films, (32, 32, 1), negatives="matched", min_voxels=2, images=True)["segmentation"]
    model = {"width": 4, "depth": 3, "norm": "batch", "in_channels": 1, "out_channels": 1}
    with pytest.raises(ValueError, match="a 3D network cannot fine-tune on 2D images"):
        run_trial(data, "segmentation", "scratch", None, 0, model, spatial_dims=3)
    row = run_trial(data, "segmentation", "scratch", None, 0, model, spatial_dims=2, max_steps=2, eval_every=1,
                    patience=2, lr_patience=1, batch_size=4)
    assert row["steps"] == 2 and row["test_cases"] == len(data.splits["test"]["x"]) and 0 <= row["dice"] <= 1
