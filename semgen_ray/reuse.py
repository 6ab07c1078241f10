"""Reuse records: whether finished work can be reused, decided one way for every stage and step.

A record is a JSON object that a stage (or a step inside one) writes last, atomically
(:func:`semgen_ray.runfolder.write_bytes`), on a local path or a URI alike, once its work is done.
It holds:

* ``key``: the :func:`digest` of what produced the work: its config section and its inputs, each
  input named by its content (:func:`content`) or by the key of the record that made it; never by a
  path's existence or a modification time (neither says what a file holds, and a copied run folder
  changes both);
* ``outputs``: the artefacts the work wrote, as paths relative to the record's folder, each with
  the digest of its content;
* whatever the stage reports besides.

:func:`load` returns a record only when its key is the expected one and every output still holds
what was recorded, so a changed setting, a changed input and a deleted or replaced artefact each
redo the work. :func:`clear` deletes a record before forced work starts, so that forced work that
is interrupted is never taken for finished work.

Example:
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "out.txt"), "w").write("result")
    >>> key = digest({"settings": {"k": 3}, "input": "3f2a"})
    >>> _ = save(os.path.join(folder, "step.json"), key, {"rows": 3}, outputs=["out.txt"])
    >>> load(os.path.join(folder, "step.json"), key)["rows"]
    3
    >>> load(os.path.join(folder, "step.json"), digest({"settings": {"k": 4}, "input": "3f2a"})) is None
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from semgen_ray import runfolder


def digest(value: Any) -> str:
    """SHA-256 (hex) of ``value``'s canonical JSON: sorted keys, no spaces, tuples as lists and other
    objects by ``str``; equal settings give equal digests in every process."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content(uri: str | os.PathLike) -> str:
    """SHA-256 of what a file holds, or of a folder's files (their relative names and digests, in
    name order); local or URI. Raises ``OSError`` (``FileNotFoundError``) when there is nothing."""
    fs, path = runfolder.filesystem(uri)
    fs.invalidate_cache(path)
    if fs.isfile(path):
        return hashlib.sha256(fs.cat_file(path)).hexdigest()
    if not fs.isdir(path):
        raise FileNotFoundError(f"{uri}: no file or folder there")
    base = path.rstrip("/")
    files = sorted(f for f in fs.find(base) if not posixpath.basename(f).endswith(".part"))
    return digest([[posixpath.relpath(f, base), hashlib.sha256(fs.cat_file(f)).hexdigest()] for f in files])


def _beside(record_uri: str | os.PathLike, name: str) -> str:
    """``name`` (relative to the record's folder) as a path or URI."""
    uri = str(record_uri)
    parent = os.path.dirname(uri) if runfolder.local_path(uri) == uri else posixpath.dirname(uri.rstrip("/"))
    return runfolder.join(parent, name)


def load(uri: str | os.PathLike, key: str) -> dict | None:
    """The record at ``uri`` when it was written for ``key`` and every output it lists still holds
    the content recorded; ``None`` otherwise (no record, another key, an output changed or gone)."""
    record = runfolder.read_json(uri)
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    for name, sha in (record.get("outputs") or {}).items():
        try:
            if content(_beside(uri, name)) != sha:
                return None
        except OSError:
            return None
    return record


def save(uri: str | os.PathLike, key: str, data: Mapping[str, Any], outputs: Iterable[str] = ()) -> dict:
    """Write the record of finished work (last, atomically): ``data`` with ``key`` and the content
    digests of ``outputs`` (paths relative to the record's folder). Returns the record."""
    record = {**dict(data), "key": key, "outputs": {name: content(_beside(uri, name)) for name in outputs}}
    runfolder.write_json(uri, record)
    return record


def without_later_defaults(settings: Mapping[str, Any], later: Mapping[str, Any]) -> dict:
    """``settings`` without the entries of ``later`` (settings added after runs existed) that hold
    their default: a key made from the result stays the one earlier runs recorded, so their work is
    still reused, while a setting moved away from its default changes the key.

    >>> without_later_defaults({"lr": 1e-3, "engine": "torch"}, {"engine": "torch"})
    {'lr': 0.001}
    """
    return {k: v for k, v in settings.items() if not (k in later and v == later[k])}


def clear(uri: str | os.PathLike) -> None:
    """Delete the record at ``uri`` (nothing when there is none): forced work starts with this."""
    runfolder.remove(uri)


def relative(record_uri: str | os.PathLike, path: str | os.PathLike) -> str:
    """``path`` relative to the record's folder (for :func:`save`'s ``outputs``); ``ValueError`` when
    it lies outside."""
    base, path = _beside(record_uri, ""), str(path)
    if runfolder.local_path(path) == path and runfolder.local_path(base) == base:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    else:
        rel = posixpath.relpath(path, base.rstrip("/")) if path.startswith(base.rstrip("/") + "/") else ".."
    if rel == ".." or rel.startswith(".." + os.sep) or rel.startswith("../"):
        raise ValueError(f"{path} is not inside {base}: a record's outputs live beside it")
    return rel


__all__ = ["clear", "content", "digest", "load", "relative", "save"]
