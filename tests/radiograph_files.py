"""Radiograph test files: a chest-film-like test image and a DX / CR DICOM writer (tests of the 2D
reader and of the 2D ingest)."""

from __future__ import annotations

import numpy as np

ROWS, COLS = 48, 40


def film(bits: int = 12, seed: int = 0) -> np.ndarray:
    """A chest-film-like test image of ``bits`` stored bits: a body, two dark lungs, noise."""
    r, c = np.mgrid[:ROWS, :COLS]
    body = ((r - 24) / 22) ** 2 + ((c - 20) / 18) ** 2 < 1
    lungs = (((r - 22) / 12) ** 2 + ((np.abs(c - 20) - 8) / 5) ** 2) < 1
    top = 2 ** bits - 1
    img = np.where(body, 0.7, 0.05) - np.where(lungs, 0.35, 0.0)
    img = img + np.random.default_rng(seed).normal(0, 0.02, img.shape)
    return np.clip(np.rint(img * top), 0, top).astype(np.uint16 if bits > 8 else np.uint8)


def write_dx(path, pixels, *, photometric="MONOCHROME2", window=None, function=None, lut=None,
        spacing=("PixelSpacing", ["0.15", "0.16"]), rescale=None, inverse=False, modality="DX"):
    """An uncompressed single-frame DX (or CR) file."""
    from pydicom import uid
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    sop = uid.DigitalXRayImageStorageForPresentation if modality == "DX" else uid.ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.99.18.1"
    ds.SOPClassUID, ds.SOPInstanceUID = sop, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.99.18.0", "1.2.826.0.1.3680043.99.18.2"
    ds.Modality = modality
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if spacing:
        setattr(ds, spacing[0], spacing[1])
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if function:
        ds.VOILUTFunction = function
    if lut is not None:
        item = Dataset()
        item.add_new(0x00283002, "US", [len(lut[1]), lut[0], 16])  # LUTDescriptor
        item.add_new(0x00283006, "US", [int(v) for v in lut[1]])   # LUTData
        ds.VOILUTSequence = [item]
    if inverse:
        ds.PresentationLUTShape = "INVERSE"
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds
