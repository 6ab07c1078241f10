"""MR files in raw units, z-scored and 8-bit, through the public ingest and store read: the default
per-volume mapping gives the same full-range image for all three; ``ingest.mr_intensity=fixed``
brings back the [0, 4000] window, with a warning where it blanks a volume (local Ray)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from semgen_ray.config import IngestConfig
from semgen_ray.ingest import ingest
from semgen_ray.ingest.__main__ import main as ingest_main
from semgen_ray.store import IntensityWarning, IntensityWindow, open_store

pytestmark = pytest.mark.usefixtures("ray_local")


def _head(shape=(40, 36, 24)) -> np.ndarray:
    rng = np.random.default_rng(3)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = np.sqrt(x ** 2 + y ** 2 + (1.2 * z) ** 2)
    a = np.where(r < 0.85, 900.0, 0.0)
    a[r < 0.75] = 2000.0
    a[r < 0.5] = 2600.0
    a[(np.abs(x) < 0.12) & (r < 0.4)] = 600.0
    a = np.abs(a + rng.normal(0.0, 40.0, shape))
    return a * (3000.0 / a.max())


@pytest.fixture(scope="module")
def mr_files(tmp_path_factory):
    """The same head as raw-unit NRRD, z-scored MetaImage (.mha) and 8-bit MetaImage (.mhd/.raw)."""
    import SimpleITK as sitk

    tmp = tmp_path_factory.mktemp("mr")
    raw = _head()
    arrays = {"raw.nrrd": raw.astype(np.float32),
              "zscore.mha": ((raw - raw.mean()) / raw.std()).astype(np.float32),
              "eightbit.mhd": np.round(raw * (255.0 / raw.max())).astype(np.uint8)}
    for name, a in arrays.items():
        image = sitk.GetImageFromArray(a.transpose(2, 1, 0))  # stored (x, y, z) = a (identity = LPS)
        image.SetSpacing((1.0, 1.0, 1.5))
        sitk.WriteImage(image, str(tmp / name))
    return tmp, {name.split(".")[0]: a for name, a in arrays.items()}


def test_raw_zscored_and_8bit_mr_read_the_same(mr_files, tmp_path):
    folder, arrays = mr_files
    uri = str(tmp_path / "mr.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntensityWarning)
        report = ingest([folder], uri, progress=False)
    assert report.ok and sorted(report.written) == ["eightbit", "raw", "zscore"] and not report.warnings
    store = open_store(uri)
    images = {}
    for pid, a in arrays.items():
        stored, meta = store.read(pid)
        assert meta["modality"] == "MR" and np.array_equal(stored, a.astype(np.float32))
        img, meta = store.read(pid, normalize=True)
        assert img.min() == 0.0 and img.max() == 1.0 and np.percentile(img[img > 0.05], 99) > 0.9
        crop, cmeta = store.read(pid, region=((4, 30), (6, 30), (2, 20)), normalize=True)
        assert np.array_equal(crop, img[4:30, 6:30, 2:20]) and cmeta["window"] == meta["window"]
        images[pid] = img
    assert np.abs(images["raw"] - images["zscore"]).max() < 1e-5
    assert np.abs(images["raw"] - images["eightbit"]).mean() < 0.003
    for row in store.manifest_rows():
        rec = json.loads(row["intensity"])
        assert rec["rule"] == "foreground_percentile" and len(rec["window"]) == 2 and not rec["warnings"]


def test_fixed_window_by_config_rewrites_and_warns_on_zscored(mr_files, tmp_path, capsys):
    folder, arrays = mr_files
    uri = str(tmp_path / "mr.zarr")
    assert ingest([folder], uri, progress=False).ok
    # the same unchanged sources, with the fixed window chosen by config: rewritten, not skipped
    with pytest.warns(IntensityWarning) as caught:
        code = ingest_main([str(folder), "--out", uri, "--no-progress", "--set", "ingest.mr_intensity=fixed"])
    assert code == 0
    out = capsys.readouterr().out
    assert "3 written, 0 unchanged" in out and "WARN   zscore: intensity:" in out
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("zscore: intensity: 100% of the foreground clips to the low end of the window "
                            "[0, 4000]") for m in messages)
    assert any(m.startswith("eightbit: intensity: the foreground uses only") for m in messages)
    assert not any(m.startswith("raw:") for m in messages)
    store = open_store(uri)
    rows = {r["patient_id"]: r for r in store.manifest_rows()}
    assert all(json.loads(r["intensity"])["window"] == [0.0, 4000.0] for r in rows.values())
    assert "clips to the low end" in rows["zscore"]["warnings"]
    assert store.read("zscore", normalize=True)[0].max() < 0.002  # what the fixed window does
    # another fixed window (ingest.mr_window), one that suits the z-scored volume: rewritten with it
    with pytest.warns(IntensityWarning):  # now the raw and 8-bit volumes clip to its high end
        assert ingest_main([str(folder), "--out", uri, "--no-progress", "--set", "ingest.mr_intensity=fixed",
                            "--set", "ingest.mr_window=[-2, 3]"]) == 0
    assert "3 written, 0 unchanged" in capsys.readouterr().out
    store = open_store(uri)
    assert all(json.loads(r["intensity"])["window"] == [-2.0, 3.0] for r in store.manifest_rows())
    assert store.read("zscore", normalize=True)[0].max() > 0.5
    # back to the default: rewritten again; then a re-run skips everything
    assert sorted(ingest([folder], uri, IngestConfig(), progress=False).written) == ["eightbit", "raw", "zscore"]
    assert sorted(ingest([folder], uri, progress=False).skipped) == ["eightbit", "raw", "zscore"]


def test_real_brain_mr_and_its_zscored_copy_read_the_same(real_data, tmp_path):
    """The real post-contrast T1 (NRRD, int16 scanner units) and a z-scored MetaImage copy of it."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(real_data / "mri_nrrd" / "brain1_image.nrrd"))
    a = sitk.GetArrayFromImage(image).astype(np.float64)
    zscored = sitk.GetImageFromArray(((a - a.mean()) / a.std()).astype(np.float32))
    zscored.CopyInformation(image)
    sitk.WriteImage(zscored, str(tmp_path / "brain1z.mha"))
    uri = str(tmp_path / "real.zarr")
    report = ingest([real_data / "mri_nrrd" / "brain1_image.nrrd", tmp_path / "brain1z.mha"], uri,
                    progress=False)
    assert report.ok and not report.warnings
    store = open_store(uri)
    raw, _ = store.read("brain1_image", normalize=True)
    z, _ = store.read("brain1z", normalize=True)
    assert raw.min() == 0.0 and raw.max() == 1.0 and np.abs(raw - z).max() < 1e-5
    assert 0.2 < float(raw[raw > 0].mean()) < 0.8  # tissue spread over the range, not a blank image
    assert store.read("brain1z", normalize=IntensityWindow(0, 4000))[0].max() < 0.003  # the old default
