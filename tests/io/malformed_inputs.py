"""Malformed medical-image files, and a memory-limited child process that reads them.

Shared by ``tests/io/test_io_fuzz.py`` (every case through ``read_source``) and
``tests/ingest/test_ingest_fuzz.py`` (a batch through ingest); both load this file by path, so it
needs no package. It is also the child's script: ``python malformed_inputs.py CASES.json OUT.jsonl``
reads each case under an address-space limit and appends one JSON line per case to ``OUT.jsonl``
(a ``start`` line before the read, a result line after), so that a segfault, a hang or an abort is
pinned on the case that caused it instead of killing the test run.

Every case is small (a few KiB to a few hundred KiB) and deterministic (seeded ``numpy`` random
bytes, fixed base images), so a failure reproduces exactly.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MEM_LIMIT_BYTES = 3 << 30
"""RLIMIT_AS of the child: an attempt to allocate a declared 100000³ image fails instead of swapping."""
CASE_TIMEOUT_S = 10.0
"""A read taking longer than this is a hang: the child dumps its stack and exits."""
MAX_RSS_GROWTH_BYTES = 512 << 20
"""Resident memory one read may add: far above what these small files legitimately need."""
INGEST_MAX_VOXELS = 1024 ** 3  # IngestConfig.max_voxels' default, passed as ingest passes it

SIZE_REFUSED = r"max_voxels|declares .* bytes|holds only|is truncated"
"""A header declaring more than the file holds (or than max_voxels) must be refused by these checks,
from the header, not by a failed allocation."""


# ---- base images -------------------------------------------------------------------------------

SHAPE = (12, 10, 8)  # x, y, z; unequal to catch transposes


def base_array() -> np.ndarray:
    """A small int16 CT-like volume in (x, y, z) order, not constant."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    return (x * 37 + y * 11 - z * 53 - 500).astype(np.int16)


def _data_zyx() -> bytes:
    return np.ascontiguousarray(base_array().transpose(2, 1, 0)).astype("<i2").tobytes()


NRRD_FIELDS = {
    "type": "short",
    "dimension": "3",
    "space": "left-posterior-superior",
    "sizes": " ".join(map(str, SHAPE)),
    "space directions": "(1,0,0) (0,1.5,0) (0,0,2)",
    "kinds": "domain domain domain",
    "endian": "little",
    "encoding": "raw",
    "space origin": "(-5,3,10)",
}


def nrrd_bytes(data: bytes | None = None, drop: tuple[str, ...] = (), magic: str = "NRRD0004",
               **fields: str) -> bytes:
    """An attached-data NRRD; ``fields`` replace or add header fields (keys with spaces as ``_``)."""
    header = dict(NRRD_FIELDS)
    for key, value in fields.items():
        header[key.replace("_", " ")] = value
    for key in drop:
        header.pop(key.replace("_", " "), None)
    payload = _data_zyx() if data is None else data
    if header.get("encoding") == "gzip" and data is None:
        payload = gzip.compress(payload)
    text = magic + "\n" + "".join(f"{k}: {v}\n" for k, v in header.items()) + "\n"
    return text.encode("latin-1") + payload


MHA_FIELDS = {
    "ObjectType": "Image",
    "NDims": "3",
    "BinaryData": "True",
    "BinaryDataByteOrderMSB": "False",
    "CompressedData": "False",
    "TransformMatrix": "1 0 0 0 1 0 0 0 1",
    "Offset": "-5 3 10",
    "ElementSpacing": "1 1.5 2",
    "DimSize": " ".join(map(str, SHAPE)),
    "ElementType": "MET_SHORT",
    "ElementDataFile": "LOCAL",  # must stay last
}


def mha_header(**fields: str) -> bytes:
    header = dict(MHA_FIELDS)
    data_file = fields.pop("ElementDataFile", header.pop("ElementDataFile"))
    header.pop("ElementDataFile", None)
    header.update(fields)
    header["ElementDataFile"] = data_file
    return "".join(f"{k} = {v}\n" for k, v in header.items()).encode("latin-1")


def mha_bytes(data: bytes | None = None, **fields: str) -> bytes:
    payload = _data_zyx() if data is None else data
    if fields.get("CompressedData") == "True" and data is None:
        payload = zlib.compress(payload)
        fields.setdefault("CompressedDataSize", str(len(payload)))
    return mha_header(**fields) + payload


def nifti_bytes(version: int = 1) -> bytes:
    import nibabel

    affine = np.diag([-1.0, -1.5, 2.0, 1.0])  # LPS-like: x to the left, y posterior
    cls = nibabel.Nifti1Image if version == 1 else nibabel.Nifti2Image
    img = cls(base_array(), affine)
    img.header.set_xyzt_units("mm")
    img.header.set_data_offset(352 if version == 1 else 544)  # as nibabel.save writes a .nii
    return img.to_bytes()


# NIfTI-1 header offsets (nifti1.h)
_DIM, _DATATYPE, _BITPIX, _PIXDIM, _VOX_OFFSET, _SCL_SLOPE, _MAGIC = 40, 70, 72, 76, 108, 112, 344
_SIZEOF_HDR = 0
_NIFTI2_DIM = 16  # int64 dim[8] in NIfTI-2


def nifti_patched(*patches: tuple[int, str, tuple]) -> bytes:
    """NIfTI-1 bytes with ``(offset, struct format, values)`` patches applied (little-endian)."""
    data = bytearray(nifti_bytes())
    for offset, fmt, values in patches:
        struct.pack_into("<" + fmt, data, offset, *values)
    return bytes(data)


def ct_small_path() -> Path:
    """pydicom's bundled CT_small.dcm (128×128 int16, one axial slice, explicit VR little endian)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    if path is None:  # pragma: no cover - bundled with pydicom
        raise FileNotFoundError("pydicom's CT_small.dcm is not installed")
    return Path(path)


def dicom_bytes(_base: str = "CT_small.dcm", **tags) -> bytes:
    """CT_small.dcm with ``tags`` set (None deletes a tag).

    A ``bytes`` value is written verbatim, even where pydicom would refuse it (``b"abc "`` for an
    integer string): a placeholder of the same length is written, then replaced in the file.
    """
    import io

    import pydicom
    from pydicom import config
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(ct_small_path() if _base == "CT_small.dcm" else get_testdata_file(_base))
    verbatim = []
    with config.disable_value_validation():
        for key, value in tags.items():
            if value is None:
                if key in ds:
                    delattr(ds, key)
            elif isinstance(value, bytes):
                placeholder = b"7" * len(value)
                setattr(ds, key, placeholder.decode())
                verbatim.append((placeholder, value))
            else:
                setattr(ds, key, value)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
    blob = out.getvalue()
    for placeholder, value in verbatim:
        assert blob.count(placeholder) == 1, placeholder
        blob = blob.replace(placeholder, value)
    return blob


def dicom_with_private_block(block: bytes, group: int = 0x0045) -> bytes:
    """CT_small.dcm (explicit VR little endian) with the raw bytes ``block`` (elements of private
    ``group``, creator first, as a scanner wrote them: pydicom refuses to write malformed values) in
    place of that group."""
    import io

    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(ct_small_path())
    for tag in [t for t in ds.keys() if t.group == group]:
        del ds[tag]
    marker, tag = b"SPLICE-HERE!", Tag(group, 0x0099)
    ds._dict[tag] = RawDataElement(tag, "OB", len(marker), marker, 0, False, True)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    placeholder = struct.pack("<HH", group, 0x0099) + b"OB\0\0" + struct.pack("<I", len(marker)) + marker
    assert out.getvalue().count(placeholder) == 1
    return out.getvalue().replace(placeholder, block)


def explicit_element(group: int, element: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    """One explicit-VR little-endian element; ``length`` overrides the length field (0xFFFFFFFF)."""
    length = len(value) if length is None else length
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return struct.pack("<HH2sxxI", group, element, vr.encode(), length) + value
    return struct.pack("<HH2sH", group, element, vr.encode(), length) + value


_VENDOR_CREATOR = explicit_element(0x0045, 0x0010, "LO", b"GEMS_HELIOS_01")
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _private_sequence(content: bytes) -> bytes:
    """An undefined-length private sequence (0045,1010) holding one undefined-length item."""
    return _VENDOR_CREATOR + explicit_element(0x0045, 0x1010, "SQ", b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + content
                                              + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + _SEQUENCE_END,
                                              length=0xFFFFFFFF)


def pixel_data_offset(blob: bytes) -> int:
    """Offset of the (7FE0,0010) PixelData element's tag in an explicit-VR little-endian file."""
    at = blob.rfind(b"\xe0\x7f\x10\x00")
    assert at > 0, "no PixelData element"
    return at


def random_bytes(seed: int, n: int = 4096) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def with_dicm_magic(blob: bytes) -> bytes:
    """Random bytes that discovery takes for DICOM: 'DICM' at byte 128."""
    return blob[:128] + b"DICM" + blob[132:]


def flip_bytes(blob: bytes, seed: int, start: int, stop: int, count: int = 6) -> bytes:
    """``count`` random bytes of ``blob[start:stop]`` replaced by random values (seeded)."""
    rng = np.random.default_rng(seed)
    out = bytearray(blob)
    for at in rng.integers(start, min(stop, len(blob)), count):
        out[int(at)] = int(rng.integers(0, 256))
    return bytes(out)


# ---- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One malformed input.

    Attributes:
        name: the test id.
        files: ``{relative name: bytes}`` written into the case's empty folder.
        read: what to hand to ``find_sources`` (relative; ``"."`` for the folder: a DICOM folder).
        expect: "error" (a ReadError is required), "any" (a ReadError, or a valid volume for a
            harmless oddity) or "ok" (a control: a well-formed file that must read as ``base_array``).
        match: a regular expression the ReadError message must contain.
        culprit: the file name the message must contain (default: the base name of ``read``, or for
            a folder the first of ``files``).
        options: keyword arguments for ``read_source``.
    """

    name: str
    files: Callable[[], dict[str, bytes]]
    read: str
    expect: str = "error"
    match: str | None = None
    culprit: str | None = None
    options: dict = field(default_factory=dict)

    def write(self, folder: Path) -> dict:
        folder.mkdir(parents=True, exist_ok=True)
        files = self.files()
        for rel, blob in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(blob)
        target = folder / self.read
        culprit = self.culprit or (next(iter(files)) if self.read == "." else os.path.basename(self.read))
        options = dict(self.options)
        if self.read != "." and "max_voxels" not in options:  # a file, not a DICOM folder
            options["max_voxels"] = INGEST_MAX_VOXELS  # what ingest passes to the SimpleITK formats
        if options.get("max_voxels", 0) is None:
            del options["max_voxels"]
        return {"name": self.name, "path": str(target), "culprit": culprit, "options": options}


def _text_zyx() -> bytes:
    """The base array as text values (x fastest), for NRRD ascii and MetaImage BinaryData = False."""
    return " ".join(str(v) for v in base_array().transpose(2, 1, 0).ravel()).encode() + b"\n"


def _control_cases() -> list[Case]:
    """The well-formed files the malformed ones are made from: they must read, as ``base_array``."""
    data = _data_zyx()
    return [
        Case("control-nrrd-ascii", lambda: {"c.nrrd": nrrd_bytes(data=_text_zyx(), encoding="ascii")}, "c.nrrd",
             expect="ok"),
        Case("control-mha-ascii", lambda: {"c.mha": mha_bytes(data=_text_zyx(), BinaryData="False")}, "c.mha",
             expect="ok"),
        Case("control-nrrd", lambda: {"c.nrrd": nrrd_bytes()}, "c.nrrd", expect="ok"),
        Case("control-nrrd-gzip", lambda: {"c.nrrd": nrrd_bytes(encoding="gzip")}, "c.nrrd", expect="ok"),
        Case("control-nhdr", lambda: {"c.nhdr": nrrd_bytes(data=b"", data_file="d.raw"), "d.raw": data}, "c.nhdr",
             expect="ok"),
        Case("control-mha", lambda: {"c.mha": mha_bytes()}, "c.mha", expect="ok"),
        Case("control-mha-compressed", lambda: {"c.mha": mha_bytes(CompressedData="True")}, "c.mha", expect="ok"),
        Case("control-mhd", lambda: {"c.mhd": mha_header(ElementDataFile="d.raw"), "d.raw": data}, "c.mhd",
             expect="ok"),
        Case("control-nii", lambda: {"c.nii": nifti_bytes()}, "c.nii", expect="ok"),
        Case("control-nii-gz", lambda: {"c.nii.gz": gzip.compress(nifti_bytes())}, "c.nii.gz", expect="ok"),
        Case("control-nii2", lambda: {"c.nii": nifti_bytes(2)}, "c.nii", expect="ok"),
        Case("control-dcm", lambda: {"c.dcm": ct_small_path().read_bytes()}, ".", expect="ok"),
        Case("control-dcm-rle", lambda: {"c.dcm": dicom_bytes(_base="MR_small_RLE.dcm")}, ".", expect="ok"),
        # Malformed elements the image does not need (issue 15): read, with a warning.
        Case("control-dcm-private-fd-holding-4-byte-ds",  # pydicom's private dictionary also says FD
             lambda: {"c.dcm": dicom_with_private_block(
                 _VENDOR_CREATOR + explicit_element(0x0045, 0x1053, "FD", b"1.5 "))}, ".", expect="ok"),
        Case("control-dcm-private-sequence-holding-garbage",
             lambda: {"c.dcm": dicom_with_private_block(_VENDOR_CREATOR + explicit_element(
                 0x0045, 0x1010, "SQ", b"\x11\x22\x33\x44\x05\x00\x00\x00abcde" + _SEQUENCE_END, length=0xFFFFFFFF))},
             ".", expect="ok"),
        # Discovery only takes extension-less files with the DICM magic: stray bytes beside a slice are
        # not part of the source.
        Case("control-dcm-with-stray-extensionless-file",
             lambda: {"c.dcm": ct_small_path().read_bytes(), "IM0002": random_bytes(22)}, ".", expect="ok"),
    ]


def _nrrd_cases() -> list[Case]:
    full = nrrd_bytes()
    header_len = full.index(b"\n\n") + 2
    gz = nrrd_bytes(encoding="gzip")
    gz_header = gz.index(b"\n\n") + 2
    cases = [
        Case("nrrd-truncated-in-header", lambda: {"t.nrrd": full[:40]}, "t.nrrd"),
        Case("nrrd-truncated-before-blank-line", lambda: {"t.nrrd": full[:header_len - 1]}, "t.nrrd"),
        Case("nrrd-truncated-after-header", lambda: {"t.nrrd": full[:header_len]}, "t.nrrd", match=SIZE_REFUSED),
        Case("nrrd-truncated-one-byte-in", lambda: {"t.nrrd": full[:header_len + 1]}, "t.nrrd", match=SIZE_REFUSED),
        Case("nrrd-missing-last-byte", lambda: {"t.nrrd": full[:-1]}, "t.nrrd", match=SIZE_REFUSED),
        Case("nrrd-gzip-truncated-after-header", lambda: {"t.nrrd": gz[:gz_header]}, "t.nrrd"),
        Case("nrrd-gzip-truncated-mid-stream", lambda: {"t.nrrd": gz[:gz_header + 40]}, "t.nrrd"),
        Case("nrrd-wrong-magic", lambda: {"t.nrrd": nrrd_bytes(magic="NRRX0004")}, "t.nrrd"),
        Case("nrrd-magic-only", lambda: {"t.nrrd": b"NRRD0004\n"}, "t.nrrd"),
        Case("nrrd-huge-sizes", lambda: {"t.nrrd": nrrd_bytes(sizes="100000 100000 100000")}, "t.nrrd",
             match=SIZE_REFUSED),
        Case("nrrd-huge-sizes-no-max-voxels", lambda: {"t.nrrd": nrrd_bytes(sizes="100000 100000 100000")},
             "t.nrrd", match=SIZE_REFUSED, options={"max_voxels": None}),
        Case("nrrd-sizes-overflow-int64", lambda: {"t.nrrd": nrrd_bytes(sizes="4294967296 4294967296 4")},
             "t.nrrd", options={"max_voxels": None}),
        Case("nrrd-below-max-voxels-but-no-data", lambda: {"t.nrrd": nrrd_bytes(sizes="1000 1000 1000")},
             "t.nrrd", match=SIZE_REFUSED),
        Case("nrrd-gzip-huge-sizes", lambda: {"t.nrrd": nrrd_bytes(sizes="1000 1000 1000", encoding="gzip",
                                                                  type="double", data=gzip.compress(b"\0" * 4096))},
             "t.nrrd", match=SIZE_REFUSED),
        Case("nrrd-ascii-huge-sizes", lambda: {"t.nrrd": nrrd_bytes(sizes="1000 1000 1000", encoding="ascii",
                                                                   data=b"1 2 3 4\n")},
             "t.nrrd", match=SIZE_REFUSED),
        Case("nrrd-sizes-zero", lambda: {"t.nrrd": nrrd_bytes(sizes="0 10 8")}, "t.nrrd"),
        Case("nrrd-sizes-negative", lambda: {"t.nrrd": nrrd_bytes(sizes="-12 10 8")}, "t.nrrd"),
        Case("nrrd-sizes-too-few", lambda: {"t.nrrd": nrrd_bytes(sizes="12 10")}, "t.nrrd"),
        Case("nrrd-dimension-zero", lambda: {"t.nrrd": nrrd_bytes(dimension="0")}, "t.nrrd"),
        Case("nrrd-dimension-huge", lambda: {"t.nrrd": nrrd_bytes(dimension="1000000")}, "t.nrrd"),
        Case("nrrd-unknown-type", lambda: {"t.nrrd": nrrd_bytes(type="quaternion")}, "t.nrrd"),
        Case("nrrd-unknown-encoding", lambda: {"t.nrrd": nrrd_bytes(encoding="zip")}, "t.nrrd"),
        Case("nrrd-unknown-endian", lambda: {"t.nrrd": nrrd_bytes(endian="middle")}, "t.nrrd"),
        Case("nrrd-spacing-zero", lambda: {"t.nrrd": nrrd_bytes(space_directions="(0,0,0) (0,1.5,0) (0,0,2)")},
             "t.nrrd"),
        Case("nrrd-spacing-nan", lambda: {"t.nrrd": nrrd_bytes(space_directions="(nan,0,0) (0,1.5,0) (0,0,2)")},
             "t.nrrd"),
        Case("nrrd-spacings-negative", lambda: {"t.nrrd": nrrd_bytes(drop=("space", "space_directions",
                                                                          "space_origin"),
                                                                    spacings="-1 1.5 2")},
             "t.nrrd", expect="any"),
        Case("nrrd-origin-inf", lambda: {"t.nrrd": nrrd_bytes(space_origin="(inf,0,0)")}, "t.nrrd"),
        Case("nrrd-parallel-directions", lambda: {"t.nrrd": nrrd_bytes(space_directions="(1,0,0) (2,0,0) (0,0,2)")},
             "t.nrrd", expect="any"),
        Case("nrrd-sizes-beyond-uint64", lambda: {"t.nrrd": nrrd_bytes(sizes="99999999999999999999999 10 8")},
             "t.nrrd", match=SIZE_REFUSED, options={"max_voxels": None}),
        Case("nrrd-data-file-is-itself", lambda: {"t.nrrd": nrrd_bytes(data_file="t.nrrd", byte_skip="-1")},
             "t.nrrd", expect="any"),
        Case("nrrd-byte-skip-huge", lambda: {"t.nrrd": nrrd_bytes(byte_skip="2000000000")}, "t.nrrd"),
        Case("nrrd-line-skip-huge", lambda: {"t.nrrd": nrrd_bytes(line_skip="2000000000")}, "t.nrrd"),
        Case("nrrd-random-after-magic", lambda: {"t.nrrd": b"NRRD0004\n" + random_bytes(11)}, "t.nrrd"),
        Case("nrrd-random-bytes", lambda: {"r.nrrd": random_bytes(12)}, "r.nrrd"),
    ]
    for seed in range(4):  # header bytes overwritten at random
        cases.append(Case(f"nrrd-header-bitflips-{seed}",
                          lambda seed=seed: {"f.nrrd": flip_bytes(full, 100 + seed, 9, header_len)},
                          "f.nrrd", expect="any"))
    return cases


def _nhdr_cases() -> list[Case]:
    data = _data_zyx()

    def nhdr(raw: bytes = data, **fields) -> dict[str, bytes]:
        fields.setdefault("data_file", "d.raw")
        return {"h.nhdr": nrrd_bytes(data=b"", **fields), "d.raw": raw}

    return [
        Case("nhdr-raw-truncated", lambda: nhdr(data[: len(data) // 3]), "h.nhdr", match=SIZE_REFUSED),
        Case("nhdr-raw-empty", lambda: nhdr(b""), "h.nhdr", match=SIZE_REFUSED),
        Case("nhdr-huge-sizes", lambda: nhdr(sizes="100000 100000 100000"), "h.nhdr", match=SIZE_REFUSED),
        Case("nhdr-data-file-pattern-huge-range",
             lambda: {"h.nhdr": nrrd_bytes(data=b"", data_file="s%09d.raw 1 1000000000 1 2"),
                      "s000000001.raw": data}, "h.nhdr"),
        Case("nhdr-data-file-pattern-huge-width",
             lambda: {"h.nhdr": nrrd_bytes(data=b"", data_file="s%.1000000000d.raw 1 8 1 2")}, "h.nhdr"),
        Case("nhdr-random-bytes", lambda: {"r.nhdr": random_bytes(13)}, "r.nhdr"),
    ]


def _metaimage_cases() -> list[Case]:
    full = mha_bytes()
    header_len = len(mha_header())
    comp = mha_bytes(CompressedData="True")
    data = _data_zyx()
    return [
        Case("mha-truncated-in-header", lambda: {"t.mha": full[:60]}, "t.mha"),
        Case("mha-truncated-after-header", lambda: {"t.mha": full[:header_len]}, "t.mha", match=SIZE_REFUSED),
        Case("mha-truncated-mid-data", lambda: {"t.mha": full[: header_len + len(data) // 2]}, "t.mha",
             match=SIZE_REFUSED),
        Case("mha-missing-last-byte", lambda: {"t.mha": full[:-1]}, "t.mha", match=SIZE_REFUSED),
        Case("mha-compressed-truncated", lambda: {"t.mha": comp[: header_len + 60]}, "t.mha"),
        Case("mha-huge-dimsize", lambda: {"t.mha": mha_bytes(DimSize="100000 100000 100000")}, "t.mha",
             match=SIZE_REFUSED),
        Case("mha-huge-dimsize-no-max-voxels", lambda: {"t.mha": mha_bytes(DimSize="100000 100000 100000")},
             "t.mha", match=SIZE_REFUSED, options={"max_voxels": None}),
        Case("mha-below-max-voxels-but-no-data", lambda: {"t.mha": mha_bytes(DimSize="1000 1000 1000")},
             "t.mha", match=SIZE_REFUSED),
        Case("mha-compressed-data-size-huge", lambda: {"t.mha": mha_bytes(CompressedData="True",
                                                                           CompressedDataSize="4294967296")},
             "t.mha", match="CompressedDataSize"),
        Case("mha-compressed-huge-dimsize",
             lambda: {"t.mha": mha_header(DimSize="1000 1000 1000", ElementType="MET_DOUBLE", CompressedData="True",
                                          CompressedDataSize="20") + zlib.compress(b"\0" * 64)},
             "t.mha", match=SIZE_REFUSED),
        Case("mha-ascii-huge-dimsize", lambda: {"t.mha": mha_bytes(data=b"1 2 3\n", BinaryData="False",
                                                                   DimSize="1000 1000 1000")},
             "t.mha", match=SIZE_REFUSED),
        Case("mha-dimsize-zero", lambda: {"t.mha": mha_bytes(DimSize="0 10 8")}, "t.mha"),
        Case("mha-dimsize-negative", lambda: {"t.mha": mha_bytes(DimSize="-12 10 8")}, "t.mha"),
        Case("mha-ndims-zero", lambda: {"t.mha": mha_bytes(NDims="0")}, "t.mha"),
        Case("mha-ndims-huge", lambda: {"t.mha": mha_bytes(NDims="1000000")}, "t.mha"),
        Case("mha-ndims-11", lambda: {"t.mha": _mha_ndims(11)}, "t.mha", match="NDims"),
        Case("mha-ndims-100", lambda: {"t.mha": _mha_ndims(100)}, "t.mha", match="NDims"),
        Case("mha-ndims-negative", lambda: {"t.mha": _mha_ndims(-1)}, "t.mha", match="NDims"),
        Case("mha-ndims-text", lambda: {"t.mha": mha_bytes(NDims="three")}, "t.mha", match="NDims"),
        Case("mha-channels-huge", lambda: {"t.mha": mha_bytes(ElementNumberOfChannels="1000000")}, "t.mha",
             match="components"),
        Case("mha-unknown-element-type", lambda: {"t.mha": mha_bytes(ElementType="MET_QUUX")}, "t.mha"),
        Case("mha-spacing-zero", lambda: {"t.mha": mha_bytes(ElementSpacing="0 0 0")}, "t.mha"),
        Case("mha-spacing-negative", lambda: {"t.mha": mha_bytes(ElementSpacing="-1 1.5 2")}, "t.mha",
             expect="any"),
        Case("mha-spacing-nan", lambda: {"t.mha": mha_bytes(ElementSpacing="nan 1.5 2")}, "t.mha"),
        Case("mha-transform-singular", lambda: {"t.mha": mha_bytes(TransformMatrix="0 0 0 0 0 0 0 0 0")}, "t.mha",
             expect="any"),
        Case("mha-header-size-huge", lambda: {"t.mha": mha_bytes(HeaderSize="999999999")}, "t.mha"),
        Case("mha-header-size-negative", lambda: {"t.mha": mha_bytes(HeaderSize="-5")}, "t.mha", expect="any"),
        Case("mha-png-magic", lambda: {"t.mha": b"\x89PNG\r\n\x1a\n" + random_bytes(14, 2000)}, "t.mha"),
        Case("mha-random-bytes", lambda: {"r.mha": random_bytes(15)}, "r.mha"),
        Case("mhd-truncated-header", lambda: {"t.mhd": mha_header(ElementDataFile="d.raw")[:70], "d.raw": data},
             "t.mhd"),
        Case("mhd-raw-truncated", lambda: {"t.mhd": mha_header(ElementDataFile="d.raw"), "d.raw": data[:100]},
             "t.mhd", match=SIZE_REFUSED),
        Case("mhd-huge-dimsize", lambda: {"t.mhd": mha_header(ElementDataFile="d.raw", DimSize="100000 100000 100000"),
                                          "d.raw": data}, "t.mhd", match=SIZE_REFUSED),
        Case("mhd-data-file-pattern-huge-range",
             lambda: {"t.mhd": mha_header(ElementDataFile="s%09d.raw 1 1000000000 1"), "s000000001.raw": data},
             "t.mhd"),
        Case("mhd-data-file-pattern-zero-step",
             lambda: {"t.mhd": mha_header(ElementDataFile="s%d.raw 1 8 0"), "s1.raw": data}, "t.mhd"),
        Case("mhd-random-bytes", lambda: {"r.mhd": random_bytes(16)}, "r.mhd"),
    ] + [
        Case(f"mha-header-bitflips-{seed}", lambda seed=seed: {"f.mha": flip_bytes(full, 200 + seed, 0, header_len)},
             "f.mha", expect="any") for seed in range(4)
    ]


def _mha_ndims(n: int) -> bytes:
    """A MetaImage whose arrays agree with an NDims of ``n`` (ITK's MetaIO crashes on n > 10 or < 1)."""
    ones = " ".join(["1"] * max(n, 1))
    return mha_header(NDims=str(n), DimSize=ones, ElementSpacing=ones, Offset=ones,
                      TransformMatrix=" ".join(["1"] * max(n, 1) ** 2)) + b"\0\0"


def _nifti_cases() -> list[Case]:
    full = nifti_bytes()
    offset = 352
    gz = gzip.compress(full)

    def dims(*values):
        return (_DIM, "8h", tuple(values) + (1,) * (8 - len(values)))

    def pixdim(*values):
        return (_PIXDIM, "8f", (1.0,) + tuple(values) + (1.0,) * (7 - len(values)))

    n2 = nifti_bytes(2)
    n2_huge = bytearray(n2)
    struct.pack_into("<8q", n2_huge, _NIFTI2_DIM, 3, 1 << 40, 1 << 40, 1 << 40, 1, 1, 1, 1)
    return [
        Case("nii-truncated-in-header", lambda: {"t.nii": full[:100]}, "t.nii"),
        Case("nii-truncated-after-header", lambda: {"t.nii": full[:offset]}, "t.nii", match=SIZE_REFUSED),
        Case("nii-truncated-one-byte-in", lambda: {"t.nii": full[:offset + 1]}, "t.nii", match=SIZE_REFUSED),
        Case("nii-missing-last-byte", lambda: {"t.nii": full[:-1]}, "t.nii", match=SIZE_REFUSED),
        Case("niigz-truncated-in-gzip-header", lambda: {"t.nii.gz": gz[:6]}, "t.nii.gz"),
        Case("niigz-truncated-just-after-header", lambda: {"t.nii.gz": gzip.compress(full[:offset])}, "t.nii.gz",
             match=SIZE_REFUSED),
        Case("niigz-missing-gzip-trailer", lambda: {"t.nii.gz": gz[:-8]}, "t.nii.gz", expect="any"),
        Case("niigz-not-compressed", lambda: {"t.nii.gz": full}, "t.nii.gz", expect="any"),
        Case("nii-wrong-magic", lambda: {"t.nii": nifti_patched((_MAGIC, "4s", (b"xyz\0",)))}, "t.nii"),
        Case("nii-vox-offset-zero", lambda: {"t.nii": nifti_patched((_VOX_OFFSET, "f", (0.0,)))}, "t.nii",
             expect="any"),
        Case("nii-vox-offset-zero-missing-last-byte",
             lambda: {"t.nii": nifti_patched((_VOX_OFFSET, "f", (0.0,)))[:-1]}, "t.nii", match=SIZE_REFUSED),
        Case("nii-sizeof-hdr-zero", lambda: {"t.nii": nifti_patched((_SIZEOF_HDR, "i", (0,)))}, "t.nii"),
        Case("nii-huge-dims", lambda: {"t.nii": nifti_patched(dims(3, 30000, 30000, 30000))}, "t.nii",
             match=SIZE_REFUSED),
        Case("nii-huge-dims-no-max-voxels", lambda: {"t.nii": nifti_patched(dims(3, 30000, 30000, 30000))},
             "t.nii", match=SIZE_REFUSED, options={"max_voxels": None}),
        Case("niigz-huge-dims", lambda: {"t.nii.gz": gzip.compress(nifti_patched(dims(3, 32767, 32767, 32767)))},
             "t.nii.gz", match=SIZE_REFUSED),
        Case("nii2-dims-overflow-int64", lambda: {"t.nii": bytes(n2_huge)}, "t.nii", match=SIZE_REFUSED,
             options={"max_voxels": None}),
        Case("nii-dim0-zero", lambda: {"t.nii": nifti_patched(dims(0, *SHAPE))}, "t.nii"),
        Case("nii-dim0-huge", lambda: {"t.nii": nifti_patched(dims(8, *SHAPE))}, "t.nii"),
        Case("nii-dim0-negative", lambda: {"t.nii": nifti_patched(dims(-3, *SHAPE))}, "t.nii"),
        Case("nii-dim-zero", lambda: {"t.nii": nifti_patched(dims(3, 0, 10, 8))}, "t.nii"),
        Case("nii-dim-negative", lambda: {"t.nii": nifti_patched(dims(3, -12, 10, 8))}, "t.nii"),
        Case("nii-unknown-datatype", lambda: {"t.nii": nifti_patched((_DATATYPE, "h", (9999,)))}, "t.nii"),
        Case("nii-bitpix-lies", lambda: {"t.nii": nifti_patched((_BITPIX, "h", (64,)))}, "t.nii", expect="any"),
        Case("nii-pixdim-zero", lambda: {"t.nii": nifti_patched(pixdim(0.0, 0.0, 0.0))}, "t.nii", expect="any"),
        Case("nii-pixdim-negative", lambda: {"t.nii": nifti_patched(pixdim(-1.0, 1.5, 2.0),
                                                                    (252, "hh", (0, 0)))}, "t.nii", expect="any"),
        Case("nii-pixdim-nan", lambda: {"t.nii": nifti_patched(pixdim(float("nan"), 1.5, 2.0),
                                                               (252, "hh", (0, 0)))}, "t.nii"),
        Case("nii-sform-nan", lambda: {"t.nii": nifti_patched((280, "4f", (float("nan"),) * 4),
                                                              (252, "hh", (0, 1)))}, "t.nii"),
        Case("nii-sform-offset-nan", lambda: {"t.nii": nifti_patched((324, "f", (float("nan"),)),
                                                                     (252, "hh", (0, 2)))}, "t.nii"),
        Case("nii-qform-nan", lambda: {"t.nii": nifti_patched((256, "3f", (float("nan"),) * 3),
                                                              (252, "hh", (1, 0)))}, "t.nii"),
        Case("nii-vox-offset-huge", lambda: {"t.nii": nifti_patched((_VOX_OFFSET, "f", (1e12,)))}, "t.nii",
             match=SIZE_REFUSED),
        Case("nii-vox-offset-nan", lambda: {"t.nii": nifti_patched((_VOX_OFFSET, "f", (float("nan"),)))},
             "t.nii"),
        Case("nii-vox-offset-negative", lambda: {"t.nii": nifti_patched((_VOX_OFFSET, "f", (-1000.0,)))}, "t.nii",
             expect="any"),
        Case("nii-scl-slope-nan", lambda: {"t.nii": nifti_patched((_SCL_SLOPE, "ff", (float("nan"), 0.0)))},
             "t.nii", expect="any"),
        Case("nii-scl-slope-inf", lambda: {"t.nii": nifti_patched((_SCL_SLOPE, "ff", (float("inf"), 0.0)))},
             "t.nii", expect="any"),
        Case("nii2-truncated-mid-data", lambda: {"t.nii": n2[: len(n2) - 100]}, "t.nii", match=SIZE_REFUSED),
        Case("nii2-wrong-magic", lambda: {"t.nii": n2[:4] + b"xyz\0" + n2[8:]}, "t.nii"),
        Case("nii-random-bytes", lambda: {"r.nii": random_bytes(17, 8192)}, "r.nii"),
        Case("niigz-random-header", lambda: {"r.nii.gz": gzip.compress(random_bytes(18, 400) + full[400:])},
             "r.nii.gz"),
    ] + [
        Case(f"nii-header-bitflips-{seed}", lambda seed=seed: {"f.nii": flip_bytes(full, 300 + seed, 0, 348)},
             "f.nii", expect="any") for seed in range(4)
    ]


_GEOMETRY = {"ImagePositionPatient": ["0", "0", "0"], "ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"],
             "PixelSpacing": ["1", "1"]}  # JPEG2000.dcm has none: without it, nothing is decoded


def _dicom_cases() -> list[Case]:
    def ct() -> bytes:
        return ct_small_path().read_bytes()

    def truncated(at: Callable[[bytes], int]) -> Callable[[], dict[str, bytes]]:
        def files():
            blob = ct()
            return {"t.dcm": blob[: at(blob)]}
        return files

    def tags(**kw) -> Callable[[], dict[str, bytes]]:
        return lambda: {"x.dcm": dicom_bytes(**kw)}

    def shared_geometry(n_frames: int) -> dict[str, bytes]:
        """Enhanced-style geometry in the shared groups (valid for any frame count), one frame of data."""
        import pydicom
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        ds = pydicom.dcmread(ct_small_path())

        def item(**values):
            d = Dataset()
            for k, v in values.items():
                setattr(d, k, v)
            return d

        ds.SharedFunctionalGroupsSequence = Sequence([item(
            PlanePositionSequence=Sequence([item(ImagePositionPatient=ds.ImagePositionPatient)]),
            PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=ds.ImageOrientationPatient)]),
            PixelMeasuresSequence=Sequence([item(PixelSpacing=ds.PixelSpacing, SliceThickness=1)]),
        )])
        ds.NumberOfFrames = n_frames
        import io

        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return {"mf.dcm": out.getvalue()}

    def length_field(value: int) -> Callable[[], dict[str, bytes]]:
        def files():  # the PixelData element's 32-bit length patched (OW: tag, VR, 2 reserved, length)
            blob = bytearray(ct())
            at = pixel_data_offset(bytes(blob))
            struct.pack_into("<I", blob, at + 8, value)
            return {"len.dcm": bytes(blob)}
        return files

    def rle(**kw) -> Callable[[], dict[str, bytes]]:
        return lambda: {"rle.dcm": dicom_bytes(_base="MR_small_RLE.dcm", **kw)}

    def series_with_truncated_slice() -> dict[str, bytes]:
        """Three slices 5 mm apart; the middle one cut off before its pixel data."""
        files = {}
        for k in range(3):
            blob = dicom_bytes(ImagePositionPatient=["-158.1", "-179.0", f"{-75.7 + 5 * k:.1f}"],
                               InstanceNumber=k + 1, SOPInstanceUID=f"1.2.3.4.{k + 1}")
            files[f"s{k}.dcm"] = blob[: pixel_data_offset(blob) - 30] if k == 1 else blob
        return files

    cases = [
        Case("dcm-series-slice-truncated-before-pixels", series_with_truncated_slice, ".", culprit="s1.dcm",
             match="truncated"),
        Case("dcm-rle-rows-columns-65535", rle(Rows=65535, Columns=65535), "."),
        Case("dcm-rle-frames-huge", rle(NumberOfFrames=2**31 - 1), ".", match="fragments"),
        Case("dcm-rle-truncated", lambda: {"rle.dcm": dicom_bytes(_base="MR_small_RLE.dcm")[:-700]}, ".",
             match="truncated"),
        Case("dcm-jpeg2000-rows-columns-65535",
             lambda: {"j2k.dcm": dicom_bytes(_base="JPEG2000.dcm", Rows=65535, Columns=65535, **_GEOMETRY)}, ".",
             match="compressed data"),
        Case("dcm-jpeg2000-rows-columns-65535-max-voxels",
             lambda: {"j2k.dcm": dicom_bytes(_base="JPEG2000.dcm", Rows=65535, Columns=65535, **_GEOMETRY)}, ".",
             match="max_voxels", options={"max_voxels": INGEST_MAX_VOXELS}),
        Case("dcm-frames-huge-max-voxels", tags(NumberOfFrames=2**31 - 1), ".", match="max_voxels",
             options={"max_voxels": INGEST_MAX_VOXELS}),
        Case("dcm-truncated-in-preamble", truncated(lambda b: 100), "."),
        Case("dcm-truncated-after-magic", truncated(lambda b: 132), "."),
        Case("dcm-truncated-in-meta", truncated(lambda b: 200), "."),
        Case("dcm-truncated-at-pixel-data-tag", truncated(pixel_data_offset), "."),
        Case("dcm-truncated-pixel-data-header", truncated(lambda b: pixel_data_offset(b) + 6), "."),
        Case("dcm-truncated-just-into-pixels", truncated(lambda b: pixel_data_offset(b) + 12 + 10), "."),
        Case("dcm-missing-last-byte", truncated(lambda b: len(b) - 1), "."),
        Case("dcm-wrong-magic", lambda: {"m.dcm": ct()[:128] + b"DICX" + ct()[132:]}, ".", expect="any"),
        Case("dcm-pixel-length-huge", length_field(0x7FFFFFF0), ".", expect="any"),
        Case("dcm-pixel-length-undefined", length_field(0xFFFFFFFF), "."),
        Case("dcm-rows-columns-65535", tags(Rows=65535, Columns=65535), ".", match=r"pixel data"),
        Case("dcm-rows-zero", tags(Rows=0), "."),
        Case("dcm-frames-huge-no-positions", tags(NumberOfFrames=2**31 - 1), "."),
        Case("dcm-frames-huge-shared-geometry", lambda: shared_geometry(2**31 - 1), ".", match=r"pixel data"),
        Case("dcm-frames-zero", tags(NumberOfFrames=0), "."),
        Case("dcm-frames-zero-shared-geometry", lambda: shared_geometry(0), "."),
        Case("dcm-frames-negative", lambda: shared_geometry(-5), "."),
        Case("dcm-frames-nonsense", tags(NumberOfFrames=b"abc "), "."),
        Case("dcm-frames-nan", tags(NumberOfFrames=b"nan "), "."),
        Case("dcm-bits-allocated-7", tags(BitsAllocated=7), "."),
        Case("dcm-bits-allocated-zero", tags(BitsAllocated=0), "."),
        Case("dcm-samples-per-pixel-zero", tags(SamplesPerPixel=0), "."),
        Case("dcm-samples-per-pixel-3-mono", tags(SamplesPerPixel=3), "."),
        Case("dcm-pixel-spacing-zero", tags(PixelSpacing=["0", "0"]), "."),
        Case("dcm-pixel-spacing-negative", tags(PixelSpacing=["-0.5", "-0.5"]), ".", expect="any"),
        Case("dcm-pixel-spacing-nan", tags(PixelSpacing=b"nan\\nan "), "."),
        Case("dcm-pixel-spacing-text", tags(PixelSpacing=b"abc\\1.0 "), "."),
        Case("dcm-pixel-spacing-one-value", tags(PixelSpacing=["0.7"]), "."),
        Case("dcm-slice-thickness-negative", tags(SliceThickness="-5"), ".", expect="any"),
        Case("dcm-slice-thickness-nan", tags(SliceThickness=b"nan "), ".", expect="any"),
        Case("dcm-orientation-zero", tags(ImageOrientationPatient=["0"] * 6), "."),
        Case("dcm-orientation-nan", tags(ImageOrientationPatient=b"\\".join([b"nan"] * 6) + b" "), "."),
        Case("dcm-position-inf", tags(ImagePositionPatient=b"inf\\0\\0 "), "."),
        Case("dcm-rescale-slope-nan", tags(RescaleSlope=b"nan "), ".", expect="any"),
        Case("dcm-no-pixel-data", tags(PixelData=None), "."),
        Case("dcm-random-bytes", lambda: {"r.dcm": random_bytes(19)}, "."),
        Case("dcm-series-with-random-dcm", lambda: {"c.dcm": ct_small_path().read_bytes(), "r.dcm": random_bytes(23)},
             ".", culprit="r.dcm"),
        Case("dcm-random-bytes-after-magic", lambda: {"r.dcm": with_dicm_magic(random_bytes(20, 3000))}, "."),
        Case("dcm-extensionless-random-with-magic", lambda: {"IM0001": with_dicm_magic(random_bytes(21))}, "."),
    ]
    for seed in range(4):  # random bytes inside an undefined-length private sequence: read, or refused
        cases.append(Case(f"dcm-random-bytes-in-private-sequence-{seed}",
                          lambda seed=seed: {"p.dcm": dicom_with_private_block(
                              _private_sequence(random_bytes(500 + seed, 64 + 32 * seed)))}, ".", expect="any"))
    for seed in range(4):  # bytes of the data set (not the pixels) overwritten at random
        cases.append(Case(f"dcm-bitflips-{seed}",
                          lambda seed=seed: {"f.dcm": flip_bytes(ct(), 400 + seed, 132, pixel_data_offset(ct()))},
                          ".", expect="any"))
    return cases


def all_cases() -> list[Case]:
    return _control_cases() + _nrrd_cases() + _nhdr_cases() + _metaimage_cases() + _nifti_cases() + _dicom_cases()


# ---- the child ---------------------------------------------------------------------------------


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


def _maxrss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory_error_in(err: BaseException) -> bool:
    """A MemoryError anywhere in the chain, or ITK's report of a failed allocation."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, MemoryError) or "bad_alloc" in str(err) or "Failed to allocate" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _describe_volume(vol) -> dict:
    a = vol.array
    problems = []
    if a.ndim != 3 or a.size == 0:
        problems.append(f"shape {a.shape}")
    if not np.all(np.isfinite(vol.spacing)) or min(vol.spacing) <= 0:
        problems.append(f"spacing {vol.spacing}")
    if not np.all(np.isfinite(vol.origin)):
        problems.append(f"origin {vol.origin}")
    if not np.all(np.isfinite(vol.direction)):
        problems.append(f"direction {vol.direction}")
    checksum = float(np.sum(a, dtype=np.float64)) if a.size else 0.0
    return {"shape": list(a.shape), "dtype": str(a.dtype), "spacing": list(vol.spacing),
            "sum": checksum if np.isfinite(checksum) else str(checksum), "invalid": "; ".join(problems)}


def _misbehave(what: str) -> None:
    """What the harness must catch, for its own test: a crash, a hang, a huge allocation."""
    if what == "segfault":
        import ctypes

        ctypes.string_at(0)
    elif what == "hang":
        time.sleep(3600)
    elif what == "allocate":
        np.ones(8 << 30, dtype=np.uint8)


def _read_case(case: dict) -> dict:
    from semgen_ray.io import ReadError, find_sources, read_source

    try:
        if "selftest" in case:
            _misbehave(case["selftest"])
            return {"outcome": "ok", "volumes": []}
        sources = find_sources(case["path"])
        if len(sources) != 1:
            return {"outcome": "other", "type": "Discovery", "message": f"{len(sources)} sources found"}
        volumes = read_source(sources[0], **case["options"])
    except ReadError as err:
        outcome = "memory" if _memory_error_in(err) else "ReadError"
        return {"outcome": outcome, "type": type(err).__name__, "message": str(err)}
    except BaseException as err:  # noqa: BLE001 - exactly what the test is looking for
        import traceback

        tb = traceback.format_exception(type(err), err, err.__traceback__)
        return {"outcome": "memory" if _memory_error_in(err) else "other", "type": type(err).__name__,
                "message": str(err)[:2000], "traceback": "".join(tb)[-3000:]}
    return {"outcome": "ok", "volumes": [_describe_volume(v) for v in volumes]}


def child_main(cases_file: str, out_file: str, case_timeout: float = CASE_TIMEOUT_S) -> int:
    import faulthandler
    import resource

    faulthandler.enable()  # a segfault prints the Python stack to stderr
    cases = json.loads(Path(cases_file).read_text())
    if any("path" in case for case in cases):
        # Import every reader before the limit: imports are not what is being tested.
        import nibabel  # noqa: F401
        import pydicom  # noqa: F401
        import SimpleITK  # noqa: F401

        import semgen_ray.io.dicom
        import semgen_ray.io.sitk_image  # noqa: F401

    limit = MEM_LIMIT_BYTES
    if _vm_bytes() > limit - (1 << 30):
        limit = _vm_bytes() + (2 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    fd = os.open(out_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for case in cases:
        os.write(fd, (json.dumps({"start": case["name"]}) + "\n").encode())
        rss_before = _maxrss_bytes()
        faulthandler.dump_traceback_later(case_timeout, exit=True)
        t0 = time.perf_counter()
        result = _read_case(case)
        result["seconds"] = time.perf_counter() - t0
        faulthandler.cancel_dump_traceback_later()
        result["rss_growth"] = _maxrss_bytes() - rss_before
        result["name"] = case["name"]
        os.write(fd, (json.dumps(result) + "\n").encode())
    os.close(fd)
    return 0


def run_in_child(cases: list[dict], workdir: Path, timeout: float = 240.0, case_timeout: float = CASE_TIMEOUT_S
                 ) -> tuple[dict[str, dict], list[str]]:
    """Read ``cases`` (``Case.write`` dicts) in memory-limited child processes.

    A child that dies (signal, abort, hang) has the case it was reading recorded as ``crash`` (with
    its exit status and the end of its stderr); a fresh child goes on with the remaining cases.

    Returns:
        ``({name: result}, [one line per abnormal child exit])``.
    """
    results: dict[str, dict] = {}
    exits: list[str] = []
    remaining = list(cases)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    deadline = time.monotonic() + timeout
    attempt = 0
    while remaining:
        attempt += 1
        cases_file = workdir / f"cases_{attempt}.json"
        out_file = workdir / f"results_{attempt}.jsonl"
        cases_file.write_text(json.dumps(remaining))
        proc = subprocess.run([sys.executable, __file__, str(cases_file), str(out_file), str(case_timeout)], env=env,
                              check=False, capture_output=True, text=True, timeout=max(10.0, deadline - time.monotonic()))
        started = None
        lines = out_file.read_text().splitlines() if out_file.exists() else []
        for line in lines:
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record["name"]] = record
                started = None
        if proc.returncode != 0:
            tail = proc.stderr.strip()[-1500:]
            exits.append(f"child exited with status {proc.returncode} while reading {started}")
            if started is None:
                raise RuntimeError(f"fuzz child failed outside any case (status {proc.returncode}): {tail}")
            hang = "Timeout (" in proc.stderr
            results[started] = {"name": started, "outcome": "hang" if hang else "crash",
                                "returncode": proc.returncode, "stderr": tail}
        remaining = [c for c in remaining if c["name"] not in results]
    return results, exits


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
