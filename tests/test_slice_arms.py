"""benchmarks/slice_arms.py judges docs/protocol-slice-arms.md from the evaluation's trials: each
decision rule on trials made to meet it, and the committed outcome again from the committed trials."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / "benchmarks" / "results" / "slice_arms_cpu_small"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_slice_arms", ROOT / "benchmarks" / "slice_arms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(means: dict, full_scratch: float, spread: float = 0.02) -> list[dict]:
    """10 trials per arm and task at 20 % (values around ``means[arm]``), 2 scratch trials at 100 %."""
    rng = np.random.default_rng(0)
    rows = []
    for task, metric in (("classification", "auc"), ("segmentation", "dice")):
        for arm, mean in means.items():
            rows += [{"task": task, "arm": arm, "seed": s, "label_fraction": 0.2,
                      metric: mean + spread * rng.standard_normal(), "collapsed": arm == "scratch_2d" and s == 0}
                     for s in range(10)]
        rows += [{"task": task, "arm": "scratch", "seed": s, "label_fraction": 1.0, metric: full_scratch,
                  "collapsed": False} for s in range(2)]
    return rows


@pytest.mark.parametrize(("sg3d", "sg2d", "full", "decision"), [
    (0.90, 0.70, 0.95, "3D better"),
    (0.70, 0.90, 0.95, "2D better"),
    (0.80, 0.80, 0.95, "no significant difference"),
    (0.90, 0.70, 0.40, "inconclusive (gate failed)"),  # below both gates (0.80 AUC, 0.50 Dice)
])
def test_each_decision_rule(sg3d, sg2d, full, decision):
    bench = _bench()
    out = bench.judge(_rows({"scratch": 0.75, "semantic_genesis": sg3d, "scratch_2d": 0.7,
                             "semantic_genesis_2d": sg2d}, full))
    for task in ("classification", "segmentation"):
        t = out[task]
        assert t["decision"] == decision
        assert t["primary"]["n"] == [10, 10] and (t["primary"]["a"], t["primary"]["b"]) == bench.PROTOCOL["primary"]
        assert t["primary"]["diff"] == pytest.approx(sg3d - sg2d, abs=0.03)
        assert [(c["a"], c["b"]) for c in t["secondary"]] == list(bench.PROTOCOL["secondary"])
        assert t["collapsed"]["scratch_2d"] == 1 and t["collapsed"]["semantic_genesis"] == 0


def test_the_committed_outcome_follows_from_the_committed_trials():
    if not (EVIDENCE / "outcome.json").is_file():
        pytest.skip("the protocol has not run yet (benchmarks/slice_arms.py)")
    from semgen_ray.evaluate.report import read_csv

    bench = _bench()
    committed = json.loads((EVIDENCE / "outcome.json").read_text())
    assert json.loads(json.dumps(bench.judge(read_csv(EVIDENCE / "results.csv")), default=float)) == committed["tasks"]
    assert committed["protocol"] == "docs/protocol-slice-arms.md" and (ROOT / committed["protocol"]).is_file()
