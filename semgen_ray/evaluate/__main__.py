"""``python -m semgen_ray.evaluate``: ten seeded fine-tuning trials per arm on the target tasks.

With no arguments it evaluates the no-argument pretraining run (``runs/cpu-tiny``) against the
baselines on the phantom target tasks; ``--config`` / ``--set`` / ``--run-dir`` as for pretrain.
"""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m semgen_ray.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="preset (paper, cpu-tiny, cpu-small) or YAML file; default cpu-tiny")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override such as evaluate.trials=5 (repeatable)")
    p.add_argument("--run-dir", help="the pretraining run to evaluate (overrides run_dir)")
    p.add_argument("--force", action="store_true", help="redo the tasks, the baselines and every trial")
    p.add_argument("--dashboard", action="store_true",
                   help="serve the Ray dashboard (Tune view of the trials) on 127.0.0.1 and print its address")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semgen_ray.config import ConfigError, load_config

    overrides = (list(args.set) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
                 + (["ray.dashboard=true"] if args.dashboard else []))
    try:
        config = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import ray

    from semgen_ray import runfolder
    from semgen_ray.evaluate.run import EvaluationError, run_evaluation
    from semgen_ray.gpus import GpuUnavailableError
    from semgen_ray.runtime import init_ray
    from semgen_ray.train import PretrainError

    try:  # a URI run folder: its bucket and credentials are checked before Ray starts
        runfolder.prepare(config.run_dir)
    except runfolder.RunFolderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    owns_ray = not ray.is_initialized()
    init_ray(config.ray)
    if args.dashboard:
        joined = config.ray.address or os.environ.get("RAY_ADDRESS")
        print("dashboard: the cluster's own (`ray dashboard cluster/config.yaml` tunnels it to 127.0.0.1:8265)"
              if joined else f"dashboard: http://127.0.0.1:{config.ray.dashboard_port} (Tune view: Jobs/Train)",
              flush=True)
    try:
        record = run_evaluation(config, force=args.force)
    except (EvaluationError, PretrainError, GpuUnavailableError, runfolder.RunFolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if owns_ray:
            ray.shutdown()
    print(f"report: {os.path.join(config.run_dir, record['report'])}\n"
          f"results: {os.path.join(config.run_dir, record['results'])} ({record['trials']} trials)")
    for task, best in record["best"].items():
        valid = {True: "valid", False: "INVALID (see the report)", None: "validity not measured"}[record["valid"][task]]
        print(f"  {task}: {valid}; best arm {best}; means {record['means'][task]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
