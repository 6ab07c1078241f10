"""``python -m semgen_ray.phantoms --n N --out STORE``: the built-in synthetic chest-CT cohort."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m semgen_ray.phantoms",
        description="Generate N synthetic chest-CT patients (with lung-nodule labels) into a volume "
                    "store. Deterministic: patient i depends only on (--seed, i, --shape).",
    )
    p.add_argument("--n", type=int, default=16, help="number of patients (default 16)")
    p.add_argument("--out", required=True, metavar="STORE", help="store path or fsspec URI")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    p.add_argument("--shape", type=int, nargs=3, default=(256, 256, 128), metavar=("X", "Y", "Z"),
                   help="voxels per patient (default 256 256 128)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semgen_ray.config import ConfigError, PhantomConfig, RayConfig, StoreConfig

    try:
        phantoms = PhantomConfig(n=args.n, seed=args.seed, shape=tuple(args.shape))
        ray_config = RayConfig(num_cpus=args.num_cpus)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from semgen_ray.phantoms.cohort import write_cohort

    report = write_cohort(phantoms, StoreConfig(uri=args.out), ray_config=ray_config,
                          progress=not args.no_progress)
    print(report.summary())
    print(f"store: {report.store_uri}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
