"""MR intensity mappings: per-volume foreground percentiles by default, recorded at write time and
applied on every read (whole volume or crop); the fixed window on request, with a warning when it
leaves a volume nearly blank (semgen_ray.store.intensity)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from semgen_ray.io.volume import Volume
from semgen_ray.store import CT_WINDOW, IntensityWarning, IntensityWindow, open_store, store_card_entry
from semgen_ray.store import layout


def head(shape=(48, 44, 32), seed=0) -> np.ndarray:
    """A synthetic head MR in raw scanner units (0..3000): noisy air, scalp, grey and white matter,
    a dark ventricle."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = np.sqrt(x ** 2 + y ** 2 + (1.2 * z) ** 2)
    a = np.zeros(shape)
    a[r < 0.85] = 900.0
    a[r < 0.75] = 2000.0
    a[r < 0.5] = 2600.0
    a[(np.abs(x) < 0.1) & (r < 0.4)] = 600.0
    a = np.abs(a + rng.normal(0.0, 40.0, shape))
    return a * (3000.0 / a.max())


def scales(raw: np.ndarray) -> dict[str, np.ndarray]:
    """The same anatomy as raw units, z-scored per volume (negative background) and an 8-bit export."""
    return {"raw": raw.astype(np.float32),
            "zscore": ((raw - raw.mean()) / raw.std()).astype(np.float32),
            "8bit": np.round(raw * (255.0 / raw.max())).astype(np.uint8)}


def mr(array) -> Volume:
    return Volume(array, (1.0, 1.0, 1.5), modality="MR", source="mr.nrrd")


def write_all(store, arrays: dict, **kwargs) -> list[dict]:
    rows = [store.write(name, mr(a), **kwargs) for name, a in arrays.items()]
    store.update_manifest(rows)
    return rows


def test_three_scales_give_the_same_full_range_image_and_crops_match(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w", chunks=(16, 16, 16))
    arrays = scales(head())
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntensityWarning)  # the default mapping never warns here
        write_all(store, arrays)
    ro = open_store(str(tmp_path / "s.zarr"))
    images = {}
    for name in arrays:
        img, meta = ro.read(name, normalize=True)
        assert img.dtype == np.float32 and img.min() == 0.0 and img.max() == 1.0
        fg = img[img > 0.05]
        assert np.percentile(fg, 99) > 0.9 and np.percentile(fg, 1) < 0.2  # the range is used
        assert meta["mapping"]["rule"] == "foreground_percentile"
        images[name] = img
        # a crop gets exactly the whole volume's mapping (statistics recorded at write time)
        box = ((5, 29), (10, 30), (3, 19))
        crop, cmeta = ro.read(name, region=box, normalize=True)
        assert cmeta["window"] == meta["window"]
        assert np.array_equal(crop, img[5:29, 10:30, 3:19])
    assert np.abs(images["raw"] - images["zscore"]).max() < 1e-5
    diff = np.abs(images["raw"] - images["8bit"])
    assert diff.mean() < 0.003 and diff.max() < 0.02  # 8-bit rounding only
    # the old fixed window: the z-scored volume is blank, the 8-bit one uses ~6 % of [0, 1]
    assert ro.read("zscore", normalize=IntensityWindow(0, 4000))[0].max() < 0.002
    # the mapping (rule and numbers) is in the patient's metadata and the manifest
    rows = {r["patient_id"]: r for r in ro.manifest_rows()}
    for name in arrays:
        rec = json.loads(rows[name]["intensity"])
        assert rec["rule"] == "foreground_percentile" and rec["window"] == list(ro.read(name, normalize=True)[1]["window"])
        assert rec["stats"]["percentiles"] == [0.5, 99.5] and rec["warnings"] == []
        assert ro.meta(name)["intensity"]["window"] == rec["window"]


def test_fixed_window_is_selectable_and_warns_when_the_volume_clips(tmp_path):
    store = open_store(tmp_path / "s.zarr", mode="w")
    arrays = scales(head())
    with pytest.warns(IntensityWarning, match=r"clips to the low end of the window \[0, 4000\]"):
        store.write("zscore", mr(arrays["zscore"]), mr_intensity="fixed", mr_window=(0, 4000))
    with pytest.warns(IntensityWarning, match=r"uses only \[0\.0\d\d, 0\.0\d\d\] of \[0, 1\]"):
        store.write("8bit", mr(arrays["8bit"]), mr_intensity="fixed", mr_window=(0, 4000))
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntensityWarning)
        row = store.write("raw", mr(arrays["raw"]), mr_intensity="fixed", mr_window=(0, 4000))
    assert json.loads(row["intensity"])["check"]["foreground_at_low"] == 0.0
    img, meta = store.read("raw", normalize=True)
    assert meta["mapping"] == {"rule": "fixed", "window": [0.0, 4000.0], "fill": None}
    assert np.allclose(img, np.clip(arrays["raw"] / 4000.0, 0, 1), atol=1e-6)
    zmeta = store.meta("zscore")
    assert any("clips to the low end" in w for w in zmeta["warnings"])
    assert zmeta["intensity"]["check"]["foreground_at_low"] == 1.0
    # another fixed window is honoured too
    store.write("raw2", mr(arrays["raw"]), mr_intensity="fixed", mr_window=(500, 2500))
    assert store.read("raw2", normalize=True)[1]["window"] == (500.0, 2500.0)


def test_zero_fill_background_maps_to_zero(tmp_path):
    """Skull-stripped z-scored data (brain mean 0, background exactly 0) keep a black background."""
    raw = head()
    brain = raw > 1500
    z = np.where(brain, (raw - raw[brain].mean()) / raw[brain].std(), 0.0).astype(np.float32)
    store = open_store(tmp_path / "s.zarr", mode="w")
    store.write("bs", mr(z))
    img, meta = store.read("bs", normalize=True)
    assert meta["mapping"]["fill"] == 0.0
    assert (img[~brain] == 0).all() and img[brain].max() == 1.0 and np.percentile(img[brain], 5) < 0.3


def test_ct_keeps_the_hu_window_and_phantoms_do_not_warn(tmp_path):
    from semgen_ray.phantoms import generate_patient

    store = open_store(tmp_path / "s.zarr", mode="w")
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntensityWarning)
        row = store.write("p0", generate_patient(0, cohort_seed=0, shape=(48, 48, 24))[0])
    rec = json.loads(row["intensity"])
    assert rec["rule"] == "fixed" and rec["window"] == [-1000.0, 1000.0]
    raw, _ = store.read("p0")
    img, meta = store.read("p0", normalize=True)
    assert meta["window"] == (CT_WINDOW.lo, CT_WINDOW.hi)
    assert np.allclose(img, np.clip((raw + 1000.0) / 2000.0, 0, 1))


def test_patients_stored_without_statistics_are_computed_on_read_then_persisted(tmp_path):
    uri = str(tmp_path / "s.zarr")
    store = open_store(uri, mode="w")
    arrays = scales(head())
    write_all(store, {"zscore": arrays["zscore"]})
    expected, _ = store.read("zscore", normalize=True)
    # what an older semgen_ray wrote: no intensity record
    import zarr

    arr = zarr.open_array(uri, path=f"{layout.VOLUMES}/zscore", mode="r+")
    attrs = dict(arr.attrs[layout.ATTRS_KEY])
    del attrs["intensity"]
    arr.attrs[layout.ATTRS_KEY] = attrs

    ro = open_store(uri)
    with pytest.warns(IntensityWarning, match="no recorded intensity statistics"):
        img, meta = ro.read("zscore", region=((0, 20), (0, 44), (0, 32)), normalize=True)
    assert np.array_equal(img, expected[:20])  # the whole volume's mapping, not the crop's
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntensityWarning)  # computed once per store object
        ro.read("zscore", normalize=True)
    assert open_store(uri, mode="a").add_intensity_stats() == ["zscore"]
    fresh = open_store(uri)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntensityWarning)
        assert np.array_equal(fresh.read("zscore", normalize=True)[0], expected)
    assert json.loads(fresh.manifest_rows()[0]["intensity"])["rule"] == "foreground_percentile"


def test_model_card_intensity_entry(tmp_path, make_phantom_store):
    ct = store_card_entry(make_phantom_store(tmp_path / "ct.zarr", n=2, shape=(32, 32, 16)))
    assert ct["modality"] == "CT" and ct["rule"] == "fixed" and ct["window"] == [-1000.0, 1000.0]
    assert ct["range"] == [0.0, 1.0]
    store = open_store(tmp_path / "mr.zarr", mode="w")
    arrays = scales(head())
    write_all(store, arrays)
    entry = store_card_entry(str(tmp_path / "mr.zarr"))
    assert entry["modality"] == "MR" and entry["rule"] == "foreground_percentile"
    assert entry["window"] is None and entry["percentiles"] == [0.5, 99.5] and entry["patients"] == 3
    his = [json.loads(r["intensity"])["window"][1] for r in store.manifest_rows()]
    assert entry["per_volume"]["hi"] == [min(his), max(his)]

    from semgen_ray.phantoms import generate_patient
    from semgen_ray.store.intensity import card_entry

    store.update_manifest([store.write("ct0", generate_patient(0, cohort_seed=0, shape=(32, 32, 16))[0])])
    mixed = store_card_entry(str(tmp_path / "mr.zarr"))
    assert mixed["modality"] == "mixed" and mixed["by_modality"]["CT"]["window"] == [-1000.0, 1000.0]
    assert mixed["by_modality"]["MR"]["rule"] == "foreground_percentile"
    assert card_entry([]) is None

    from semgen_ray.models import build_model, make_card

    card = make_card(build_model(width=4), {"input_size": [16, 16, 16], "intensity": entry})
    assert card["intensity"]["rule"] == "foreground_percentile"


def test_ingest_config_validates_the_mr_mapping():
    from semgen_ray.config import ConfigError, load_config

    cfg = load_config(None, ["ingest.mr_intensity=fixed", "ingest.mr_window=[100,2000]"]).ingest
    assert cfg.mr_intensity == "fixed" and cfg.mr_window == (100.0, 2000.0)
    assert load_config(None, []).ingest.mr_intensity == "foreground_percentile"
    for bad in ("ingest.mr_intensity=zscore", "ingest.mr_window=[5,1]"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, [bad])
