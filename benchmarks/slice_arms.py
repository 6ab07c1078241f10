"""3D Semantic Genesis against 2D Semantic Genesis on axial slices (the paper's Fig. 3) under
docs/protocol-slice-arms.md, run once with every record kept:

    ./venv-run python benchmarks/slice_arms.py     # → benchmarks/results/slice_arms_cpu_small/

In one temporary folder: the 2D pretraining (``python -m semgen_ray.pretrain --config cpu-tiny-2d``),
the 3D one (``--config cpu-small``), then ``python -m semgen_ray.evaluate --config cpu-small`` with
the four arms. Kept: the three console logs, the evaluation's ``results.csv`` (every trial),
``report.md``, ``evaluate.json``, its figures, and ``outcome.json`` (the protocol's gates and
decisions from those records, :func:`judge`; wall times; the machine).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from commands import relative_paths, timed_run  # noqa: E402
from machine import describe  # noqa: E402

ARMS = ("scratch", "semantic_genesis", "scratch_2d", "semantic_genesis_2d")
#: docs/protocol-slice-arms.md: primary fraction, per-task metric and gate, α per task
PROTOCOL = {"label_fraction": 0.2, "alpha": 0.025,
            "tasks": {"classification": {"metric": "auc", "gate": 0.80},
                      "segmentation": {"metric": "dice", "gate": 0.50}},
            "primary": ("semantic_genesis", "semantic_genesis_2d"), "decisions": ("3D better", "2D better"),
            "secondary": (("scratch", "scratch_2d"), ("semantic_genesis_2d", "scratch_2d"),
                          ("semantic_genesis", "scratch"))}
KEPT = ("results.csv", "report.md", "evaluate.json", "bars_classification.png", "bars_segmentation.png",
        "box_classification.png", "box_segmentation.png")


def _values(rows: list[dict], task: str, arm: str, fraction: float, metric: str) -> tuple[list, list]:
    picked = sorted((r["seed"], r[metric]) for r in rows if r["task"] == task and r["arm"] == arm
                    and abs(r["label_fraction"] - fraction) < 1e-9)
    return [s for s, _ in picked], [v for _, v in picked]


def _comparison(rows: list[dict], task: str, metric: str, a: str, b: str, fraction: float) -> dict:
    from semgen_ray.evaluate.statistics import compare, compare_paired

    (sa, va), (sb, vb) = _values(rows, task, a, fraction, metric), _values(rows, task, b, fraction, metric)
    c, p = compare(va, vb, a, b), compare_paired(va, vb, a, b, sa, sb)
    return {"a": a, "b": b, "mean_a": c.mean_a, "mean_b": c.mean_b, "sd_a": c.sd_a, "sd_b": c.sd_b, "diff": c.diff,
            "ci": [c.diff_ci_low, c.diff_ci_high], "student_p": c.student_p,
            "paired_p": p.p, "n": [len(va), len(vb)]}


def judge(rows: list[dict], protocol: dict = PROTOCOL, arms=ARMS) -> dict:
    """The protocol's per-task gate (mean ``scratch`` with all labels), primary comparison (a − b at
    the protocol's label fraction, Student t against its α) and decision, and the secondary
    comparisons; every arm's collapsed trials counted."""
    out = {}
    fraction, (better, worse) = protocol["label_fraction"], protocol["decisions"]
    for task, t in protocol["tasks"].items():
        metric = t["metric"]
        full = _values(rows, task, "scratch", 1.0, metric)[1]
        gate = {"scratch_full_mean": float(np.mean(full)) if full else None, "min": t["gate"]}
        gate["passed"] = bool(full) and gate["scratch_full_mean"] >= t["gate"]
        primary = _comparison(rows, task, metric, *protocol["primary"], fraction)
        significant = primary["student_p"] < protocol["alpha"]
        decision = ("inconclusive (gate failed)" if not gate["passed"] else
                    better if significant and primary["diff"] > 0 else
                    worse if significant and primary["diff"] < 0 else "no significant difference")
        out[task] = {"metric": metric, "gate": gate, "primary": primary, "decision": decision,
                     "secondary": [_comparison(rows, task, metric, a, b, fraction) for a, b in protocol["secondary"]],
                     "collapsed": {arm: sum(bool(r["collapsed"]) for r in rows if r["task"] == task and r["arm"] == arm
                                            and abs(r["label_fraction"] - fraction) < 1e-9) for arm in arms}}
    return out


def main(argv=None) -> dict:
    from semgen_ray.evaluate.report import read_csv

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/slice_arms_cpu_small")
    out = Path(ap.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m"]
    with tempfile.TemporaryDirectory(prefix="semgen_slices_") as tmp:
        films, run = Path(tmp) / "films", Path(tmp) / "ct"
        seconds = {"pretrain_2d": timed_run([*py, "semgen_ray.pretrain", "--config", "cpu-tiny-2d", "--run-dir",
                                             str(films)], out / "pretrain_2d.log"),
                   "pretrain_3d": timed_run([*py, "semgen_ray.pretrain", "--config", "cpu-small", "--run-dir",
                                             str(run)], out / "pretrain_3d.log")}
        seconds["evaluate"] = timed_run(
            [*py, "semgen_ray.evaluate", "--config", "cpu-small", "--run-dir", str(run),
             "--set", f"evaluate.arms=[{', '.join(ARMS)}]", "--set", "evaluate.curve_fractions=[1.0]",
             "--set", f"evaluate.weights={{semantic_genesis_2d: {films / 'train' / 'export'}}}"], out / "evaluate.log")
        for name in KEPT:
            shutil.copy(run / "evaluate" / name, out / name)
        relative_paths(out, {str(run): "RUN", str(films): "RUN_2D"})
    seconds["total"] = round(sum(seconds.values()), 1)
    outcome = {"command": "./venv-run python benchmarks/slice_arms.py", "protocol": "docs/protocol-slice-arms.md",
               "arms": list(ARMS), "seconds": seconds, "machine": describe(),
               "tasks": judge(read_csv(out / "results.csv"))}
    (out / "outcome.json").write_text(json.dumps(outcome, indent=2, default=float))
    print(json.dumps({t: v["decision"] for t, v in outcome["tasks"].items()}, indent=2))
    return outcome


if __name__ == "__main__":
    main()
