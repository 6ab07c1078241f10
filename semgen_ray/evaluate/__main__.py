"""``python -m semgen_ray.evaluate``: ten seeded fine-tuning trials per arm on the target tasks.

With no arguments it evaluates the no-argument pretraining run (``runs/cpu-tiny``) against the
baselines on the phantom target tasks; ``--config`` / ``--set`` / ``--run-dir`` as for pretrain.
"""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    from semgen_ray import cli

    p = cli.parser("python -m semgen_ray.evaluate", __doc__.splitlines()[0], set_example="evaluate.trials=5",
                   run_dir="the pretraining run to evaluate (overrides run_dir)",
                   force="redo the tasks, the baselines and every trial")
    p.add_argument("--dashboard", action="store_true",
                   help="serve the Ray dashboard (Tune view of the trials) on 127.0.0.1 and print its address")
    return p


def main(argv: list[str] | None = None) -> int:
    from semgen_ray import cli

    args = build_parser().parse_args(argv)
    return cli.run(args, lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> int:
    from semgen_ray import cli, runfolder

    config = cli.load(args, ["ray.dashboard=true"] if args.dashboard else [])
    from semgen_ray.stages.evaluation import run_evaluation

    runfolder.prepare(config.run_dir)  # a URI run folder: its bucket and credentials are checked before Ray starts
    with cli.ray_session(config.ray):
        if args.dashboard:
            joined = config.ray.address or os.environ.get("RAY_ADDRESS")
            print("dashboard: the cluster's own (`ray dashboard cluster/config.yaml` tunnels it to 127.0.0.1:8265)"
                  if joined else f"dashboard: http://127.0.0.1:{config.ray.dashboard_port} (Tune view: Jobs/Train)",
                  flush=True)
        record = run_evaluation(config, force=args.force)
    print(f"report: {os.path.join(config.run_dir, record['report'])}\n"
          f"results: {os.path.join(config.run_dir, record['results'])} ({record['trials']} trials)")
    for task, best in record["best"].items():
        valid = {True: "valid", False: "INVALID (see the report)", None: "validity not measured"}[record["valid"][task]]
        print(f"  {task}: {valid}; best arm {best}; means {record['means'][task]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
