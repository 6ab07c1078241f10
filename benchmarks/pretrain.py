"""One main-job run of a preset, timed, with its records kept: what a user of the preset gets.

Runs ``python -m semgen_ray.pretrain --config PRESET`` (its default stages: data, discover, train) in
a fresh run folder and copies the run's records into ``--out``: the console log, ``discovery.json``,
``train.json``, the pretraining report's figures, and ``run.json`` (machine, wall time, command):

    ./venv-run python benchmarks/pretrain.py --config cpu-tiny-2d   # → benchmarks/results/pretrain_cpu_tiny_2d/
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

#: what is kept of the run folder (path in the run folder → name in ``--out``)
KEPT = {"discovery/discovery.json": "discovery.json", "train/train.json": "train.json",
        "train/report/loss_curves.png": "loss_curves.png", "train/report/samples.png": "samples.png"}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="cpu-tiny-2d", help="preset or YAML file")
    ap.add_argument("--out", help="results folder (default benchmarks/results/pretrain_<preset>)")
    args = ap.parse_args(argv)
    out = Path(args.out or f"benchmarks/results/pretrain_{Path(args.config).stem.replace('-', '_')}")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="semgen_pretrain_") as tmp:
        run = Path(tmp) / "run"
        command = [sys.executable, "-m", "semgen_ray.pretrain", "--config", args.config, "--run-dir", str(run)]
        seconds = timed_run(command, out / "pretrain.log")
        for src, name in KEPT.items():
            shutil.copy(run / src, out / name)
        relative_paths(out, {str(run): "RUN"})  # the run folder was temporary
    record = {"command": f"./venv-run python benchmarks/pretrain.py --config {args.config}",
              "config": args.config, "seconds": seconds, "machine": describe()}
    (out / "run.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
