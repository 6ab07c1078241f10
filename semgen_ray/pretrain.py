"""``python -m semgen_ray.pretrain``: run the Semantic Genesis pipeline (see semgen_ray.pipeline).

With no arguments it runs every available stage on the built-in phantom cohort with the
``cpu-tiny`` preset, locally. ``--config`` takes a preset name or a YAML file; under
``ray job submit`` it joins the cluster instead of starting Ray.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from semgen_ray.pipeline import DEFAULT_STAGES, STAGES

    p = argparse.ArgumentParser(prog="python -m semgen_ray.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="preset (paper, cpu-tiny) or YAML file; default cpu-tiny")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override such as train.lr=3e-4 (repeatable)")
    p.add_argument("--run-dir", help="where artefacts go (overrides run_dir)")
    p.add_argument("--store", help="volume store to use (overrides store.uri)")
    p.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                   help=f"comma-separated stages to run, in order, from {','.join(STAGES)} "
                        f"(default {','.join(DEFAULT_STAGES)})")
    p.add_argument("--force", action="store_true", help="redo stages whose artefacts already exist")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semgen_ray.config import ConfigError, load_config, to_dict
    from semgen_ray.pipeline import StageError, resolve, run_pipeline

    overrides = list(args.set)
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    if args.store:
        overrides.append(f"store.uri={args.store}")
    try:
        config = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import fsspec
    import ray
    import yaml

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    owns_ray = not ray.is_initialized()
    try:
        results = run_pipeline(config, stages, force=args.force)
    except StageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if owns_ray and ray.is_initialized():
            ray.shutdown()

    with fsspec.open(resolve(config.run_dir, "config.yaml"), "w") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False)
    print(f"run directory: {config.run_dir}")
    for stage, summary in results.items():
        print(f"  {stage}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
