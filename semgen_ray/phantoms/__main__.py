"""``python -m semgen_ray.phantoms --n N --out STORE``: the built-in synthetic chest-CT cohort."""

from __future__ import annotations

import argparse
import sys


#: the command's own defaults, under ``--config`` / ``--set`` (without ``--config`` the other sections
#: are the schema's defaults, not a preset's)
DEFAULTS = {"phantoms": {"n": 16, "seed": 0, "shape": [256, 256, 128]}}


def build_parser() -> argparse.ArgumentParser:
    from semgen_ray import cli

    p = cli.parser("python -m semgen_ray.phantoms",
                   "Generate N synthetic chest-CT patients (with lung-nodule labels) into a volume "
                   "store. Deterministic: patient i depends only on (--seed, i, --shape).",
                   set_example="phantoms.n=8", force="generate and store every patient again",
                   config="YAML config or preset (its phantoms/store/ingest/ray sections apply); "
                          "default: 16 patients of 256x256x128, seed 0")
    p.add_argument("--n", type=int, help="number of patients (default 16)")
    p.add_argument("--out", required=True, metavar="STORE", help="store path or fsspec URI")
    p.add_argument("--seed", type=int, help="cohort seed (default 0)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                   help="voxels per patient (default 256 256 128)")
    p.add_argument("--radiographs", action="store_true",
                   help="store each patient's PA chest radiograph (a 2D image xray_<i>, nodule ids as its "
                        "label) instead of its CT")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from semgen_ray import cli

    args = build_parser().parse_args(argv)
    return cli.run(args, lambda: _phantoms(args))


def _phantoms(args: argparse.Namespace) -> int:
    from semgen_ray import cli

    overrides = [f"store.uri={args.out}"]
    for key, value in (("n", args.n), ("seed", args.seed), ("shape", args.shape)):
        if value is not None:
            overrides.append(f"phantoms.{key}={list(value) if key == 'shape' else value}")
    if args.num_cpus:
        overrides.append(f"ray.num_cpus={args.num_cpus}")
    config = cli.load(args, overrides, path=args.config or DEFAULTS)
    from semgen_ray.phantoms.cohort import write_cohort

    with cli.ray_session(config.ray):
        report = write_cohort(config.phantoms, config.store, config.ingest, ray_config=config.ray,
                              progress=not args.no_progress, force=args.force, radiographs=args.radiographs)
    print(report.summary())
    print(f"store: {report.store_uri}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
