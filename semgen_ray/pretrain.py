"""``python -m semgen_ray.pretrain``: run the Semantic Genesis pipeline (see semgen_ray.stages.pipeline).

With no arguments it runs every available stage on the built-in phantom cohort with the
``cpu-tiny`` preset, locally. ``--config`` takes a preset name or a YAML file; under
``ray job submit`` it joins the cluster instead of starting Ray.
"""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    from semgen_ray import cli
    from semgen_ray.stages.pipeline import DEFAULT_STAGES, STAGES

    p = cli.parser("python -m semgen_ray.pretrain", __doc__.splitlines()[0], set_example="train.lr=3e-4",
                   run_dir="where artefacts go: a folder or a URI such as s3://bucket/run (overrides run_dir)",
                   force="redo stages whose artefacts already exist (their reuse records are deleted first)")
    p.add_argument("--store", help="your volume store: a path (relative to the current folder) or a URI "
                                   "(overrides store.uri); it must hold patients and is only read, never written")
    p.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                   help=f"comma-separated stages to run, in order, from {','.join(STAGES)} "
                        f"(default {','.join(DEFAULT_STAGES)})")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the stopped run in RUN_DIR with the config it was started with "
                        "(RUN_DIR/config.yaml; RUN_DIR a folder or a URI; --set still applies on top, "
                        "e.g. train.max_epochs=...)")
    return p


def main(argv: list[str] | None = None) -> int:
    from semgen_ray import cli

    args = build_parser().parse_args(argv)
    resume = [cli.CONTINUE]  # the Ctrl-C line: --resume once the run folder is known
    return cli.run(args, lambda: _pretrain(args, resume), interrupted=lambda: resume[0])


def _pretrain(args: argparse.Namespace, resume: list[str]) -> int:
    from semgen_ray import cli, runfolder
    from semgen_ray.stages.pipeline import DEFAULT_STAGES, prepare_run, run_stages

    overrides = []
    saved = None
    if args.resume:  # a local run folder or a URI (s3://…): the config is read from there
        saved = runfolder.join(args.resume, "config.yaml")
        try:
            runfolder.check_backend(saved)
            runfolder.check_readable(saved)
            found = runfolder.isfile(saved)
        except runfolder.RunFolderError as err:
            raise cli.CommandError(str(err), status=2) from err
        if not found:
            raise cli.CommandError(f"nothing to resume: {saved} does not exist (a run writes it when it starts)",
                                   status=2)
        if args.config or args.force:
            raise cli.CommandError("--resume takes the run's own config; it cannot be combined with --config "
                                   "or --force", status=2)
        overrides.append(f"run_dir={args.resume}")
    if args.store:  # a path on the command line is the user's, relative to the current folder,
        # not a run-local store inside the run directory (which the data stage may fill with phantoms)
        store = os.path.abspath(args.store) if "://" not in args.store else args.store
        overrides.append(f"store.uri={store}")
    if saved:
        with runfolder.local_copy(saved) as local:
            config = cli.load(args, overrides, path=local)
    else:
        config = cli.load(args, overrides)
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    # configuration errors (stages, URIs, packages, buckets, the user's store) before any write, then
    # the run folder with the config.yaml that --resume reads
    prepare_run(config, stages)
    resume[0] = (f"continue with `python -m semgen_ray.pretrain --resume {config.run_dir}"
                 + (f" --stages {','.join(stages)}`" if stages != DEFAULT_STAGES else "`")
                 + " (finished stages are reused, training resumes from its last checkpoint)")
    with cli.ray_session(config.ray):
        results = run_stages(config, stages, force=args.force)

    print(f"run directory: {config.run_dir}")
    for stage, summary in results.items():
        print(f"  {stage}: {summary}")
    if "stream" in results:
        print(f"stream check: {results['stream']['record']}")
    if "train" in results:
        export = results["train"]["export"]
        print(f"weights: {export}/model.safetensors (and model.pt)\nmodel card: {export}/model_card.json\n"
              f"report: {results['train']['report']} (loss_curves.png, samples.png, history.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
