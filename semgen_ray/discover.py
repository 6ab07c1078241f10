"""``python -m semgen_ray.discover --store STORE --out RUN``: self-discovery of anatomical patterns.

Trains the auto-encoder, embeds every patient, finds each reference's neighbours and writes the
pattern manifest (``RUN/patterns.parquet``), montages and ``RUN/discovery.json``.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from semgen_ray import cli

    p = cli.parser("python -m semgen_ray.discover", __doc__.splitlines()[0],
                   set_example="discovery.num_classes=50",
                   force="redo every step, even those whose artefacts in --out match this config")
    p.add_argument("--store", required=True, help="volume store path or fsspec URI")
    p.add_argument("--out", "--run-dir", dest="out", required=True,
                   help="output folder or URI (s3://…) for the discovery artefacts")
    return p


def main(argv: list[str] | None = None) -> int:
    from semgen_ray import cli

    args = build_parser().parse_args(argv)
    return cli.run(args, lambda: _discover(args))


def _discover(args: argparse.Namespace) -> int:
    from semgen_ray import cli

    config = cli.load(args)
    from semgen_ray.stages.discovery import run_discovery

    with cli.ray_session(config.ray):
        record = run_discovery(config, args.store, args.out, force=args.force)
    print(f"pattern manifest: {record['manifest']} ({record['cubes']} cubes, {len(record['classes'])} classes)")
    print(f"artefacts: {args.out} (discovery.json, montages/, neighbour_distances.png, embeddings.parquet)")
    if record.get("habitus_purity"):
        print(f"neighbour purity (phantom body types): {record['habitus_purity']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
