"""The paper's claim at small scale, under a protocol fixed in advance (``docs/protocol-cpu-small*.md``).

Runs the protocol's preset end to end (pretraining cohort → self-discovery → Semantic Genesis
pretraining → restoration-only baseline with the same step budget → target tasks → trials at 10, 20,
50 and 100 % of the training labels), then judges the protocol's gates and decision rules from the
files the run wrote, and copies the evidence into the protocol's results folder:

    ./venv-run python benchmarks/experiment.py                  # protocol 2 (the current one)
    ./venv-run python benchmarks/experiment.py --protocol 1     # the first version, as it ran
    ./venv-run python benchmarks/experiment.py --no-run         # judge a finished run again

Every number of the outcome is read from the run's own records (``discovery/discovery.json``,
``train/train.json``, ``evaluate/results.csv``); nothing is typed in.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from commands import relative_paths, timed_run  # noqa: E402
from machine import describe  # noqa: E402

_GATES = {"purity_min": 0.6, "purity_over_chance": 2.0, "pseudo_class_acc_over_chance": 4.0,
          "restoration_mse_ratio_max": 0.5, "scratch_full_auc_min": 0.80, "scratch_full_dice_min": 0.50,
          "scratch_primary_auc_max": 0.97, "shortcut_auc_max": 0.75}

#: Each protocol's fixed values (its document §4-§7) and where it runs; changing one is a new version.
#: Version 1 keeps its preset as it ran (``benchmarks/protocols/cpu-small-v1.yaml``).
PROTOCOLS = {
    1: {"version": 1, "doc": "docs/protocol-cpu-small.md", "config": "benchmarks/protocols/cpu-small-v1.yaml",
        "run_dir": "runs/cpu-small-v1", "out": "benchmarks/results/experiment_cpu_small"},
    2: {"version": 2, "doc": "docs/protocol-cpu-small-v2.md", "config": "cpu-small",
        "run_dir": "runs/cpu-small", "out": "benchmarks/results/experiment_cpu_small_v2"},
}
for _p in PROTOCOLS.values():
    _p.update({"primary": {"task": "classification", "metric": "auc", "label_fraction": 0.2},
               "arms": {"treatment": "semantic_genesis", "control": "scratch", "restoration": "restoration"},
               "alpha": 0.05,
               "non_inferiority_margin": 0.02,  # Semantic Genesis may trail restoration-only by at most 2 AUC points
               "gates": _GATES})
CURRENT = 2


def _rows(path: Path) -> list[dict]:
    out = []
    with open(path) as f:
        for r in csv.DictReader(f):
            for k in ("auc", "dice", "iou", "mean_iou", "label_fraction"):
                r[k] = float(r[k]) if r.get(k) not in (None, "") else None
            r["seed"] = int(r["seed"])
            r["collapsed"] = str(r.get("collapsed")).lower() == "true"
            out.append(r)
    return out


def _values(rows, task, arm, fraction, metric):
    sel = sorted((r for r in rows if r["task"] == task and r["arm"] == arm
                  and abs(r["label_fraction"] - fraction) < 1e-9 and r[metric] is not None), key=lambda r: r["seed"])
    return [r["seed"] for r in sel], [r[metric] for r in sel]


def _seconds_from_logs(out: Path) -> dict | None:
    """Stage wall times of an earlier run from its logs: first time stamp of each log to the next
    stage's first one, and to the evaluate log's last write."""
    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")

    def first(path: Path):
        for line in open(path, errors="replace"):
            m = stamp.match(line)
            if m:
                return datetime.datetime.fromisoformat(m.group(1)).timestamp()
        return None

    logs = out / "pretrain.log", out / "evaluate.log"
    if not all(p.is_file() for p in logs):
        return None
    t0, t1 = first(logs[0]), first(logs[1])
    if t0 is None or t1 is None:
        return None
    end = logs[1].stat().st_mtime
    return {"pretrain": round(t1 - t0, 1), "evaluate": round(end - t1, 1), "total": round(end - t0, 1),
            "from": "log time stamps (--no-run)"}


def pretext_gates(train: dict, num_classes: int, gates: dict = _GATES) -> dict:
    """Pseudo-class validation accuracy and restoration MSE of the joint phase, from ``train.json``."""
    hist = train.get("history") or []
    joint = [h for h in hist if h.get("phase", "joint") == "joint"]
    if not joint:
        return {"passed": False, "why": "no joint-phase epoch in train.json"}
    best_acc = max(h.get("val_acc", 0.0) for h in hist)
    rec = [h["val_rec_loss"] for h in joint if h.get("val_rec_loss") is not None]
    ratio = min(rec) / rec[0] if rec and rec[0] > 0 else float("nan")
    g = gates
    chance = 1.0 / num_classes
    out = {"val_acc_best": round(best_acc, 4), "chance": round(chance, 4),
           "val_rec_loss_first": rec[0] if rec else None, "val_rec_loss_best": min(rec) if rec else None,
           "rec_ratio": round(ratio, 4)}
    out["passed"] = bool(best_acc >= g["pseudo_class_acc_over_chance"] * chance and ratio <= g["restoration_mse_ratio_max"])
    return out


def judge(run_dir: Path, num_classes: int, protocol: dict = PROTOCOLS[CURRENT]) -> dict:
    """The protocol's gates and decision, from the run's records."""
    from semgen_ray.evaluate.statistics import compare, compare_paired

    g, p = protocol["gates"], protocol["primary"]
    disc = json.loads((run_dir / "discovery" / "discovery.json").read_text())
    train = json.loads((run_dir / "train" / "train.json").read_text())
    ev = json.loads((run_dir / "evaluate" / "evaluate.json").read_text())
    rows = _rows(run_dir / "evaluate" / "results.csv")
    purity = disc.get("habitus_purity") or {}
    gates = {"discovery": {**purity, "passed": bool(purity and purity["purity"] >= g["purity_min"]
                                                    and purity["purity"] >= g["purity_over_chance"] * purity["chance"])},
             "pretext": pretext_gates(train, num_classes, g)}
    _, full_auc = _values(rows, "classification", "scratch", 1.0, "auc")
    _, full_dice = _values(rows, "segmentation", "scratch", 1.0, "dice")
    _, prim_auc = _values(rows, "classification", "scratch", p["label_fraction"], "auc")
    shortcut = ((ev.get("task_info") or {}).get("classification") or {}).get("shortcut_auc", {}).get("best")
    gates["task"] = {"scratch_full_auc": float(np.mean(full_auc)) if full_auc else None,
                     "scratch_full_dice": float(np.mean(full_dice)) if full_dice else None,
                     "scratch_primary_auc": float(np.mean(prim_auc)) if prim_auc else None,
                     "shortcut_auc": shortcut}
    t = gates["task"]
    t["classification_passed"] = bool(t["scratch_full_auc"] is not None and t["scratch_full_auc"] >= g["scratch_full_auc_min"]
                                      and t["scratch_primary_auc"] is not None
                                      and t["scratch_primary_auc"] <= g["scratch_primary_auc_max"]
                                      and shortcut is not None and shortcut <= g["shortcut_auc_max"])
    t["segmentation_passed"] = bool(t["scratch_full_dice"] is not None and t["scratch_full_dice"] >= g["scratch_full_dice_min"])

    a = protocol["arms"]
    s_sg, sg = _values(rows, p["task"], a["treatment"], p["label_fraction"], p["metric"])
    s_sc, sc = _values(rows, p["task"], a["control"], p["label_fraction"], p["metric"])
    s_re, re = _values(rows, p["task"], a["restoration"], p["label_fraction"], p["metric"])
    vs_scratch = compare(sg, sc, a["treatment"], a["control"])
    vs_rest = compare(sg, re, a["treatment"], a["restoration"])
    paired = compare_paired(sg, sc, a["treatment"], a["control"], s_sg, s_sc)
    collapsed = {arm: sum(r["collapsed"] for r in rows if r["arm"] == arm and r["task"] == p["task"]
                          and abs(r["label_fraction"] - p["label_fraction"]) < 1e-9)
                 for arm in a.values()}
    gates_ok = gates["discovery"]["passed"] and gates["pretext"]["passed"] and t["classification_passed"]
    better = vs_scratch.diff > 0 and vs_scratch.student_p < protocol["alpha"]
    not_worse = vs_rest.diff >= -protocol["non_inferiority_margin"]
    if not gates_ok:
        decision = "inconclusive (a gate failed: see gates)"
    elif better and not_worse:
        decision = "supported"
    elif vs_scratch.diff < 0 and vs_scratch.student_p < protocol["alpha"]:
        decision = "refuted (Semantic Genesis significantly worse than scratch)"
    elif better and not not_worse:
        decision = "not supported (better than scratch but worse than restoration-only beyond the margin)"
    else:
        decision = "inconclusive (no significant difference from scratch)"
    return {"protocol": protocol, "gates": gates, "decision": decision,
            "primary": {"vs_scratch": dataclasses.asdict(vs_scratch), "vs_restoration": dataclasses.asdict(vs_rest),
                        "paired_vs_scratch": dataclasses.asdict(paired), "collapsed": collapsed,
                        "values": {a["treatment"]: sg, a["control"]: sc, a["restoration"]: re}}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", type=int, choices=sorted(PROTOCOLS), default=CURRENT,
                    help="protocol version: its preset, run folder and results folder")
    ap.add_argument("--run-dir", help="the run folder (default: the protocol's)")
    ap.add_argument("--out", help="where the evidence goes (default: the protocol's results folder)")
    ap.add_argument("--no-run", action="store_true", help="judge a finished run only")
    args = ap.parse_args(argv)
    from semgen_ray.config import load_config

    protocol = PROTOCOLS[args.protocol]
    run, out = Path(args.run_dir or protocol["run_dir"]), Path(args.out or protocol["out"])
    config = load_config(protocol["config"], [f"run_dir={run}"])
    out.mkdir(parents=True, exist_ok=True)
    result = {"machine": describe(), "config": protocol["config"], "run_dir": str(run)}
    if not args.no_run:
        py, preset = sys.executable, protocol["config"]
        result["seconds"] = {
            "pretrain": timed_run([py, "-m", "semgen_ray.pretrain", "--config", preset, "--run-dir", str(run)],
                             out / "pretrain.log"),
            "evaluate": timed_run([py, "-m", "semgen_ray.evaluate", "--config", preset, "--run-dir", str(run)],
                             out / "evaluate.log")}
        result["seconds"]["total"] = round(sum(result["seconds"].values()), 1)
    elif _seconds_from_logs(out):
        result["seconds"] = _seconds_from_logs(out)
    result.update(judge(run, config.discovery.num_classes, protocol))
    for name in ("report.md", "results.csv", "curve.png", "box_classification.png", "box_segmentation.png",
                 "bars_classification.png", "bars_segmentation.png", "evaluate.json"):
        if (run / "evaluate" / name).is_file():
            shutil.copy(run / "evaluate" / name, out / name)
    shutil.copy(run / "discovery" / "discovery.json", out / "discovery.json")
    shutil.copy(run / "train" / "train.json", out / "train.json")
    (out / "outcome.json").write_text(json.dumps(result, indent=2, default=float))
    relative_paths(out, {f"{Path.cwd().resolve()}/": ""})  # paths relative to the repository
    print(json.dumps({k: result[k] for k in ("decision", "gates")}, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
