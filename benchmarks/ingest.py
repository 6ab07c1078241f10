"""Ingest throughput and store compression (issue: foundation; README "Benchmarks").

Writes N phantom patients as NIfTI (.nii.gz) and MetaImage (.mha) files (and takes real DICOM
series from ``--dicom``, by default ``$SEMGEN_REAL_DATA/lidc_slabs``, when present), then measures
``python -m semgen_ray.ingest``'s library path (one Ray task per file) into a fresh store:
volumes/s and MB/s of int16 voxels. Alongside, the reference's data preparation as users had to
write it (docs/method.md §1.1: SimpleITK read → transpose → clip → float64 [0, 1] → ``np.save``), timed
on the same files, and the bytes on disk of each representation.

    ./venv-run python benchmarks/ingest.py --n 8 --shape 256 256 128
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def reference_prep(paths: list[Path], out: Path) -> float:
    """The reference pipeline's conversion: whole float64 [0, 1] arrays saved with np.save."""
    import SimpleITK as sitk

    out.mkdir()
    t0 = time.perf_counter()
    for p in paths:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(p))).transpose(2, 1, 0)
        a = (np.clip(a, -1000, 1000).astype(np.float64) + 1000.0) / 2000.0
        np.save(out / (p.name.split(".")[0] + ".npy"), a)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--shape", type=int, nargs=3, default=(256, 256, 128))
    ap.add_argument("--num-cpus", type=int, default=2)
    real = os.environ.get("SEMGEN_REAL_DATA")
    ap.add_argument("--dicom", default=str(Path(real) / "lidc_slabs") if real else "",
                    help="a folder of DICOM series to time too (default: $SEMGEN_REAL_DATA/lidc_slabs,"
                         " if set)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ingest.json"))
    args = ap.parse_args(argv)

    import SimpleITK as sitk

    from semgen_ray.config import IngestConfig, RayConfig, StoreConfig
    from semgen_ray.ingest import ingest
    from semgen_ray.phantoms import generate_patient
    from semgen_ray.runtime import init_ray

    tmp = Path(tempfile.mkdtemp(prefix="sgr_bench_ingest_"))
    try:
        files = {"nifti": [], "metaimage": []}
        raw_bytes = 0
        for i in range(args.n):
            vol, _, _ = generate_patient(i, cohort_seed=0, shape=tuple(args.shape))
            img = sitk.GetImageFromArray(np.ascontiguousarray(vol.array.transpose(2, 1, 0)))
            img.SetSpacing(vol.spacing)
            raw_bytes += vol.array.astype(np.int16).nbytes
            for fmt, ext in (("nifti", ".nii.gz"), ("metaimage", ".mha")):
                d = tmp / fmt
                d.mkdir(exist_ok=True)
                path = d / f"case{i:03d}{ext}"
                sitk.WriteImage(img, str(path), useCompression=(fmt == "nifti"))
                files[fmt].append(path)
        init_ray(RayConfig(num_cpus=args.num_cpus))
        inputs = {fmt: (tmp / fmt, args.n, raw_bytes) for fmt in files}
        if args.dicom and Path(args.dicom).is_dir():
            dicom_raw = sum(512 * 512 * 2 for _ in Path(args.dicom).rglob("*.dcm"))
            inputs["dicom (LIDC slabs)"] = (Path(args.dicom), 3, dicom_raw)
        rows = []
        for fmt, (src, count, nbytes) in inputs.items():
            store = tmp / f"{fmt.split()[0]}.zarr"
            t0 = time.perf_counter()
            report = ingest([src], StoreConfig(uri=str(store)), IngestConfig(), progress=False)
            dt = time.perf_counter() - t0
            assert report.ok and len(report.written) == count, report.summary()
            t1 = time.perf_counter()
            again = ingest([src], StoreConfig(uri=str(store)), IngestConfig(), progress=False)
            rerun = time.perf_counter() - t1
            assert len(again.skipped) == count
            rows.append({
                "format": fmt, "volumes": count, "seconds": round(dt, 2),
                "volumes_per_s": round(count / dt, 2), "MB_per_s": round(nbytes / 2**20 / dt, 1),
                "rerun_all_skipped_seconds": round(rerun, 2), "raw_int16_bytes": nbytes,
                "source_bytes": dir_bytes(src), "store_bytes": dir_bytes(store),
            })
        ref_dt = reference_prep(files["metaimage"], tmp / "reference_npy")
        reference = {"seconds": round(ref_dt, 2), "volumes_per_s": round(args.n / ref_dt, 2),
                     "bytes": dir_bytes(tmp / "reference_npy")}
        store_bytes = rows[0]["store_bytes"]
        result = {
            "benchmark": "ingest", "machine": describe(), "n": args.n, "shape": list(args.shape),
            "num_cpus": args.num_cpus, "raw_int16_bytes": raw_bytes, "ingest": rows,
            "reference_float64_npy": reference,
            "compression_ratio_vs_int16": round(raw_bytes / store_bytes, 2),
            "size_ratio_float64_npy_vs_store": round(reference["bytes"] / store_bytes, 1),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        import ray

        ray.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print("| source | volumes/s | MB/s (int16) | re-run (all skipped) | store / raw int16 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['volumes_per_s']} | {r['MB_per_s']} | {r['rerun_all_skipped_seconds']} s "
              f"| 1 : {r['raw_int16_bytes'] / r['store_bytes']:.2f} |")
    print(f"| reference prep (float64 .npy) | {reference['volumes_per_s']} | - | - | "
          f"{reference['bytes'] / raw_bytes:.1f} × raw int16 |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
