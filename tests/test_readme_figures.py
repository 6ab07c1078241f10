"""README figures come from benchmarks/results: the generated sections are current, the check catches
stale ones, and the step-overhead benchmark never lets a busy-machine run become the figure."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tables():
    return _module("readme_tables")


def test_readme_generated_sections_match_the_results_files(tables):
    text = README.read_text()
    new, problems = tables.render(text)
    assert problems == []
    stale = tables.stale_sections(text)
    assert stale == [], (f"README sections {stale} differ from benchmarks/results: run "
                         "./venv-run python benchmarks/readme_tables.py")
    assert new == text


def test_every_results_table_is_a_generated_section(tables):
    text = README.read_text()
    names = [m.group("name") for m in tables.MARKER.finditer(text)]
    assert sorted(names) == sorted(tables.SECTIONS)
    assert len(names) >= 12


def test_check_catches_an_edited_figure_and_missing_markers(tables, tmp_path):
    text = README.read_text()
    edited = text.replace("| 256×256×128 (default) | 1.51 |", "| 256×256×128 (default) | 1.2 |")
    assert edited != text
    readme = tmp_path / "README.md"
    readme.write_text(edited)
    assert tables.stale_sections(edited) == ["phantoms"]
    assert tables.main(["--check", "--readme", str(readme)]) == 1
    assert tables.main(["--readme", str(readme)]) == 0  # regenerating repairs it
    assert readme.read_text() == text
    unknown = text + "\n<!-- generated: nothing -->\nx\n<!-- /generated: nothing -->\n"
    assert any("nothing" in p for p in tables.render(unknown)[1])
    dropped = text.replace("<!-- generated: unet -->\n", "")
    assert any("'unet'" in p for p in tables.render(dropped)[1])


def test_a_changed_results_file_makes_the_readme_stale(tables, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    d = json.loads((results / "phantoms.json").read_text())
    d["rows"][0]["seconds_median"] += 1.0
    (results / "phantoms.json").write_text(json.dumps(d))
    assert tables.stale_sections(README.read_text(), results) == ["phantoms"]


def _step_record(busy: bool, overhead: float) -> dict:
    bare = 20.0
    loop = bare / (1 + overhead)
    return {"benchmark": "train_step", "method": "real_loop", "machine_busy": busy,
            "busy_reason": "machine busy (start): load" if busy else None, "rounds": 3, "train_cubes": 160,
            "args": {"epochs": 3}, "overhead_target": 0.10, "torch_threads": 1,
            "summary": [
                {"config": "bare", "label": "bare", "cubes_per_s_rounds": [bare] * 3, "cubes_per_s_median": bare},
                {"config": "ray+ds", "label": "loop", "zero_stage": 1, "cubes_per_s_rounds": [loop] * 3,
                 "cubes_per_s_median": loop, "overhead_median": overhead, "overhead_min": overhead,
                 "overhead_max": overhead, "overhead_vs_bf16_only_median": overhead + 0.05,
                 "data_wait_fraction_median": 0.02}]}


def test_step_overhead_is_quoted_only_from_an_idle_machine(tables, tmp_path):
    (tmp_path / "train_step.json").write_text(json.dumps(_step_record(busy=True, overhead=0.04)))
    text = tables.train_step(tmp_path)
    assert "No step-overhead figure" in text and "+4.0 %" not in text
    (tmp_path / "train_step.json").write_text(json.dumps(_step_record(busy=False, overhead=0.12)))
    text = tables.train_step(tmp_path)
    assert "+12.0 %" in text and "ZeRO-1 (the default) misses the ≤ 10 % overhead target" in text
    (tmp_path / "train_step.json").write_text(json.dumps({"benchmark": "train_step", "machine_busy_at_start": True}))
    assert "No step-overhead figure" in tables.train_step(tmp_path)


def test_step_benchmark_refuses_a_busy_machine(tmp_path):
    bench = _module("train_step")
    out = tmp_path / "train_step.json"
    # a load limit no machine meets: refused before anything runs, nothing written, exit status 3
    rc = bench.main(["--max-load", "-1", "--max-foreign", "-1", "--sample-s", "0.1", "--out", str(out)])
    assert rc == bench.EXIT_BUSY and not out.exists()
    args = type("A", (), {"max_load": -1.0, "max_foreign": -1.0, "sample_s": 0.1, "allow_busy": True})()
    busy, log = [], []
    bench.check_idle(args, "start", log, busy)  # --allow-busy: noted, not refused
    assert busy and "machine busy (start)" in busy[0] and log[0]["where"] == "start"


def test_figures_of_issue_15_are_gone():
    text = README.read_text()
    for stale in ("+4 %", "4-5 cores per H100", "within 2e-6", "96 % of the time", "12 for segmentation",
                  "0.90 against 0.31", "4 min 46 s", "4 min 06 s"):
        assert stale not in text, stale
