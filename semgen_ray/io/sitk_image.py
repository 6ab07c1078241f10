"""NIfTI, MetaImage (.mhd/.raw, .mha) and NRRD (.nrrd, .nhdr) through SimpleITK.

SimpleITK brings every format into the ITK world frame (LPS, with a direction matrix), whatever the
file's own convention (NIfTI's RAS, NRRD's ``space`` field). NIfTI-2, which SimpleITK 2.5 cannot
read, goes through nibabel with the equivalent reorientation. The image is then flipped / permuted to
the closest LPS axes with ``DICOMOrient(img, "LPS")`` and handed over as an (x, y, z) array, so a
voxel ``array[i, j, k]`` sits at ``origin + direction @ (spacing * (i, j, k))``.
"""

from __future__ import annotations

import math
import os
import re
import struct

import numpy as np

from semgen_ray.io.modality import detect_modality
from semgen_ray.io.sources import MAX_DATA_FILES, Source, metaimage_data_files, nrrd_data_files
from semgen_ray.io.volume import MODALITIES, ReadError, Volume

_FORMAT_NAMES = {"nifti": "NIfTI", "metaimage": "MetaImage", "nrrd": "NRRD"}
_DEFLATE_MAX_RATIO = 1032
"""zlib / gzip output is at most about 1032 times its input: a bound for compressed data."""
_METAIMAGE_MAX_DIMS = 10
"""ITK's MetaIO crashes (segfault, heap corruption) on an NDims above 10 or below 1."""
# NIfTI datatype code → bytes per voxel (nifti1.h)
_NIFTI_ITEMSIZE = {2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8,
                   1536: 16, 1792: 16, 2048: 32, 2304: 4}


def _import_sitk():
    try:
        import SimpleITK as sitk
    except ImportError as err:  # pragma: no cover - SimpleITK is a hard dependency
        raise ImportError("reading NIfTI / MetaImage / NRRD needs SimpleITK: pip install SimpleITK") from err
    return sitk


def _itk_reason(err: Exception) -> str:
    """One line out of a multi-line ITK exception: the ITK ERROR line plus the deepest [nrrd] detail."""
    text = str(err)
    m = re.search(r"ITK ERROR: [^:]*\):\s*(.+)", text)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = m.group(1) if m else (lines[-1] if lines else type(err).__name__)
    line = re.sub(r"^sitk::ERROR:\s*", "", line.strip()).rstrip(":")
    details = [ln for ln in lines if ln.startswith("[nrrd]")]
    if details:
        line += " (" + details[-1] + ")"
    return line[:400]


def _gzip_length(path: str, limit: int) -> int:
    """Bytes a gzip file decompresses to, counting up to ``limit``; a truncated stream just ends early."""
    import zlib

    have = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as f:
        pending = b""
        while have < limit:
            if not pending:
                pending = f.read(1 << 20)
                if not pending:
                    break
            try:
                have += len(inflater.decompress(pending, 1 << 24))
            except zlib.error:
                break
            pending = inflater.unconsumed_tail
            if inflater.eof:  # next gzip member, if any
                pending = inflater.unused_data
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return have


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _gunzip_head(path: str, n: int) -> bytes:
    """Up to the first ``n`` decompressed bytes of a gzip file (fewer where the stream ends or breaks)."""
    import zlib

    out = b""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as f:
        while len(out) < n:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            try:
                out += inflater.decompress(chunk, n - len(out))
            except zlib.error:
                break
    return out[:n]


def _check_nifti_header(path: str, name: str) -> None:
    """Check a NIfTI-1 / NIfTI-2 header, from its raw bytes, before ITK or nibabel see the file.

    Refused: no NIfTI magic (ITK would read the file as an Analyze 7.5 image, orientation guessed), a
    dim[0] outside 1..7, a size below 1, an unknown datatype, non-finite voxel sizes or data offset,
    and a file too short for the voxels its header declares: ITK silently zero-fills missing voxels,
    and a header declaring 32767³ voxels must not reach an allocation. For .nii.gz the stream is
    decompressed (and discarded) up to the bytes needed, so this costs one decompression pass.
    """
    gz = _is_gzip(path)
    if gz:
        head = _gunzip_head(path, 548)
    else:
        with open(path, "rb") as f:
            head = f.read(548)
    where = " (decompressed)" if gz else ""
    if len(head) < 348:
        raise ReadError(f"cannot read {name} as NIfTI: {len(head)} bytes{where}, shorter than a NIfTI header")
    for endian in "<>":
        sizeof_hdr = struct.unpack_from(endian + "i", head)[0]
        if sizeof_hdr in (348, 540):
            break
    else:
        raise ReadError(f"cannot read {name} as NIfTI: header size field {struct.unpack_from('<i', head)[0]}, "
                        "expected 348 or 540")
    if sizeof_hdr == 348:
        magic, single = head[344:348], b"n+1\0"
        dim = struct.unpack_from(endian + "8h", head, 40)
        datatype = struct.unpack_from(endian + "h", head, 70)[0]
        pixdim = struct.unpack_from(endian + "8f", head, 76)
        vox_offset = struct.unpack_from(endian + "f", head, 108)[0]
        codes = struct.unpack_from(endian + "2h", head, 252)  # qform_code, sform_code
        qform, sform = struct.unpack_from(endian + "6f", head, 256), struct.unpack_from(endian + "12f", head, 280)
    else:
        if len(head) < 540:
            raise ReadError(f"cannot read {name} as NIfTI: truncated inside its NIfTI-2 header "
                            f"({len(head)} bytes{where})")
        magic, single = head[4:8], b"n+2\0"
        datatype = struct.unpack_from(endian + "h", head, 12)[0]
        dim = struct.unpack_from(endian + "8q", head, 16)
        pixdim = struct.unpack_from(endian + "8d", head, 104)
        vox_offset = struct.unpack_from(endian + "q", head, 168)[0]
        codes = struct.unpack_from(endian + "2i", head, 344)
        qform, sform = struct.unpack_from(endian + "6d", head, 352), struct.unpack_from(endian + "12d", head, 400)
    if magic not in (single, single.replace(b"+", b"i")):
        raise ReadError(f"cannot read {name} as NIfTI: magic {magic!r}, expected {single!r}")
    if not 1 <= dim[0] <= 7:
        raise ReadError(f"{name}: NIfTI header declares {dim[0]} dimensions (dim[0] must be 1 to 7)")
    shape = dim[1:dim[0] + 1]
    if min(shape) < 1:
        raise ReadError(f"{name}: NIfTI header declares size {'x'.join(map(str, shape))}; every size must "
                        "be at least 1")
    if datatype not in _NIFTI_ITEMSIZE:
        raise ReadError(f"{name}: unknown NIfTI datatype code {datatype}")
    spacing = pixdim[1:min(dim[0], 3) + 1]
    if not all(math.isfinite(p) for p in spacing):
        raise ReadError(f"{name}: NIfTI voxel size (pixdim) {tuple(spacing)} is not finite")
    for code, values, what in ((codes[0], qform, "qform (quatern / qoffset)"), (codes[1], sform, "sform (srow)")):
        if code > 0 and not all(math.isfinite(v) for v in values):
            # ITK's NIfTI reader can loop forever orthonormalising a NaN matrix.
            raise ReadError(f"{name}: NIfTI {what} holds NaN or infinite values")
    if not math.isfinite(vox_offset):
        raise ReadError(f"{name}: NIfTI data offset (vox_offset) {vox_offset} is not a number")
    if magic != single:
        return  # "ni1" / "ni2": a header whose voxels are in a separate .img file
    # nifti1_io reads a single file's voxels from max(vox_offset, end of header + extender).
    offset = max(int(vox_offset), sizeof_hdr + 4)
    needed = offset + math.prod(shape) * _NIFTI_ITEMSIZE[datatype]  # Python ints: no overflow
    have = _gzip_length(path, needed) if gz else os.path.getsize(path)
    if have < needed:
        raise ReadError(f"{name} is truncated: the header needs {needed} bytes, the file holds {have}{where}")


def _header_fields(path: str, sep: str, last_key: str | None = None) -> tuple[dict[str, str], int | None]:
    """``({lower-case key: value}, offset of the data)`` of a MetaImage (``key = value``, up to
    ``last_key``) or NRRD (``key: value``, up to a blank line) text header; offset None if unseen."""
    with open(path, "rb") as f:
        raw = f.read(1 << 16)
    fields: dict[str, str] = {}
    pos = 0
    for line in raw.splitlines(keepends=True):
        pos += len(line)
        text = line.decode("latin-1").strip()
        if sep == ":" and not text and pos > len(line):
            return fields, pos  # the blank line that ends a NRRD header
        key, found, value = text.partition(sep)
        if found:
            key = key.strip().lower()
            fields.setdefault(key, value.lstrip("=").strip())
            if key == last_key:
                return fields, pos
    return fields, None


def _check_metaimage_header(path: str, name: str) -> None:
    """Refuse a MetaImage NDims that would crash ITK's MetaIO reader (it does, above 10 or below 1)."""
    fields, _ = _header_fields(path, "=", "elementdatafile")
    value = fields.get("ndims")
    if value is None:
        return  # ITK reports the missing field
    try:
        ndims = int(value)
    except ValueError:
        ndims = None
    if ndims is None or not 1 <= ndims <= _METAIMAGE_MAX_DIMS:
        raise ReadError(f"{name}: MetaImage NDims = {value[:40]!r} is not a number of dimensions "
                        f"from 1 to {_METAIMAGE_MAX_DIMS}")


def _check_data_size(source: Source, size: tuple[int, ...], bytes_per_voxel: int, shape: str) -> None:
    """Refuse, before ITK allocates the image, a header declaring more voxels than its data can hold.

    Raw data must hold every declared byte; compressed data (NRRD gzip, MetaImage CompressedData) at
    least 1/1032 of them (the deflate limit); text (NRRD ascii, MetaImage BinaryData = False) at least
    two characters per value, NRRD hex two per byte. Other encodings (bzip2) are left to ITK. Skip fields and header sizes are ignored, so the
    check only refuses what ITK could not read anyway. A MetaImage CompressedDataSize, which ITK
    allocates as it stands, may not exceed the data either.
    """
    path, name = source.path, os.path.basename(source.path)
    if source.format == "nrrd":
        fields, data_at = _header_fields(path, ":")
        encoding = fields.get("encoding", "raw").lower()
        files = nrrd_data_files(path)
    else:
        fields, data_at = _header_fields(path, "=", "elementdatafile")
        # MetaIO reads a boolean as true when it starts with T, t or 1; images are binary by default.
        compressed = fields.get("compresseddata", "")[:1] in ("T", "t", "1")
        binary = fields.get("binarydata", "T")[:1] in ("T", "t", "1")
        encoding = "gzip" if compressed else "raw" if binary else "ascii"
        files = metaimage_data_files(path)
        declared_compressed = fields.get("compresseddatasize") if compressed else None
    if files:
        if not all(os.path.isfile(f) for f in files):
            return  # ITK names the missing file
        available = sum(os.path.getsize(f) for f in files)
    elif data_at is None:
        return
    else:
        available = os.path.getsize(path) - data_at
    if source.format == "metaimage" and declared_compressed:
        try:
            declared = float(declared_compressed.split()[0])
        except ValueError:
            declared = 0.0
        if not declared <= available:  # NaN too
            raise ReadError(f"{name}: header declares CompressedDataSize = {declared_compressed[:30]}, but its data "
                            f"holds only {available} bytes (truncated file or broken header?)")
    values = math.prod(size)
    needed = values * bytes_per_voxel
    minimum = {"raw": needed, "gzip": -(-needed // _DEFLATE_MAX_RATIO), "gz": -(-needed // _DEFLATE_MAX_RATIO),
               "ascii": 2 * values - 1, "text": 2 * values - 1, "txt": 2 * values - 1,
               "hex": 2 * needed}.get(encoding)
    if minimum is not None and available < minimum:
        raise ReadError(f"{name}: header declares {shape} voxels = {needed} bytes"
                        + ("" if encoding == "raw" else f" ({encoding}-encoded: at least {minimum})")
                        + f", but its data holds only {available} bytes (truncated file or broken header?)")


def _is_nifti2(path: str) -> bool:
    """True for a NIfTI-2 header (SimpleITK 2.5 has no NIfTI-2 reader; nibabel reads those)."""
    try:
        import nibabel
    except ImportError:
        return False
    try:
        return isinstance(nibabel.load(path), nibabel.Nifti2Image)
    except Exception:
        return False


def _read_with_nibabel(path: str, name: str):
    """A NIfTI file through nibabel (NIfTI-2, and float NIfTI-1 whose NaN/inf ITK would hide), as
    (array, spacing, origin, direction) in canonical LPS.

    nibabel's closest canonical orientation is RAS; flipping its x and y axes gives LPS (x → Left,
    y → Posterior), the same axes ``DICOMOrient(img, "LPS")`` gives for a NIfTI-1 file.
    """
    import nibabel

    try:
        img = nibabel.load(path)
    except Exception as err:  # nibabel raises many types for broken headers
        raise ReadError(f"cannot read {name} as NIfTI: {' '.join(str(err).split())[:300]}") from err
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
    elif len(shape) != 3:
        raise ReadError(f"{name}: image is {len(shape)}D with shape {'x'.join(map(str, shape))}; a 3D volume "
                        "is needed" + (" (a 4D image must have a single time point)" if len(shape) == 4 else ""))
    try:
        canonical = nibabel.as_closest_canonical(img)  # loads the voxels when it must reorder them
        data = np.asanyarray(canonical.dataobj)
    except Exception as err:
        raise ReadError(f"cannot read {name} as NIfTI (truncated or corrupt?): "
                        f"{' '.join(str(err).split())[:300]}") from err
    array = np.ascontiguousarray(data[::-1, ::-1, :]).astype(data.dtype.newbyteorder("="), copy=False)
    affine = canonical.affine
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    corner = affine @ np.array([array.shape[0] - 1, array.shape[1] - 1, 0, 1.0])
    origin = ras_to_lps @ corner[:3]
    direction = ras_to_lps @ (affine[:3, :3] / spacing) @ np.diag([-1.0, -1.0, 1.0])
    return array, spacing, origin, direction.ravel()


def _check_files(source: Source) -> None:
    """Fail early, with a precise message, on missing files or a detached data file that is absent."""
    path = source.path
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ReadError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise ReadError(f"{path}: empty file")
    lower = name.lower()
    data_files: list[str] = []
    if source.format == "metaimage":
        data_files = metaimage_data_files(path)
    elif lower.endswith(".nhdr"):
        data_files = nrrd_data_files(path)
    if len(data_files) > MAX_DATA_FILES:
        raise ReadError(f"{name} names more than {MAX_DATA_FILES} data files (a file-name pattern with a "
                        "broken number range?)")
    for f in data_files:
        if not os.path.isfile(f):
            raise ReadError(f"data file {os.path.basename(f)} named by {name} is missing "
                            f"(looked for {f})")


def read_sitk_image(source: Source, modality: str | None = None, *, max_voxels: int | None = None
                    ) -> list[Volume]:
    """Read a NIfTI, MetaImage or NRRD file into one canonical LPS :class:`Volume`.

    Args:
        source: the file (``source.format`` in "nifti", "metaimage", "nrrd").
        modality: "CT", "MR" or "OT" to override :func:`detect_modality`.
        max_voxels: refuse, from the header alone, images with more voxels than this (a broken or
            hostile header must not make the reader allocate terabytes). Whatever this is, a header
            declaring more bytes than its data (file) can hold is refused before reading.

    Returns:
        A list holding one volume (the common reader signature: DICOM folders may give several).

    Raises:
        ReadError: unreadable or truncated file, a missing detached data file, an image that is not
            3D (2D, or 4D with more than one time point; a 4D image of one time point is accepted),
            an axis of size 0, or one with vector / multi-component pixels.
    """
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES} or None, got {modality!r}")
    sitk = _import_sitk()
    fmt = _FORMAT_NAMES.get(source.format, source.format)
    _check_files(source)
    path = source.path
    name = os.path.basename(path)
    if source.format == "nifti":
        _check_nifti_header(path, name)
    elif source.format == "metaimage":
        _check_metaimage_header(path, name)
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        if source.format == "nifti" and _is_nifti2(path):
            array, spacing, origin, direction = _read_with_nibabel(path, name)
            return [_volume(array, spacing, origin, direction, modality, source)]
        raise ReadError(f"cannot read {name} as {fmt}: {_itk_reason(err)}") from err
    size = tuple(int(s) for s in reader.GetSize())
    shape = "x".join(str(s) for s in size)
    ncomp = int(reader.GetNumberOfComponents())
    if ncomp != 1:
        raise ReadError(f"{name}: pixels have {ncomp} components (vector or colour image, shape {shape}); "
                        "a scalar 3D volume is needed")
    dim = len(size)
    if dim == 4 and size[3] == 1:
        reader.SetExtractIndex([0, 0, 0, 0])
        reader.SetExtractSize([size[0], size[1], size[2], 0])  # 0 collapses the time axis
    elif dim != 3:
        raise ReadError(f"{name}: image is {dim}D with shape {shape}; a 3D volume is needed"
                        + (" (a 4D image must have a single time point)" if dim == 4 else ""))
    if 0 in size:
        raise ReadError(f"{name}: header declares size {shape}: an empty image")
    voxels = math.prod(size[:3])  # Python ints: a product of huge sizes must not wrap around
    if max_voxels is not None and voxels > max_voxels:
        raise ReadError(f"{name}: header declares {shape} = {voxels} voxels, more than max_voxels="
                        f"{max_voxels}")
    if source.format != "nifti":  # NIfTI: checked by _check_nifti_header
        _check_data_size(source, size, _pixel_bytes(sitk, reader.GetPixelID()), shape)
    if source.format == "nifti" and reader.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        # ITK's NIfTI reader silently turns NaN / inf voxels into 0; nibabel keeps them, so that
        # ingest can refuse such scans instead of storing altered values.
        array, spacing, origin, direction = _read_with_nibabel(path, name)
        return [_volume(array, spacing, origin, direction, modality, source)]
    try:
        img = reader.Execute()
    except RuntimeError as err:
        raise ReadError(f"cannot read {name} as {fmt} (truncated or corrupt?): {_itk_reason(err)}") from err
    if img.GetDimension() != 3:  # pragma: no cover - guarded above
        raise ReadError(f"{name}: expected a 3D image after reading, got {img.GetDimension()}D")
    img = sitk.DICOMOrient(img, "LPS")
    array = np.ascontiguousarray(sitk.GetArrayFromImage(img).transpose(2, 1, 0))
    return [_volume(array, img.GetSpacing(), img.GetOrigin(), img.GetDirection(), modality, source)]


def _pixel_bytes(sitk, pixel_id: int) -> int:
    """Bytes per (scalar) voxel of a SimpleITK pixel type; 1 when unknown (a lenient bound)."""
    sizes = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
             sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8,
             sitk.sitkComplexFloat32: 8, sitk.sitkComplexFloat64: 16}
    return sizes.get(pixel_id, 1)


def _volume(array, spacing, origin, direction, modality, source: Source) -> Volume:
    return Volume(
        array=array,
        spacing=spacing,
        origin=origin,
        direction=direction,
        modality=modality or detect_modality(array),
        source=source.path,
        extra={"format": source.format},
    )
