"""Malformed elements the image does not need never make a DICOM series unreadable (issue 15).

Series are written by pydicom into ``tmp_path``; private (and a few public) elements are then
spliced in as raw bytes, exactly as a scanner would have written them, including what pydicom itself
refuses to write: a value that does not fit its VR, odd lengths, private creators pydicom does not
know, undefined-length private sequences (well-formed, with items in the other VR convention, or
holding garbage). Each series must read to the very volume of the same series without those
elements, with one warning naming what was ignored; that warning reaches the ingest manifest. The
elements the volume is built from (``NEEDED_KEYWORDS``) still refuse their file when malformed.

The malformed-file catalogue read in a memory-limited child is ``malformed_inputs.py`` /
``test_io_fuzz.py``; these cases are well-formed series with malformed extras, so they are checked
here, value by value, against their clean twins.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest

from semgen_ray.io import ReadError, Source, read_source

pydicom = pytest.importorskip("pydicom")

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
UNDEFINED = 0xFFFFFFFF


# ---- raw element bytes (little endian) ---------------------------------------------------------


def element(group: int, elem: int, vr: str, value: bytes, implicit: bool, length: int | None = None) -> bytes:
    """One data element as a scanner writes it; ``length`` overrides the length field (UNDEFINED)."""
    length = len(value) if length is None else length
    head = struct.pack("<HH", group, elem)
    if implicit:
        return head + struct.pack("<I", length) + value
    if vr in _LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack("<I", length) + value
    return head + vr.encode() + struct.pack("<H", length) + value


def item(content: bytes, undefined: bool = False) -> bytes:
    if undefined:
        return b"\xfe\xff\x00\xe0" + struct.pack("<I", UNDEFINED) + content + b"\xfe\xff\x0d\xe0\0\0\0\0"
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(content)) + content


SEQUENCE_END = b"\xfe\xff\xdd\xe0\0\0\0\0"


def creator(group: int, name: str, implicit: bool) -> bytes:
    raw = name.encode() + (b" " if len(name) % 2 else b"")
    return element(group, 0x0010, "LO", raw, implicit)


# ---- series ------------------------------------------------------------------------------------


def slice_pixels(k: int, shape=(24, 32)) -> np.ndarray:
    """Stored values of slice ``k``: distinct per slice, rows != columns to catch transposes."""
    rows, cols = shape
    y, x = np.mgrid[:rows, :cols]
    return ((x * 37 + y * 11 + k * 101) % 1500 + 10 * k).astype(np.uint16)


def write_series(folder: Path, extra: bytes = b"", implicit: bool = True, n: int = 6,
                 shape=(24, 32), modality: str = "CT") -> Path:
    """``n`` axial slices (1 mm apart, 0.7 x 0.8 mm pixels, HU = stored - 1024) with the raw bytes
    ``extra`` spliced into every file's data set in place of a placeholder element.

    ``extra`` holds the elements of one private group (creator first); the placeholder is element
    (gggg,0099) of that group, so the file's tags stay ascending.
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.tag import Tag
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    marker = b"SPLICE-HERE!"
    placeholder_tag = (struct.unpack("<H", extra[:2])[0] << 16 | 0x0099) if extra else None
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.99.15.{k + 1}"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.99.15"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.99.15.0"
        ds.Modality = modality
        ds.PatientID = "P15"
        ds.SeriesNumber = 3
        ds.InstanceNumber = n - k  # never the slice order
        ds.ImagePositionPatient = ["-40.0", "-20.0", f"{-100.0 + k:.1f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["0.7", "0.8"]
        ds.SliceThickness = "1.0"
        ds.Rows, ds.Columns = shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.PixelData = slice_pixels(k, shape).tobytes()
        if extra:
            tag = Tag(placeholder_tag)
            ds._dict[tag] = RawDataElement(tag, None if implicit else "OB", len(marker), marker, 0, implicit, True)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        blob = out.getvalue()
        if extra:
            placeholder = element(placeholder_tag >> 16, 0x0099, "OB", marker, implicit)
            assert blob.count(placeholder) == 1
            blob = blob.replace(placeholder, extra)
        (folder / f"IM{(k * 7) % n:04d}.dcm").write_bytes(blob)
    return folder


def read_one(folder: Path):
    [volume] = read_source(Source(str(folder), "dicom"))
    return volume


def assert_same_volume(volume, reference):
    np.testing.assert_array_equal(volume.array, reference.array)
    assert volume.array.dtype == reference.array.dtype
    assert volume.spacing == reference.spacing and volume.origin == reference.origin
    assert volume.direction == reference.direction and volume.modality == reference.modality


def ignored_note(volume) -> str:
    notes = [w for w in volume.warnings if w.startswith("ignored malformed elements")]
    assert len(notes) == 1, volume.warnings
    return notes[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The clean series, read: what every tolerated series must equal."""
    volume = read_one(write_series(tmp_path_factory.mktemp("clean") / "s"))
    assert volume.warnings == ()
    assert volume.shape == (32, 24, 6) and volume.array.min() >= -1024
    return volume


# ---- the vendor case -----------------------------------------------------------------------------


def vendor_extra(implicit: bool = True) -> bytes:
    """A GE private block whose dictionary entry says FD (8 bytes), carrying a 4-byte DS: "1.5 "."""
    from pydicom.datadict import get_private_entry

    assert get_private_entry(0x00451053, "GEMS_HELIOS_01")[0] == "FD"  # pydicom's private dictionary
    return creator(0x0045, "GEMS_HELIOS_01", implicit) + element(0x0045, 0x1053, "DS", b"1.5 ", implicit)


def test_vendor_private_fd_holding_a_4_byte_decimal_string_reads_like_gdcm(tmp_path, sitk_series):
    """The refused real series: implicit VR, 141 slices, one GE private element (0045,1053), which
    pydicom's private dictionary types FD (8 bytes), holding the 4-byte decimal string "1.5 ".

    Before the fix: "cannot read DICOM file … (truncated or corrupt?)". In-plane size is reduced
    (48 x 64 instead of 512 x 512): the element, not the pixels, is what broke the read.
    """
    n = 141
    folder = write_series(tmp_path / "vendor", vendor_extra(), implicit=True, n=n, shape=(48, 64))
    raw = pydicom.dcmread(next(folder.glob("*.dcm")))
    with pytest.raises(Exception, match="bytes per value of 8"):  # pydicom alone refuses the element
        _ = raw[0x0045, 0x1053].value
    volume = read_one(folder)
    image, expected = sitk_series(folder)  # SimpleITK / GDCM reads the same series
    assert volume.shape == expected.shape == (64, 48, n)
    np.testing.assert_array_equal(volume.array, expected)
    np.testing.assert_allclose(volume.spacing, image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-6)
    note = ignored_note(volume)
    assert "(0045,1053) WideCone Corner Blending Radius [GEMS_HELIOS_01]" in note
    assert "4 bytes, not a whole number of the 8-byte values of VR FD" in note
    assert f"in {n} of {n} files" in note and "\n" not in note


# ---- every kind of malformed extra, in both VR conventions -----------------------------------------


def _undefined_sequence(group: int, content: bytes, implicit: bool, vr: str = "SQ") -> bytes:
    return element(group, 0x1010, vr, content + SEQUENCE_END, implicit, length=UNDEFINED)


def _cases(implicit: bool) -> dict[str, tuple[bytes, str | None]]:
    """``{name: (extra bytes, fragment of the warning, or None when no warning is due)}``."""
    acme = creator(0x0029, "ACME PRIVATE 1", implicit)
    inner = creator(0x0029, "ACME PRIVATE 1", implicit) + element(0x0029, 0x1002, "DS", b"12.5", implicit)
    other_vr = creator(0x0029, "ACME PRIVATE 1", not implicit) + \
        element(0x0029, 0x1002, "DS", b"12.5", not implicit) + element(0x0029, 0x1003, "US", b"\x01\x00", not implicit)
    bad_inside = creator(0x0045, "GEMS_HELIOS_01", implicit) + element(0x0045, 0x1053, "FD", b"1.5 ", implicit)
    needed_inside = creator(0x0029, "ACME PRIVATE 1", implicit) + element(0x0028, 0x0010, "US", b"\x40", implicit)
    cases = {
        # a value that does not fit the VR pydicom decodes it with
        "fd-3-bytes": (creator(0x0045, "GEMS_HELIOS_01", implicit)
                       + element(0x0045, 0x1053, "FD", b"1.5", implicit), "3 bytes, not a whole number of the 8"),
        # odd lengths: a string is harmless, a binary value is dropped
        "odd-length-string": (acme + element(0x0029, 0x1001, "LO", b"abc", implicit), None),
        "odd-length-ob": (acme + element(0x0029, 0x1001, "OB", b"\x01\x02\x03", implicit), None),
        # unknown private creators, and an element with no creator at all
        "unknown-creator": (creator(0x0029, "NOBODY KNOWS ME 7", implicit)
                            + element(0x0029, 0x1001, "UN", b"\x01\x02\x03\x04\x05", implicit), None),
        "no-creator": (element(0x0029, 0x1001, "UN", b"\x01\x02\x03", implicit), None),
        # undefined-length private sequences: well-formed, then malformed
        "undefined-sequence": (acme + _undefined_sequence(0x0029, item(inner, True) + item(inner), implicit), None),
        "undefined-un-sequence": (acme + _undefined_sequence(
            0x0029, item(creator(0x0029, "ACME PRIVATE 1", True) + element(0x0029, 0x1002, "DS", b"12.5", True), True),
            implicit, vr="UN"), None),
        "undefined-sequence-malformed-element-inside": (
            creator(0x0045, "GEMS_HELIOS_01", implicit) + _undefined_sequence(0x0045, item(bad_inside, True), implicit),
            "(0045,1053) WideCone Corner Blending Radius [GEMS_HELIOS_01]"),
        "undefined-sequence-garbage": (acme + _undefined_sequence(
            0x0029, b"\x11\x22\x33\x44\x05\x00\x00\x00abcde", implicit),
            f"(0029,1010) [ACME PRIVATE 1]: undefined-length private element of {29 if implicit else 33} bytes "
            "that cannot be parsed, skipped"),
        "undefined-sequence-items-in-the-other-vr": (
            acme + _undefined_sequence(0x0029, item(other_vr, True), implicit),
            "(0029,1010) [ACME PRIVATE 1]: undefined-length private element" if implicit else None),
        "defined-sequence-garbage-item": (acme + element(
            0x0029, 0x1010, "SQ", item(b"\x11\x22\x33\x44\xff\xff\xff\x7fxyz!"), implicit), None),
        # a public tag that the image needs, but inside a private sequence: not needed there
        "needed-tag-malformed-inside-a-private-sequence": (acme + _undefined_sequence(
            0x0029, item(needed_inside, True), implicit), "(0028,0010)"),
    }
    if not implicit:  # the file's own VR disagrees with the length (implicit VR takes the dictionary's)
        cases["us-with-3-bytes"] = (acme + element(0x0029, 0x1001, "US", b"abc", implicit),
                                    "(0029,1001) [ACME PRIVATE 1]: 3 bytes, not a whole number of the 2-byte")
    return cases


CASES = [(implicit, name) for implicit in (True, False) for name in _cases(implicit)]


@pytest.mark.parametrize("implicit,name", CASES,
                         ids=[f"{'implicit' if i else 'explicit'}-{n}" for i, n in CASES])
def test_malformed_elements_the_image_does_not_need_are_tolerated(tmp_path, reference, implicit, name):
    extra, fragment = _cases(implicit)[name]
    volume = read_one(write_series(tmp_path / name, extra, implicit=implicit))
    assert_same_volume(volume, reference)
    if fragment is None:
        assert volume.warnings == (), volume.warnings
    else:
        note = ignored_note(volume)
        assert fragment in note and "in 6 of 6 files" in note, note


def test_elements_the_image_needs_are_still_refused_when_malformed(tmp_path):
    """Rows (US, 2 bytes) written with 3: the file is refused, naming it and the element."""
    folder = write_series(tmp_path / "s", n=3)
    victim = sorted(folder.glob("*.dcm"))[1]
    blob = victim.read_bytes()
    rows = struct.pack("<HHI", 0x0028, 0x0010, 2) + struct.pack("<H", 24)  # implicit VR
    assert blob.count(rows) == 1
    victim.write_bytes(blob.replace(rows, struct.pack("<HHI", 0x0028, 0x0010, 3) + b"\x18\x00\x00"))
    with pytest.raises(ReadError, match=rf"{victim.name}.*\(0028,0010\) Rows is malformed"):
        read_one(folder)


def test_the_warning_reaches_the_ingest_manifest(tmp_path):
    """The note is stored with the patient and written in the manifest's ``warnings`` column."""
    from semgen_ray.config import IngestConfig, StoreConfig
    from semgen_ray.ingest.jobs import jobs_from_paths
    from semgen_ray.ingest.runner import run_job
    from semgen_ray.store import open_store

    folder = write_series(tmp_path / "vendor_patient", vendor_extra(), n=8, shape=(32, 32))
    config = IngestConfig()
    [job], problems = jobs_from_paths([str(folder)], config)
    assert problems == []
    store = StoreConfig(uri=str(tmp_path / "s.zarr"))
    result = run_job(store, job, config, {})
    [row] = result["rows"]
    assert row["status"] == "ok", row
    opened = open_store(store.uri, mode="a")
    opened.update_manifest(result["rows"])  # what the ingest driver does with each task's rows
    [stored] = open_store(store.uri).manifest_rows()
    assert "(0045,1053) WideCone Corner Blending Radius [GEMS_HELIOS_01]" in stored["warnings"]
    assert "in 8 of 8 files" in stored["warnings"]
