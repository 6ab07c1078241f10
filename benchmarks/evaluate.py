"""Benchmark: wall time of the no-argument evaluation, per trial and in all, and how many trials overlap.

Runs ``python -m semgen_ray.evaluate`` on a run directory (default ``runs/cpu-tiny``, the
no-argument pretraining run: do that first) unless ``--no-run`` is given, then reads Tune's
per-trial results under ``RUN/evaluate/tune`` for the trial times and the concurrency (sum of trial
times / the span from the first start to the last end), and writes them with the report's means.

    ./venv-run python -m semgen_ray.pretrain && ./venv-run python benchmarks/evaluate.py     # ~25 min
    ./venv-run python benchmarks/evaluate.py --no-run        # figures of an evaluation already done
    ./venv-run python benchmarks/evaluate.py --no-run --log EVAL.LOG   # ... with its wall time from its log
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def trial_times(run_dir: Path) -> dict:
    """Per-task trial seconds and epochs, and the overlap of all trials, from Tune's result files."""
    per_task: dict[str, list] = {}
    starts, ends = [], []
    for f in glob.glob(str(run_dir / "evaluate" / "tune" / "*" / "*" / "result.json")):
        lines = [json.loads(line) for line in open(f) if line.strip()]
        if not lines:
            continue
        last = lines[-1]
        task = last["config"].get("task") or last["config"]["cell"][0]  # the grid's cell: (task, fraction, seed)
        per_task.setdefault(task, []).append(last["time_total_s"])
        ends.append(last["timestamp"])
        starts.append(last["timestamp"] - last["time_total_s"])
    if not starts:
        raise SystemExit(f"no finished trials under {run_dir}/evaluate/tune")
    span = max(ends) - min(starts)
    total = sum(sum(v) for v in per_task.values())
    return {"trials": sum(len(v) for v in per_task.values()), "trials_span_s": round(span, 1),
            "sum_of_trial_s": round(total, 1), "mean_concurrent_trials": round(total / span, 2),
            "per_task": {t: {"n": len(v), "median_s": round(statistics.median(v), 1),
                             "min_s": round(min(v), 1), "max_s": round(max(v), 1)} for t, v in per_task.items()}}


def log_span(path: Path) -> float:
    """Seconds from the first to the last ``HH:MM:SS`` line stamp of a console log (past midnight: +24 h)."""
    import re

    stamps = [int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
              for m in (re.match(r"(\d\d):(\d\d):(\d\d) ", line) for line in open(path, errors="replace")) if m]
    if len(stamps) < 2:
        raise SystemExit(f"{path}: fewer than two HH:MM:SS time stamps")
    return float((stamps[-1] - stamps[0]) % 86400)


def copy_report(src: Path, dest: Path) -> None:
    """The report, its figures and the per-trial rows, beside the timing (paths in the report are
    relative, so the copy reads the same)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("report.md", "results.csv", "evaluate.json", *sorted(p.name for p in src.glob("*.png"))):
        if (src / f).is_file():
            shutil.copy(src / f, dest / f)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/cpu-tiny")
    ap.add_argument("--no-run", action="store_true", help="only read the figures of a finished evaluation")
    ap.add_argument("--log", help="with --no-run: the evaluation's console log; its first and last HH:MM:SS "
                                  "time stamps give the wall time")
    ap.add_argument("--set", action="append", default=[], help="config override passed to semgen_ray.evaluate")
    ap.add_argument("--out", default="benchmarks/results/evaluate.json")
    ap.add_argument("--report-to", default="benchmarks/results/evaluate_cpu_tiny",
                    help="folder that receives a copy of the report, its figures and the per-trial rows")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    result = {"machine": describe(), "run_dir": str(run_dir)}
    if not args.no_run:
        cmd = [sys.executable, "-m", "semgen_ray.evaluate", "--run-dir", str(run_dir),
               *[a for s in args.set for a in ("--set", s)]]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        result["command"] = " ".join(cmd[1:])
    elif args.log:
        result["wall_s"], result["wall_from"] = log_span(Path(args.log)), "log time stamps"
    result.update(trial_times(run_dir))
    summary = json.loads((run_dir / "evaluate" / "evaluate.json").read_text())
    result["means"] = summary["means"]
    result["best"] = summary["best"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    copy_report(run_dir / "evaluate", Path(args.report_to))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return result


if __name__ == "__main__":
    main()
