"""Ray Data sources over a small store, in local mode: exact crops, metadata, errors, torch batches."""

import threading

import numpy as np
import pytest

from semgen_ray.data import BoxError, read_crops, read_subvolumes, read_volumes, resize
from semgen_ray.data.subvolumes import draw_subvolume_boxes
from semgen_ray.store import CT_WINDOW

pytestmark = pytest.mark.ray
CUBE = (16, 16, 8)


def make_boxes(volumes):
    """Native 16x16x8 boxes (all over P0, P1, P2, across 32x32x16 chunk borders), plus rescaled
    ones (sides 12-22) and pass-through columns."""
    rng = np.random.default_rng(5)
    rows = []
    for pid, (shape, _) in volumes.items():
        for k in range(6):
            size = np.array(CUBE) if k < 4 else np.array([rng.integers(12, 23), rng.integers(12, 23), 8])
            lo = rng.integers(0, np.array(shape) - size + 1)
            if k == 0:  # straddle the chunk corner (32, 32, 16)
                lo = np.array([24, 24, 12])
            rows.append({"patient_id": pid, **dict(zip(("x0", "y0", "z0"), lo.tolist())),
                         **dict(zip(("x1", "y1", "z1"), (lo + size).tolist())),
                         "class_id": len(rows) % 3, "row_id": f"r{len(rows)}", "resolution": int(k >= 4) + 1})
    return rows


def collect(ds):
    out = {}
    for batch in ds.iter_batches(batch_size=7, batch_format="numpy"):
        for k, v in batch.items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


@pytest.mark.parametrize("which", ["store_uri", "chunked_store_uri"])
def test_read_crops_exact(request, data_ray, arrays, which, volumes):
    boxes = make_boxes(volumes)
    got = collect(read_crops(request.getfixturevalue(which), boxes, cube_size=CUBE))
    assert sorted(got["row_id"].tolist()) == sorted(b["row_id"] for b in boxes)  # each box once
    assert sorted(got["box_index"].tolist()) == list(range(len(boxes)))
    for i, idx in enumerate(got["box_index"]):
        b = boxes[idx]
        assert got["patient_id"][i] == b["patient_id"] and got["row_id"][i] == b["row_id"]
        assert got["class_id"][i] == b["class_id"] and got["resolution"][i] == b["resolution"]
        assert [got[c][i] for c in ("x0", "y0", "z0", "x1", "y1", "z1")] == [
            b[c] for c in ("x0", "y0", "z0", "x1", "y1", "z1")]
        np.testing.assert_array_equal(got["spacing"][i], volumes[b["patient_id"]][1])
        want = CT_WINDOW.apply(arrays[b["patient_id"]][b["x0"]:b["x1"], b["y0"]:b["y1"], b["z0"]:b["z1"]])
        if want.shape != CUBE:
            want = resize(want, CUBE)
        assert got["cube"][i].dtype == np.float32 and got["cube"][i].shape == CUBE
        np.testing.assert_array_equal(got["cube"][i], want)


def test_items_construction_matches_datasource(data_ray, store_uri, volumes):
    from semgen_ray.data import _source
    from semgen_ray.data.crops import crop_specs

    specs = crop_specs(store_uri, make_boxes(volumes), CUBE, columns=["box_index", "cube"],
                       max_boxes_per_task=4)
    assert len(specs) == 6  # 3 patients x 6 boxes in tasks of at most 4
    a, b = (collect(_source.build_dataset(specs, "t", construction=c)) for c in ("datasource", "items"))
    assert set(a) == {"box_index", "cube"}
    oa, ob = np.argsort(a["box_index"]), np.argsort(b["box_index"])
    np.testing.assert_array_equal(a["cube"][oa], b["cube"][ob])
    ids_only = collect(read_crops(store_uri, make_boxes(volumes), CUBE, columns=["row_id"]))
    assert set(ids_only) == {"row_id"} and len(ids_only["row_id"]) == 18
    assert read_crops(store_uri, [], CUBE).count() == 0


def test_read_volumes_fixed_shape(data_ray, store_uri, arrays, volumes):
    got = collect(read_volumes("file://" + store_uri, shape=(32, 24, 16)))  # URIs work too
    assert sorted(got["patient_id"].tolist()) == sorted(volumes)
    assert got["volume"].shape == (3, 32, 24, 16) and got["volume"].dtype == np.float32
    for i, pid in enumerate(got["patient_id"]):
        shape, spacing = volumes[pid]
        np.testing.assert_array_equal(got["original_shape"][i], shape)
        np.testing.assert_array_equal(got["spacing"][i], spacing)
        np.testing.assert_allclose(got["scale"][i], np.array((32, 24, 16)) / shape)
        np.testing.assert_array_equal(got["volume"][i], resize(CT_WINDOW.apply(arrays[pid]), (32, 24, 16)))


def test_read_subvolumes_seeded(data_ray, store_uri, arrays, volumes):
    kw = {"size": CUBE, "per_patient": 3, "seed": 3, "columns": ["patient_id", "x0", "y0", "z0", "epoch", "cube"]}
    e0 = collect(read_subvolumes(store_uri, epoch=0, **kw))
    again = collect(read_subvolumes(store_uri, epoch=0, **kw))
    e1 = collect(read_subvolumes(store_uri, epoch=1, **kw, patient_ids=["P0", "P1"]))

    def key(d):
        return sorted(zip(d["patient_id"].tolist(), d["x0"].tolist(), d["y0"].tolist(), d["z0"].tolist()))

    assert len(e0["cube"]) == 9 and key(e0) == key(again) and set(e1["epoch"]) == {1}
    assert set(e1["patient_id"]) == {"P0", "P1"} and not set(key(e1)) <= set(key(e0))
    want = draw_subvolume_boxes({p: volumes[p][0] for p in volumes}, CUBE, 3, seed=3, epoch=0)
    assert key(e0) == sorted(zip(*(want.column(c).to_pylist() for c in ("patient_id", "x0", "y0", "z0"))))
    for i, pid in enumerate(e0["patient_id"]):
        x, y, z = e0["x0"][i], e0["y0"][i], e0["z0"][i]
        np.testing.assert_array_equal(e0["cube"][i], CT_WINDOW.apply(arrays[pid][x:x + 16, y:y + 16, z:z + 8]))


def test_errors_before_and_during_reads(data_ray, store_uri):
    bad = [{"patient_id": "P2", "x0": 56, "y0": 0, "z0": 0, "x1": 72, "y1": 16, "z1": 8}]
    with pytest.raises(BoxError, match=r"patient 'P2' box \(x0=56.*shape \(64, 64, 32\)"):
        read_crops(store_uri, bad, cube_size=CUBE)
    with pytest.raises(BoxError, match=r"not complete patients.*'nobody'"):
        read_crops(store_uri, [{**bad[0], "patient_id": "nobody", "x0": 0, "x1": 16}], cube_size=CUBE)
    with pytest.raises(BoxError, match="not complete patients"):
        read_volumes(store_uri, patient_ids=["nobody"])
    # Without the driver check the read task itself refuses, naming the patient and the box.
    with pytest.raises(BoxError, match=r"'P2'.*\(56, 0, 0\)"):
        read_crops(store_uri, bad, cube_size=CUBE, validate=False).materialize()


def test_torch_batches_and_streaming_split(data_ray, store_uri, volumes):
    import torch

    ds = read_crops(store_uri, make_boxes(volumes), cube_size=CUBE, columns=["cube", "class_id", "spacing"])
    batch = next(iter(ds.iter_torch_batches(batch_size=4)))
    assert batch["cube"].shape == (4, *CUBE) and batch["cube"].dtype == torch.float32
    assert batch["class_id"].dtype == torch.int64 and batch["spacing"].shape == (4, 3)

    shards = read_crops(store_uri, make_boxes(volumes), cube_size=CUBE,
                        columns=["box_index", "cube"]).streaming_split(2, equal=False)
    seen = [[], []]

    def consume(i):
        for b in shards[i].iter_torch_batches(batch_size=5):
            seen[i].extend(b["box_index"].tolist())

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(seen[0] + seen[1]) == list(range(18))


def test_read_crops_cuts_2d_images_as_flat_volumes(data_ray, tmp_path, arrays, volumes):
    """Semantic Genesis 2D on the 3D path: a 2D image's boxes are flat (z 0..1) and its crops are
    (X, Y, 1) cubes of the windowed image, resized like any crop; volumes in the same store are unchanged."""
    from semgen_ray.io.image2d import Image2D
    from semgen_ray.io.volume import Volume
    from semgen_ray.store import open_store

    film = Image2D(np.random.default_rng(1).random((60, 50)), (0.2, 0.25), "DX", "film.dcm", (), {})
    store = open_store(tmp_path / "mixed.zarr", mode="w")
    store.update_manifest([store.write("P2", Volume(arrays["P2"], volumes["P2"][1], modality="CT")),
                           store.write_image("X1", film)])
    shown, _ = store.read("X1", normalize=True)
    boxes = [{"patient_id": "X1", "x0": 3, "y0": 7, "z0": 0, "x1": 19, "y1": 23, "z1": 1, "row_id": 0},
             {"patient_id": "X1", "x0": 30, "y0": 20, "z0": 0, "x1": 54, "y1": 44, "z1": 1, "row_id": 1},
             {"patient_id": "P2", "x0": 0, "y0": 0, "z0": 0, "x1": 16, "y1": 16, "z1": 1, "row_id": 2}]
    got = collect(read_crops(str(tmp_path / "mixed.zarr"), boxes, cube_size=(16, 16, 1)))
    by_row = {int(r): i for i, r in enumerate(got["row_id"])}
    np.testing.assert_array_equal(got["cube"][by_row[0]], shown[3:19, 7:23, None])
    np.testing.assert_array_equal(got["cube"][by_row[1]], resize(shown[30:54, 20:44, None], (16, 16, 1)))
    np.testing.assert_array_equal(got["cube"][by_row[2]], CT_WINDOW.apply(arrays["P2"][:16, :16, :1]))
    assert np.isnan(got["spacing"][by_row[0]][2]) and list(got["spacing"][by_row[0]][:2]) == [0.2, 0.25]
    with pytest.raises(BoxError, match=r"run past their volume.*'X1'.*\(60, 50, 1\)"):
        read_crops(str(tmp_path / "mixed.zarr"), [{**boxes[0], "z1": 2}], cube_size=(16, 16, 1))
