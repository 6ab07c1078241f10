"""2D Semantic Genesis against scratch on the radiograph target tasks under
docs/protocol-film-tasks.md, run once with every record kept:

    ./venv-run python benchmarks/film_tasks.py     # → benchmarks/results/film_tasks_cpu_tiny_2d/

In one temporary folder: ``python -m semgen_ray.pretrain --config cpu-tiny-2d`` (the radiographs,
2D self-discovery and pretraining), then ``python -m semgen_ray.evaluate --config cpu-tiny-2d``.
Kept: both console logs, the evaluation's ``results.csv`` (every trial), ``report.md``,
``evaluate.json``, its figures, and ``outcome.json`` (the protocol's gates and decisions from those
records, :func:`slice_arms.judge`; wall times; the machine).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from commands import relative_paths, timed_run  # noqa: E402
from machine import describe  # noqa: E402
from slice_arms import KEPT, judge  # noqa: E402

ARMS = ("scratch", "semantic_genesis")
#: docs/protocol-film-tasks.md: primary fraction, per-task metric and gate, α per task
PROTOCOL = {"label_fraction": 0.5, "alpha": 0.025,
            "tasks": {"classification": {"metric": "auc", "gate": 0.60},
                      "segmentation": {"metric": "dice", "gate": 0.15}},
            "primary": ("semantic_genesis", "scratch"),
            "decisions": ("Semantic Genesis better", "scratch better"), "secondary": ()}


def main(argv=None) -> dict:
    from semgen_ray.evaluate.report import read_csv

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/film_tasks_cpu_tiny_2d")
    out = Path(ap.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m"]
    with tempfile.TemporaryDirectory(prefix="semgen_films_") as tmp:
        run = Path(tmp) / "films"
        config = ["--config", "cpu-tiny-2d", "--run-dir", str(run)]
        seconds = {"pretrain": timed_run([*py, "semgen_ray.pretrain", *config], out / "pretrain.log"),
                   "evaluate": timed_run([*py, "semgen_ray.evaluate", *config], out / "evaluate.log")}
        for name in KEPT:
            shutil.copy(run / "evaluate" / name, out / name)
        relative_paths(out, {str(run): "RUN"})
    seconds["total"] = round(sum(seconds.values()), 1)
    outcome = {"command": "./venv-run python benchmarks/film_tasks.py", "protocol": "docs/protocol-film-tasks.md",
               "arms": list(ARMS), "seconds": seconds, "machine": describe(),
               "tasks": judge(read_csv(out / "results.csv"), PROTOCOL, ARMS)}
    (out / "outcome.json").write_text(json.dumps(outcome, indent=2, default=float))
    print(json.dumps({t: v["decision"] for t, v in outcome["tasks"].items()}, indent=2))
    return outcome


if __name__ == "__main__":
    main()
