"""The reader registry and the package's public surface."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import semgen_ray.io as io
from semgen_ray.io import ReadError, Source, Volume, find_sources, read_source
from semgen_ray.io.readers import get_reader, register_reader


def test_public_names():
    for name in ("Volume", "ReadError", "Source", "find_sources", "read_source", "source_sha256", "resample",
                 "detect_modality"):
        assert hasattr(io, name), name


def test_import_is_cheap():
    """Importing semgen_ray.io must not load SimpleITK, pydicom, nibabel or scipy."""
    code = ("import sys, semgen_ray.io; heavy = [m for m in ('SimpleITK', 'pydicom', 'nibabel', 'scipy') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_real_source_reads(real_data):
    for source in find_sources([real_data]):
        volumes = read_source(source)
        assert volumes and all(isinstance(v, Volume) and v.array.ndim == 3 for v in volumes)
        assert all(v.source == source.path for v in volumes)


def test_read_source_accepts_a_path(real_data):
    [vol] = read_source(str(real_data / "metaimage" / "HeadMRVolume.mhd"))
    assert vol.shape == (48, 62, 42)
    with pytest.raises(ValueError, match="holds 6 sources"):
        read_source(real_data)


def test_registry_plugins(tmp_path):
    calls = []

    def fake(source, modality=None):
        calls.append(source.path)
        return [Volume(np.zeros((2, 2, 2), np.float32), spacing=(1, 1, 1), modality=modality or "OT")]

    original = get_reader("nifti")
    register_reader("nifti", fake)
    try:
        [vol] = read_source(Source(str(tmp_path / "x.nii"), "nifti"), modality="MR")
        assert vol.modality == "MR" and calls == [str(tmp_path / "x.nii")]
    finally:
        register_reader("nifti", original)
    with pytest.raises(ValueError, match="no reader"):
        get_reader("analyze")


def test_bad_modality_and_unknown_option(real_data):
    path = real_data / "metaimage" / "HeadMRVolume.mhd"
    with pytest.raises(ValueError, match="modality"):
        read_source(path, modality="ct")
    with pytest.raises(TypeError):
        read_source(path, uneven="warn")  # a DICOM option: not accepted silently by other readers


def test_read_error_is_one_line(tmp_path):
    (tmp_path / "bad.nrrd").write_bytes(b"NRRD0004\nthis is not a header\n")
    with pytest.raises(ReadError) as err:
        read_source(tmp_path / "bad.nrrd")
    assert "\n" not in str(err.value)
