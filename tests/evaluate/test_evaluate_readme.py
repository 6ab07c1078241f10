"""The evaluation section's result tables in README.md equal their results files: mean ± sample s.d.
(ddof=1, the report's one convention) over the trials of each arm, in %."""

import csv
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARMS = {"scratch": "scratch", "restoration (Models Genesis objective)": "restoration",
        "classification only": "classification", "semantic_genesis": "semantic_genesis"}


def _table(text: str, header: str) -> dict[str, list[str]]:
    """Arm -> cells of the README table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[ARMS[cells[0]]] = cells[1:]
    return rows


def _cell(values) -> str:
    v = 100 * np.asarray(values, dtype=np.float64)
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def _values(rows, task, arm, metric, fraction=None):
    return [float(r[metric]) for r in rows if r["task"] == task and r["arm"] == arm
            and (fraction is None or abs(float(r["label_fraction"]) - fraction) < 1e-9)]


def _plain(cell: str) -> str:
    return re.sub(r"\*\*|†", "", cell).strip()


@pytest.mark.parametrize("table, results, columns, fraction", [
    ("| arm | classification AUC % | collapsed | segmentation Dice % |", "experiment_cpu_small",
     {0: ("classification", "auc"), 2: ("segmentation", "dice")}, 0.2),
    ("| arm (10 trials at 50 % of the labels) | classification AUC % |", "evaluate_cpu_tiny",
     {0: ("classification", "auc"), 2: ("segmentation", "dice")}, 0.5),
    ("| arm (10 trials at 50 % of the labels, default memory order) |", "evaluate_cpu_tiny_default_layout",
     {0: ("classification", "auc"), 2: ("segmentation", "dice")}, 0.5),
    ("| arm (10 trials) | classification AUC % |", "evaluate_cpu_tiny_previous_protocol",
     {0: ("classification", "auc"), 1: ("segmentation", "mean_iou"), 2: ("segmentation", "iou")}, None),
])
def test_readme_tables_are_the_results_with_sample_sd(table, results, columns, fraction):
    text = (ROOT / "README.md").read_text()
    with open(ROOT / "benchmarks" / "results" / results / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    readme = _table(text, table)
    assert readme
    for arm, cells in readme.items():
        for i, (task, metric) in columns.items():
            assert _plain(cells[i]) == _cell(_values(rows, task, arm, metric, fraction)), (results, arm, metric)
