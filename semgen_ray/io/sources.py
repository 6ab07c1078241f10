"""Finding scans on disk: what a "source" is, how to discover them, and how to fingerprint them.

A :class:`Source` is one thing a reader turns into volumes: a NIfTI / MetaImage / NRRD file (with its
detached data file, if any) or a folder of DICOM files (which may hold several series). Discovery only
looks at names and, for extension-less files, the DICOM magic; it never decodes images, so it is fast
and never fails on a broken file (the reader reports that later as a :class:`ReadError`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Iterable

from semgen_ray.io.volume import ReadError

FORMATS = ("nifti", "dicom", "metaimage", "nrrd", "png", "jpeg")

# Longest suffix first, so ".nii.gz" wins over ".gz".
_EXTENSIONS: tuple[tuple[str, str], ...] = (
    (".nii.gz", "nifti"),
    (".nii", "nifti"),
    (".mhd", "metaimage"),
    (".mha", "metaimage"),
    (".nrrd", "nrrd"),
    (".nhdr", "nrrd"),
)
_DICOM_EXTENSIONS = (".dcm", ".dicom")
# 2D images (radiographs), found only when asked for (find_radiographs): a PNG beside CT scans is
# not data to the 3D ingest.
_EXTENSIONS_2D = ((".png", "png"), (".jpg", "jpeg"), (".jpeg", "jpeg"))
# Names that are never image data; skipped without opening them.
_IGNORED_EXTENSIONS = (".raw", ".zraw", ".gz", ".txt", ".md", ".json", ".csv", ".xml", ".png", ".jpg",
                       ".py", ".yaml", ".yml", ".zip", ".tar", ".img", ".hdr")
_HASH_BLOCK = 1 << 20
# A file-name pattern: one printf integer field of modest width (no "%.1000000000d").
_NUMBER_PATTERN = re.compile(r"[^%]*%[0-9]{0,3}d[^%]*")
MAX_DATA_FILES = 65536
"""Most data files a header's file pattern may name; a broken range (``%d 1 1000000000``) is cut to
one more than this, which the reader refuses, instead of listing a billion names."""


def image_format(path: str | os.PathLike) -> str | None:
    """The format a file name implies (by extension, case-insensitive), or None."""
    name = os.path.basename(os.fspath(path)).lower()
    for ext, fmt in _EXTENSIONS:
        if name.endswith(ext):
            return fmt
    if name.endswith(_DICOM_EXTENSIONS):
        return "dicom"
    return None


def strip_image_extension(name: str) -> str:
    """``name`` without a known image extension (``brain.nii.gz`` → ``brain``)."""
    lower = name.lower()
    for ext, _ in (*_EXTENSIONS, *_EXTENSIONS_2D):
        if lower.endswith(ext):
            return name[: -len(ext)]
    for ext in _DICOM_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


def has_dicom_magic(path: str | os.PathLike) -> bool:
    """True when the file carries the DICOM Part 10 preamble marker 'DICM' at byte 128."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_file(path: str | os.PathLike) -> bool:
    """A file counts as DICOM by extension (.dcm, .dicom) or, when its name says nothing, by magic.

    Files with another known extension (images, sidecars, text) are never opened.
    """
    name = os.path.basename(os.fspath(path)).lower()
    if name.startswith("."):
        return False
    fmt = image_format(name)
    if fmt is not None:
        return fmt == "dicom"
    if name == "dicomdir" or name.endswith(_IGNORED_EXTENSIONS):
        return False
    return has_dicom_magic(path)


def dicom_files_in(folder: str | os.PathLike) -> tuple[str, ...]:
    """The DICOM files directly inside ``folder`` (not recursive), sorted by name."""
    folder = os.fspath(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return ()
    return tuple(e.path for e in entries if e.is_file() and is_dicom_file(e.path))


def _split_data_file_spec(value: str, header: str, subdir: str) -> list[str]:
    """Data files named by a MetaImage ``ElementDataFile`` / NRRD ``data file`` value.

    Handles a single name, a printf pattern ``name%03d.raw first last step`` and ``LIST`` (whose names
    are the header lines after the field, passed in by the caller as ``header``).
    """
    parts = value.split()
    if not parts:
        return []
    if parts[0].upper() == "LOCAL":
        return []
    if parts[0].upper() == "LIST":
        names = [line.strip() for line in header.splitlines() if line.strip()]
        return [os.path.join(subdir, n) for n in names[: MAX_DATA_FILES + 1]]
    if _NUMBER_PATTERN.fullmatch(parts[0]) and len(parts) >= 3:
        try:
            first, last = int(parts[1]), int(parts[2])
            step = int(parts[3]) if len(parts) >= 4 else 1
            numbers = range(first, last + (1 if step > 0 else -1), step)[: MAX_DATA_FILES + 1]
            return [os.path.join(subdir, parts[0] % i) for i in numbers]
        except (ValueError, TypeError, OverflowError):
            return [os.path.join(subdir, value.strip())]
    return [os.path.join(subdir, value.strip())]


def _header_lines(path: str, limit: int = 1 << 16) -> list[str]:
    """The lines of a header's first ``limit`` bytes (latin-1); none when it cannot be read."""
    try:
        with open(path, "rb") as f:
            raw = f.read(limit)
    except OSError:
        return []
    return raw.decode("latin-1").splitlines()


def metaimage_data_files(path: str | os.PathLike) -> list[str]:
    """Detached data files a ``.mhd`` (or ``.mha``) header names; empty for ``LOCAL`` data.

    Files are returned whether or not they exist (the reader checks that, with a clear message).
    """
    path = os.fspath(path)
    lines = _header_lines(path)
    for i, line in enumerate(lines):
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "elementdatafile":
            rest = "\n".join(lines[i + 1:]) if value.split()[:1] == ["LIST"] else ""
            return _split_data_file_spec(value.strip(), rest, os.path.dirname(path))
    return []


def nrrd_data_files(path: str | os.PathLike) -> list[str]:
    """Detached data files a ``.nhdr`` header names (``data file:`` / ``datafile:``); empty if attached."""
    path = os.fspath(path)
    lines = _header_lines(path)
    for i, line in enumerate(lines):
        if not line.strip():  # a blank line ends the header
            break
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("data file", "datafile"):
            value = value.lstrip("=").strip()
            rest = ""
            if value.split()[:1] == ["LIST"]:
                tail = lines[i + 1:]
                rest = "\n".join(tail)
            return _split_data_file_spec(value, rest, os.path.dirname(path))
    return []


def _files_of(path: str, fmt: str) -> tuple[str, ...]:
    if fmt == "dicom":
        return dicom_files_in(path) if os.path.isdir(path) else (path,)
    if fmt == "metaimage":
        return (path, *metaimage_data_files(path))
    if fmt == "nrrd" and path.lower().endswith(".nhdr"):
        return (path, *nrrd_data_files(path))
    return (path,)


@dataclass(frozen=True)
class Source:
    """One scan on disk, before reading.

    Attributes:
        path: the image file, or the folder holding a DICOM series (or a single DICOM file).
        format: one of ``FORMATS``: "nifti", "dicom", "metaimage", "nrrd".
        files: every file whose bytes define the scan (a ``.mhd`` with its data file, a DICOM folder's
            DICOM files); derived from ``path`` when not given. A data file a header names is listed
            even when it is missing: reading then fails with a message that says so.
        patient_id: defaults to the file name without its image extension, or the folder name for
            DICOM.
    """

    path: str
    format: str
    files: tuple[str, ...] = ()
    patient_id: str = ""

    def __post_init__(self) -> None:
        path = os.fspath(self.path)
        if self.format not in FORMATS:
            raise ValueError(f"Source format must be one of {FORMATS}, got {self.format!r}")
        object.__setattr__(self, "path", path)
        files = tuple(os.fspath(f) for f in self.files) or _files_of(path, self.format)
        object.__setattr__(self, "files", files)
        if not self.patient_id:
            name = os.path.basename(os.path.normpath(path))
            pid = name if (self.format == "dicom" and os.path.isdir(path)) else strip_image_extension(name)
            object.__setattr__(self, "patient_id", pid)


def _sources_in_dir(root: str) -> list[Source]:
    found: list[Source] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        dicom: list[str] = []
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            fmt = image_format(name)
            if fmt is not None and fmt != "dicom" and not name.startswith("."):
                found.append(Source(full, fmt))
            elif is_dicom_file(full):
                dicom.append(full)
        if dicom:
            found.append(Source(dirpath, "dicom", files=tuple(dicom)))
    return found


def find_sources(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Source]:
    """Discover the scans under ``paths`` (files and/or folders, walked recursively).

    A folder that directly contains DICOM files (``.dcm`` / ``.dicom``, or extension-less files with
    the 'DICM' magic) becomes one DICOM source; other files are recognised by extension (.nii,
    .nii.gz, .mhd, .mha, .nrrd, .nhdr). A DICOM file given explicitly is a source of its own.

    Returns:
        Sources sorted by (path, format), without duplicates.

    Raises:
        FileNotFoundError: a given path does not exist.
        ValueError: a given file is not a recognised image format.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[tuple[str, str], Source] = {}
    for p in paths:
        p = os.path.normpath(os.fspath(p))
        if os.path.isdir(p):
            sources = _sources_in_dir(p)
        elif os.path.isfile(p):
            fmt = image_format(p) or ("dicom" if has_dicom_magic(p) else None)
            if fmt is None:
                raise ValueError(f"{p}: not a recognised image file (expected DICOM, "
                                 + ", ".join(e for e, _ in _EXTENSIONS) + ")")
            sources = [Source(p, fmt)]
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
        for s in sources:
            found.setdefault((s.path, s.format), s)
    return [found[k] for k in sorted(found)]


def find_radiographs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Source]:
    """Discover 2D images under ``paths`` (files and/or folders, walked recursively): every DICOM
    file (each its own source, never grouped into a series), PNG, JPEG and NIfTI file.

    Raises:
        FileNotFoundError: a given path does not exist.
        ValueError: a given file is not a recognised 2D image format.
    """
    def fmt_of(path: str) -> str | None:
        lower = os.path.basename(path).lower()
        for ext, fmt in _EXTENSIONS_2D:
            if lower.endswith(ext):
                return fmt
        fmt = image_format(path)
        return fmt if fmt in ("nifti", "dicom") else ("dicom" if is_dicom_file(path) else None)

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[str, Source] = {}
    for p in paths:
        p = os.path.normpath(os.fspath(p))
        if os.path.isdir(p):
            files = [os.path.join(d, f) for d, dirs, names in os.walk(p) for f in names
                     if not f.startswith(".") and not any(part.startswith(".") for part in
                                                          os.path.relpath(d, p).split(os.sep) if part != ".")]
        elif os.path.isfile(p):
            if fmt_of(p) is None:
                raise ValueError(f"{p}: not a recognised 2D image file (expected DICOM, PNG, JPEG or NIfTI)")
            files = [p]
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
        for f in files:
            fmt = fmt_of(f)
            if fmt is not None:
                found.setdefault(f, Source(f, fmt, files=(f,)))
    return [found[k] for k in sorted(found)]


def _hash_root(source: Source) -> str:
    if source.format == "dicom" and os.path.isdir(source.path):
        return source.path
    return os.path.dirname(source.path) or "."


def source_sha256(source: Source) -> str:
    """SHA-256 over the source's files: each file's name relative to the source plus its bytes.

    Files are taken in sorted order of their relative names and streamed in 1 MiB blocks, so the hash
    does not depend on discovery order, and renaming a file changes it.

    Raises:
        ReadError: one of the files is missing or unreadable.
    """
    root = _hash_root(source)
    rel = sorted((os.path.relpath(f, root).replace(os.sep, "/"), f) for f in source.files)
    h = hashlib.sha256()
    for name, full in rel:
        encoded = name.encode("utf-8")
        h.update(len(encoded).to_bytes(8, "little"))
        h.update(encoded)
        try:
            size = os.path.getsize(full)
            h.update(size.to_bytes(8, "little"))
            with open(full, "rb") as f:
                while block := f.read(_HASH_BLOCK):
                    h.update(block)
        except OSError as err:
            raise ReadError(f"cannot hash {source.path}: {full} is missing or unreadable "
                            f"({err.strerror or err})") from err
    return h.hexdigest()


__all__ = ["FORMATS", "Source", "find_radiographs", "find_sources", "source_sha256", "image_format", "is_dicom_file",
           "dicom_files_in", "metaimage_data_files", "nrrd_data_files"]
