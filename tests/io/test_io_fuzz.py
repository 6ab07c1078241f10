"""Malformed files through ``read_source``: a ReadError that names the file, or a valid volume.

Every case of ``malformed_inputs.py`` (truncations at several offsets, wrong magic, absurd declared
sizes, nonsense header fields, seeded random bytes and byte flips, for DICOM, NIfTI, NRRD and
MetaImage) is read in a child process limited to 3 GiB of address space, so that a segfault, an
abort, a hang or a huge allocation fails one test case instead of taking pytest down. The files are
written and read once per module; each case then asserts on its own outcome, so a failure names it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("SimpleITK")
pytest.importorskip("pydicom")
pytest.importorskip("nibabel")


def _load_cases_module():
    """``malformed_inputs.py`` by path (tests are no package; the ingest test loads it the same way)."""
    name = "semgen_malformed_inputs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("malformed_inputs.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


mi = _load_cases_module()
CASES = mi.all_cases()
SECONDS_PER_READ = 5.0  # generous for a loaded 2-core machine; a healthy read of these takes < 0.1 s


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """``({case name: (written case, result)}, [abnormal child exits])``, for every case at once."""
    root = tmp_path_factory.mktemp("malformed")
    written = {c.name: c.write(root / c.name) for c in CASES}
    results, exits = mi.run_in_child(list(written.values()), root)
    (root / "outcomes.json").write_text(json.dumps(results, indent=1))  # the per-file report
    return {name: (written[name], results[name]) for name in written}, exits


def _explain(result: dict) -> str:
    return json.dumps({k: v for k, v in result.items() if k != "name"}, indent=1)[:3000]


def test_the_catalogue_covers_every_format_and_kind():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    for prefix in ("nrrd-", "nhdr-", "mha-", "mhd-", "nii-", "niigz-", "nii2-", "dcm-"):
        assert sum(n.startswith(prefix) for n in names) >= 2, prefix
    for kind in ("truncated", "magic", "huge", "random-bytes", "bitflips", "spacing", "nan"):
        assert sum(kind in n for n in names) >= 3, kind


def test_no_read_crashed_hung_or_aborted_the_child(outcomes):
    """Every case was read to the end by a child that exited normally (one child for all)."""
    _, exits = outcomes
    assert exits == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_malformed_file(outcomes, case):
    written, result = outcomes[0][case.name]
    outcome = result["outcome"]
    assert outcome in ("ReadError", "ok"), f"{case.name}: {outcome} (not a ReadError)\n{_explain(result)}"
    assert result["seconds"] < SECONDS_PER_READ, f"{case.name}: slow read\n{_explain(result)}"
    assert result["rss_growth"] < mi.MAX_RSS_GROWTH_BYTES, f"{case.name}: memory grew\n{_explain(result)}"
    if outcome == "ReadError":
        message = result["message"]
        assert case.expect != "ok", f"{case.name}: a well-formed control file was refused: {message}"
        assert "\n" not in message and 10 < len(message) <= 600, message
        assert written["culprit"] in message, f"the message does not name {written['culprit']}: {message}"
        if case.match:
            assert re.search(case.match, message), f"{case.name}: expected /{case.match}/ in: {message}"
        return
    assert case.expect in ("any", "ok"), f"{case.name}: a malformed file was accepted\n{_explain(result)}"
    for volume in result["volumes"]:
        assert not volume["invalid"], f"{case.name}: unusable volume accepted: {volume}"
    if case.expect == "ok" and not case.name.startswith("control-dcm"):
        [volume] = result["volumes"]
        assert volume["shape"] == list(mi.SHAPE) and volume["spacing"] == [1.0, 1.5, 2.0], volume
        assert volume["sum"] == float(mi.base_array().sum(dtype="float64")), volume


def test_the_harness_catches_crashes_hangs_and_huge_allocations(tmp_path):
    """The child's own misbehaviour must come back as outcomes, never take the test run down."""
    cases = [{"name": n, "selftest": n} for n in ("segfault", "hang", "allocate")] + [{"name": "fine",
                                                                                      "selftest": "none"}]
    results, exits = mi.run_in_child(cases, tmp_path, case_timeout=1.0)
    assert results["segfault"]["outcome"] == "crash" and results["segfault"]["returncode"] == -11
    assert results["hang"]["outcome"] == "hang"
    assert results["allocate"]["outcome"] == "memory"
    assert results["fine"]["outcome"] == "ok"
    assert len(exits) == 2 and "while reading segfault" in exits[0] and "while reading hang" in exits[1]
