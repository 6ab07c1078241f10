"""Self-discovery's premise on 2D images: do a 2D auto-encoder's embeddings of the phantom radiographs
find similar patients? (issue 18; README "Benchmarks").

Writes the phantom cohort's PA radiographs into a store (``python -m semgen_ray.phantoms
--radiographs``), trains the 2D auto-encoder with Ray Train on the train split (``train_autoencoder``,
``spatial_dims=2``), embeds every film (``embed_patients``) and measures, with every train film as a
reference, how often its K nearest neighbours share its body-type cluster, against chance (the
phantoms come from four clusters). The same is measured for raw pixels (the films resized to the
auto-encoder's input and flattened): the embedding should find at least what the pixels find.

    ./venv-run python benchmarks/discovery_2d.py                 # 48 films, 30 epochs (~5 min on 2 cores)
    ./venv-run python benchmarks/discovery_2d.py --n 16 --epochs 2   # quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="phantom patients (films)")
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 128, 64], help="phantom CT grid the films project")
    ap.add_argument("--size", type=int, nargs=2, default=[64, 128], help="auto-encoder input (rows, columns)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--k", type=int, default=5, help="neighbours per reference")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="folder for the store and run (default: a temporary folder)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "discovery_2d.json"))
    args = ap.parse_args(argv)

    from semgen_ray.config.schema import IngestConfig, PhantomConfig, RayConfig, StoreConfig
    from semgen_ray.data.volumes import read_volumes
    from semgen_ray.discovery.autoencoder_training import train_autoencoder
    from semgen_ray.discovery.embedding import embed_patients
    from semgen_ray.phantoms.cohort import write_cohort
    from semgen_ray.runtime import init_ray
    from semgen_ray.stages.discovery import all_reference_purity
    from semgen_ray.store import open_store

    work = Path(args.work or tempfile.mkdtemp(prefix="semgen_disc2d_"))
    uri = str(work / "films.zarr")
    ray_config = RayConfig(num_cpus=2)
    init_ray(ray_config)
    t0 = time.perf_counter()
    write_cohort(PhantomConfig(n=args.n, seed=args.seed, shape=tuple(args.shape)), StoreConfig(uri=uri),
                 IngestConfig(), ray_config, progress=False, radiographs=True)
    cohort_s = time.perf_counter() - t0
    store = open_store(uri)
    split = {r["patient_id"]: r["split"] for r in store.manifest_rows()}
    train = [p for p in store.image_ids if split[p] == "train"]
    val = [p for p in store.image_ids if split[p] == "val"]
    size = tuple(args.size)
    t0 = time.perf_counter()
    fit = train_autoencoder(uri, train, val, {"width": args.width, "spatial_dims": 2}, size, batch_size=4,
                            max_epochs=args.epochs, patience=args.epochs, run_dir=work / "run", seed=args.seed,
                            ray_config=ray_config)
    ae_s = time.perf_counter() - t0
    ids, emb = embed_patients(uri, fit["model_dir"], patient_ids=train, ray_config=ray_config)
    pixels = {r["patient_id"]: r["volume"].reshape(-1) for r in read_volumes(uri, size, train).take_all()}
    raw = np.stack([pixels[p] for p in ids])
    result = {
        "benchmark": "discovery_2d", "machine": describe(),
        "params": {"n": args.n, "shape": args.shape, "size": list(size), "epochs": args.epochs,
                   "width": args.width, "k": args.k, "seed": args.seed, "train_films": len(train),
                   "val_films": len(val)},
        "cohort_seconds": round(cohort_s, 1), "autoencoder_seconds": round(ae_s, 1),
        "autoencoder": {"epochs": fit["epochs"], "best_epoch": fit["best_epoch"],
                        "best_val_loss": fit["best_val_loss"]},
        "embedding_dim": int(emb.shape[1]),
        "purity_embedding": all_reference_purity(store, ids, emb, args.k + 1),
        "purity_raw_pixels": all_reference_purity(store, ids, raw, args.k + 1),
        "command": "python benchmarks/discovery_2d.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("autoencoder", "purity_embedding", "purity_raw_pixels")}, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
