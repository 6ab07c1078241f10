"""``python -m semgen_ray.evaluate``: ten seeded fine-tuning trials per arm on the target tasks.

With no arguments it evaluates the no-argument pretraining run (``runs/cpu-tiny``) against the
baselines on the phantom target tasks; ``--config`` / ``--set`` / ``--run-dir`` as for pretrain.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m semgen_ray.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="preset (paper, cpu-tiny) or YAML file; default cpu-tiny")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override such as evaluate.trials=5 (repeatable)")
    p.add_argument("--run-dir", help="the pretraining run to evaluate (overrides run_dir)")
    p.add_argument("--force", action="store_true", help="redo the tasks, the baselines and every trial")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semgen_ray.config import ConfigError, load_config

    overrides = list(args.set) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
    try:
        config = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import ray

    from semgen_ray.evaluate.run import EvaluationError, run_evaluation
    from semgen_ray.runtime import init_ray
    from semgen_ray.train import PretrainError

    owns_ray = not ray.is_initialized()
    init_ray(config.ray)
    try:
        record = run_evaluation(config, force=args.force)
    except (EvaluationError, PretrainError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if owns_ray:
            ray.shutdown()
    print(f"report: {record['report']}\nresults: {record['results']} ({record['trials']} trials)")
    for task, best in record["best"].items():
        print(f"  {task}: best arm {best}; means {record['means'][task]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
