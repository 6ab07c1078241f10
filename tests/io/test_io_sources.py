"""Source discovery, default patient ids and content fingerprints."""

from __future__ import annotations

import os
import shutil

import pytest

from semgen_ray.io import ReadError, Source, find_sources, source_sha256


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _dicom_bytes():
    return b"\0" * 128 + b"DICM" + b"\0" * 16


def test_find_sources_by_extension_and_dicom_folders(tmp_path):
    _touch(tmp_path / "a" / "ct.nii.gz")
    _touch(tmp_path / "a" / "mr.NII")
    _touch(tmp_path / "b" / "head.mhd", b"NDims = 3\nElementDataFile = head.raw\n")
    _touch(tmp_path / "b" / "head.raw")
    _touch(tmp_path / "b" / "vol.mha")
    _touch(tmp_path / "c" / "brain.nrrd")
    _touch(tmp_path / "c" / "split.nhdr", b"NRRD0004\ntype: short\ndata file: split.raw.gz\n\n")
    _touch(tmp_path / "c" / "split.raw.gz")
    _touch(tmp_path / "series1" / "001.dcm")
    _touch(tmp_path / "series1" / "002.DCM")
    _touch(tmp_path / "series2" / "IM0001", _dicom_bytes())  # extension-less, found by magic
    _touch(tmp_path / "series2" / "notes.txt", b"not an image")
    _touch(tmp_path / "other" / "README", b"plain text, no magic")
    _touch(tmp_path / ".hidden" / "x.nii")
    sources = find_sources([tmp_path])
    got = [(os.path.relpath(s.path, tmp_path), s.format, s.patient_id, len(s.files)) for s in sources]
    assert got == [
        ("a/ct.nii.gz", "nifti", "ct", 1),
        ("a/mr.NII", "nifti", "mr", 1),
        ("b/head.mhd", "metaimage", "head", 2),
        ("b/vol.mha", "metaimage", "vol", 1),
        ("c/brain.nrrd", "nrrd", "brain", 1),
        ("c/split.nhdr", "nrrd", "split", 2),
        ("series1", "dicom", "series1", 2),
        ("series2", "dicom", "series2", 1),
    ]
    assert find_sources([tmp_path]) == sources  # deterministic
    assert find_sources([tmp_path / "a", tmp_path, tmp_path / "a" / "ct.nii.gz"]) == sources  # no duplicates


def test_explicit_files(tmp_path):
    nii = _touch(tmp_path / "scan.nii")
    dcm = _touch(tmp_path / "one.dcm")
    assert [s.format for s in find_sources([str(nii), dcm])] == ["dicom", "nifti"]
    with pytest.raises(ValueError, match="not a recognised image file"):
        find_sources([_touch(tmp_path / "table.csv")])
    with pytest.raises(FileNotFoundError):
        find_sources([tmp_path / "missing.nii"])


def test_mhd_files_include_missing_data_file(tmp_path):
    _touch(tmp_path / "lung.mhd", b"NDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\n"
                                  b"ElementDataFile = lung.raw\n")
    [src] = find_sources([tmp_path])
    assert src.files == (str(tmp_path / "lung.mhd"), str(tmp_path / "lung.raw"))
    with pytest.raises(ReadError, match="lung.raw is missing"):
        source_sha256(src)


def test_mhd_data_file_list_and_pattern(tmp_path):
    _touch(tmp_path / "list.mhd", b"NDims = 3\nElementDataFile = LIST\nz0.raw\nz1.raw\n")
    _touch(tmp_path / "pat.mhd", b"NDims = 3\nElementDataFile = s%02d.raw 1 3 1\n")
    _touch(tmp_path / "local.mha", b"NDims = 3\nElementDataFile = LOCAL\n")
    by_name = {os.path.basename(s.path): [os.path.basename(f) for f in s.files] for s in find_sources([tmp_path])}
    assert by_name == {"list.mhd": ["list.mhd", "z0.raw", "z1.raw"],
                       "pat.mhd": ["pat.mhd", "s01.raw", "s02.raw", "s03.raw"],
                       "local.mha": ["local.mha"]}


def test_source_defaults_and_validation(tmp_path):
    folder = tmp_path / "PATIENT_7"
    _touch(folder / "a.dcm")
    src = Source(str(folder), "dicom")
    assert src.patient_id == "PATIENT_7" and src.files == (str(folder / "a.dcm"),)
    assert Source("/x/brain.nhdr", "nrrd", files=("/x/brain.nhdr",)).patient_id == "brain"
    assert Source("/x/y.nii.gz", "nifti", patient_id="p1").patient_id == "p1"
    assert Source("/x/film.png", "png", files=("/x/film.png",)).patient_id == "film"  # a 2D image (ingest --kind 2d)
    with pytest.raises(ValueError, match="format"):
        Source("/x/y.gif", "gif")


def test_sha256_stable_and_sensitive(tmp_path):
    folder = tmp_path / "s"
    _touch(folder / "1.dcm", b"one")
    _touch(folder / "2.dcm", b"two")
    src = find_sources([folder])[0]
    digest = source_sha256(src)
    assert len(digest) == 64 and digest == source_sha256(Source(str(folder), "dicom", files=src.files[::-1]))
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert source_sha256(Source(str(copy), "dicom")) == digest  # location-independent
    (copy / "2.dcm").rename(copy / "3.dcm")
    assert source_sha256(Source(str(copy), "dicom")) != digest  # a rename is a change
    (folder / "2.dcm").write_bytes(b"tw0")
    assert source_sha256(src) != digest  # so is a changed byte


def test_sha256_of_real_metaimage_covers_raw(real_data, tmp_path):
    shutil.copyfile(real_data / "metaimage" / "HeadMRVolume.mhd", tmp_path / "HeadMRVolume.mhd")
    raw = (real_data / "metaimage" / "HeadMRVolume.raw").read_bytes()
    (tmp_path / "HeadMRVolume.raw").write_bytes(raw)
    original = source_sha256(find_sources([real_data / "metaimage"])[0])
    [copy] = find_sources([tmp_path])
    assert source_sha256(copy) == original
    (tmp_path / "HeadMRVolume.raw").write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    assert source_sha256(copy) != original


def test_real_data_discovery(real_data):
    sources = find_sources([real_data])
    formats = sorted(s.format for s in sources)
    assert formats == ["dicom"] * 3 + ["metaimage"] + ["nrrd"] * 2
    for s in sources:
        assert all(os.path.isfile(f) for f in s.files)
