"""Readers of 2D radiographs into :class:`~semgen_ray.io.image2d.Image2D` (Semantic Genesis 2D's data).

- **DICOM** (CR, DX, DX for presentation or for processing), through the grayscale pipeline of PS3.3
  C.11: stored values → modality LUT (rescale slope and intercept, or a Modality LUT Sequence) → VOI
  (the first Window Center / Width, with the VOI LUT Function ``LINEAR``, ``LINEAR_EXACT`` or
  ``SIGMOID``; or a VOI LUT Sequence; with neither, the full range of the stored bits through the
  modality LUT) → presentation: ``MONOCHROME1`` (and a ``Presentation LUT Shape`` of ``INVERSE``)
  inverted, so that higher is brighter as on ``MONOCHROME2``. Pixel spacing is ``PixelSpacing``,
  else ``ImagerPixelSpacing`` (at the detector; noted). Files are read as tolerantly as CT series
  are (:func:`semgen_ray.io.dicom.read_dataset`); compressed transfer syntaxes decode through
  pydicom's plug-ins. Multi-frame and colour DICOM are refused.
- **PNG and JPEG**, 8 or 16 bits, through Pillow: the value divided by the bit depth's maximum; a
  colour image whose channels are equal is grey, any other is converted to grey (noted); an alpha
  channel is dropped. The spacing comes from the file's resolution (``pHYs`` / JFIF dots per inch)
  when it has one.
- **2D NIfTI** (an image whose third and later dimensions are 1), through nibabel: scaled to [0, 1]
  by its minimum and maximum (NIfTI has no display window); rows are the second voxel index, columns
  the first, as SimpleITK arranges them; the spacing is ``pixdim``.

A file without a spacing gets (1, 1) mm and a note. Every failure is a
:class:`~semgen_ray.io.volume.ReadError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np

from semgen_ray.io.image2d import MODALITIES_2D, Image2D
from semgen_ray.io.volume import ReadError

#: File suffixes (lower case) → format.
SUFFIXES = {".dcm": "dicom", ".dicom": "dicom", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg",
            ".nii": "nifti", ".nii.gz": "nifti"}
NO_SPACING = "the file gives no pixel spacing: 1 x 1 mm assumed"


def radiograph_format(path: str | os.PathLike) -> str | None:
    """The format of a 2D image file from its suffix, or a DICOM file by its preamble; else None."""
    name = os.fspath(path).lower()
    for suffix, fmt in sorted(SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    try:
        with open(path, "rb") as fp:
            return "dicom" if fp.read(132)[128:] == b"DICM" else None
    except OSError:
        return None


def read_radiograph(path: str | os.PathLike, modality: str | None = None) -> Image2D:
    """Read one 2D image file (DICOM, PNG, JPEG or NIfTI, see the module docstring).

    Args:
        path: the file.
        modality: overrides the modality (DICOM's Modality tag, else "OT").

    Raises:
        ReadError: the file cannot be read as a 2D image (the message says why, in one line).
        ValueError: a ``modality`` not in :data:`~semgen_ray.io.image2d.MODALITIES_2D`.
    """
    if modality is not None and modality not in MODALITIES_2D:
        raise ValueError(f"modality must be one of {MODALITIES_2D} or None, got {modality!r}")
    path = os.fspath(path)
    fmt = radiograph_format(path)
    if fmt is None:
        raise ReadError(f"{path}: not a 2D image format semgen_ray reads ({', '.join(sorted(SUFFIXES))}, "
                        "or DICOM)")
    reader = {"dicom": _read_dicom, "png": _read_pillow, "jpeg": _read_pillow, "nifti": _read_nifti}[fmt]
    try:
        array, spacing, found, notes, extra = reader(path)
    except ReadError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure becomes one line naming the file
        raise ReadError(f"{path}: cannot read it as a {fmt} image: {type(err).__name__}: {err}") from err
    if spacing is None:
        spacing, notes = (1.0, 1.0), [*notes, NO_SPACING]
    try:
        return Image2D(np.clip(array, 0.0, 1.0).astype(np.float32), spacing, modality or found, path,
                       tuple(notes), {"format": fmt, **extra})
    except ValueError as err:
        raise ReadError(f"{path}: {err}") from err


# ---- DICOM ----------------------------------------------------------------------------------------

def voi_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The VOI window of PS3.3 C.11.2.1.2 mapped to [0, 1] (float64)."""
    x = np.asarray(values, dtype=np.float64)
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if function != "LINEAR":
        raise ReadError(f"VOI LUT Function {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID")
    if width < 1:
        raise ReadError(f"Window Width {width} is below 1")
    if width == 1:  # a threshold
        return (x >= center - 0.5).astype(np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def voi_lut(values: np.ndarray, descriptor, data) -> np.ndarray:
    """A VOI LUT (its ``LUTDescriptor`` and ``LUTData``) applied and mapped to [0, 1] by the table's bits."""
    entries, first, bits = (int(v) for v in descriptor)
    table = np.asarray(data, dtype=np.float64).reshape(-1)
    entries = entries or 65536
    if table.size < entries or not 8 <= bits <= 16:
        raise ReadError(f"VOI LUT with descriptor {list(descriptor)} and {table.size} entries is malformed")
    index = np.clip(np.asarray(values, dtype=np.float64) - first, 0, entries - 1).astype(np.int64)
    return np.clip(table[index] / (2.0 ** bits - 1.0), 0.0, 1.0)


def _first(value) -> float:
    return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)


def _stored_range(ds) -> tuple[float, float]:
    """The modality-LUT output of the smallest and largest stored value the file's bits allow."""
    bits, signed = int(ds.BitsStored), int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    ends = sorted((lo * slope + intercept, hi * slope + intercept))
    return ends[0], ends[1]


def _read_dicom(path: str):
    from pydicom.pixels import apply_modality_lut

    from semgen_ray.io.dicom import read_dataset

    ds, notes = read_dataset(path)
    name = os.path.basename(path)
    if "PixelData" not in ds:
        raise ReadError(f"{name}: no pixel data (a DICOM file without an image)")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ReadError(f"{name}: photometric interpretation {photometric}: a radiograph is grey "
                        "(MONOCHROME1 or MONOCHROME2)")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise ReadError(f"{name}: {ds.NumberOfFrames} frames: a radiograph has one (a multi-frame file is a "
                        "series or a cine loop)")
    modality_values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    if modality_values.ndim != 2:
        raise ReadError(f"{name}: pixel array of shape {modality_values.shape}, not one 2D image")
    extra = {"photometric": photometric, "bits_stored": int(ds.BitsStored),
             "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
             "presentation_intent": str(ds.get("PresentationIntentType", "")) or None}
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        item = ds.VOILUTSequence[0]
        shown = voi_lut(modality_values, item.LUTDescriptor, item.LUTData)
        extra["voi"] = {"lut": str(item.get("LUTExplanation", "")) or "VOI LUT Sequence"}
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
        shown = voi_window(modality_values, center, width, function)
        extra["voi"] = {"center": center, "width": width, "function": function.upper()}
    else:
        lo, hi = _stored_range(ds)
        shown = (modality_values - lo) / max(hi - lo, 1e-12)
        extra["voi"] = {"range": [lo, hi]}
    if photometric == "MONOCHROME1" or str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE":
        shown = 1.0 - shown
    spacing = None
    for keyword, note in (("PixelSpacing", None),
                          ("ImagerPixelSpacing", "pixel spacing from ImagerPixelSpacing (at the detector, "
                                                 "magnified against the patient)")):
        if ds.get(keyword) is not None:
            values = [float(v) for v in ds.get(keyword)]
            if len(values) == 2 and all(np.isfinite(v) and v > 0 for v in values):
                spacing = (values[0], values[1])
                notes = notes + ([note] if note else [])
                break
    modality = str(ds.get("Modality", "OT")).upper()
    return shown, spacing, modality if modality in MODALITIES_2D else "OT", notes, extra


# ---- PNG and JPEG -----------------------------------------------------------------------------------

def _read_pillow(path: str):
    from PIL import Image

    notes = []
    with Image.open(path) as image:
        image.load()
        mode, info = image.mode, dict(image.info)
        if mode.startswith("I;16") or mode == "I":
            grey, bits = np.asarray(image).astype(np.int64), 16
            if grey.min() < 0 or grey.max() > 65535:
                raise ReadError(f"{os.path.basename(path)}: {mode} values outside 16 bits")
        elif mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"):
            bits = 8
            if "A" in image.getbands() and image.getchannel("A").getextrema()[0] < 255:
                notes.append("alpha channel dropped")
            rgb = np.asarray(image.convert("RGB"))
            if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
                grey = rgb[..., 0]
            else:
                notes.append("colour image converted to grey (ITU-R 601 luma)")
                grey = np.asarray(image.convert("RGB").convert("L"))
        else:
            raise ReadError(f"{os.path.basename(path)}: Pillow mode {mode} is not a grey or colour image")
    dpi = info.get("dpi")
    spacing = None
    if dpi and all(float(d) > 1 for d in dpi):  # (x, y) dots per inch; 1 means "aspect ratio only"
        spacing = (25.4 / float(dpi[1]), 25.4 / float(dpi[0]))
    return grey.astype(np.float64) / (2 ** bits - 1), spacing, "OT", notes, {"bits": bits, "mode": mode}


# ---- NIfTI ------------------------------------------------------------------------------------------

def _read_nifti(path: str):
    import nibabel as nib

    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float64)
    if data.ndim < 2 or any(n != 1 for n in data.shape[2:]):
        raise ReadError(f"{os.path.basename(path)}: NIfTI of shape {data.shape} is not a 2D image "
                        "(a volume goes through the 3D ingest)")
    data = data.reshape(data.shape[:2]).T  # rows = second index, as SimpleITK arranges a 2D image
    if not np.isfinite(data).all():
        raise ReadError(f"{os.path.basename(path)}: non-finite values")
    lo, hi = float(data.min()), float(data.max())
    zooms = [float(z) for z in image.header.get_zooms()[:2]]
    spacing = (zooms[1], zooms[0]) if all(np.isfinite(z) and z > 0 for z in zooms) else None
    return (data - lo) / max(hi - lo, 1e-12), spacing, "OT", [], {"range": [lo, hi]}


__all__ = ["SUFFIXES", "radiograph_format", "read_radiograph", "voi_lut", "voi_window"]
