"""benchmarks/film_tasks.py judges docs/protocol-film-tasks.md from the evaluation's trials: its gates
and decision words, and the committed outcome again from the committed trials."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / "benchmarks" / "results" / "film_tasks_cpu_tiny_2d"


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports slice_arms' judge
    spec = importlib.util.spec_from_file_location("bench_film_tasks", ROOT / "benchmarks" / "film_tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(sg: float, scratch: float, full: float) -> list[dict]:
    """10 trials per arm and task at 50 % of the labels, 2 scratch trials at 100 %."""
    rng = np.random.default_rng(0)
    rows = []
    for task, metric in (("classification", "auc"), ("segmentation", "dice")):
        for arm, mean in (("scratch", scratch), ("semantic_genesis", sg)):
            rows += [{"task": task, "arm": arm, "seed": s, "label_fraction": 0.5,
                      metric: mean + 0.02 * rng.standard_normal(), "collapsed": False} for s in range(10)]
        rows += [{"task": task, "arm": "scratch", "seed": s, "label_fraction": 1.0, metric: full,
                  "collapsed": False} for s in range(2)]
    return rows


@pytest.mark.parametrize(("sg", "scratch", "full", "decisions"), [
    (0.70, 0.55, 0.65, {"classification": "Semantic Genesis better", "segmentation": "Semantic Genesis better"}),
    (0.30, 0.40, 0.65, {"classification": "scratch better", "segmentation": "scratch better"}),
    (0.40, 0.40, 0.65, {"classification": "no significant difference", "segmentation": "no significant difference"}),
    # between the gates: AUC 0.58 < 0.60 fails, Dice 0.58 ≥ 0.15 passes
    (0.70, 0.55, 0.58, {"classification": "inconclusive (gate failed)", "segmentation": "Semantic Genesis better"}),
])
def test_each_decision_rule_with_the_protocols_gates(sg, scratch, full, decisions):
    out = _bench().judge(_rows(sg, scratch, full), _bench().PROTOCOL, _bench().ARMS)
    assert {t: v["decision"] for t, v in out.items()} == decisions
    assert all(v["primary"]["n"] == [10, 10] and v["secondary"] == [] for v in out.values())


def test_the_committed_outcome_follows_from_the_committed_trials():
    from semgen_ray.evaluate.report import read_csv

    bench = _bench()
    committed = json.loads((EVIDENCE / "outcome.json").read_text())
    judged = bench.judge(read_csv(EVIDENCE / "results.csv"), bench.PROTOCOL, bench.ARMS)
    assert json.loads(json.dumps(judged, default=float)) == committed["tasks"]
    assert committed["protocol"] == "docs/protocol-film-tasks.md" and (ROOT / committed["protocol"]).is_file()
