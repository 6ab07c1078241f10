"""benchmarks/experiment.py judges a protocol's gates and decision from a run's records: it gives the
committed outcome of every protocol that ran again from the committed records, and each decision rule
of the protocol from records made to meet it."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _experiment():
    spec = importlib.util.spec_from_file_location("bench_experiment", ROOT / "benchmarks" / "experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_folder(tmp_path: Path, evidence: Path) -> Path:
    """A run folder holding a results folder's copies of the run's records, where the run put them."""
    run = tmp_path / "run"
    for sub, name in (("discovery", "discovery.json"), ("train", "train.json"), ("evaluate", "evaluate.json"),
                      ("evaluate", "results.csv")):
        (run / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(evidence / name, run / sub / name)
    return run


@pytest.mark.parametrize("version", [1, 2])
def test_judge_gives_the_committed_outcome_from_the_committed_records(tmp_path, version):
    exp = _experiment()
    protocol = exp.PROTOCOLS[version]
    evidence = ROOT / protocol["out"]
    if not (evidence / "outcome.json").is_file():
        pytest.skip(f"protocol {version} has not run yet")
    committed = json.loads((evidence / "outcome.json").read_text())
    judged = json.loads(json.dumps(exp.judge(_run_folder(tmp_path, evidence), 8, protocol), default=float))
    assert judged["decision"] == committed["decision"]
    assert judged["gates"] == committed["gates"]
    assert judged["primary"]["values"] == committed["primary"]["values"]


def _write_records(run: Path, arms: dict[str, list[float]], *, full_auc: float = 0.9, val_acc: float = 0.6):
    """Records of a run that passes every gate except as asked: classification AUCs at 20 % per arm (one
    per seed), scratch at 100 % at ``full_auc``, a pretext accuracy of ``val_acc`` (C = 8)."""
    for sub in ("discovery", "train", "evaluate"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    (run / "discovery" / "discovery.json").write_text(json.dumps({"habitus_purity": {"purity": 0.8, "chance": 0.25}}))
    history = [{"phase": "warmup", "val_acc": 0.2},
               {"phase": "joint", "val_acc": val_acc, "val_rec_loss": 0.06},
               {"phase": "joint", "val_acc": 0.3, "val_rec_loss": 0.02}]
    (run / "train" / "train.json").write_text(json.dumps({"history": history}))
    (run / "evaluate" / "evaluate.json").write_text(json.dumps(
        {"task_info": {"classification": {"shortcut_auc": {"best": 0.55}}}}))
    rows = [("classification", arm, seed, 0.2, auc, "") for arm, aucs in arms.items() for seed, auc in enumerate(aucs)]
    rows += [("classification", "scratch", seed, 1.0, full_auc, "") for seed in range(2)]
    rows += [("segmentation", "scratch", seed, 1.0, "", 0.6) for seed in range(2)]
    with open(run / "evaluate" / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "arm", "seed", "label_fraction", "auc", "dice", "collapsed"])
        w.writerows([*r, False] for r in rows)


SCRATCH = [0.70, 0.72, 0.68, 0.71, 0.69, 0.73, 0.70, 0.67, 0.72, 0.71]


@pytest.mark.parametrize("treatment, restoration, decision", [
    ([a + 0.1 for a in SCRATCH], [a + 0.1 for a in SCRATCH], "supported"),
    ([a + 0.1 for a in SCRATCH], [a + 0.2 for a in SCRATCH], "not supported"),
    ([a - 0.1 for a in SCRATCH], SCRATCH, "refuted"),
    ([a + 0.005 * (-1) ** i for i, a in enumerate(SCRATCH)], SCRATCH, "inconclusive (no significant"),
])
def test_each_decision_rule(tmp_path, treatment, restoration, decision):
    exp = _experiment()
    _write_records(tmp_path, {"scratch": SCRATCH, "semantic_genesis": treatment, "restoration": restoration})
    out = exp.judge(tmp_path, 8, exp.PROTOCOLS[2])
    assert out["decision"].startswith(decision), out["decision"]
    assert out["gates"]["pretext"]["passed"] and out["gates"]["task"]["classification_passed"]


@pytest.mark.parametrize("records, gate", [
    ({"full_auc": 0.7}, "task"),        # scratch with all labels below the learnability gate
    ({"val_acc": 0.45}, "pretext"),     # pseudo-classes at 3.6 x chance, below 4 x
])
def test_a_failed_gate_makes_the_decision_inconclusive(tmp_path, records, gate):
    exp = _experiment()
    _write_records(tmp_path, {"scratch": SCRATCH, "semantic_genesis": [a + 0.1 for a in SCRATCH],
                              "restoration": SCRATCH}, **records)
    out = exp.judge(tmp_path, 8, exp.PROTOCOLS[2])
    assert out["decision"].startswith("inconclusive (a gate failed")
    failed = out["gates"]["task"]["classification_passed"] if gate == "task" else out["gates"]["pretext"]["passed"]
    assert failed is False


def test_every_protocol_has_its_document_and_preset():
    from semgen_ray.config import load_config

    for version, protocol in _experiment().PROTOCOLS.items():
        doc = (ROOT / protocol["doc"]).read_text()
        assert f"version {version})" in doc.splitlines()[0]
        config = load_config(protocol["config"] if "/" not in protocol["config"] else str(ROOT / protocol["config"]), [])
        assert config.evaluate.label_fraction == protocol["primary"]["label_fraction"]
        assert set(protocol["arms"].values()) <= set(config.evaluate.arms)
