"""Run folders and artefacts on a local path or an fsspec URI (``s3://``, ``gs://``, ``file://``, …).

Every stage reads and writes its artefacts (pattern manifest, embeddings, index, montages, exports,
reports, ``*.json`` records) through this module, so a run folder on an object store works like a
local one. Libraries that need a POSIX path (hnswlib index files, matplotlib PNGs, numpy ``.npz``,
safetensors) write into a local working folder (:func:`workdir`) that is uploaded to the URI; files
that a library must read are fetched with :func:`local_copy`. Ray Train and Ray Tune take the URI
itself as their ``storage_path`` (pyarrow), so checkpoints and trial results live there directly.

Credentials are never passed through here: s3fs / gcsfs (fsspec) and pyarrow (Ray's storage) find
them where the platform puts them (``AWS_*`` environment variables, ``~/.aws``, an instance profile or
a Kubernetes service-account role; ``AWS_ENDPOINT_URL`` for S3-compatible servers), so nothing
secret reaches a run folder, a config dump, a model card or a log.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_PROBE = ".semgen_write_check"


class RunFolderError(RuntimeError):
    """A run folder or store URI cannot be used (missing bucket, no credentials, no backend)."""


def local_path(uri: str | os.PathLike) -> str | None:
    """The local path ``uri`` names (a plain path or ``file://``), or ``None`` for any other scheme."""
    uri = str(uri)
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return None if "://" in uri else uri


def is_remote(uri: str | os.PathLike) -> bool:
    """True when ``uri`` is not on the local file system (``s3://``, ``gs://``, ``memory://``, …)."""
    return local_path(uri) is None


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/…`` for a local path or a URI (URIs always join with ``/``)."""
    base = str(base)
    if local_path(base) is not None and not base.startswith("file://"):
        return os.path.join(base, *parts)
    return posixpath.join(base.rstrip("/"), *parts)


def inside(run_dir: str | os.PathLike, path: str | os.PathLike, absolute: bool = False) -> str:
    """Where a configured ``path`` lies for the run folder ``run_dir`` (a local path or a URI): as
    given when it is absolute or a URI, else under ``run_dir``. The one resolver of the run's paths
    (the stages' artefacts, ``store.uri``, ``train.storage_path``, the evaluation's weights and
    target store).

    Args:
        absolute: a local result as an absolute path (Ray Train and Tune work in their own working
            directories); a URI stays a URI.

    Raises:
        RunFolderError: a relative path with ``..`` would put artefacts outside the run folder (an
            absolute path or a URI says so explicitly).
    """
    path, run_dir = str(path), str(run_dir)
    if "://" in path or path.startswith("/"):
        return path
    if ".." in path.replace("\\", "/").split("/"):
        raise RunFolderError(f"{path!r} leaves the run folder {run_dir}: give an absolute path or a URI instead")
    joined = posixpath.join(run_dir.rstrip("/"), path)
    return os.path.abspath(joined) if absolute and not is_remote(run_dir) else joined


def _protocols(uri: str) -> list[str]:
    """The fsspec protocols ``uri`` names, chained ones included (``simplecache::s3://…``)."""
    parts = uri.split("::")
    return [p.split("://", 1)[0] if "://" in p else p for p in parts[:-1]] + [parts[-1].split("://", 1)[0]]


def check_backend(uri: str | os.PathLike) -> None:
    """Fail with a clear message when ``uri`` names a protocol fsspec does not know, or one whose
    package (s3fs, gcsfs, …) is not installed. Contacts nothing and writes nothing: a run checks
    every URI of its config this way before it creates or writes anything."""
    uri = str(uri)
    if not is_remote(uri):
        return
    import fsspec
    from fsspec.registry import known_implementations

    for protocol in _protocols(uri):
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError as err:
            hint = known_implementations.get(protocol, {}).get("err") or f"install the package for {protocol}://"
            raise RunFolderError(f"{uri}: {protocol}:// needs a package that is not installed: {hint} "
                                 f"({type(err).__name__}: {err})") from err
        except ValueError as err:
            raise RunFolderError(f"{uri}: unknown storage protocol {protocol!r}: give a local path or a URI "
                                 "of a protocol fsspec knows (s3://, gs://, file://, …)") from err


def filesystem(uri: str | os.PathLike):
    """``(fsspec file system, path)`` of ``uri``; a missing backend (s3fs, gcsfs) is a clear error."""
    import fsspec

    check_backend(uri)
    try:
        return fsspec.core.url_to_fs(str(uri))
    except (ImportError, ValueError) as err:
        raise RunFolderError(f"{uri}: no file system for this URI ({err}); for s3:// install s3fs, "
                             "for gs:// gcsfs") from err


def _explain(uri: str, err: BaseException, doing: str) -> RunFolderError:
    """A specific message for the usual object-store failures, naming ``uri``."""
    name = type(err).__name__
    text = str(err)
    bucket = str(uri).split("://", 1)[-1].split("/", 1)[0]
    if name in ("NoCredentialsError", "PartialCredentialsError") or "Unable to locate credentials" in text:
        return RunFolderError(
            f"{uri}: no credentials found to {doing} it: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE), or run where an instance profile / service-account role grants access")
    if isinstance(err, FileNotFoundError) or "NoSuchBucket" in text:
        return RunFolderError(f"{uri}: the bucket {bucket!r} does not exist (or these credentials cannot see "
                              f"it): create it first or correct the URI")
    if isinstance(err, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return RunFolderError(f"{uri}: access denied when trying to {doing} it: the credentials in use "
                              f"(environment, profile or instance role) lack permission on {bucket!r}")
    return RunFolderError(f"{uri}: cannot {doing} it: {name}: {text}")


def prepare(uri: str | os.PathLike) -> None:
    """Make sure ``uri`` can hold a run folder: create a local one; for a URI, check that the bucket
    exists and the credentials may write there (a small probe object, then removed). Never creates a
    bucket: a mistyped name must fail, not appear."""
    uri = str(uri)
    local = local_path(uri)
    if local is not None:
        os.makedirs(local, exist_ok=True)
        return
    fs, path = filesystem(uri)
    probe = posixpath.join(path.rstrip("/"), _PROBE)
    try:
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except Exception as err:  # noqa: BLE001 - translated into one specific message
        raise _explain(uri, err, "write to") from err


def check_readable(uri: str | os.PathLike) -> None:
    """For a URI: fail with a specific message when its bucket is missing or the credentials fail."""
    uri = str(uri)
    if not is_remote(uri):
        return
    fs, path = filesystem(uri)
    try:
        fs.ls(path.split("/", 1)[0], detail=False)
    except Exception as err:  # noqa: BLE001 - translated into one specific message
        raise _explain(uri, err, "read") from err


def _fresh(uri: str | os.PathLike):
    """``filesystem(uri)`` without cached listings: other writers (Ray's pyarrow, other nodes) add
    files that an earlier listing by this process would hide."""
    fs, path = filesystem(uri)
    fs.invalidate_cache(path)
    return fs, path


def exists(uri: str | os.PathLike) -> bool:
    fs, path = _fresh(uri)
    return fs.exists(path)


def isfile(uri: str | os.PathLike) -> bool:
    fs, path = _fresh(uri)
    return fs.isfile(path)


def read_bytes(uri: str | os.PathLike) -> bytes:
    fs, path = _fresh(uri)
    return fs.cat_file(path)


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``uri`` atomically (parent folders created where the file system has folders):
    a local file is written beside its place and renamed into it, so a reader (or a run stopped
    mid-write) never sees half a file; an object store's single put is atomic already."""
    local = local_path(uri)
    if local is None:
        fs, path = filesystem(uri)
        fs.pipe_file(path, data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(local)), exist_ok=True)
    tmp = f"{local}.{os.getpid()}-{os.urandom(4).hex()}.part"  # beside it: the rename stays on one device
    try:
        with open(tmp, "xb") as f:  # the umask's permissions, as a plain write would have
            f.write(data)
        os.replace(tmp, local)
    except BaseException:
        with suppress(OSError):
            os.remove(tmp)
        raise


def read_text(uri: str | os.PathLike) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str | os.PathLike, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def read_json(uri: str | os.PathLike) -> dict | None:
    """The JSON object at ``uri``, or ``None`` when it is missing or unreadable (a reuse record)."""
    try:
        return json.loads(read_text(uri))
    except (OSError, ValueError):
        return None


def write_json(uri: str | os.PathLike, data: dict) -> None:
    write_text(uri, json.dumps(data, indent=2, default=str))


def sha256(uri: str | os.PathLike) -> str:
    """SHA-256 of the file at ``uri`` (what a reuse key depends on, where timestamps do not travel)."""
    return hashlib.sha256(read_bytes(uri)).hexdigest()


def remove(uri: str | os.PathLike) -> None:
    """Delete the file or folder at ``uri`` (nothing when it is not there)."""
    fs, path = _fresh(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def move(src: str | os.PathLike, dest: str | os.PathLike) -> int:
    """Move the folder ``src`` to ``dest`` (which must not exist yet), keeping relative paths; returns
    the number of files moved.

    A local folder is renamed. An object store has no folders to rename: every object under ``src``
    is copied to its place under ``dest``, and ``src`` is deleted only once all copies exist
    (s3fs's own recursive ``mv`` copies the folder's pseudo-key and fails with "key does not exist").
    """
    fs, path = _fresh(src)
    to = filesystem(dest)[1].rstrip("/")
    path = path.rstrip("/")
    if fs.exists(to):
        raise RunFolderError(f"{dest}: cannot move {src} there, it exists already")
    files = fs.find(path)
    if local_path(src) is not None:
        fs.makedirs(posixpath.dirname(to), exist_ok=True)
        fs.mv(path, to, recursive=True)
        return len(files)
    for f in files:
        fs.copy(f, posixpath.join(to, posixpath.relpath(f, path)))
    fs.rm(path, recursive=True)
    fs.invalidate_cache(path)
    return len(files)


def upload(local_dir: str | os.PathLike, uri: str | os.PathLike) -> str:
    """Copy every file under ``local_dir`` to the folder ``uri`` (same relative paths); returns ``uri``."""
    src = Path(local_dir)
    target = local_path(uri)
    if target is not None:
        if Path(target).resolve() != src.resolve():
            shutil.copytree(src, target, dirs_exist_ok=True)
        return str(uri)
    fs, base = filesystem(uri)
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        fs.put_file(str(f), posixpath.join(base.rstrip("/"), f.relative_to(src).as_posix()))
    return str(uri)


def download(uri: str | os.PathLike, local_dir: str | os.PathLike, names: Iterable[str] | None = None) -> Path:
    """Copy the folder ``uri`` (or only its entries ``names``, files or folders, where present) into
    ``local_dir``; returns ``local_dir``."""
    fs, base = _fresh(uri)
    base = base.rstrip("/")
    dest = Path(local_dir)
    dest.mkdir(parents=True, exist_ok=True)
    roots = [base] if names is None else [posixpath.join(base, n) for n in names]
    for root in roots:
        if not fs.exists(root):
            continue
        files = fs.find(root) if fs.isdir(root) else [root]
        for f in files:
            rel = posixpath.relpath(f, base)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f, str(dest / rel))
    return dest


@contextmanager
def workdir(uri: str | os.PathLike, fetch: Iterable[str] = ()) -> Iterator[Path]:
    """A local folder standing for the run folder ``uri``.

    Local ``uri``: the folder itself (created). Remote: a temporary folder holding the entries
    ``fetch`` (files or folders that later steps reuse), uploaded to ``uri`` when the block ends, also
    when it fails (finished steps are kept for a re-run), then deleted.
    """
    local = local_path(uri)
    if local is not None:
        Path(local).mkdir(parents=True, exist_ok=True)
        yield Path(local)
        return
    tmp = Path(tempfile.mkdtemp(prefix="semgen_run_"))
    try:
        download(uri, tmp, list(fetch))
        try:
            yield tmp
        except BaseException:
            try:
                upload(tmp, uri)
            except Exception:  # noqa: BLE001 - the original failure is the one to report
                pass
            raise
        upload(tmp, uri)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def local_copy(uri: str | os.PathLike) -> Iterator[str]:
    """A local path holding the file or folder ``uri`` (itself when local; a temporary copy otherwise)."""
    local = local_path(uri)
    if local is not None:
        yield local
        return
    fs, path = _fresh(uri)
    tmp = tempfile.mkdtemp(prefix="semgen_copy_")
    try:
        if fs.isdir(path):
            download(uri, tmp)
            yield tmp
        else:
            target = os.path.join(tmp, posixpath.basename(path.rstrip("/")))
            fs.get_file(path, target)
            yield target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
