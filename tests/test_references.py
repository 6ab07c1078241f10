"""Every reference in the repository points inside it.

Scans every text file git knows (tracked, or new and not ignored; ``benchmarks/results/`` and binary
files skipped) and fails on:

- a mention of a document that lives outside the repository (the internal notes the project was
  developed from, or a folder beside the checkout);
- a repository path (``docs/…``, ``cluster/…``, ``benchmarks/…``, ``datasets/…``, ``tests/…``,
  ``semgen_ray/…``) that names no file or folder of the repository, and a relative Markdown link or
  ``#anchor`` that leads nowhere;
- a cited section (``docs/method.md §6.2``, ``operations.md §2``, ``… section 1.2``) that is not a
  numbered heading of that document.

No Ray, no imports of the package: a few hundred files are read once per session.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_PREFIXES = ("benchmarks/results/",)
#: Written by the benchmark scripts (their README figures are checked by tests/test_readme_figures.py).
OUTPUTS = ("benchmarks/results/",)

#: Documents outside the repository. The names are written as a pattern, never literally, so this
#: file does not match itself.
# the optional real-data folder (README, "Tests and the real-data folder") is test input, not a document
OUTSIDE = re.compile(r"\b(?:SPEC|RAY_NOTES|ARCHITECTURE|STYLE)(?:\.md\b|\s+§)|\.\.[/\\]shared\b")

#: A repository path: a top-level folder, a slash, then path characters ending in a name. Not preceded
#: by a path character, so ``s3://bucket/semgen_ray/x`` or ``~/semgen_ray/cluster/…`` (paths
#: elsewhere) do not count. ``*``, ``{…}`` and ``<…>`` make it a pattern that must match some file.
PATH = re.compile(r"(?<![\w./$~@-])((?:docs|cluster|benchmarks|datasets|tests|semgen_ray)"
                  r"/(?:[\w.*-]|\{[^{}\s]*\}|<[\w-]+>|/)*(?:\w|\*|\}|>))")

#: A cited section chain after a document name: ``method.md §1.3-§2, §7`` or ``… sections 1.2 and 6.2``.
_NUM = r"\d+(?:\.\d+)*"
_REF = rf"(?:§\s*|sections?\s+){_NUM}(?:\s*[-–]\s*§?{_NUM})?"
CITATION = re.compile(rf"\b([\w-]+)\.md((?:\s*(?:,|;|/|and|or|to)?\s*{_REF})+)")

#: A numbered Markdown heading: ``## 6. Fine-tuning``, ``### 6.2 The protocol``, ``## §2 …``.
HEADING_NUMBER = re.compile(rf"^#{{1,6}}\s+(?:§\s*)?({_NUM})\.?(?:\s|$)")
MD_LINK = re.compile(r"\]\(\s*([^()\s]+?)\s*(?:\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


@lru_cache(maxsize=1)
def repo_files() -> tuple[str, ...]:
    """Paths (relative, posix) of the files git tracks or would track, that exist in the work tree."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout (git ls-files failed: {err})")
    names = sorted({n for n in out.decode().split("\0") if n})
    return tuple(n for n in names if (ROOT / n).is_file())


@lru_cache(maxsize=1)
def repo_dirs() -> frozenset[str]:
    """Every folder that holds one of :func:`repo_files`."""
    dirs = set()
    for name in repo_files():
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(dirs)


@lru_cache(maxsize=1)
def text_files() -> tuple[tuple[str, str], ...]:
    """(path, text) of every scanned file: UTF-8 text, not under :data:`SKIP_PREFIXES`."""
    found = []
    for name in repo_files():
        if name.startswith(SKIP_PREFIXES):
            continue
        data = (ROOT / name).read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            found.append((name, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return tuple(found)


def _lines(text: str):
    return enumerate(text.splitlines(), start=1)


def outside_mentions(text: str) -> list[tuple[int, str]]:
    """(line, match) of every mention of a document outside the repository."""
    return [(n, m.group(0)) for n, line in _lines(text) for m in OUTSIDE.finditer(line)]


def _as_glob(path: str) -> str:
    return re.sub(r"\{[^{}]*\}|<[\w-]+>", "*", path)


def path_exists(path: str, files: tuple[str, ...], dirs: frozenset[str]) -> bool:
    """Whether ``path`` (or, with wildcards, one file or folder it matches) is in the repository."""
    path = path.rstrip("/")
    if any(c in path for c in "*{<"):
        pattern = _as_glob(path)
        return any(fnmatch.fnmatchcase(f, pattern) for f in files) or \
            any(fnmatch.fnmatchcase(d, pattern) for d in dirs)
    return path in dirs or path in set(files)


def is_repository_path(path: str, dirs: frozenset[str]) -> bool:
    """Whether a ``PATH`` match claims to be a file of the repository.

    Yes when its last part has the extension of a repository file (``.py``, ``.md``, ``.yaml``, …) or
    it goes below an existing sub-folder (``tests/io/…``). Not for what the benchmarks write
    (:data:`OUTPUTS`), nor for look-alikes elsewhere, such as an object-store key
    ``semgen_ray/runs/smoke`` or ``semgen_ray/smoke.zarr``.
    """
    path = path.rstrip("/")
    if path.startswith(OUTPUTS):
        return False
    if re.search(r"\.(?:py|md|ya?ml|json|sh|toml|txt|png|csv|cfg)$", path):
        return True
    parts = path.split("/")
    return len(parts) > 2 and "/".join(parts[:2]) in dirs


def missing_paths(text: str, files: tuple[str, ...], dirs: frozenset[str]) -> list[tuple[int, str]]:
    """(line, path) of every repository path in ``text`` that does not exist."""
    return [(n, m.group(1)) for n, line in _lines(text) for m in PATH.finditer(line)
            if is_repository_path(m.group(1), dirs) and not path_exists(m.group(1), files, dirs)]


def numbered_sections(markdown: str) -> set[str]:
    """The section numbers of a Markdown document's headings (outside code blocks)."""
    numbers, fenced = set(), False
    for _, line in _lines(markdown):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := HEADING_NUMBER.match(line)):
            numbers.add(m.group(1))
    return numbers


def bad_citations(text: str, sections: dict[str, set[str]]) -> list[tuple[int, str]]:
    """(line, citation) of every ``<doc>.md §N`` whose number is not a heading of ``docs/<doc>.md``.

    ``sections`` maps a document's stem (``method``) to its heading numbers; citations of documents
    not in it (the README, a dataset card) are not checked here.
    """
    bad = []
    for n, line in _lines(text):
        for m in CITATION.finditer(line):
            known = sections.get(m.group(1))
            if known is None:
                continue
            missing = [num for num in re.findall(_NUM, m.group(2)) if num not in known]
            if missing:
                bad.append((n, f"{m.group(0).strip()} (no section {', '.join(missing)})"))
    return bad


def github_anchors(markdown: str) -> set[str]:
    """The ``#anchors`` GitHub gives a Markdown document's headings (and explicit HTML ids)."""
    anchors, seen, fenced = set(), {}, False
    for _, line in _lines(markdown):
        if FENCE.match(line):
            fenced = not fenced
            continue
        anchors.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
        if fenced or not (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@lru_cache(maxsize=None)
def _anchors_of(rel: str) -> frozenset[str]:
    """The anchors of a repository Markdown file, parsed once."""
    return frozenset(github_anchors((ROOT / rel).read_text(encoding="utf-8")))


def bad_links(name: str, markdown: str, files: tuple[str, ...],
              dirs: frozenset[str]) -> list[tuple[int, str]]:
    """(line, target) of every relative link of Markdown file ``name`` that leads nowhere."""
    bad, fenced = [], False
    here = Path(name).parent
    for n, line in _lines(markdown):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for target in MD_LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, s3:
                continue
            path, _, anchor = target.partition("#")
            if path:
                resolved = (ROOT / here / path).resolve()
                try:
                    rel = resolved.relative_to(ROOT).as_posix()
                except ValueError:
                    bad.append((n, f"{target} (outside the repository)"))
                    continue
                if not path_exists(rel, files, dirs):
                    bad.append((n, target))
                    continue
            else:
                rel = name
            if anchor and rel.endswith(".md") and anchor not in _anchors_of(rel):
                bad.append((n, f"{target} (no heading with that anchor)"))
    return bad


def _report(found: dict[str, list[tuple[int, str]]]) -> str:
    return "\n".join(f"{name}:{n}: {what}" for name, hits in sorted(found.items()) for n, what in hits)


# ---- the repository ---------------------------------------------------------------------------------

def test_no_reference_to_documents_outside_the_repository():
    found = {name: hits for name, text in text_files() if (hits := outside_mentions(text))}
    assert not found, "references to documents outside the repository:\n" + _report(found)


def test_referenced_repository_paths_exist():
    files, dirs = repo_files(), repo_dirs()
    found = {name: hits for name, text in text_files() if (hits := missing_paths(text, files, dirs))}
    assert not found, "paths that name no file of the repository:\n" + _report(found)


def test_markdown_links_resolve():
    files, dirs = repo_files(), repo_dirs()
    found = {name: hits for name, text in text_files()
             if name.endswith(".md") and (hits := bad_links(name, text, files, dirs))}
    assert not found, "Markdown links that lead nowhere:\n" + _report(found)


def test_cited_sections_exist():
    docs = {Path(name).stem: numbered_sections(text) for name, text in text_files()
            if name.startswith("docs/") and name.endswith(".md")}
    cited = {k: v for k, v in docs.items() if v}
    assert {"method", "operations"} <= set(cited), \
        f"docs/method.md and docs/operations.md need numbered sections, got {sorted(cited)}"
    found = {name: hits for name, text in text_files() if (hits := bad_citations(text, cited))}
    assert not found, "cited sections that are not headings of the document:\n" + _report(found)


# ---- the checks themselves: each one catches what it is for --------------------------------------

def test_outside_mentions_are_caught():
    spec, notes = "SPEC" + ".md", "RAY_NOTES"
    text = "\n".join(["ok line", f"see {spec} §6.2", f"({notes} §5)", ".." + "/shared/notes"])
    assert [n for n, _ in outside_mentions(text)] == [2, 3, 4]
    assert outside_mentions("docs/method.md §6.2, shared memory, a SPECIAL case") == []


def test_missing_paths_are_caught_without_false_positives():
    files = ("docs/method.md", "benchmarks/results/neighbours.json", "cluster/kuberay/rayjob.yaml",
             "tests/conftest.py")
    dirs = frozenset({"docs", "benchmarks", "benchmarks/results", "cluster", "cluster/kuberay", "tests"})
    # built from pieces, so that this file itself names no missing path
    nothing, missing = "docs/" + "nothing.md", "cluster/" + "missing.yaml"
    deeper = "cluster/kuberay/" + "gone"
    text = (f"see docs/method.md. and {nothing}\n"
            "benchmarks/results/neighbours*.json, benchmarks/results/<name>.json, tests/conftest.py::x\n"
            "s3://bucket/semgen_ray/runs/x, ~/semgen_ray/cluster/a.yaml, tests/..., cluster/kuberay/\n"
            f"{missing}; writes benchmarks/results/gpu/check.json\n"
            f'RUN = "semgen_ray/runs/smoke"; key semgen_ray/smoke.zarr/x; {deeper}')
    assert missing_paths(text, files, dirs) == [(1, nothing), (4, missing), (5, deeper)]


def test_bad_citations_are_caught():
    sections = {"method": {"1", "1.3", "2", "6", "6.2", "10.13"}, "operations": {"0", "2", "5"}}
    good = ("docs/method.md §1.3-§2, §6.2 and §10.13; operations.md §2/§5; docs/method.md section 6.2;"
            " docs/method.md §6.2 step 3; README.md §99")
    assert bad_citations(good, sections) == []
    method, operations = "docs/" + "method.md", "docs/" + "operations.md"  # citations that must fail
    bad = f"{method} §1.3, §4.4\n{operations} §7\n{method} sections 1.2 and 6.2"
    assert [n for n, _ in bad_citations(bad, sections)] == [1, 2, 3]
    assert "no section 4.4" in bad_citations(bad, sections)[0][1]


def test_headings_and_anchors():
    md = ("# Title\n## 0. Summary\n### 2.1 The coordinate\n```\n## 9. in a code block\n```\n"
          "## 10. Open questions and the reference code's defects\n### 10.13 Defects\n## Summary\n")
    assert numbered_sections(md) == {"0", "2.1", "10", "10.13"}
    anchors = github_anchors(md)
    assert {"title", "0-summary", "21-the-coordinate", "10-open-questions-and-the-reference-codes-defects",
            "summary"} <= anchors
    assert "9-in-a-code-block" not in anchors
