"""``python -m semgen_ray.discover --store STORE --out RUN``: self-discovery of anatomical patterns.

Trains the auto-encoder, embeds every patient, finds each reference's neighbours and writes the
pattern manifest (``RUN/patterns.parquet``), montages and ``RUN/discovery.json``.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m semgen_ray.discover", description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="volume store path or fsspec URI")
    p.add_argument("--out", required=True, help="output folder or URI (s3://…) for the discovery artefacts")
    p.add_argument("--config", help="preset (paper, cpu-tiny, cpu-small) or YAML file; default cpu-tiny")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override such as discovery.num_classes=50 (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="redo every step, even those whose artefacts in --out match this config")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from semgen_ray.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.set)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import ray

    from semgen_ray.discovery.run import DiscoveryError, run_discovery
    from semgen_ray.runfolder import RunFolderError
    from semgen_ray.gpus import GpuUnavailableError
    from semgen_ray.runtime import init_ray

    owns_ray = not ray.is_initialized()
    init_ray(config.ray)
    try:
        record = run_discovery(config, args.store, args.out, force=args.force)
    except (DiscoveryError, GpuUnavailableError, RunFolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if owns_ray:
            ray.shutdown()
    print(f"pattern manifest: {record['manifest']} ({record['cubes']} cubes, {len(record['classes'])} classes)")
    print(f"artefacts: {args.out} (discovery.json, montages/, neighbour_distances.png, embeddings.parquet)")
    if record.get("habitus_purity"):
        print(f"neighbour purity (phantom body types): {record['habitus_purity']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
