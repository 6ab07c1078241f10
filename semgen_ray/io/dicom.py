"""DICOM series → canonical LPS volumes, with pydicom and numpy (no SimpleITK).

A folder may hold several series: every file is read, non-image objects (no pixel data: structured
reports, presentation states, …) are skipped, and the images are grouped by SeriesInstanceUID, one
:class:`Volume` per series. Within a series:

* slices are ordered by their position projected on the slice normal (row × column direction of
  ImageOrientationPatient), never by file name or InstanceNumber;
* RescaleSlope / RescaleIntercept are applied per slice (HU for CT); the result is int16 when every
  value is integral and fits, else float32;
* in-plane spacing comes from PixelSpacing (its first value is the distance between *rows*, i.e. along
  the column direction: our y for an axial scan; the second is along a row: our x), the slice spacing
  is the median step between slice positions;
* the stack is flipped / permuted to the closest LPS axes, as ``SimpleITK.ImageSeriesReader`` followed
  by ``DICOMOrient(img, "LPS")`` would give.

Irregular acquisitions are handled explicitly, each leaving a one-line note in ``Volume.warnings``:

* uneven slice spacing (a step differs from the median by more than 1 %, e.g. a missing slice):
  ``uneven="warn"`` keeps the slices and uses the median step (geometry approximate), ``"resample"``
  interpolates linearly onto a regular grid of the median step, ``"error"`` raises;
* gantry tilt (slice positions drift sideways from the normal: a sheared grid): ``tilt="resample"``
  (default) shifts every slice in-plane, by linear interpolation, back onto the orthogonal grid anchored
  at the first slice, so direction / origin / spacing describe the voxels exactly; ``"ignore"`` keeps
  the pixels and describes them with the orthogonal grid (what ITK does: the shear is lost);
  ``"error"`` raises;
* several slices at one position (echoes, phases): ``duplicates="first"`` keeps the first by
  (InstanceNumber, SOPInstanceUID), ``"error"`` raises.

Multi-frame files are read when their frames carry positions: enhanced CT / MR (per-frame functional
groups) and GridFrameOffsetVector objects (RT dose, some NM). Other multi-frame files raise ReadError.

Broken files are refused with a ReadError that names them, before any pixel data is decoded: a file
that ends inside a data element (truncated), an image object without pixel data (never silently
dropped from its series), counts (Rows, Columns, NumberOfFrames, …) that are not whole numbers >= 1,
uncompressed pixel data shorter than Rows x Columns x frames declare, non-finite geometry, and a
non-positive PixelSpacing. A corrupt element length never makes pydicom allocate more than the file
holds.

Only the elements geometry and intensity are built from (``NEEDED_KEYWORDS``) must be well formed.
Any other element pydicom cannot decode (a vendor's private element whose value does not fit the VR
pydicom's private dictionary gives it, say a 4-byte decimal string where the dictionary says FD; a
length that is no multiple of the VR's value size) is dropped, and an undefined-length private
element that pydicom cannot even parse (a private sequence whose items use the other VR convention,
or hold garbage) is cut out of the file's bytes at the sequence delimiter after which the rest of
the data set parses. Each series gets one warning naming what was ignored (tag, name, private
creator, in how many files), which ingest writes to the manifest.

Compressed pixel data is decoded by pydicom's plugins: pylibjpeg with its libjpeg (JPEG baseline,
extended 12-bit, lossless; JPEG-LS), openjpeg (JPEG 2000) and RLE plugins, all project
dependencies; deflated data sets by pydicom itself.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from warnings import catch_warnings, simplefilter

import numpy as np

from semgen_ray.io.orientation import reorient_to_lps
from semgen_ray.io.sources import Source
from semgen_ray.io.volume import MODALITIES, ReadError, Volume

UNEVEN_MODES = ("warn", "resample", "error")
TILT_MODES = ("resample", "ignore", "error")
DUPLICATE_MODES = ("first", "error")
UNEVEN_TOLERANCE = 0.01
"""A slice step differing from the median step by more than this fraction counts as uneven."""
UNEVEN_NOTE, RESAMPLED_NOTE = "uneven slice spacing", "; resampled"
"""How the volume's warning on a series with uneven slice spacing starts, and what follows the note
when ``uneven="resample"`` regridded it (ingest reads them back to know which policy applied)."""
TILT_TOLERANCE = 0.05
"""Sideways slice drift, in pixels, above which the series counts as tilted (sheared)."""
DUPLICATE_TOLERANCE_MM = 1e-3
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
RLE_MAX_RATIO = 64
"""A DICOM RLE (PackBits) segment decodes to at most 64 times its size (a 2-byte run gives 128)."""
COMPRESSED_MAX_RATIO = 1000
COMPRESSED_FREE_BYTES = 256 << 20
"""Other compressed pixel data (JPEG, JPEG-LS, JPEG 2000) may declare up to 1000 times its size, or
256 MiB whatever its size: pydicom allocates the declared size before decoding, so a corrupt Rows /
Columns over a few KiB of data must not make it ask for gigabytes (lossless medical images compress
far less than 1000:1)."""
_INT16 = np.iinfo(np.int16)


class _FatalError(ReadError):
    """Damaged data or an ``"error"`` policy (uneven / tilt / duplicates): reported, never skipped.

    Other per-series problems (no geometry, colour pixels, mixed orientations) only skip that series
    when the folder holds other, usable series.
    """


def _import_pydicom():
    try:
        import pydicom
    except ImportError as err:  # pragma: no cover - pydicom is a hard dependency
        raise ImportError("reading DICOM needs pydicom: pip install pydicom") from err
    return pydicom


@dataclass
class _Frame:
    """One 2D image of a series with its geometry (a single-frame file, or one frame of a multi-frame)."""

    position: np.ndarray  # ImagePositionPatient (LPS mm) of the first transmitted pixel
    orientation: np.ndarray  # ImageOrientationPatient: row direction (3), column direction (3)
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    slope: float
    intercept: float
    instance: int
    uid: str
    file: str
    dataset: object
    frame: int | None  # index into a multi-frame pixel array, None for a single frame
    thickness: float | None


def _values(value) -> list:
    """A multi-valued element's values as a list (pydicom gives a bare value when there is one)."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    return [value]


def _float_list(value, n: int, what: str, file: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in _values(value)], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ReadError(f"{os.path.basename(file)}: unreadable {what} {value!r}") from err
    if out.shape != (n,):
        raise ReadError(f"{os.path.basename(file)}: {what} needs {n} values, got {len(out)}")
    if not np.isfinite(out).all():
        raise ReadError(f"{os.path.basename(file)}: {what} {out.tolist()} is not finite")
    return out


def _pixel_spacing(value, file: str) -> tuple[float, float]:
    sp = _float_list(value, 2, "PixelSpacing", file)
    if (sp <= 0).any():
        raise ReadError(f"{os.path.basename(file)}: PixelSpacing {sp.tolist()} must be positive")
    return float(sp[0]), float(sp[1])


def _positive_int(ds, keyword: str, file: str, default: int | None = None) -> int:
    """A header count (Rows, NumberOfFrames, …) that must be a whole number >= 1."""
    value = ds.get(keyword)
    if value is None or value == "":
        if default is not None:
            return default
        raise _FatalError(f"{os.path.basename(file)}: no {keyword}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= 1 and number == int(number)):
        raise _FatalError(f"{os.path.basename(file)}: {keyword} {str(value)!r} is not a whole number >= 1")
    return int(number)


def _encapsulated_fragments(data: bytes) -> int:
    """Fragments of encapsulated pixel data (items after the Basic Offset Table)."""
    items, pos = 0, 0
    while pos + 8 <= len(data) and data[pos:pos + 4] == b"\xfe\xff\x00\xe0":
        pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "little")
        items += 1
    return max(items - 1, 0)


def _check_pixel_data(ds, file: str, n_frames: int) -> None:
    """Refuse, before decoding, pixel data that cannot hold what Rows x Columns x frames declare.

    Uncompressed data must hold every declared byte (a header declaring 65535 x 65535 pixels, or two
    billion frames, over a few KiB of data fails here, before anything is allocated); encapsulated
    (compressed) data needs at least one fragment per frame, and RLE data at least 1/64 of the
    declared bytes, other codecs 1/1000 beyond 256 MiB (pydicom allocates the decoded size before
    decoding; see ``COMPRESSED_MAX_RATIO``).
    """
    base = os.path.basename(file)
    rows = _positive_int(ds, "Rows", file)
    columns = _positive_int(ds, "Columns", file)
    bits = _positive_int(ds, "BitsAllocated", file)
    samples = _positive_int(ds, "SamplesPerPixel", file, default=1)
    element = ds["PixelData"]
    data = element.value or b""
    needed = (rows * columns * samples * n_frames * bits + 7) // 8
    layout = f"{rows}x{columns} pixels" + (f" x {samples} samples" if samples != 1 else "") + \
        (f" x {n_frames} frames" if n_frames != 1 else "")
    if element.is_undefined_length:
        fragments = _encapsulated_fragments(data)
        if fragments < n_frames:
            raise _FatalError(f"{base}: {n_frames} frames declared, but the compressed pixel data holds "
                              f"{fragments} fragments (truncated file or corrupt header?)")
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax == RLE_LOSSLESS and needed > RLE_MAX_RATIO * len(data):
            raise _FatalError(f"{base}: {layout} at {bits} bits need {needed} bytes, more than "
                              f"{len(data)} bytes of RLE data can hold (corrupt header?)")
        if needed > max(COMPRESSED_MAX_RATIO * len(data), COMPRESSED_FREE_BYTES):
            raise _FatalError(f"{base}: {layout} at {bits} bits need {needed} bytes, more than "
                              f"{COMPRESSED_MAX_RATIO} times the {len(data)} bytes of compressed data "
                              "(corrupt header?)")
        return
    if len(data) < needed:
        raise _FatalError(f"{base}: pixel data holds {len(data)} bytes, but {layout} at {bits} bits need "
                          f"{needed} (truncated file or corrupt header?)")


def _functional(ds, index: int, sequence: str, attribute: str):
    """An attribute from the per-frame functional groups of frame ``index``, else the shared groups."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is not None and len(seq) > i and sequence in seq[i] and len(seq[i][sequence].value):
            item = seq[i][sequence][0]
            if attribute in item:
                return item[attribute].value
    return None


def _number(value, default):
    try:
        return float(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


def _frames_of(ds, file: str) -> list[_Frame]:
    """Split a dataset into frames with their geometry. Raises ReadError for unusable geometry."""
    base = os.path.basename(file)
    instance = _number(ds.get("InstanceNumber"), 0)
    instance = int(instance) if math.isfinite(instance) else 0
    uid = str(ds.get("SOPInstanceUID", base))
    n_frames = _positive_int(ds, "NumberOfFrames", file, default=1)
    _check_pixel_data(ds, file, n_frames)
    thickness = _number(ds.get("SliceThickness"), None)
    slope = _number(ds.get("RescaleSlope"), 1.0)
    intercept = _number(ds.get("RescaleIntercept"), 0.0)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        frames = []
        for f in range(n_frames):
            pos = _functional(ds, f, "PlanePositionSequence", "ImagePositionPatient")
            ori = _functional(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient")
            spacing = _functional(ds, f, "PixelMeasuresSequence", "PixelSpacing")
            if pos is None or ori is None or spacing is None:
                raise ReadError(f"{base}: multi-frame DICOM without per-frame position / orientation / "
                                "pixel spacing is not supported")
            frames.append(_Frame(
                position=_float_list(pos, 3, "ImagePositionPatient", file),
                orientation=_float_list(ori, 6, "ImageOrientationPatient", file),
                pixel_spacing=_pixel_spacing(spacing, file),
                slope=_number(_functional(ds, f, "PixelValueTransformationSequence", "RescaleSlope"), slope),
                intercept=_number(_functional(ds, f, "PixelValueTransformationSequence", "RescaleIntercept"),
                                  intercept),
                instance=instance, uid=f"{uid}#{f:06d}", file=file, dataset=ds,
                frame=f if n_frames > 1 else None,
                thickness=_number(_functional(ds, f, "PixelMeasuresSequence", "SliceThickness"), thickness),
            ))
        return frames
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        raise ReadError(f"{base}: no ImagePositionPatient / ImageOrientationPatient "
                        "(not a cross-sectional image)")
    position = _float_list(ds.ImagePositionPatient, 3, "ImagePositionPatient", file)
    orientation = _float_list(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", file)
    spacing_value = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing_value is None:
        raise ReadError(f"{base}: no PixelSpacing")
    common = dict(orientation=orientation, pixel_spacing=_pixel_spacing(spacing_value, file), slope=slope,
                  intercept=intercept, instance=instance, file=file, dataset=ds, thickness=thickness)
    if n_frames == 1:
        return [_Frame(position=position, uid=uid, frame=None, **common)]
    offsets = ds.get("GridFrameOffsetVector")
    if offsets is None or len(_values(offsets)) != n_frames:
        raise ReadError(f"{base}: multi-frame DICOM ({n_frames} frames) without per-frame positions "
                        "(no functional groups or GridFrameOffsetVector) is not supported")
    normal = np.cross(orientation[:3], orientation[3:])
    offsets = _float_list(offsets, n_frames, "GridFrameOffsetVector", file)
    return [_Frame(position=position + o * normal, uid=f"{uid}#{f:06d}", frame=f, **common)
            for f, o in enumerate(offsets)]


def _pixels(frame: _Frame, cache: dict) -> np.ndarray:
    """The stored values of one frame, shape (rows, columns); each file is decoded once."""
    key = id(frame.dataset)
    if key not in cache:
        try:
            cache[key] = frame.dataset.pixel_array
        except Exception as err:  # pydicom raises many types for truncated / compressed data
            reason = "; ".join(ln.strip() for ln in str(err).splitlines() if ln.strip())[:400]
            raise _FatalError(f"cannot decode pixel data of {os.path.basename(frame.file)} "
                            f"(truncated, or a compression without a decoder?): {reason or type(err).__name__}") from err
    pixels = cache[key]
    return pixels if frame.frame is None else pixels[frame.frame]


class _BoundedFile(io.BufferedReader):
    """A file (a path, or bytes) whose ``read(n)`` never asks for more than the bytes left in it.

    pydicom reads an element's value with ``read(length)``; a corrupt length (random bytes, a flipped
    bit) would otherwise allocate up to 4 GiB before finding out the file is shorter. A read cut short
    means the file ends inside an element: ``truncated`` records it (a complete file's only short read
    is the 8-byte tag read that finds the end of the file).
    """

    def __init__(self, source: str | bytes, name: str = "<bytes>"):
        if isinstance(source, bytes):
            raw = io.BytesIO(source)
            raw.name = name  # pydicom records the file name of what it reads
            super().__init__(raw)
            self._size = len(source)
        else:
            super().__init__(io.FileIO(source, "rb"))
            self._size = os.fstat(self.fileno()).st_size
        self.truncated = False

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            left = max(0, self._size - self.tell())
            if size > left:
                if left or size != 8:
                    self.truncated = True
                size = left
        return super().read(size)


def _dcmread_once(source: str | bytes, pydicom, name: str = "<bytes>"):
    """``(dataset, truncated)``; a file without the 128-byte preamble is read with ``force``."""
    with _BoundedFile(source, name) as fp:
        try:
            return pydicom.dcmread(fp), fp.truncated
        except pydicom.errors.InvalidDicomError:
            pass
    with _BoundedFile(source, name) as fp:
        return pydicom.dcmread(fp, force=True), fp.truncated


# ---- tolerance of elements the image does not need ---------------------------------------------

NEEDED_KEYWORDS = frozenset({
    # identity and grouping
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality",
    # pixel layout and the decoding of the pixel data
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "PixelData", "FloatPixelData",
    "DoubleFloatPixelData", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
    # geometry and intensity
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "ImagerPixelSpacing",
    "GridFrameOffsetVector", "RescaleSlope", "RescaleIntercept",
    # enhanced multi-frame: where the per-frame geometry and rescale live
    "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "PlanePositionSequence",
    "PlaneOrientationSequence", "PixelMeasuresSequence", "PixelValueTransformationSequence",
})
"""The elements a volume is built from: a malformed one still refuses its file. Any other element
(private ones above all) that pydicom cannot decode is dropped with a note in the volume's warnings."""

_VALUE_BYTES = {"AT": 4, "FD": 8, "FL": 4, "OD": 8, "OF": 4, "OL": 4, "OV": 8, "OW": 2, "SL": 4, "SS": 2,
                "SV": 8, "UL": 4, "US": 2, "UV": 8}
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_REPAIR_MAX_BYTES = 256 << 20  # a larger file that pydicom cannot parse is refused, never read into memory
_REPAIR_MAX_ELEMENTS = 8
_REPAIR_MAX_CANDIDATES = 64


class _NeededElementError(ReadError):
    """An element the image needs is malformed."""


@functools.lru_cache(maxsize=1)
def _needed_tags() -> frozenset:
    from pydicom.datadict import tag_for_keyword

    return frozenset(tag_for_keyword(k) for k in NEEDED_KEYWORDS)


def _private_creator(dataset, tag) -> str | None:
    if not tag.is_private or tag.element < 0x1000:
        return None
    from pydicom.tag import Tag

    try:
        value = dataset[Tag(tag.group, tag.element >> 8)].value
    except Exception:  # noqa: BLE001 - an absent or unreadable creator is just unknown
        return None
    text = value.decode("latin-1", "replace") if isinstance(value, bytes) else str(value)
    return text.strip() or None


def _element_vr(tag, raw, creator: str | None) -> str | None:
    """The VR pydicom decodes an element with: the file's (explicit VR), else the dictionary's."""
    from pydicom import datadict

    vr = getattr(raw, "VR", None)
    if vr:
        return str(vr)
    try:
        if tag.is_private:
            return datadict.private_dictionary_VR(tag, creator) if creator else "UN"
        return datadict.dictionary_VR(tag)
    except KeyError:
        return "UN"


def _describe_element(dataset, tag) -> str:
    """``(0045,1053) WideCone Corner Blending Radius [GEMS_HELIOS_01]``: tag, name, private creator."""
    from pydicom import datadict

    label = f"({tag.group:04X},{tag.element:04X})"
    creator = _private_creator(dataset, tag)
    try:
        name = datadict.get_private_entry(tag, creator)[2] if creator else (
            "" if tag.is_private else datadict.dictionary_description(tag))
    except KeyError:
        name = ""
    if tag.is_private:
        name = (name + " " if name else "") + (f"[{creator}]" if creator else "[no private creator]")
    return f"{label} {name}".strip()


def _why_malformed(dataset, tag, raw, err: BaseException) -> str:
    creator = _private_creator(dataset, tag)
    vr = _element_vr(tag, raw, creator)
    length = getattr(raw, "length", None)
    if isinstance(length, int) and length != 0xFFFFFFFF and vr in _VALUE_BYTES and length % _VALUE_BYTES[vr]:
        return f"{length} bytes, not a whole number of the {_VALUE_BYTES[vr]}-byte values of VR {vr}"
    text = str(err).strip()
    while text.startswith("With tag ") and " got exception: " in text:  # pydicom's nested prefixes
        text = text.split(" got exception: ", 1)[1]
    text = (text.splitlines() or [type(err).__name__])[0].split(". ")[0].rstrip(".")
    return f"VR {vr}" + (f", {length} bytes" if isinstance(length, int) and length != 0xFFFFFFFF else "") + \
        f": {text[:160] or type(err).__name__}"


def _decode_tolerantly(dataset, needed: frozenset, notes: list[str], base: str, within_needed=True) -> None:
    """Decode every element of ``dataset`` now (pydicom decodes on first access), recursing into
    sequences; drop, with a note, each element pydicom cannot decode that the image does not need.

    A malformed needed element (one of ``NEEDED_KEYWORDS``, at the top level or inside a needed
    sequence) raises :class:`_NeededElementError`. Elements inside other sequences (private ones,
    say) are never needed, whatever their tag.
    """
    for tag in list(dataset.keys()):
        is_needed = within_needed and tag in needed
        raw = dataset.get_item(tag)
        try:
            element = dataset[tag]
            if element.VR == "SQ":
                for item in element.value or ():
                    _decode_tolerantly(item, needed, notes, base, is_needed)
        except _NeededElementError:
            raise
        except Exception as err:  # noqa: BLE001 - pydicom raises many types for one malformed value
            what = _describe_element(dataset, tag)
            why = _why_malformed(dataset, tag, raw, err)
            if is_needed:
                raise _NeededElementError(f"cannot read DICOM file {base}: {what} is malformed ({why})") from err
            del dataset[tag]
            notes.append(f"{what}: {why}")


def _parse_meta(blob: bytes) -> tuple[int, str] | None:
    """``(offset of the data set, transfer syntax UID)`` of a file with a preamble and a meta group."""
    if len(blob) < 132 or blob[128:132] != b"DICM":
        return None
    pos, syntax = 132, None
    while pos + 8 <= len(blob) and int.from_bytes(blob[pos:pos + 2], "little") == 2:
        element = int.from_bytes(blob[pos + 2:pos + 4], "little")
        vr = blob[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"):
            length, value_at = int.from_bytes(blob[pos + 8:pos + 12], "little"), pos + 12
        else:
            length, value_at = int.from_bytes(blob[pos + 6:pos + 8], "little"), pos + 8
        if length == 0xFFFFFFFF or value_at + length > len(blob):
            return None
        if element == 0x0010:
            syntax = blob[value_at:value_at + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = value_at + length
    return (pos, syntax) if syntax else None


def _scan_top_level(blob: bytes, start: int, implicit: bool, after: int = -1) -> tuple[int | None, list]:
    """Walk the top-level elements from ``start`` with pydicom's parser.

    Returns ``(failure, elements)``: ``failure`` is the offset of the first element that cannot be
    parsed, whose tag is not above the previous one (the first: above ``after``) or that is an item /
    delimiter tag at the top level (None when the walk reaches the end of the data); ``elements``
    are ``(offset, tag)`` before it.
    """
    from pydicom.filereader import data_element_generator

    fp = _BoundedFile(blob)
    fp.seek(start)
    at, seen, last = start, [], after
    try:
        for element in data_element_generator(fp, implicit, True, defer_size=1 << 20):
            tag = int(element.tag)
            if tag <= last or (tag >> 16) == 0xFFFE:
                return at, seen
            seen.append((at, tag))
            last, at = tag, fp.tell()
    except Exception:  # noqa: BLE001 - the element at ``at`` is where the parser gave up
        return at, seen
    return (at if fp.truncated else None), seen


def _undefined_private_at(blob: bytes, at: int, implicit: bool) -> int | None:
    """The value offset of the undefined-length private element starting at ``at``, else None."""
    if at + 8 > len(blob) or not int.from_bytes(blob[at:at + 2], "little") % 2:
        return None
    if implicit:
        length, value_at = int.from_bytes(blob[at + 4:at + 8], "little"), at + 8
    else:
        length, value_at = int.from_bytes(blob[at + 8:at + 12], "little"), at + 12
    return value_at if length == 0xFFFFFFFF else None


def _repair_private(file: str) -> tuple[bytes, list[tuple[int, int]]] | None:
    """The file's bytes without the undefined-length private elements pydicom cannot parse, and the
    ``(tag, bytes)`` of each element removed.

    Such an element (a vendor's private sequence whose items are encoded with the other VR
    convention, say) ends at one of the sequence delimiters that follow it: the first after which the
    rest of the data set parses, with ascending tags, is taken as its end. Returns None when the
    file has no such element, or removing them does not make it parse.
    """
    if os.path.getsize(file) > _REPAIR_MAX_BYTES:
        return None
    with open(file, "rb") as f:
        blob = f.read()
    meta = _parse_meta(blob)
    if meta is None:
        return None
    start, syntax = meta
    if syntax in ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"):  # deflated, big endian
        return None
    implicit = syntax == "1.2.840.10008.1.2"
    skipped: list[tuple[int, int]] = []
    for _ in range(_REPAIR_MAX_ELEMENTS):
        failure, elements = _scan_top_level(blob, start, implicit)
        if failure is None:
            return (blob, skipped) if skipped else None
        suspect = failure
        if _undefined_private_at(blob, suspect, implicit) is None:
            # a sequence that swallowed what follows it: the last undefined-length private element
            suspect = next((at for at, _ in reversed(elements) if _undefined_private_at(blob, at, implicit)),
                           None)
            if suspect is None:
                return None
        value_at = _undefined_private_at(blob, suspect, implicit)
        tag = int.from_bytes(blob[suspect:suspect + 2], "little") << 16 | \
            int.from_bytes(blob[suspect + 2:suspect + 4], "little")
        end, searched, tries = None, value_at, 0
        while tries < _REPAIR_MAX_CANDIDATES:
            hit = blob.find(_SEQUENCE_DELIMITER, searched)
            if hit < 0:
                break
            tries += 1
            searched = hit + 1
            next_failure, _ = _scan_top_level(blob, hit + 8, implicit, after=tag)
            if next_failure is None or next_failure > hit + 8:  # what follows the cut parses
                end = hit + 8
                break
        if end is None:
            return None
        skipped.append((tag, end - suspect))
        blob = blob[:suspect] + blob[end:]
    return None


def _dcmread(file: str, pydicom) -> tuple[object, bool, list[str]]:
    """``(dataset, truncated, notes)``: the file read by pydicom, every element decoded.

    Elements that the image does not need and that pydicom cannot decode (a vendor's private element
    whose value does not fit the VR of pydicom's private dictionary, an odd length, …) are dropped,
    each with a note; so are undefined-length private elements that pydicom cannot parse at all
    (:func:`_repair_private`). Raises for anything else.
    """
    notes: list[str] = []
    try:
        ds, truncated = _dcmread_once(file, pydicom)
        failed = None
    except Exception as err:  # noqa: BLE001 - retried without unparseable private elements below
        ds, truncated, failed = None, True, err
    if truncated:
        repaired = _repair_private(file)
        if repaired is not None:
            blob, skipped = repaired
            ds, truncated = _dcmread_once(blob, pydicom, file)
            failed = None
            from pydicom.tag import Tag

            notes = [f"{_describe_element(ds, Tag(tag))}: undefined-length private element of {size} bytes "
                     "that cannot be parsed, skipped" for tag, size in skipped]
    if failed is not None:
        raise failed
    # pydicom decodes values on first access; decode them all now, so that a corrupt one is dropped
    # or reported here, with its file, not met as an odd exception later.
    with catch_warnings():  # pydicom's notes on odd values of elements never used here
        simplefilter("ignore", UserWarning)
        _decode_tolerantly(ds, _needed_tags(), notes, os.path.basename(file))
    return ds, truncated, notes


def read_dataset(file: str) -> tuple[object, list[str]]:
    """``(dataset, notes)``: one DICOM file read as tolerantly as the series reader reads it (see
    :func:`_dcmread`); a truncated file is a ``ReadError``."""
    ds, truncated, notes = _dcmread(file, _import_pydicom())
    if truncated:
        raise ReadError(f"{os.path.basename(file)}: the file ends inside an element (truncated)")
    return ds, notes


_OTHER_PIXELS = ("FloatPixelData", "DoubleFloatPixelData", "SpectroscopyData")


def _sop_class_name(ds) -> str | None:
    """The name of the SOP class (dataset or file meta), its UID when unknown, None when absent."""
    sop = ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    return str(getattr(sop, "name", sop)) if sop else None


def _read_datasets(files, pydicom):
    """Read every file; return ``([(file, dataset, notes)] for image objects (those with pixel data),
    [names of the other files])``; ``notes`` name the malformed elements dropped from the file.

    A file that should hold an image but has no pixel data (an "… Image Storage" SOP class, or Rows in
    its header), and a truncated file (unless a readable non-image: report, presentation state, …),
    is a ReadError: never silently dropped from its series.
    """
    out, others = [], []
    for file in files:
        base = os.path.basename(file)
        try:
            ds, truncated, notes = _dcmread(file, pydicom)
        except _NeededElementError:
            raise
        except Exception as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ReadError(f"cannot read DICOM file {base} (truncated or corrupt?): {reason}") from err
        sop = _sop_class_name(ds)
        image = "PixelData" in ds or "Rows" in ds or "Image" in (sop or "")
        if truncated and (image or sop is None):
            if "PixelData" in ds:  # the precise reason, when the pixels are what is missing
                _check_pixel_data(ds, file, _positive_int(ds, "NumberOfFrames", file, default=1))
            where = "" if "PixelData" in ds else ", before any pixel data"
            raise ReadError(f"cannot read DICOM file {base}: the file ends inside a data element{where} "
                            "(truncated or corrupt?)")
        if "PixelData" not in ds:
            if image and not any(k in ds for k in _OTHER_PIXELS):
                raise ReadError(f"cannot read DICOM file {base}: an image header ({sop or 'Rows present'}) "
                                "without pixel data (truncated?)")
            others.append(base + (" (truncated)" if truncated else ""))
            continue  # structured reports, presentation states, DICOMDIR: not images
        out.append((file, ds, notes))
    return out, others


MAX_ELEMENT_NOTES = 5


def _element_warning(members: list, notes_of: dict) -> str | None:
    """One warning line for the malformed elements dropped from a series' files, or None."""
    counts: dict[str, int] = {}
    for file, _ in members:
        for note in dict.fromkeys(notes_of.get(file, ())):
            counts[note] = counts.get(note, 0) + 1
    if not counts:
        return None
    parts = [f"{note} (in {n} of {len(members)} files)" for note, n in list(counts.items())[:MAX_ELEMENT_NOTES]]
    more = len(counts) - MAX_ELEMENT_NOTES
    return ("ignored malformed elements that geometry and intensity do not need: " + ", ".join(parts)
            + (f", and {more} more" if more > 0 else ""))


def _apply_rescale(frames: list[_Frame]) -> np.ndarray:
    """Stack the frames' stored values (k, rows, cols) with slope/intercept applied.

    Integer slopes and intercepts whose results fit int16 are computed exactly in integers; anything
    else in float64 per slice, kept as int16 when every value turns out integral and in range, else
    float32.
    """
    cache: dict = {}
    raws = [_pixels(f, cache) for f in frames]
    shapes = {r.shape for r in raws}
    if len(shapes) != 1:
        raise ReadError(f"slices of different sizes in one series: {sorted(shapes)}")
    if raws[0].ndim != 2:
        raise ReadError(f"colour or multi-sample pixels (shape {raws[0].shape}); a greyscale series is needed")
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    lo = np.array([r.min() for r in raws], dtype=np.float64)
    hi = np.array([r.max() for r in raws], dtype=np.float64)
    ends = np.stack([lo * slopes + intercepts, hi * slopes + intercepts])
    integral = bool(np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)))
    if integral and ends.min() >= _INT16.min and ends.max() <= _INT16.max:
        out = np.empty((len(raws),) + raws[0].shape, dtype=np.int16)
        for k, r in enumerate(raws):
            out[k] = r.astype(np.int32) * int(slopes[k]) + int(intercepts[k])
        return out
    out = np.empty((len(raws),) + raws[0].shape, dtype=np.float32)
    all_integral = ends.min() >= _INT16.min and ends.max() <= _INT16.max
    for k, r in enumerate(raws):
        v = r.astype(np.float64) * slopes[k] + intercepts[k]
        if all_integral:
            all_integral = bool(np.all(v == np.round(v)))
        out[k] = v
    return out.astype(np.int16) if all_integral else out


def _cast_like(values: np.ndarray, dtype) -> np.ndarray:
    """Interpolated float values back to an integer dtype (rounded, clipped), or float32."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(np.float32, copy=False)


def _deshear(stack: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Move slice k of ``stack`` (k, rows, cols) by ``shifts[k]`` (rows, cols) pixels, linearly.

    A pixel (j, i) of a slice that drifted sideways by (v, u) pixels lies at (j + v, i + u) of the
    orthogonal grid anchored at the first slice; pixels moved in from outside get the stack minimum.
    """
    from scipy import ndimage

    fill = float(stack.min())
    shifts = np.round(shifts, 3)  # sub-millipixel noise from the position strings is not geometry
    out = np.empty(stack.shape, dtype=np.float32)
    for k in range(stack.shape[0]):
        out[k] = ndimage.shift(stack[k].astype(np.float32), shifts[k], order=1, mode="grid-constant",
                               cval=fill)
    return _cast_like(out, stack.dtype)


def _regular_grid(stack: np.ndarray, positions: np.ndarray, step: float) -> np.ndarray:
    """Linearly interpolate slices at irregular ``positions`` onto ``positions[0] + q * step``."""
    count = int(round((positions[-1] - positions[0]) / step)) + 1
    targets = positions[0] + step * np.arange(count)
    lower = np.clip(np.searchsorted(positions, targets, side="right") - 1, 0, len(positions) - 2)
    gap = positions[lower + 1] - positions[lower]
    weight = np.clip((targets - positions[lower]) / gap, 0.0, 1.0).astype(np.float32)
    out = np.empty((count,) + stack.shape[1:], dtype=np.float32)
    for q in range(count):
        a, w = lower[q], weight[q]
        out[q] = stack[a].astype(np.float32) * (1 - w) + stack[a + 1].astype(np.float32) * w
    return _cast_like(out, stack.dtype)


def _modality_of(ds) -> str:
    tag = str(ds.get("Modality", "")).upper()
    return tag if tag in ("CT", "MR") else "OT"


def _series_volume(frames: list[_Frame], path: str, modality: str | None, uneven: str, tilt: str,
                   duplicates: str) -> Volume:
    """Build one volume from the frames of one series."""
    warnings: list[str] = []
    orientation = frames[0].orientation
    for f in frames[1:]:
        if not np.allclose(f.orientation, orientation, atol=1e-4):
            raise ReadError(f"slices with different orientations in one series "
                            f"({np.round(orientation, 4).tolist()} vs {np.round(f.orientation, 4).tolist()})")
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ReadError(f"{os.path.basename(frames[0].file)}: degenerate ImageOrientationPatient "
                        f"{orientation.tolist()}")
    normal /= norm
    frames = sorted(frames, key=lambda f: (float(f.position @ normal), f.instance, f.uid))
    positions = np.array([f.position for f in frames])
    depth = positions @ normal
    steps = np.diff(depth)
    dup = steps < DUPLICATE_TOLERANCE_MM
    if dup.any():
        if duplicates == "error":
            raise _FatalError(f"{int(dup.sum())} slices share a position with another slice "
                              "(several echoes / phases in one series?)")
        keep = np.concatenate([[True], ~dup])
        frames = [f for f, k in zip(frames, keep) if k]
        positions, depth = positions[keep], depth[keep]
        steps = np.diff(depth)
        warnings.append(f"dropped {int(dup.sum())} slices at duplicate positions, kept the first of each "
                        "(several echoes / phases in one series?)")

    row_spacing, col_spacing = frames[0].pixel_spacing
    if any(not np.allclose(f.pixel_spacing, (row_spacing, col_spacing), rtol=1e-4) for f in frames):
        warnings.append("PixelSpacing differs between slices; the first slice's is used")
    stack = _apply_rescale(frames)  # (k, rows, cols)

    if len(frames) == 1:
        candidates = (frames[0].thickness, _number(frames[0].dataset.get("SpacingBetweenSlices"), None), 1.0)
        step = next(c for c in candidates if c is not None and math.isfinite(c) and c > 0)
        warnings.append(f"single slice; z spacing {step:g} mm taken from SliceThickness (or 1 mm)")
    else:
        step = float(np.median(steps))
        # Sideways drift of each slice from the line through the first slice along the normal.
        lateral = (positions - positions[0]) - np.outer(depth - depth[0], normal)
        shifts = np.stack([lateral @ col_dir / row_spacing, lateral @ row_dir / col_spacing], axis=1)
        if np.abs(shifts).max() > TILT_TOLERANCE:
            angle = float(np.degrees(np.arctan2(np.linalg.norm(lateral[-1]), depth[-1] - depth[0])))
            if tilt == "error":
                raise _FatalError(f"gantry tilt of about {angle:.2f} degrees (slices drift sideways "
                                  f"up to {np.abs(shifts).max():.2f} pixels)")
            if tilt == "resample":
                stack = _deshear(stack, shifts)
                warnings.append(f"gantry tilt of about {angle:.2f} degrees removed: slices shifted in-plane "
                                "(linear interpolation) onto an orthogonal grid")
            else:
                warnings.append(f"gantry tilt of about {angle:.2f} degrees ignored: the orthogonal geometry "
                                f"misplaces slices by up to {np.abs(shifts).max():.2f} pixels")
        uneven_steps = np.abs(steps - step) > UNEVEN_TOLERANCE * step
        if uneven_steps.any():
            missing = int(np.clip(np.round(steps / step) - 1, 0, None).sum())
            note = (f"{UNEVEN_NOTE}: steps {steps.min():.4g} to {steps.max():.4g} mm "
                    f"(median {step:.4g} mm, about {missing} missing slices)")
            if uneven == "error":
                raise _FatalError(note)
            if uneven == "resample":
                stack = _regular_grid(stack, depth, step)
                warnings.append(note + f"{RESAMPLED_NOTE} linearly onto a regular {step:.4g} mm grid")
            else:
                warnings.append(note + f"; kept as acquired with z spacing {step:.4g} mm (geometry approximate)")

    ds = frames[0].dataset
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        warnings.append("MONOCHROME1: stored values kept (a viewer would display them inverted)")
    direction = np.stack([row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir), normal], axis=1)
    array, spacing, origin, direction = reorient_to_lps(
        stack.transpose(2, 1, 0), (col_spacing, row_spacing, step), positions[0], direction)
    series_number = _number(ds.get("SeriesNumber"), None)
    return Volume(
        array=array,
        spacing=spacing,
        origin=origin,
        direction=direction,
        modality=modality or _modality_of(ds),
        source=path,
        warnings=tuple(warnings),
        extra={
            "series_uid": str(ds.get("SeriesInstanceUID", "")),
            "study_uid": str(ds.get("StudyInstanceUID", "")),
            "series_number": int(series_number) if series_number is not None and math.isfinite(series_number)
            else None,
            "patient_id_tag": str(ds.get("PatientID", "")),
        },
    )


def read_dicom(source: Source, modality: str | None = None, *, uneven: str = "warn", tilt: str = "resample",
               duplicates: str = "first", max_voxels: int | None = None) -> list[Volume]:
    """Read every image series in a DICOM folder (or one DICOM file) as canonical LPS volumes.

    Args:
        source: a DICOM source (``source.files`` are read).
        modality: "CT", "MR" or "OT" to override the Modality tag (CT → "CT", MR → "MR", else "OT").
        uneven: what to do with uneven slice spacing: "warn", "resample" or "error" (module docstring).
        tilt: what to do with gantry tilt: "resample", "ignore" or "error".
        duplicates: slices sharing a position: "first" (keep the first, warn) or "error".
        max_voxels: refuse, from the headers alone (Rows x Columns x frames), a series with more
            voxels than this, before any pixel data is decoded. Uncompressed pixel data is always
            checked against its declared size; this also bounds compressed data, whose decoded size
            pydicom allocates before decoding.

    Returns:
        One volume per series, sorted by (SeriesNumber, SeriesInstanceUID). A series that cannot be
        made a volume (no geometry, colour pixels, …) is skipped with a note in the other volumes'
        warnings; if none can, ReadError.

    Raises:
        ReadError: unreadable / truncated files, an image file without (enough) pixel data, nonsense
            header values, more than ``max_voxels``, no image in the source, or every series unusable.
    """
    for name, value, allowed in (("uneven", uneven, UNEVEN_MODES), ("tilt", tilt, TILT_MODES),
                                 ("duplicates", duplicates, DUPLICATE_MODES)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES} or None, got {modality!r}")
    pydicom = _import_pydicom()
    if not source.files:
        raise ReadError(f"{source.path}: no DICOM files found")
    datasets, others = _read_datasets(source.files, pydicom)
    if not datasets:
        names = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise ReadError(f"{source.path}: no DICOM image (no object with pixel data) among "
                        f"{len(source.files)} files ({names})")
    series: dict[str, list] = {}
    notes_of: dict[str, list[str]] = {}
    for file, ds, notes in datasets:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((file, ds))
        notes_of[file] = notes

    volumes: list[Volume] = []
    skipped: list[str] = []
    for uid, members in series.items():
        try:
            if max_voxels is not None:
                declared = sum(_positive_int(ds, "Rows", file) * _positive_int(ds, "Columns", file)
                               * _positive_int(ds, "NumberOfFrames", file, default=1) for file, ds in members)
                if declared > max_voxels:
                    names = os.path.basename(members[0][0]) + (", …" if len(members) > 1 else "")
                    raise _FatalError(f"{len(members)} files ({names}) declare {declared} voxels, more than "
                                      f"max_voxels={max_voxels}")
            frames = [fr for file, ds in members for fr in _frames_of(ds, file)]
            volume = _series_volume(frames, source.path, modality, uneven, tilt, duplicates)
            note = _element_warning(members, notes_of)
            if note:
                volume.warnings = volume.warnings + (note,)
            volumes.append(volume)
        except ReadError as err:
            if isinstance(err, _FatalError) or len(series) == 1:
                raise ReadError(f"{source.path}: series {uid or '(no UID)'}: {err}") from err
            skipped.append(f"skipped series {uid or '(no UID)'}: {err}")
    if not volumes:
        raise ReadError(f"{source.path}: no usable series: " + "; ".join(skipped))
    if skipped:
        for v in volumes:
            v.warnings = v.warnings + tuple(skipped)
    volumes.sort(key=lambda v: (v.extra["series_number"] is None, v.extra["series_number"] or 0,
                                v.extra["series_uid"]))
    return volumes
