import json
from pathlib import Path

import numpy as np
import pytest

from semgen_ray.io.volume import Volume
from semgen_ray.store import CT_WINDOW, IntensityWindow, InvalidPatientId, StoreError, open_store


def ct_volume(shape=(40, 36, 20), seed=0):
    rng = np.random.default_rng(seed)
    return Volume(rng.integers(-1024, 2000, shape).astype(np.int16), (0.7, 0.8, 2.5),
                  origin=(-10.0, 5.0, 100.0), modality="CT", source="scan.nii.gz")


def test_write_read_roundtrip_with_metadata(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w", chunks=(16, 16, 8))
    vol = ct_volume()
    label = (vol.array > 1500).astype(np.uint8)
    row = store.write("P001", vol, label=label, split="val", source_sha256="abc")
    store.update_manifest([row])

    ro = open_store(str(tmp_path / "s.zarr"))
    assert ro.patient_ids == ["P001"]
    array, meta = ro.read("P001")
    assert array.dtype == np.int16 and np.array_equal(array, vol.array)
    assert meta["spacing"] == (0.7, 0.8, 2.5)
    assert meta["origin"] == [-10.0, 5.0, 100.0]
    assert meta["modality"] == "CT" and meta["orientation"] == "LPS" and meta["axis_order"] == "xyz"
    assert meta["source_sha256"] == "abc" and meta["split"] == "val"
    assert np.array_equal(ro.read_label("P001"), label)
    (mrow,) = ro.manifest_rows()
    assert mrow["shape"] == [40, 36, 20] and mrow["spacing"] == [0.7, 0.8, 2.5]
    assert mrow["status"] == "ok" and mrow["has_label"] and mrow["split"] == "val"


def test_arrays_are_chunked_and_blosc_zstd_compressed(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w", chunks=(16, 16, 8))
    store.write("P001", ct_volume())
    meta = json.loads((tmp_path / "s.zarr" / "volumes" / "P001" / "zarr.json").read_text())
    assert meta["data_type"] == "int16"
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [16, 16, 8]
    assert meta["dimension_names"] == ["x", "y", "z"]
    blosc = [c for c in meta["codecs"] if c["name"] == "blosc"]
    assert blosc and blosc[0]["configuration"]["cname"] == "zstd"


def test_chunks_reports_the_chunking_of_the_stored_arrays(tmp_path):
    """``store.chunks`` of an opened store is how its arrays are chunked, not the default for new
    ones; appending without ``chunks`` keeps the store's; the one default is the config's."""
    from semgen_ray.config import StoreConfig
    from semgen_ray.store.volume_store import DEFAULT_CHUNKS

    assert StoreConfig().chunks == DEFAULT_CHUNKS
    assert open_store(tmp_path / "empty.zarr", mode="w").chunks == DEFAULT_CHUNKS
    open_store(tmp_path / "s.zarr", mode="w", chunks=(16, 16, 8)).write("P001", ct_volume())
    assert open_store(tmp_path / "s.zarr").chunks == (16, 16, 8)
    appended = open_store(tmp_path / "s.zarr", mode="a")
    assert appended.chunks == (16, 16, 8)
    appended.write("P002", ct_volume(seed=1))
    meta = json.loads((tmp_path / "s.zarr" / "volumes" / "P002" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [16, 16, 8]
    assert open_store(tmp_path / "s.zarr", mode="a", chunks=(8, 8, 8)).chunks == (8, 8, 8)   # given: for new arrays


def test_region_read_and_normalisation(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w", chunks=(16, 16, 8))
    vol = ct_volume()
    store.write("P001", vol)
    box = ((3, 35), (10, 30), (5, 17))
    part, meta = store.read("P001", region=box)
    assert np.array_equal(part, vol.array[3:35, 10:30, 5:17])
    norm, meta = store.read("P001", region=box, normalize=True)
    expected = np.clip((vol.array[3:35, 10:30, 5:17].astype(np.float32) + 1000) / 2000, 0, 1)
    assert norm.dtype == np.float32 and np.allclose(norm, expected, atol=1e-6)
    assert meta["window"] == (CT_WINDOW.lo, CT_WINDOW.hi)
    custom, _ = store.read("P001", region=box, normalize=IntensityWindow(-1000, 400))
    assert np.allclose(custom, np.clip((vol.array[3:35, 10:30, 5:17] + 1000) / 1400, 0, 1), atol=1e-6)
    with pytest.raises(StoreError, match="outside patient"):
        store.read("P001", region=((0, 41), (0, 5), (0, 5)))


def test_mr_is_stored_as_float32(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w")
    vol = Volume(np.random.default_rng(1).random((20, 20, 10)) * 900, (1, 1, 1), modality="MR")
    store.write("M1", vol)
    array, meta = store.read("M1")
    assert array.dtype == np.float32 and np.allclose(array, vol.array.astype(np.float32))
    assert meta["modality"] == "MR"


def test_ct_float_values_are_rounded_and_range_checked(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w")
    store.write("C1", Volume(np.full((10, 10, 10), 12.6), (1, 1, 1), modality="CT"))
    assert store.read("C1")[0][0, 0, 0] == 13
    with pytest.raises(StoreError, match="outside int16"):
        store.write("C2", Volume(np.full((10, 10, 10), 1e6), (1, 1, 1), modality="CT"))


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "zarr.json", "x" * 201, "a..b"])
def test_unsafe_patient_ids_are_refused(tmp_path, bad):
    store = open_store(tmp_path / "s.zarr", mode="w")
    with pytest.raises(InvalidPatientId, match="unsafe patient id"):
        store.write(bad, ct_volume())
    assert not (tmp_path / "x").exists()


def test_interrupted_write_never_reads_as_valid(tmp_path):
    """A patient whose commit attribute was never written (a killed writer) is refused."""
    import zarr

    store = open_store(tmp_path / "s.zarr", mode="w")
    store.write("P1", ct_volume())
    # Simulate a writer killed after creating the array and writing some chunks.
    arr = zarr.create_array(str(tmp_path / "s.zarr"), name="volumes/P2", shape=(8, 8, 8), dtype="int16",
                            chunks=(4, 4, 4), attributes={"semgen_ray": {"complete": False}})
    arr[:4] = 7
    with pytest.raises(StoreError, match="incomplete"):
        store.read("P2")
    assert not store.is_current("P2", "")
    rows = {r["patient_id"]: r for r in store.rebuild_manifest()}
    assert rows["P1"]["status"] == "ok" and rows["P2"]["status"] == "failed"
    assert open_store(tmp_path / "s.zarr").patient_ids == ["P1"]


def test_rewrite_replaces_and_drops_stale_label(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w")
    vol = ct_volume()
    store.write("P1", vol, label=np.ones(vol.shape, np.uint8), source_sha256="v1")
    new = ct_volume(shape=(30, 30, 12), seed=5)
    store.write("P1", new, source_sha256="v2")
    array, meta = store.read("P1")
    assert array.shape == (30, 30, 12) and meta["source_sha256"] == "v2"
    assert not store.has_label("P1") and not meta["has_label"]
    assert store.is_current("P1", "v2") and not store.is_current("P1", "v1")


def test_check_current_compares_the_recorded_settings_and_the_layout(tmp_path):
    """A patient is current only when its source hash, its ``ingest`` settings record, its chunks and
    compression level match; one without a record (older semgen_ray) is judged by its attributes."""
    uri = tmp_path / "s.zarr"
    store = open_store(uri, mode="w", chunks=(16, 16, 8))
    native = {"modality": None, "target_spacing": None}
    store.write("P1", ct_volume(), source_sha256="v1", ingest_settings={**native, "target_spacing": (1, 1, 2)})
    assert store.meta("P1")["ingest"] == {"modality": None, "target_spacing": [1.0, 1.0, 2.0]}
    same = {**native, "target_spacing": [1.0, 1.0, 2.0], "uneven_spacing": "error"}  # not recorded: n/a
    assert store.check_current("P1", "v1", same, check_layout=True).current
    assert store.is_current("P1", "v1", settings=same) and not store.is_current("P1", "v0", settings=same)
    other = store.check_current("P1", "v1", native)
    assert not other.current and other.settings_changed
    assert other.reason == "ingest.target_spacing changed: [1, 1, 2] -> native"
    assert store.is_current("P1", "v1")  # settings not asked for: not compared
    rechunked = open_store(uri, mode="a", chunks=(8, 8, 8)).check_current("P1", "v1", same, check_layout=True)
    assert not rechunked.current and rechunked.reason.startswith("store.chunks changed")
    assert open_store(uri, mode="a", chunks=(16, 16, 8), clevel=5).check_current(
        "P1", "v1", same, check_layout=True).reason == "store.clevel changed: 3 -> 5"
    assert not store.check_current("P1", "v0", same).settings_changed  # the source changed

    store.write("old", ct_volume(), source_sha256="v1")  # no record, as written by an older semgen_ray
    kept = store.check_current("old", "v1", native)
    assert kept.current and "older semgen_ray" in kept.reason
    assert not store.check_current("old", "v1", {**native, "modality": "MR"}).current
    assert not store.check_current("old", "v1", {**native, "target_spacing": [1, 1, 1]}).current
    assert store.check_current("old", "v1", {**native, "target_spacing": [0.7, 0.8, 2.5]}).current


def test_set_split_and_removing_manifest_rows(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w")
    store.update_manifest([store.write("P1", ct_volume(), split="train"), store.write("P2", ct_volume())])
    row = store.set_split("P1", "test")
    assert row["split"] == "test" and store.meta("P1")["split"] == "test"
    store.delete("P2")
    store.update_manifest([row], remove=["P2"])
    assert [(r["patient_id"], r["split"]) for r in open_store(tmp_path / "s.zarr").manifest_rows()] == [("P1", "test")]


def test_read_only_and_missing_stores(tmp_path):
    with pytest.raises(StoreError, match="no volume store"):
        open_store(tmp_path / "nothing.zarr")
    store = open_store(tmp_path / "s.zarr", mode="w")
    store.write("P1", ct_volume())
    with pytest.raises(StoreError, match="read-only"):
        open_store(tmp_path / "s.zarr").write("P2", ct_volume())
    with pytest.raises(StoreError, match="not in store"):
        open_store(tmp_path / "s.zarr").read("P9")


def test_foreign_zarr_group_is_refused(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a semgen_ray volume store"):
        open_store(tmp_path / "other.zarr")


@pytest.mark.parametrize("scheme", ["file://", "memory://"])
def test_fsspec_uris(tmp_path, scheme):
    uri = f"file://{tmp_path}/u.zarr" if scheme == "file://" else f"memory://{tmp_path.name}/u.zarr"
    store = open_store(uri, mode="w")
    store.update_manifest([store.write("P1", ct_volume())])
    again = open_store(uri)
    assert again.patient_ids == ["P1"]
    assert np.array_equal(again.read("P1")[0], ct_volume().array)
    if scheme == "file://":
        assert (Path(tmp_path) / "u.zarr" / "manifest.parquet").is_file()


def _radiograph(shape=(60, 50), seed=0):
    from semgen_ray.io.image2d import Image2D

    values = np.random.default_rng(seed).random(shape)
    return Image2D(values, (0.2, 0.25), "DX", "film.dcm", ("a note",), {"bits": 12})


def test_2d_images_live_beside_volumes_with_their_kind_label_and_spacing(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w", chunks=(16, 16, 8))
    image = _radiograph()
    label = (image.array > 0.9).astype(np.uint8)
    rows = [store.write("P001", ct_volume()), store.write_image("X001", image, label=label, split="val",
                                                              source_sha256="f")]
    store.update_manifest(rows)
    ro = open_store(str(tmp_path / "s.zarr"))
    assert ro.patient_ids == ["P001"] and ro.image_ids == ["X001"] and list(ro.shapes()) == ["P001"]
    stored, meta = ro.read("X001")
    assert stored.dtype == np.uint16 and stored.shape == (60, 50)
    assert meta["kind"] == "2d" and meta["spacing"] == (0.2, 0.25) and meta["split"] == "val"
    assert meta["warnings"] == ["a note"] and meta["extra"] == {"bits": 12}
    shown, _ = ro.read("X001", normalize=True)
    np.testing.assert_allclose(shown, image.array, atol=0.5 / 65535 + 1e-7)
    box, _ = ro.read("X001", region=((10, 20), (5, 45)), normalize=True)
    np.testing.assert_array_equal(box, shown[10:20, 5:45])
    assert np.array_equal(ro.read_label("X001"), label)
    kinds = {r["patient_id"]: (r["kind"], r["shape"], r["spacing"]) for r in ro.manifest_rows()}
    assert kinds == {"P001": ("3d", [40, 36, 20], [0.7, 0.8, 2.5]), "X001": ("2d", [60, 50], [0.2, 0.25])}
    with pytest.raises(StoreError, match="2 .start, stop. pairs"):
        ro.read("X001", region=((0, 1), (0, 1), (0, 1)))


def test_a_store_that_starts_with_an_image_keeps_3d_chunks_for_its_volumes(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w", chunks=(16, 16, 8))
    store.write_image("A001", _radiograph())
    store.write("P001", ct_volume())
    again = open_store(tmp_path / "s.zarr", mode="a")                  # chunks from what is stored
    assert again.chunks == (16, 16, 8)
    again.write("P002", ct_volume())
    assert again.meta("P002")["shape"] == (40, 36, 20)


def test_2d_images_are_current_on_reingest_and_survive_a_manifest_rebuild(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w", chunks=(16, 16, 8))
    store.update_manifest([store.write_image("X001", _radiograph(), source_sha256="f",
                                             ingest_settings={"modality": None})])
    assert store.check_current("X001", "f", {"modality": None}, "foreground_percentile", check_layout=True).current
    assert not store.check_current("X001", "g").current
    (tmp_path / "s.zarr" / "manifest.parquet").unlink()
    rebuilt = {r["patient_id"]: r["kind"] for r in open_store(tmp_path / "s.zarr", mode="a").rebuild_manifest()}
    assert rebuilt == {"X001": "2d"}


def test_bad_2d_images_and_labels_are_refused(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w")
    image = _radiograph()
    with pytest.raises(StoreError, match="label of 'X' has shape"):
        store.write_image("X", image, label=np.zeros((3, 3), np.uint8))
    image.array[0, 0] = np.nan
    with pytest.raises(StoreError, match="finite 2D array"):
        store.write_image("X", image)
    assert store.stored_ids() == []
