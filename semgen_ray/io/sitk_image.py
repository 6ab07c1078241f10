"""NIfTI, MetaImage (.mhd/.raw, .mha) and NRRD (.nrrd, .nhdr) through SimpleITK.

SimpleITK brings every format into the ITK world frame (LPS, with a direction matrix), whatever the
file's own convention (NIfTI's RAS, NRRD's ``space`` field). NIfTI-2, which SimpleITK 2.5 cannot
read, goes through nibabel with the equivalent reorientation. The image is then flipped / permuted to
the closest LPS axes with ``DICOMOrient(img, "LPS")`` and handed over as an (x, y, z) array, so a
voxel ``array[i, j, k]`` sits at ``origin + direction @ (spacing * (i, j, k))``.
"""

from __future__ import annotations

import os
import re

import numpy as np

from semgen_ray.io.modality import detect_modality
from semgen_ray.io.sources import Source, metaimage_data_files, nrrd_data_files
from semgen_ray.io.volume import MODALITIES, ReadError, Volume

_FORMAT_NAMES = {"nifti": "NIfTI", "metaimage": "MetaImage", "nrrd": "NRRD"}


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


def _check_nifti_size(path: str, name: str) -> None:
    """Refuse a truncated NIfTI: ITK silently zero-fills missing voxels of .nii and .nii.gz files.

    The header says how many bytes the voxels need; for .nii.gz the stream is decompressed (and
    discarded) up to that many bytes, so this costs one decompression pass.
    """
    try:
        import nibabel

        header = nibabel.load(path).header
        needed = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * \
            header.get_data_dtype().itemsize
    except Exception:
        return  # not a header nibabel understands: the reader reports the problem
    gz = path.lower().endswith(".gz")
    have = _gzip_length(path, needed) if gz else os.path.getsize(path)
    if have < needed:
        raise ReadError(f"{name} is truncated: the header needs {needed} bytes, the file holds {have}"
                        + (" (decompressed)" if gz else ""))


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

    img = nibabel.load(path)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
    elif len(shape) != 3:
        raise ReadError(f"{name}: image is {len(shape)}D with shape {'x'.join(map(str, shape))}; a 3D volume "
                        "is needed" + (" (a 4D image must have a single time point)" if len(shape) == 4 else ""))
    canonical = nibabel.as_closest_canonical(img)
    try:
        data = np.asanyarray(canonical.dataobj)
    except Exception as err:
        raise ReadError(f"cannot read {name} as NIfTI-2 (truncated or corrupt?): {err}") from err
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
            hostile header must not make the reader allocate terabytes).

    Returns:
        A list holding one volume (the common reader signature: DICOM folders may give several).

    Raises:
        ReadError: unreadable or truncated file, a missing detached data file, an image that is not
            3D (2D, or 4D with more than one time point; a 4D image of one time point is accepted),
            or one with vector / multi-component pixels.
    """
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES} or None, got {modality!r}")
    sitk = _import_sitk()
    fmt = _FORMAT_NAMES.get(source.format, source.format)
    _check_files(source)
    path = source.path
    name = os.path.basename(path)
    if source.format == "nifti":
        _check_nifti_size(path, name)
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
    voxels = int(np.prod(size[:3], dtype=np.int64))
    if max_voxels is not None and voxels > max_voxels:
        raise ReadError(f"{name}: header declares {shape} = {voxels} voxels, more than max_voxels="
                        f"{max_voxels}")
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
