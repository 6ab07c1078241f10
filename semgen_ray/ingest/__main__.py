"""``python -m semgen_ray.ingest SRC [SRC ...] --out STORE``: scans → volume store."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from semgen_ray import cli

    p = cli.parser("python -m semgen_ray.ingest",
                   "Read NIfTI, DICOM series, MetaImage and NRRD scans into a semgen_ray volume store "
                   "(one Ray task per source). Re-running skips unchanged sources.",
                   set_example="ingest.max_voxels=500000000",
                   force="read and store every source again, unchanged ones included",
                   config="YAML config or preset (its store/ingest/ray sections apply); default cpu-tiny")
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="a scan file, a folder (searched recursively; a folder of DICOM files is one "
                        "source and may hold several series) or a .csv list with columns path "
                        "[,patient_id,label,modality,split]")
    p.add_argument("--out", required=True, metavar="STORE", help="store path or fsspec URI")
    p.add_argument("--modality", choices=["CT", "MR", "OT"], help="override modality detection")
    p.add_argument("--spacing", nargs=3, type=float, metavar=("X", "Y", "Z"),
                   help="resample to this spacing in mm (default: keep native spacing)")
    p.add_argument("--uneven", choices=["warn", "resample", "error"],
                   help="DICOM series with uneven slice spacing (default warn)")
    p.add_argument("--id-from", choices=["name", "dicom"], help="patient ids from file names or PatientID")
    p.add_argument("--kind", choices=["3d", "2d"],
                   help="3d: volumes (default); 2d: radiographs, every DICOM, PNG, JPEG and 2D NIfTI file "
                        "one 2D image")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even if some sources failed")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from semgen_ray import cli

    args = build_parser().parse_args(argv)
    return cli.run(args, lambda: _ingest(args))


def _ingest(args: argparse.Namespace) -> int:
    from semgen_ray import cli

    overrides = [f"store.uri={args.out}"]
    for key, value in (("modality", args.modality), ("uneven_spacing", args.uneven),
                       ("id_from", args.id_from), ("kind", args.kind)):
        if value is not None:
            overrides.append(f"ingest.{key}={value}")
    if args.spacing:
        overrides.append(f"ingest.target_spacing=[{','.join(map(str, args.spacing))}]")
    if args.allow_failures:
        overrides.append("ingest.allow_failures=true")
    if args.num_cpus:
        overrides.append(f"ray.num_cpus={args.num_cpus}")
    config = cli.load(args, overrides)
    from semgen_ray.ingest import ingest

    with cli.ray_session(config.ray):
        report = ingest(args.sources, config.store, config.ingest, config.ray, progress=not args.no_progress,
                        force=args.force)
    print(report.summary())
    print(f"store: {report.store_uri} (manifest: {report.store_uri}/manifest.parquet)")
    return 0 if report.ok or config.ingest.allow_failures else 1


if __name__ == "__main__":
    sys.exit(main())
