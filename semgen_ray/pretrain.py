"""``python -m semgen_ray.pretrain``: run the Semantic Genesis pipeline (see semgen_ray.pipeline).

With no arguments it runs every available stage on the built-in phantom cohort with the
``cpu-tiny`` preset, locally. ``--config`` takes a preset name or a YAML file; under
``ray job submit`` it joins the cluster instead of starting Ray.
"""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    from semgen_ray.pipeline import DEFAULT_STAGES, STAGES

    p = argparse.ArgumentParser(prog="python -m semgen_ray.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="preset (paper, cpu-tiny, cpu-small) or YAML file; default cpu-tiny")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override such as train.lr=3e-4 (repeatable)")
    p.add_argument("--run-dir", help="where artefacts go: a folder or a URI such as s3://bucket/run "
                                     "(overrides run_dir)")
    p.add_argument("--store", help="your volume store: a path (relative to the current folder) or a URI "
                                   "(overrides store.uri); it must hold patients and is only read, never written")
    p.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                   help=f"comma-separated stages to run, in order, from {','.join(STAGES)} "
                        f"(default {','.join(DEFAULT_STAGES)})")
    p.add_argument("--force", action="store_true",
                   help="redo stages whose artefacts already exist (their reuse records are deleted first)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the stopped run in RUN_DIR with the config it was started with "
                        "(RUN_DIR/config.yaml; RUN_DIR a folder or a URI; --set still applies on top, "
                        "e.g. train.max_epochs=...)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semgen_ray import runfolder
    from semgen_ray.config import ConfigError, load_config, to_dict
    from semgen_ray.pipeline import StageError, preflight, resolve, run_pipeline

    overrides = list(args.set)
    saved = None
    if args.resume:  # a local run folder or a URI (s3://…): the config is read from there
        saved = runfolder.join(args.resume, "config.yaml")
        try:
            runfolder.check_backend(saved)
            runfolder.check_readable(saved)
            found = runfolder.isfile(saved)
        except runfolder.RunFolderError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if not found:
            print(f"error: nothing to resume: {saved} does not exist (a run writes it when it starts)",
                  file=sys.stderr)
            return 2
        if args.config or args.force:
            print("error: --resume takes the run's own config; it cannot be combined with --config or --force",
                  file=sys.stderr)
            return 2
        overrides.append(f"run_dir={args.resume}")
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    if args.store:  # a path on the command line is the user's, relative to the current folder,
        # not a run-local store inside the run directory (which the data stage may fill with phantoms)
        store = os.path.abspath(args.store) if "://" not in args.store else args.store
        overrides.append(f"store.uri={store}")
    try:
        if saved:
            with runfolder.local_copy(saved) as local:
                config = load_config(local, overrides)
        else:
            config = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import ray
    import yaml

    from semgen_ray.gpus import GpuUnavailableError

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    try:  # configuration errors (stages, URIs, packages, buckets, the user's store) before any write
        preflight(config, stages)
        runfolder.prepare(config.run_dir)  # a local folder is created; a URI's bucket was checked
    except (StageError, runfolder.RunFolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    # what --resume reads (URIs and options only: credentials never enter a config)
    runfolder.write_text(resolve(config.run_dir, "config.yaml"), yaml.safe_dump(to_dict(config), sort_keys=False))
    owns_ray = not ray.is_initialized()
    try:
        results = run_pipeline(config, stages, force=args.force)
    except (StageError, GpuUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if owns_ray and ray.is_initialized():
            ray.shutdown()

    print(f"run directory: {config.run_dir}")
    for stage, summary in results.items():
        print(f"  {stage}: {summary}")
    if "train" in results:
        export = results["train"]["export"]
        print(f"weights: {export}/model.safetensors (and model.pt)\nmodel card: {export}/model_card.json\n"
              f"report: {results['train']['report']} (loss_curves.png, samples.png, history.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
