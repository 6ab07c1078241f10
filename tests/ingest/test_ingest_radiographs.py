"""``python -m semgen_ray.ingest --kind 2d``: radiograph files become 2D images of the store, value for
value what the 2D reader reads; a bad file fails alone; the 3D ingest never takes a PNG for a scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semgen_ray.ingest.__main__ import main as ingest_main
from semgen_ray.io.radiograph import read_radiograph
from semgen_ray.store import open_store

from radiograph_files import film, write_dx

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture
def films(tmp_path) -> Path:
    """A folder of radiographs in every format, one of them broken, and a hidden file."""
    import nibabel as nib
    from PIL import Image

    root = tmp_path / "films"
    (root / "dicom").mkdir(parents=True)
    write_dx(root / "dicom" / "dx.dcm", 4095 - film(12, 1), photometric="MONOCHROME1", window=("2000", "3000"))
    write_dx(root / "dicom" / "cr.dcm", film(12, 2), modality="CR", spacing=("ImagerPixelSpacing", ["0.2", "0.2"]))
    Image.fromarray(film(16, 3)).save(root / "a16.png", dpi=(100, 100))
    Image.fromarray(film(8, 4)).save(root / "b8.jpg", quality=95)
    nib.save(nib.Nifti1Image(film(12, 5).T.astype(np.float32)[:, :, None], np.eye(4)), root / "c2d.nii.gz")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    Image.fromarray(film(8, 6)).save(root / ".hidden.png")
    return root


def test_ingest_2d_stores_every_radiograph_as_read_and_skips_them_on_rerun(films, tmp_path, capsys):
    uri = str(tmp_path / "xr.zarr")
    args = [str(films), "--kind", "2d", "--out", uri, "--no-progress", "--allow-failures"]
    assert ingest_main(args) == 0
    store = open_store(uri)
    assert store.image_ids == ["a16", "b8", "c2d", "cr", "dx"] and store.patient_ids == []
    rows = {r["patient_id"]: r for r in store.manifest_rows()}
    assert rows["broken"]["status"] == "failed" and "broken.png" in rows["broken"]["error"]
    files = {"a16": "a16.png", "b8": "b8.jpg", "c2d": "c2d.nii.gz", "cr": "dicom/cr.dcm", "dx": "dicom/dx.dcm"}
    for pid, name in files.items():
        expected = read_radiograph(films / name)
        shown, meta = store.read(pid, normalize=True)
        np.testing.assert_allclose(shown, expected.array, atol=0.5 / 65535 + 1e-7, err_msg=pid)
        assert meta["kind"] == "2d" and meta["modality"] == expected.modality
        assert meta["spacing"] == expected.pixel_spacing and rows[pid]["kind"] == "2d"
        assert meta["ingest"] == {"kind": "2d", "modality": None}
    assert store.meta("cr")["modality"] == "CR" and "ImagerPixelSpacing" in rows["cr"]["warnings"]
    assert store.meta("a16")["spacing"] == pytest.approx((0.254, 0.254), rel=1e-5)  # 100 dpi, as PNG keeps it (px / m)
    capsys.readouterr()
    assert ingest_main(args) == 0
    assert "5 unchanged (skipped)" in capsys.readouterr().out


def test_the_3d_ingest_takes_no_png_or_jpeg_for_a_scan(films, tmp_path):
    uri = str(tmp_path / "ct.zarr")
    assert ingest_main([str(films / "a16.png"), "--out", uri, "--no-progress"]) == 1  # named: refused, a row
    (row,) = open_store(uri).manifest_rows()
    assert row["status"] == "failed" and "not a recognised image file" in row["error"]
    ingest_main([str(films), "--out", uri, "--no-progress", "--allow-failures"])
    assert not {r["patient_id"] for r in open_store(uri).manifest_rows()} & {"a16", "b8", "broken"}


def test_volume_modalities_are_refused_for_2d_images(films, tmp_path, capsys):
    assert ingest_main([str(films), "--kind", "2d", "--modality", "CT", "--out", str(tmp_path / "s.zarr")]) == 2
    assert "ingest.modality CT is for volumes" in capsys.readouterr().err
