"""The README's quick tour runs as written: its three shell lines and its Python example.

Each runs as the README shows it, in a fresh interpreter (the commands start their own Ray), with
these changes only:
- the tour's ``/tmp/...`` outputs go to this test's folders;
- the ingest line's two sources, an LIDC-IDRI patient folder and a LUNA16 subset that no test
  machine holds, are stand-ins of the same kinds: a CT DICOM series folder and a folder of MetaImage
  files, written by SimpleITK from phantom patients;
- the pretrain line runs with ``SEMGEN_CONFIG=tests/local_job.yaml``, the smallest run, which the
  README names for its local job (the line's own ``--set`` values still apply on top);
- the Python example runs in an empty folder, so its guarded ``Genesis_Chest_CT.pt`` line is skipped
  as it is for a user who has not downloaded the file.
"""

from __future__ import annotations

import contextlib
import locale
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
STORE = "/tmp/phantoms.zarr"
RUN = "/tmp/run"
REAL_STORE = "/tmp/real.zarr"
DICOM_SOURCE, METAIMAGE_SOURCE = "/data/LIDC-IDRI/LIDC-IDRI-0001", "/data/luna16/subset0"

#: appended to the example: what it computed, checked in its own interpreter
CHECKS = """
assert hu.dtype == np.int16 and cube.shape == (64, 64, 32) and 0 <= cube.min() < cube.max() <= 1
assert cubes.shape == (8, 1, 64, 64, 32) and len(set(batch["patient_id"])) == 8
assert x.shape == y.shape == cubes.shape and np.abs(x - y).mean() > 0.01      # corrupted, not copied
assert len(set(params.names())) > 1                                            # per-sample draws differ
assert tuple(recon.shape) == (2, 1, 64, 64, 32) and tuple(logits.shape) == (2, 44)
print("QUICK TOUR OK")
"""


def quick_tour() -> tuple[list[str], str]:
    """The quick tour's shell lines (comments dropped) and its Python example."""
    text = README.read_text(encoding="utf-8")
    tour = text[text.index("## Quick tour\n"):]
    tour = tour[:tour.index("\n## ", 1)]
    shell = [line for block in re.findall(r"```bash\n(.*?)```", tour, re.S) for line in block.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    (python,) = re.findall(r"```python\n(.*?)```", tour, re.S)
    return shell, python


def tour_line(module: str, replace: dict[str, str]) -> list[str]:
    """The tour's ``./venv-run python -m <module> ...`` line as an argv for this interpreter, with the
    arguments in ``replace`` swapped (each must be on the line)."""
    shell, _ = quick_tour()
    (line,) = [line for line in shell if f"-m {module} " in line and "ray job" not in line]
    argv = line.split()
    assert argv[:2] == ["./venv-run", "python"], line
    missing = [a for a in replace if a not in argv]
    assert not missing, f"the tour's {module} line no longer names {missing}: {line}"
    return [sys.executable, *[replace.get(a, a) for a in argv[2:]]]


def run(argv: list[str], cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout, cwd=cwd,
                          env={**os.environ, **env})
    assert done.returncode == 0, f"{argv[1:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def tour_store(tmp_path_factory) -> str:
    """The phantom store made by the tour's own phantoms line."""
    store = str(tmp_path_factory.mktemp("tour") / "phantoms.zarr")
    run(tour_line("semgen_ray.phantoms", {STORE: store}), cwd=README.parent)
    return store


@pytest.mark.slow
@pytest.mark.ray
def test_quick_tour_python_example_runs_as_pasted(tour_store, tmp_path):
    _, python = quick_tour()
    assert STORE in python
    script = tmp_path / "work" / "tour.py"
    script.parent.mkdir()
    script.write_text(python.replace(STORE, tour_store) + CHECKS)
    done = run([sys.executable, str(script)], cwd=script.parent)
    assert "QUICK TOUR OK" in done.stdout, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(600)
def test_quick_tour_pretrain_line_runs_on_the_tours_phantoms(tour_store, tmp_path):
    """The tour's third line on the store its second line made: 8 phantoms with the line's smaller K
    and C are enough for discovery and training (the README's "How many patients")."""
    import pyarrow.parquet as pq

    from semgen_ray.store import open_store

    run_dir = tmp_path / "run"
    done = run(tour_line("semgen_ray.pretrain", {STORE: tour_store, RUN: str(run_dir)}), cwd=README.parent,
               timeout=540, SEMGEN_CONFIG=str(README.parent / "tests" / "local_job.yaml"))
    for artefact in ("discovery/discovery.json", "discovery/patterns.parquet", "train/train.json",
                     "train/export/model_card.json"):
        assert (run_dir / artefact).is_file(), f"{artefact} missing; output:\n{done.stdout[-2000:]}"
    # the console holds the run's own lines only: progress lines, then the summary; nothing on stderr
    # (no raylet worker-pool warning, no Ray deprecation warning, no DeepSpeed export chatter)
    progress = done.stdout.split("\nrun directory:")[0].splitlines()
    stray = [line for line in progress if line.strip() and not re.match(r"\d\d:\d\d:\d\d \[\w+\] ", line)]
    assert not stray and not done.stderr.strip(), (stray, done.stderr[-3000:])
    patterns = pq.read_table(run_dir / "discovery" / "patterns.parquet").to_pandas()
    assert patterns["class_id"].nunique() == 4          # the line's --set discovery.num_classes=4
    # the preset's precision ``auto``: bf16 only where this CPU computes it natively (fp32 on AVX2-only
    # CPUs, where bf16 convolutions run ~36x slower), recorded in train.json and every epoch's history
    from semgen_ray.engine.deepspeed_config import native_bf16

    train = json.loads((run_dir / "train" / "train.json").read_text())
    expected = "bf16" if native_bf16(gpu=False) else "fp32"
    assert train["precision"] == expected and {h["precision"] for h in train["history"]} == {expected}
    assert set(patterns["patient_id"]) <= set(open_store(tour_store).patient_ids)


def write_stand_ins(root: Path) -> tuple[Path, Path]:
    """A CT DICOM series folder and a folder of two MetaImage files (``.mhd`` + ``.raw``), in place of
    the tour's LIDC-IDRI patient and LUNA16 subset; SimpleITK writes both from phantom patients."""
    import SimpleITK as sitk

    from semgen_ray.phantoms.generate import generate_patient

    def image(index: int):
        volume, _, _ = generate_patient(index, shape=(48, 48, 24))
        img = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.transpose(2, 1, 0)))  # (z, y, x)
        img.SetSpacing(tuple(float(s) for s in volume.spacing))
        img.SetOrigin(tuple(float(o) for o in volume.origin))
        return img

    dicom, luna = root / "LIDC-IDRI-0001", root / "subset0"
    dicom.mkdir()
    luna.mkdir()
    img = image(0)
    with _locale_kept():  # GDCM writing decimal strings leaves the process in the C locale
        _write_series(img, dicom)
    for index in (1, 2):
        sitk.WriteImage(image(index), str(luna / f"1.3.6.1.4.1.14519.5.2.1.{index}.mhd"))
    return dicom, luna


@contextlib.contextmanager
def _locale_kept():
    """Restore the process's locale afterwards: SimpleITK's DICOM writer (GDCM) switches it to "C"
    and leaves it so, after which Python opens files as ASCII (torch then fails to read its own
    templates in later tests)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_series(img, dicom: Path) -> None:
    """``img`` as a CT series of single-slice DICOM files in ``dicom`` (SimpleITK / GDCM)."""
    import SimpleITK as sitk

    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.77"
    for z in range(img.GetDepth()):
        plane = img[:, :, z]
        for tag, value in {"0008|0060": "CT", "0010|0020": "LIDC-IDRI-0001", "0020|000d": uid + ".1",
                           "0020|000e": uid + ".2", "0020|0013": str(z + 1),
                           "0008|0018": f"{uid}.3.{z + 1}", "0020|0037": "1\\0\\0\\0\\1\\0",
                           "0020|0032": "\\".join(f"{c:.4f}" for c in img.TransformIndexToPhysicalPoint((0, 0, z)))
                           }.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(dicom / f"{z:03d}.dcm"))
        writer.Execute(plane)


@pytest.mark.slow
@pytest.mark.ray
def test_quick_tour_ingest_line_runs_on_stand_ins_of_its_sources(tmp_path):
    from semgen_ray.store import open_store

    dicom, luna = write_stand_ins(tmp_path)
    store = tmp_path / "real.zarr"
    run(tour_line("semgen_ray.ingest", {DICOM_SOURCE: str(dicom), METAIMAGE_SOURCE: str(luna),
                                        REAL_STORE: str(store)}), cwd=README.parent)
    opened = open_store(str(store))
    assert len(opened.patient_ids) == 3, opened.patient_ids      # one DICOM series, two MetaImage files
    for pid in opened.patient_ids:
        hu, meta = opened.read(pid)
        assert hu.shape == (48, 48, 24) and meta["modality"] == "CT" and hu.min() < -500 < hu.max()


def test_readme_preset_rows_state_the_presets_numbers():
    """The README's preset table says what the presets hold: auto-encoder and pretraining epochs, C, K."""
    from semgen_ray.config import load_config

    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([\w-]+)`(?: \(default\))? \| (.*)$",
                                                        README.read_text(encoding="utf-8"), re.M)}
    tiny, small = load_config("cpu-tiny", []), load_config("cpu-small", [])
    want_tiny = (f"C = {tiny.discovery.num_classes}, K = {tiny.discovery.k_train}, width {tiny.model.width}, "
                 f"{tiny.discovery.ae_epochs} auto-encoder and {tiny.train.max_epochs} pretraining epochs")
    assert want_tiny in rows["cpu-tiny"]
    want_small = (f"C = {small.discovery.num_classes}, K = {small.discovery.k_train}, "
                  f"{small.discovery.ae_epochs} auto-encoder epochs, {small.train.max_steps} pretraining steps")
    assert want_small in rows["cpu-small"]
