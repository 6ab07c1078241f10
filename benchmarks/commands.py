"""A project command run by a benchmark: timed, its console kept, its records made machine-independent."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path


def timed_run(cmd: list[str], log_path: Path) -> float:
    """Run ``cmd`` with its console in ``log_path``; its wall time in seconds. A failure ends the benchmark."""
    t0 = time.perf_counter()
    with open(log_path, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}; see {log_path}")
    return round(time.perf_counter() - t0, 1)


def relative_paths(folder: Path, replacements: dict[str, str]) -> None:
    """Rewrite the text records in ``folder`` (``.json``, ``.log``, ``.md``, ``.csv``) with each key of
    ``replacements`` replaced by its value and Ray's session folder written ``RAY_SESSION``: results
    files name no machine's absolute paths."""
    for path in folder.iterdir():
        if path.is_file() and path.suffix in (".json", ".log", ".md", ".csv"):
            text = new = path.read_text()
            for old, by in replacements.items():
                new = new.replace(old, by)
            new = re.sub(r"/tmp/ray/session_[^/\s]+", "RAY_SESSION", new)
            if new != text:
                path.write_text(new)
