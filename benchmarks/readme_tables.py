"""README figures from the results files: rewrite the README's generated sections from ``benchmarks/results``.

Every benchmark table of README.md sits between two markers::

    <!-- generated: NAME -->
    ...
    <!-- /generated: NAME -->

and is written by :data:`SECTIONS` ``[NAME]`` from the JSON (and CSV) files in ``benchmarks/results``.
After a benchmark run, regenerate; ``--check`` changes nothing and exits 1 (naming each section) when
a section of the README differs from what would be written, when a marker has no writer, or when a
writer has no marker (``tests/test_readme_figures.py`` runs the check)::

    ./venv-run python benchmarks/readme_tables.py            # rewrite README.md's generated sections
    ./venv-run python benchmarks/readme_tables.py --check    # exit 1 if any section is stale

Only the standard library is used, so the check runs anywhere.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"

MARKER = re.compile(r"(<!-- generated: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /generated: (?P=name) -->)",
                    re.S)
OPEN = re.compile(r"<!-- generated: ([\w.-]+) -->")


class ResultsError(RuntimeError):
    """A results file is missing or lacks a field a README section needs."""


def load(name: str, results: Path) -> dict:
    path = results / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ResultsError(f"{path} is missing") from err


def rows_csv(name: str, results: Path) -> list[dict]:
    with open(results / name, newline="") as f:
        return list(csv.DictReader(f))


def fmt(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures, without exponent, thousands with commas."""
    if x == 0:
        return "0"
    from math import floor, log10

    decimals = max(0, digits - 1 - floor(log10(abs(x))))
    s = f"{x:,.{decimals}f}"
    return s


def rng(values, digits: int = 3) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo, digits) if fmt(lo, digits) == fmt(hi, digits) else f"{fmt(lo, digits)}-{fmt(hi, digits)}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


def mmss(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


# ---------------------------------------------------------------------------------------------- sections


def ingest(results: Path) -> str:
    d = load("ingest.json", results)
    by = {r["format"]: r for r in d["ingest"]}
    names = {"metaimage": "MetaImage `.mha`", "nifti": "NIfTI `.nii.gz`"}
    out = []
    for key in ("metaimage", "nifti"):
        r = by[key]
        ratio = f"1 : {r['raw_int16_bytes'] / r['store_bytes']:.2f}"
        if key == "nifti":
            ratio += f" (the `.nii.gz` files are 1 : {r['raw_int16_bytes'] / r['source_bytes']:.2f})"
        out.append([names[key], f"{r['volumes_per_s']:.2f}", fmt(r["MB_per_s"]), f"{r['rerun_all_skipped_seconds']:.2f} s",
                    ratio])
    dcm = next(r for k, r in by.items() if k.startswith("dicom"))
    out.append([f"DICOM ({dcm['volumes']} real LIDC slabs)", f"{dcm['volumes_per_s']:.2f}", fmt(dcm["MB_per_s"]),
                f"{dcm['rerun_all_skipped_seconds']:.2f} s", f"1 : {dcm['raw_int16_bytes'] / dcm['store_bytes']:.2f}"])
    ref = d["reference_float64_npy"]
    out.append(["*reference data prep* (SimpleITK read → float64 [0, 1] → `np.save`, one process)",
                f"{ref['volumes_per_s']:.2f}", "–", "–",
                f"{ref['bytes'] / d['raw_int16_bytes']:.0f} : 1 ({d['size_ratio_float64_npy_vs_store']}× our store)"])
    return ("`benchmarks/results/ingest.json`:\n\n"
            + table(["source", "volumes/s", "MB/s (int16 voxels)", "re-run, all unchanged", "store size vs raw int16"],
                    out))


CROP_ROWS = [
    ("ray-datasource", "`read_crops` through Ray Data to the driver (Datasource, 2 read tasks)"),
    ("ray-items", "same, `from_items` + `map_batches` construction"),
    ("store-loop", "same per-patient crop-on-read in one process, no Ray"),
    ("npy-mmap", "**baseline**: the same crops cut from uncompressed `np.load(mmap_mode=\"r\")` arrays"),
    ("zarr-per-crop", "naive: one Zarr read per crop"),
]


def crop_read(results: Path) -> str:
    d = load("crop_read.json", results)
    by = {r["name"]: r for r in d["rows"]}

    def cell(name: str) -> str:
        r = by.get(name)
        if r is None:
            return "–"
        return f"{fmt(r['cubes_per_s_median'])} ({rng(r['cubes_per_s_passes'])})"

    rows = [[label, cell(f"{key}-native"), cell(f"{key}-rescaled")] for key, label in CROP_ROWS]
    med = {k: r["cubes_per_s_median"] for k, r in by.items()}
    resize = d["resize"]["crops32_72x72x40_to_64x64x32_ms"]
    text = ("`benchmarks/results/crop_read.json`; cubes/s, median of the passes (range over passes):\n\n"
            + table(["pipeline", "native cubes/s", "rescaled cubes/s"], rows) + "\n")
    text += (f"Cutting crops from the compressed store (one process) runs at "
             f"{med['store-loop-native'] / med['npy-mmap-native']:.2f}× the speed of an uncompressed memory-mapped "
             f"array for native crops and {med['store-loop-rescaled'] / med['npy-mmap-rescaled']:.2f}× for rescaled "
             f"ones (where the resize dominates), while the store is {d['store']['compression_ratio']}× smaller than "
             f"raw int16. Reading each patient's region once is "
             f"{med['ray-datasource-native'] / med['zarr-per-crop-native']:.1f}× (through Ray Data) to "
             f"{med['store-loop-native'] / med['zarr-per-crop-native']:.1f}× (one process) faster than one read per "
             f"crop. Resize (torch trilinear) of 32 crops of 72×72×40 → 64×64×32: {resize['torch_trilinear']:.0f} ms "
             f"against {resize['scipy_zoom_order1']:.0f} ms for `scipy.ndimage.zoom`.\n")
    return text


def phantoms(results: Path) -> str:
    d = load("phantoms.json", results)
    label = {(128, 128, 64): "", (256, 256, 128): " (default)", (512, 512, 192): " (`paper` preset)"}
    rows = sorted(d["rows"], key=lambda r: r["shape"][0] * r["shape"][1] * r["shape"][2])
    return ("`benchmarks/results/phantoms.json`:\n\n"
            + table(["shape", "seconds per patient (median)"],
                    [["×".join(map(str, r["shape"])) + label.get(tuple(r["shape"]), ""), f"{r['seconds_median']:.2f}"]
                     for r in rows]))


def corruptions(results: Path, name: str = "corruptions.json") -> str:
    d = load(name, results)
    by = {(r["preset"], r["implementation"]): r for r in d["rows"]}
    target = float(d.get("target_speedup", 10))
    official = d.get("reference_code_cubes_per_cpu_s", {})
    rows, verdict = [], []
    for preset in ("sg", "mg", "sg_keras"):
        b, n, t = by[(preset, "baseline")], by[(preset, "numpy")], by[(preset, "torch")]
        rows.append([f"`{preset}`", fmt(b["cubes_per_cpu_s"]), fmt(official[preset]) if preset in official else "-",
                     fmt(n["cubes_per_cpu_s"]),
                     f"{n['speedup_vs_baseline']:.1f} ({n['speedup_min']:.1f}-{n['speedup_max']:.1f})",
                     f"{n['speedup_vs_reference_code']:.1f}" if "speedup_vs_reference_code" in n else "-",
                     fmt(t["cubes_per_cpu_s"]),
                     f"{t['speedup_vs_baseline']:.1f} ({t['speedup_min']:.1f}-{t['speedup_max']:.1f})"])
        verdict.append((preset, n["speedup_vs_baseline"] >= target, n["speedup_min"] >= target, n))
    met = [p for p, median_ok, _, _ in verdict if median_ok]
    missed = [(p, n) for p, median_ok, _, n in verdict if not median_ok]
    dips = [p for p, median_ok, min_ok, _ in verdict if median_ok and not min_ok]
    load_start = d["machine"].get("loadavg_at_start", [None])[0]
    load_end = (d.get("loadavg_at_end") or [None])[0]
    loads = "" if load_start is None else f"; 1-minute load average {load_start:.1f} at the start" + (
        "" if load_end is None else f", {load_end:.1f} at the end")
    unit = "images" if len(d["cube"]) == 2 else "cubes"
    text = (f"`benchmarks/results/{name}` ({d['rounds']} rounds; {unit} of {'×'.join(map(str, d['cube']))} per "
            f"CPU-second{loads}):\n\n"
            + table(["preset", "baseline", "official code", "numpy back end",
                     "× baseline (median, range over rounds)", "× official code", "torch back end (CPU)",
                     "× baseline (median, range)"], rows) + "\n")
    text += f"The numpy back end meets the {target:.0f}× target at the median for " + (
        ", ".join(f"`{p}`" for p in met) if met else "no preset")
    if missed:
        text += "; it misses it for " + ", ".join(
            f"`{p}` ({n['speedup_vs_baseline']:.1f}×: {target / n['speedup_vs_baseline']:.1f}× short)" for p, n in missed)
    text += "."
    if dips:
        text += f" Single rounds dip below {target:.0f}× for " + ", ".join(f"`{p}`" for p in dips) + "."
    if official:
        text += (" The official code's figures (" + ", ".join(f"`{p}` {v}" for p, v in official.items())
                 + " cubes per CPU-second) were measured side by side with this project in another run on this "
                 "machine class; the baseline repeats the official code's steps")
        text += _baseline_steps(d, " (CPU ms per cube: ", ")")
        ratios = [f"`{p}` {by[(p, 'baseline')]['cubes_per_cpu_s'] / v:.2f}×" for p, v in official.items()
                  if (p, "baseline") in by]
        text += "; baseline ÷ official code: " + ", ".join(ratios) + "."
    else:
        text += _baseline_steps(d, f" The baseline's CPU ms per {unit[:-1]}: ", ".")
    return text + "\n"


def _baseline_steps(d: dict, before: str, after: str) -> str:
    steps = d.get("baseline_step_ms", {})
    label = {"elastic_deformation": "elastic deformation", "local_pixel_shuffle_5": "shuffle of 5 blocks",
             "local_pixel_shuffle_10000": "shuffle of 10,000 blocks", "nonlinear_intensity": "Bézier map",
             "in_painting_1": "one hole", "out_painting_1": "one out-painting window"}
    return (before + ", ".join(f"{label.get(k, k)} {v:.3g}" for k, v in steps.items()) + after) if steps else ""


def corruptions_2d(results: Path) -> str:
    return corruptions(results, "corruptions_2d.json")


def _corruption_breakdown(results: Path, name: str, unit: str) -> str:
    """Where the numpy corruption's CPU time goes, per operation (``benchmarks/corruption_breakdown.py``)."""
    d = load(name, results)
    parts = ("sampling", "elastic_deformation", "local_pixel_shuffle", "nonlinear_intensity", "in_painting",
             "out_painting", "flip")
    rows = []
    for preset, v in d["presets"].items():
        ms, whole = v["ms_per_cube"], v["ms_per_cube"]["whole"]
        rows.append([f"`{preset}`", f"{whole:.2f}"]
                    + [f"{ms[k]:.2f} ({100 * ms[k] / whole:.0f} %)" + (f", {100 * v['share'][k]:.0f} % drawn"
                                                                         if k in v["share"] else "") for k in parts])
    return (f"`benchmarks/results/{name}` (`{d['command'].strip()}`: CPU ms per {unit} of a "
            f"batch of {d['batch']}, one thread, fastest of {d['repeat']} calls, median of {d['rounds']} rounds; "
            f"\"drawn\": the share of the {unit.split()[-1]}s an operation was drawn for):\n\n"
            + table(["preset", "whole", *(k.replace("_", " ") for k in parts)], rows))


def corruption_breakdown(results: Path) -> str:
    return _corruption_breakdown(results, "corruption_breakdown.json", "64×64×32 cube")


def corruption_breakdown_2d(results: Path) -> str:
    return _corruption_breakdown(results, "corruption_breakdown_2d.json", "224×224 image")


def unet(results: Path) -> str:
    d = load("unet.json", results)
    rows = []
    name = {"cpu-tiny": "`cpu-tiny`", "paper": "`paper`"}
    for r in d["rows"]:
        rows.append([f"{name[r['preset']]} (width {r['width']}, C = {r['classes']})", f"{r['params_m']:.2f} M",
                     "×".join(map(str, r["cube"])), r["batch"], r["dtype"], fmt(r["cubes_per_s"]), fmt(r["gflop_per_s"])])
    paper = next(r for r in d["rows"] if r["preset"] == "paper")
    return (f"`benchmarks/results/unet.json` ({d['torch_threads']} torch threads):\n\n"
            + table(["preset", "params", "cube", "batch", "dtype", "cubes/s", "GFLOP/s"], rows)
            + f"\nA `paper` training step costs {paper['gflop_per_step'] / paper['batch']:.0f} GFLOP per cube.\n")


def unet_avx2(results: Path) -> str:
    """The same step on a CPU without native bf16 kernels: why ``train.precision: auto`` exists."""
    d = load("unet_avx2.json", results)
    by = {r["dtype"]: r for r in d["rows"] if r["preset"] == "cpu-tiny"}
    fp32, bf16 = by["fp32"], by["bf16"]
    m = d["machine"]
    return (f"On a CPU without native bf16 kernels ({m['cpu']}, torch's kernels at "
            f"{m.get('cpu_capability', '?')}; `benchmarks/results/unet_avx2.json`, {d['torch_threads']} torch "
            f"thread) the `cpu-tiny` step runs at {fmt(fp32['cubes_per_s'])} cubes/s in fp32 and "
            f"{fmt(bf16['cubes_per_s'])} in bf16: bf16 is {fp32['cubes_per_s'] / bf16['cubes_per_s']:.0f}× slower, "
            "its convolutions going through torch's reference kernels. `train.precision: auto` (the default) "
            "therefore trains in bf16 only where every worker's device computes it natively.\n")


def unet_layout(results: Path) -> str:
    """The same step with channels-last weights and cubes: why fine-tuning uses that order on CPU."""
    d = load("unet_layout.json", results)
    by = {(r["preset"], r["layout"]): r for r in d["rows"]}
    rows = [[f"`{p}` (width {r['width']})", r["dtype"], fmt(by[(p, "contiguous")]["cubes_per_s"]), fmt(r["cubes_per_s"]),
             f"{r['cubes_per_s'] / by[(p, 'contiguous')]['cubes_per_s']:.2f}×"]
            for (p, layout), r in by.items() if layout == "channels_last"]
    m = d["machine"]
    return (f"`benchmarks/results/unet_layout.json` ({m['cpu']}, {m.get('cpu_capability', '?')}, "
            f"{d['torch_threads']} torch thread, one run):\n\n"
            + table(["preset", "dtype", "cubes/s, N C X Y Z", "cubes/s, N X Y Z C (channels last)", "ratio"], rows))


def _step_overhead(results: Path, name: str, precision: str) -> str:
    """A step-overhead record (``train_step.py``, the real loop): only a run on an idle machine counts."""
    path = results / name
    d = json.loads(path.read_text()) if path.exists() else {}
    cmd = "`./venv-run python benchmarks/train_step.py" + ("" if precision == "bf16" else
                                                          f" --precision {precision} --out benchmarks/results/{name}") + "`"
    if d.get("method") != "real_loop":
        what = ("is missing" if not d else
                "holds an earlier measurement (a fixed in-memory batch, not the real loop, made on a busy machine)")
        return (f"No step-overhead figure is recorded yet: `benchmarks/results/{name}` {what}. "
                f"Run {cmd} on an idle machine to record one.\n")
    if d.get("machine_busy"):
        return (f"No step-overhead figure: the only record (`benchmarks/results/{name}`) was made on a busy "
                f"machine ({d.get('busy_reason', 'load check failed')}) and is not quoted. Run {cmd} on an idle "
                f"machine.\n")
    bf16 = precision == "bf16"
    rows = []
    for r in d["summary"]:
        rate = f"{r['cubes_per_s_median']:.1f} ({rng(r['cubes_per_s_rounds'], 2)})"
        if r["config"] == "bare":
            rows.append([r["label"], rate, "–", *(["–"] if bf16 else []), "–"])
        else:
            rows.append([r["label"], rate,
                         f"{pct(r['overhead_median'])} ({pct(r['overhead_min'])} to {pct(r['overhead_max'])})",
                         *([pct(r["overhead_vs_bf16_only_median"])] if bf16 else []),
                         f"{r['data_wait_fraction_median'] * 100:.0f} %"])
    a, m = d["args"], d.get("machine", {})
    target = d["overhead_target"]
    zero1 = next((r for r in d["summary"] if r["config"] == "ray+ds" and r.get("zero_stage") == 1), None)
    head = ["loop", "cubes/s", "overhead vs bare (bf16 + fp32 masters)", "vs bare bf16 only"] if bf16 else \
        ["loop", "cubes/s", f"overhead vs bare ({precision})"]
    text = (f"`benchmarks/results/{name}` ({precision}; {m.get('cpu', '?')}, native bf16 "
            f"{'yes' if m.get('native_bf16') else 'no' if 'native_bf16' in m else 'not recorded'}): "
            f"{d['rounds']} rounds, each the bare loops and the real loop "
            f"back to back; {a['epochs']} epochs of {d['train_cubes']} cubes per run, the first not counted; "
            f"{d['torch_threads']} torch thread(s) per loop; a run's figure is its median epoch, the table gives "
            f"the median (range) over rounds; overhead = bare cubes/s ÷ loop cubes/s − 1 within each round:\n\n"
            + table([*head, "data wait"], rows))
    if zero1 is not None:
        ok = zero1["overhead_median"] <= target
        text += (f"\nIn {precision}, ZeRO-1 (the default) {'meets' if ok else 'misses'} the ≤ {target * 100:.0f} % "
                 f"overhead target: {pct(zero1['overhead_median'])} at the median of {d['rounds']} rounds against "
                 + ("the bare loop with fp32 master weights (the same optimizer work), "
                    f"{pct(zero1['overhead_vs_bf16_only_median'])} against the bare bf16-only loop.\n" if bf16 else
                    f"the bare {precision} loop.\n"))
    return text


def train_step(results: Path) -> str:
    return _step_overhead(results, "train_step.json", "bf16")


def train_step_fp32(results: Path) -> str:
    return _step_overhead(results, "train_step_fp32.json", "fp32")


def train_data(results: Path) -> str:
    a, b = load("train_data.json", results), load("train_data_crops_only.json", results)
    a0, b0 = load("train_data_512mb.json", results), load("train_data_crops_only_512mb.json", results)

    def row(what: str, d: dict, store: str) -> list:
        return [what, store, fmt(d["steady_cubes_per_s"]), fmt(d["cubes_per_s_per_core"]), f"**~{d['cores_per_h100']:.0f}**"]

    sg, crops = "`sg` on Ray Data CPU workers (`train.corrupt_on: data`)", \
        "none on the CPU (`train.corrupt_on: device`: crop-on-read only)"
    rows = [row(sg, a, "2 GB"), row(crops, b, "2 GB"), row(sg, a0, "512 MB (local default)"), row(crops, b0, "512 MB (local default)")]
    h100 = a["h100_paper_cubes_per_s_estimate"]
    return (f"`benchmarks/results/train_data.json`, `train_data_crops_only.json` (2 GB object store); "
            f"`train_data_512mb.json`, `train_data_crops_only_512mb.json` (local mode's 512 MB store); median "
            f"of the passes after the first, one run each, on one machine:\n\n"
            + table(["corruptions", "object store", f"cubes/s on {a['cores']} cores", "per core",
                     f"cores per H100 (paper U-Net, ~{h100:.0f} cubes/s)"], rows)
            + f"\nAn H100 training the `paper` U-Net consumes about {h100:.0f} cubes/s (754 GFLOP per cube at ~40 % of "
              f"990 TFLOP/s bf16; an estimate, no GPU was measured). Feeding it takes about "
              f"{a['cores_per_h100']:.0f} CPU cores when the `sg` corruptions (mostly the elastic deformation) run on "
              f"the CPU, and about {b['cores_per_h100']:.0f} when they run on the GPU with the torch back end. So "
              f"`train.corrupt_on: auto` (the default) runs them on the training device whenever the train stage "
              f"has GPUs; `data` keeps them on the CPU workers (nodes with ~{a['cores_per_h100']:.0f} or more cores "
              f"per GPU can afford it).\n")


def _train_data_profile(results: Path, name: str) -> str:
    """Where the data path's CPU time goes: the serial pieces against the pipeline, by process role."""
    d = load(name, results)
    ser, steady = d["serial"], d["passes"][1:] or d["passes"]
    n = sum(p["cubes"] for p in steady)

    def per_cube(key: str) -> float:
        return 1e3 * sum(p["cpu_s"].get(key, 0.0) for p in steady) / n

    idle = 1e3 * sum(p["idle_core_s"] for p in steady) / n
    total = 1e3 * sum(p["wall_s"] for p in steady) * d["cores"] / n
    m = d["machine"]
    rows = [["crop-on-read (serial, one thread, no Ray)", f"{ser['read_ms_per_cube']:.1f}"],
            ["`sg` corruptions (serial, one thread, no Ray)", f"{ser['corrupt_ms_per_cube']:.1f}"],
            ["**pipeline: Ray Data workers (read + corrupt tasks, their block transfers)**", f"{per_cube('ray workers'):.1f}"],
            ["pipeline: the driver (iter_batches, batches of 32)", f"{per_cube('driver'):.1f}"],
            ["pipeline: Ray's daemons (raylet, GCS, ...)", f"{per_cube('ray daemons'):.1f}"],
            ["pipeline: idle cores", f"{idle:.1f}"]]
    store = ", ".join(d["params"]["set"]) if d["params"]["set"] else "ray.object_store_mb=512 (cpu-tiny's)"
    return (f"`benchmarks/results/{name}` ({m['cpu']}, {d['cores']} cores, {store}; passes after the first: "
            f"{d['steady_cubes_per_s']:.0f} cubes/s, {d['steady_cubes_per_s'] / d['cores']:.0f} per core):\n\n"
            + table(["where", "ms of a core per cube"], rows)
            + f"\nIn all {total:.1f} ms of a core per cube in the pipeline against {ser['total_ms_per_cube']:.1f} ms "
              f"for the same work done serially ({total / ser['total_ms_per_cube']:.2f}×).\n")


def train_data_profile(results: Path) -> str:
    return _train_data_profile(results, "train_data_profile.json")


def train_data_profile_512mb(results: Path) -> str:
    return _train_data_profile(results, "train_data_profile_512mb.json")


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 0.1 else f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def neighbours(results: Path) -> str:
    d = load("neighbours.json", results)
    rows = []
    pw = {10_000: "10⁴", 100_000: "10⁵", 1_000_000: "10⁶"}
    for n in (10_000, 100_000):
        for refs in (100, 10_000):
            ex = next(r for r in d["rows"] if r["n"] == n and r["refs"] == refs and r["method"] == "exact")
            hn = next(r for r in d["rows"] if r["n"] == n and r["refs"] == refs and r["method"] == "hnsw")
            rows.append([pw[n], f"{refs:,}", _seconds(ex["query_s"]) + (" (extrapolated)" if ex["extrapolated"] else ""),
                         _seconds(hn["build_s"]), _seconds(hn["query_s"]),
                         f"{ex['query_ms_per_ref'] / hn['query_ms_per_ref']:.1f}×", f"{hn['recall_at_k']:.4g}"])
    return ("`benchmarks/results/neighbours.json`:\n\n"
            + table(["N", "references", "exact (blocked matmul)", "HNSW build", "HNSW query", "speed-up of the query",
                     "recall@200"], rows))


NEIGHBOURS_1E6 = [  # (file, data, index label); the isotropic M = 16 rows come from neighbours.json
    ("neighbours.json", "isotropic", "M = 16"),
    ("neighbours_1e6_isotropic_m32.json", "isotropic", "M = 32"),
    ("neighbours_1e6_isotropic_pca64.json", "isotropic", "M = 16, PCA 64"),
    ("neighbours_1e6_latent_m16.json", "latent", "M = 16"),
    ("neighbours_1e6_latent_pca64.json", "latent", "M = 16, PCA 64"),
]


def neighbours_1e6(results: Path) -> str:
    rows = []
    for name, data, label in NEIGHBOURS_1E6:
        d = load(name, results)
        rs = [r for r in d["rows"] if r["n"] == 1_000_000]
        ex = {r["refs"]: r for r in rs if r["method"] == "exact"}
        hn = [r for r in rs if r["method"] == "hnsw"]
        efs = sorted({r["ef"] for r in hn})
        for i, ef in enumerate(efs):
            h = {r["refs"]: r for r in hn if r["ef"] == ef}
            var = h[10_000].get("pca_variance")
            head = [data, label + (f" ({var * 100:.1f} % of the variance)" if var else ""), f"{h[10_000]['build_s']:.0f} s"] \
                if i == 0 else ["", "", ""]
            rows.append(head + [ef, f"{h[10_000]['query_ms_per_ref']:.2f} ms", f"{ex[10_000]['query_ms_per_ref']:.1f} ms",
                                f"{ex[10_000]['query_ms_per_ref'] / h[10_000]['query_ms_per_ref']:.1f}×",
                                f"{ex[100]['query_ms_per_ref'] / h[100]['query_ms_per_ref']:.1f}×",
                                f"{h[10_000]['recall_at_k']:.3f} / {h[100]['recall_at_k']:.3f}"])
    return ("`benchmarks/results/neighbours*.json`:\n\n"
            + table(["data", "index", "build", "ef", "HNSW per ref. (10,000 refs)", "exact per ref.",
                     "speed-up, 10,000 refs", "speed-up, 100 refs", "recall@200 (10,000 / 100 refs)"], rows))


def discovery(results: Path) -> str:
    d = load("discovery.json", results)
    t = load("pretrain_cpu_tiny/discovery.json", results)
    p = d["params"]
    s = d["stage_seconds"]
    hp, tp = d["habitus_purity"], t["habitus_purity"]
    rows = [[f"`benchmarks/discovery.py`: {p['n']} phantoms of {'×'.join(map(str, p['shape']))}, "
             f"{p['ae_epochs']} auto-encoder epochs, K = {p['k_train']}, C = {p['classes']}",
             f"{hp['purity']:.2f} (chance {hp['chance']:.2f}, earlier definition)",
             f"auto-encoder {s['autoencoder']:.0f} s, embedding {s['embedding']:.0f} s, index + neighbours "
             f"{s['index'] + s['neighbours']:.1f} s, boxes + manifest {s['patterns']:.1f} s, montages "
             f"{s['montages']:.1f} s; {d['total_seconds']:.0f} s in all"],
            [f"no-argument run (`cpu-tiny`, {t['train_patients']} train patients, "
             f"{t['autoencoder']['epochs']} auto-encoder epochs)",
             f"{tp['purity']:.2f} (chance {tp['chance']:.3f}, {tp['chance_selected']:.2f} by the earlier definition; "
             f"{tp['all_references']['purity']:.2f} against {tp['all_references']['chance']:.3f} over all references)",
             f"auto-encoder {t['seconds']['autoencoder']:.0f} s, embedding {t['seconds']['embedding']:.0f} s, "
             f"montages {t['seconds']['montages']:.1f} s"]]
    return ("`benchmarks/results/discovery.json`, `pretrain_cpu_tiny/discovery.json` (2 cores, shared with other "
            "jobs: times are upper bounds):\n\n"
            + table(["run", "neighbour purity", "stage times"], rows))


def discovery_2d(results: Path) -> str:
    d = load("discovery_2d.json", results)
    p, e, r = d["params"], d["purity_embedding"], d["purity_raw_pixels"]
    rows = [[f"2D auto-encoder embedding ({d['embedding_dim']}-d; {d['autoencoder']['epochs']} epochs, best "
             f"{d['autoencoder']['best_epoch']})", f"{e['purity']:.2f}", f"{e['chance']:.2f}"],
            [f"raw pixels ({'×'.join(map(str, p['size']))})", f"{r['purity']:.2f}", f"{r['chance']:.2f}"]]
    return (f"`benchmarks/results/discovery_2d.json`: {p['train_films']} training films of {p['n']} phantoms "
            f"(projected from {'×'.join(map(str, p['shape']))} CTs, resized to {'×'.join(map(str, p['size']))}), "
            f"every film a reference, K = {p['k']}; auto-encoder training {d['autoencoder_seconds']:.0f} s on 2 cores:\n\n"
            + table(["neighbours by", "habitus purity", "chance"], rows))


def _evaluate_wall(results: Path, name: str, conditions: str) -> str:
    d = load(name, results)
    cls, seg = d["per_task"]["classification"], d["per_task"]["segmentation"]
    rss = f"; driver peak RSS {d['peak_driver_rss_mb'] / 1000:.1f} GB" if "peak_driver_rss_mb" in d else ""
    rows = [[f"whole no-argument evaluation (2 baseline pretrainings, target cohort, {d['trials']} trials)",
             f"{mmss(d['wall_s'])}{rss}"],
            ["one classification trial (median, min-max)", f"{cls['median_s']:.0f} s ({cls['min_s']:.0f}-{cls['max_s']:.0f} s)"],
            ["one segmentation trial", f"{seg['median_s']:.0f} s ({seg['min_s']:.0f}-{seg['max_s']:.0f} s)"],
            ["trials running at once (mean)",
             f"{d['mean_concurrent_trials']:.1f}: {d['sum_of_trial_s'] / 60:.0f} trial-minutes in "
             f"{d['trials_span_s'] / 60:.0f} minutes"]]
    m = d["machine"]
    return (f"`benchmarks/results/{name}`:\n\n"
            + table(["what", f"measured ({m['cpu']}, {m['cores']} cores, {conditions})"], rows))


def evaluate_wall(results: Path) -> str:
    return _evaluate_wall(results, "evaluate.json", "nothing else running")


def evaluate_wall_default_layout(results: Path) -> str:
    return _evaluate_wall(results, "evaluate_default_layout.json", "nothing else running")


def evaluate_wall_previous(results: Path) -> str:
    return _evaluate_wall(results, "evaluate_previous_protocol.json",
                          "other tests sharing the cores: upper bounds")


def _evaluate_cases(results: Path, folder: str) -> str:
    """Training and test cubes per trial of a cpu-tiny evaluation, from its per-trial rows."""
    rows = rows_csv(f"{folder}/results.csv", results)

    def span(task: str, col: str) -> str:
        v = sorted({int(r[col]) for r in rows if r["task"] == task})
        return str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}"

    return (f"Cubes per trial (`benchmarks/results/{folder}/results.csv`): classification "
            f"{span('classification', 'train_cases')} training and {span('classification', 'test_cases')} test "
            f"cubes, segmentation {span('segmentation', 'train_cases')} training and "
            f"{span('segmentation', 'test_cases')} test cubes.\n")


def evaluate_cases(results: Path) -> str:
    return _evaluate_cases(results, "evaluate_cpu_tiny")


def evaluate_cases_previous(results: Path) -> str:
    return _evaluate_cases(results, "evaluate_cpu_tiny_previous_protocol")


def _trials(rows: list[dict], task: str, arm: str, fraction: float) -> list[dict]:
    """The per-trial rows of one arm, task and label fraction, by seed."""
    return sorted((r for r in rows if r["task"] == task and r["arm"] == arm
                   and abs(float(r["label_fraction"]) - fraction) < 1e-9), key=lambda r: int(r["seed"]))


def _arm_stats(rows: list[dict], task: str, arm: str, fraction: float, metric: str) -> tuple[str, int, int]:
    """``mean ± s.d.`` in % (sample s.d.), collapsed trials and trials of one arm, task and label fraction."""
    import numpy as np

    sel = _trials(rows, task, arm, fraction)
    v = 100 * np.array([float(r[metric]) for r in sel])
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}", sum(r["collapsed"].lower() == "true" for r in sel), len(sel)


def _points(x: float) -> str:
    """A difference of fractions in percentage points, signed, with a true minus sign."""
    return f"{100 * x:+.1f}".replace("-", "−")


def _secondary(rows: list[dict], task: str, metric: str, fraction: float) -> dict:
    """Semantic Genesis and restoration-only against scratch (and each other) on one task, by the
    evaluation's own statistics."""
    from semgen_ray.evaluate.statistics import compare, compare_paired

    def values(arm):
        sel = _trials(rows, task, arm, fraction)
        return [int(r["seed"]) for r in sel], [float(r[metric]) for r in sel]

    (s_sg, sg), (s_sc, sc), (_, re) = values("semantic_genesis"), values("scratch"), values("restoration")
    return {"vs_scratch": compare(sg, sc, "semantic_genesis", "scratch"),
            "paired": compare_paired(sg, sc, "semantic_genesis", "scratch", s_sg, s_sc),
            "vs_restoration": compare(sg, re, "semantic_genesis", "restoration"),
            "restoration_vs_scratch": compare(re, sc, "restoration", "scratch")}


def experiment_cpu_small_v2(results: Path) -> str:
    """Protocol 2 of the cpu-small experiment: time, gates, the arms at the primary fraction, the curve,
    the decision and its tests (``benchmarks/experiment.py``)."""
    folder = "experiment_cpu_small_v2"
    o, rows = load(f"{folder}/outcome.json", results), rows_csv(f"{folder}/results.csv", results)
    disc, train = load(f"{folder}/discovery.json", results), load(f"{folder}/train.json", results)
    sec, m, g, pr = o["seconds"], o["machine"], o["gates"], o["protocol"]
    trial_s = sum(float(r["seconds"]) for r in rows)
    budget = 45 * 60
    out = (f"`benchmarks/results/{folder}/outcome.json` ({m['cpu']}, {m['cores']} cores): **{mmss(sec['total'])}** "
           f"({'within' if sec['total'] <= budget else 'over'} the 45 min budget): pretraining stage "
           f"{mmss(sec['pretrain'])} (auto-encoder {disc['seconds']['autoencoder']:.0f} s, Semantic Genesis "
           f"{train['steps']} steps in {train['fit_seconds']:.0f} s), evaluation stage {mmss(sec['evaluate'])} "
           f"(restoration-only pretraining, target cohort and tasks, {len(rows)} trials of "
           f"{trial_s / 60:.0f} trial-minutes on 2 cores).\n\n")
    gd, gp, gt, th = g["discovery"], g["pretext"], g["task"], pr["gates"]
    yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    out += table(["gate", "measured", "threshold", "passed"], [
        ["1 neighbour purity", f"{gd['purity']:.3f} (chance {gd['chance']:.3f})",
         f"≥ {th['purity_min']} and ≥ {th['purity_over_chance']:g} × chance", yes(gd["passed"])],
        ["2 pseudo-class validation accuracy (best)", f"{gp['val_acc_best']:.3f} (chance {gp['chance']:.3f})",
         f"≥ {th['pseudo_class_acc_over_chance']:g} × chance", yes(gp["val_acc_best"] >= th["pseudo_class_acc_over_chance"] * gp["chance"])],
        ["2 restoration validation MSE, best / first joint epoch", f"{gp['rec_ratio']:.3f}",
         f"≤ {th['restoration_mse_ratio_max']}", yes(gp["rec_ratio"] <= th["restoration_mse_ratio_max"])],
        ["3 best one-number shortcut AUC (classification)", f"{gt['shortcut_auc']:.3f}", f"≤ {th['shortcut_auc_max']}",
         yes(gt["shortcut_auc"] <= th["shortcut_auc_max"])],
        ["3 scratch, 100 % labels, classification AUC", f"{gt['scratch_full_auc']:.3f}", f"≥ {th['scratch_full_auc_min']}",
         yes(gt["scratch_full_auc"] >= th["scratch_full_auc_min"])],
        ["3 scratch, 20 % labels, classification AUC (not at ceiling)", f"{gt['scratch_primary_auc']:.3f}",
         f"≤ {th['scratch_primary_auc_max']}", yes(gt["scratch_primary_auc"] <= th["scratch_primary_auc_max"])],
        ["3 scratch, 100 % labels, segmentation Dice", f"{gt['scratch_full_dice']:.3f}", f"≥ {th['scratch_full_dice_min']}",
         yes(gt["scratch_full_dice"] >= th["scratch_full_dice_min"])]])
    frac = pr["primary"]["label_fraction"]
    arms = [a for a in ("scratch", "restoration", "semantic_genesis") if any(r["arm"] == a for r in rows)]
    table_rows = []
    for arm in arms:
        auc, c_cls, n = _arm_stats(rows, "classification", arm, frac, "auc")
        dice, c_seg, _ = _arm_stats(rows, "segmentation", arm, frac, "dice")
        table_rows.append([arm, n, auc, f"{c_cls}/{n}", dice, f"{c_seg}/{n}"])
    out += (f"\nEvery trial is in `results.csv`; at the primary {100 * frac:.0f} % of the training labels:\n\n"
            + table(["arm", "trials", "classification AUC %", "collapsed", "segmentation Dice %", "collapsed"], table_rows))
    fractions = sorted({float(r["label_fraction"]) for r in rows})
    curve = []
    for task, metric in (("classification", "auc"), ("segmentation", "dice")):
        for arm in arms:
            cells = []
            for f in fractions:
                cell, _, n = _arm_stats(rows, task, arm, f, metric)
                cells.append(f"{cell} ({n})")
            curve.append([f"{task} {'AUC' if metric == 'auc' else 'Dice'} %, {arm}", *cells])
    out += ("\nThe label-efficiency curve (`curve.png`; mean ± s.d. (trials)):\n\n"
            + table(["task, arm", *(f"{100 * f:.0f} % of the labels" for f in fractions)], curve))
    vs, rest, paired = o["primary"]["vs_scratch"], o["primary"]["vs_restoration"], o["primary"]["paired_vs_scratch"]
    out += (f"\n**Decision under the protocol: {o['decision']}.** Primary endpoint, Semantic Genesis − scratch: "
            f"{_points(vs['diff'])} AUC points (95 % CI {_points(vs['diff_ci_low'])} to {_points(vs['diff_ci_high'])}), "
            f"Student t = {vs['student_t']:.2f}, p = {vs['student_p']:.2g}; paired by seed p = {paired['p']:.2g}, "
            f"Wilcoxon p = {paired['wilcoxon_p']:.2g}; minimum detectable difference at 80 % power "
            f"{100 * paired['mdd_unpaired']:.1f} points ({100 * paired['mdd_paired']:.1f} paired). "
            f"Semantic Genesis − restoration-only: {_points(rest['diff'])} points (p = {rest['student_p']:.2g}; "
            f"the protocol's margin {100 * pr['non_inferiority_margin']:.0f} points).\n")
    seg = _secondary(rows, "segmentation", "dice", frac)
    cls_rest = _secondary(rows, "classification", "auc", frac)["restoration_vs_scratch"]
    out += (f"\nSegmentation (secondary), Semantic Genesis − scratch: {_points(seg['vs_scratch'].diff)} Dice points "
            f"(Student p = {seg['vs_scratch'].student_p:.2g}, paired p = {seg['paired'].p:.2g}); − restoration-only: "
            f"{_points(seg['vs_restoration'].diff)} (p = {seg['vs_restoration'].student_p:.2g}). Restoration-only − "
            f"scratch: classification {_points(cls_rest.diff)} AUC points (p = {cls_rest.student_p:.2g}), "
            f"segmentation {_points(seg['restoration_vs_scratch'].diff)} Dice points "
            f"(p = {seg['restoration_vs_scratch'].student_p:.2g}).\n")
    return out


def pretrain_cpu_tiny_2d(results: Path) -> str:
    """The 2D main job's one timed run (``benchmarks/pretrain.py --config cpu-tiny-2d``)."""
    run, disc = load("pretrain_cpu_tiny_2d/run.json", results), load("pretrain_cpu_tiny_2d/discovery.json", results)
    train = load("pretrain_cpu_tiny_2d/train.json", results)
    hist, purity = train["history"], disc["habitus_purity"]
    warm = [h for h in hist if h.get("phase") == "warmup"]
    joint = [h for h in hist if h.get("phase", "joint") == "joint"]
    rec = [h["val_rec_loss"] for h in joint]
    m = run["machine"]
    rows = [["whole run (data, discover, train)", mmss(run["seconds"])],
            ["auto-encoder (whole films)", f"{disc['seconds']['autoencoder']:.0f} s"],
            ["neighbours' habitus purity", f"{purity['purity']:.2f} (chance {purity['chance']:.2f})"],
            ["film patches (train / val)", f"{train['train_cubes']} / {train['val_cubes']}"],
            ["pretraining", f"{train['steps']} steps, {train['epochs']} epochs in {train['fit_seconds']:.0f} s "
                            f"({train['precision']}, {train['workers']} workers)"],
            ["pseudo-class validation accuracy, warm-up (uncorrupted patches), best",
             f"{max(h['val_acc'] for h in warm):.2f}" if warm else "no warm-up"],
            ["pseudo-class validation accuracy, joint (corrupted patches), best",
             f"{max(h['val_acc'] for h in joint):.2f} (chance {1 / train['num_classes']:.2f})"],
            ["restoration validation MSE, first → best joint epoch", f"{rec[0]:.4f} → {min(rec):.4f}"]]
    return (f"`benchmarks/results/pretrain_cpu_tiny_2d/` ({m['cpu']}, {m['cores']} cores; `{run['command']}`, "
            "one run):\n\n" + table(["what", "measured"], rows))


def _judged_run(o: dict, folder: str, names: dict, steps: str, fraction: str, primary: str) -> str:
    """A run judged under a protocol (``outcome.json`` of ``benchmarks/slice_arms.py`` or
    ``film_tasks.py``): each arm's test metric, then per task its decision, gate, primary and
    secondary comparisons."""
    sec, m, tasks = o["seconds"], o["machine"], o["tasks"]
    means = {}
    for task, t in tasks.items():
        for c in [t["primary"], *t["secondary"]]:
            means[(task, c["a"])], means[(task, c["b"])] = (c["mean_a"], c["sd_a"]), (c["mean_b"], c["sd_b"])
    rows = [[names[arm]] + [f"{100 * means[(task, arm)][0]:.1f} ± {100 * means[(task, arm)][1]:.1f} "
                            f"({tasks[task]['collapsed'][arm]} collapsed)" for task in tasks] for arm in o["arms"]]
    out = (f"`benchmarks/results/{folder}/` (`{o['command']}`, {m['cpu']}, {m['cores']} cores, one run: "
           f"{mmss(sec['total'])}; {steps}). Test metric at {fraction} of the labels, mean ± s.d. over 10 seeds, "
           "in %:\n\n"
           + table(["arm", *(f"{task} ({tasks[task]['metric'].upper() if tasks[task]['metric'] == 'auc' else 'Dice'})"
                             for task in tasks)], rows))
    for task, t in tasks.items():
        p, g = t["primary"], t["gate"]
        gate = (f"gate passed: scratch {100 * g['scratch_full_mean']:.1f} % ≥ {100 * g['min']:.0f} % with all labels"
                if g["passed"] else f"gate FAILED: scratch {100 * (g['scratch_full_mean'] or 0):.1f} % < "
                f"{100 * g['min']:.0f} % with all labels")
        sec_text = "; ".join(f"{names[c['a']]} − {names[c['b']]} {_points(c['diff'])} (p = {c['student_p']:.2g})"
                             for c in t["secondary"])
        out += (f"\n**{task.capitalize()}: {t['decision']}** ({gate}). {primary}: "
                f"{_points(p['diff'])} points (95 % CI {_points(p['ci'][0])} to {_points(p['ci'][1])}), Student "
                f"p = {p['student_p']:.2g} against α = 0.025, paired by seed p = {p['paired_p']:.2g}."
                + (f" Secondary: {sec_text}." if sec_text else "") + "\n")
    return out


def slice_arms_cpu_small(results: Path) -> str:
    """3D against 2D-on-slices Semantic Genesis under docs/protocol-slice-arms.md (``benchmarks/slice_arms.py``)."""
    o = load("slice_arms_cpu_small/outcome.json", results)
    sec = o["seconds"]
    names = {"scratch": "scratch (3D)", "semantic_genesis": "Semantic Genesis 3D", "scratch_2d": "scratch 2D on slices",
             "semantic_genesis_2d": "Semantic Genesis 2D on slices"}
    steps = (f"2D pretraining {mmss(sec['pretrain_2d'])}, 3D data + discovery + pretraining "
             f"{mmss(sec['pretrain_3d'])}, evaluation {mmss(sec['evaluate'])}")
    return _judged_run(o, "slice_arms_cpu_small", names, steps, "20 %", "Semantic Genesis 3D − 2D on slices")


def film_tasks_cpu_tiny_2d(results: Path) -> str:
    """2D Semantic Genesis against scratch on the films' tasks under docs/protocol-film-tasks.md
    (``benchmarks/film_tasks.py``)."""
    o = load("film_tasks_cpu_tiny_2d/outcome.json", results)
    sec = o["seconds"]
    names = {"scratch": "scratch (2D)", "semantic_genesis": "Semantic Genesis 2D"}
    steps = (f"data + 2D discovery + pretraining {mmss(sec['pretrain'])}, target films, tasks and trials "
             f"{mmss(sec['evaluate'])}")
    return _judged_run(o, "film_tasks_cpu_tiny_2d", names, steps, "50 %", "Semantic Genesis 2D − scratch")


def bezier_error(results: Path) -> str:
    d = load("bezier_error.json", results)
    r, g = d["random"], d["degenerate"]
    text = (f"Bézier intensity map against the reference (`./venv-run python benchmarks/bezier_error.py` → "
            f"`benchmarks/results/bezier_error.json`: {r['curves']} random curves, each at "
            f"{d['values_per_curve']:,} voxel values): largest difference {r['max_abs_diff']:.1e}, median over "
            f"curves of the largest difference {r['median_of_max']:.0e}")
    if g.get("curves"):
        text += (f"; {g['curves']} near-degenerate curves (a or 1 − c in 1e-4..1e-2, a vertical tangent at an "
                 f"end): up to {g['max_abs_diff']:.1e} next to an end point")
    return text + ".\n"


SECTIONS = {
    "ingest": ingest,
    "crop_read": crop_read,
    "phantoms": phantoms,
    "corruptions": corruptions,
    "corruptions_2d": corruptions_2d,
    "corruption_breakdown": corruption_breakdown,
    "corruption_breakdown_2d": corruption_breakdown_2d,
    "bezier_error": bezier_error,
    "unet": unet,
    "train_step": train_step,
    "train_step_fp32": train_step_fp32,
    "train_data": train_data,
    "neighbours": neighbours,
    "neighbours_1e6": neighbours_1e6,
    "discovery": discovery,
    "discovery_2d": discovery_2d,
    "unet_avx2": unet_avx2,
    "unet_layout": unet_layout,
    "train_data_profile": train_data_profile,
    "train_data_profile_512mb": train_data_profile_512mb,
    "evaluate_wall": evaluate_wall,
    "evaluate_wall_previous": evaluate_wall_previous,
    "evaluate_wall_default_layout": evaluate_wall_default_layout,
    "evaluate_cases_previous": evaluate_cases_previous,
    "evaluate_cases": evaluate_cases,
    "experiment_cpu_small_v2": experiment_cpu_small_v2,
    "pretrain_cpu_tiny_2d": pretrain_cpu_tiny_2d,
    "slice_arms_cpu_small": slice_arms_cpu_small,
    "film_tasks_cpu_tiny_2d": film_tasks_cpu_tiny_2d,
}


# ---------------------------------------------------------------------------------------------- driver


def wrap(text: str, width: int = 100) -> str:
    """Prose paragraphs wrapped at ``width`` like the rest of the README; table lines left alone."""
    out = []
    for block in text.split("\n\n"):
        if block.lstrip().startswith("|") or not block.strip():
            out.append(block)
        else:
            end = "\n" if block.endswith("\n") else ""
            out.append(textwrap.fill(" ".join(block.split()), width, break_long_words=False,
                                     break_on_hyphens=False) + end)
    return "\n\n".join(out)


def render(text: str, results: Path = RESULTS) -> tuple[str, list[str]]:
    """``(new text, problems)``: every generated section rewritten; problems name unknown or missing markers."""
    problems = []
    opened = OPEN.findall(text)
    found = [m.group("name") for m in MARKER.finditer(text)]
    for name in opened:
        if name not in found:
            problems.append(f"marker '<!-- generated: {name} -->' has no closing '<!-- /generated: {name} -->'")
    for name in found:
        if name not in SECTIONS:
            problems.append(f"README section '{name}' has no writer in benchmarks/readme_tables.py")
        if found.count(name) > 1:
            problems.append(f"README section '{name}' appears {found.count(name)} times")
    for name in SECTIONS:
        if name not in found:
            problems.append(f"no README section '{name}' (markers <!-- generated: {name} --> … "
                            f"<!-- /generated: {name} -->)")

    def sub(m: re.Match) -> str:
        writer = SECTIONS.get(m.group("name"))
        if writer is None:
            return m.group(0)
        return m.group(1) + wrap(writer(results)) + m.group(4)

    return MARKER.sub(sub, text), sorted(set(problems))


def stale_sections(text: str, results: Path = RESULTS) -> list[str]:
    """Names of the generated sections whose README text differs from what would be written."""
    new, _ = render(text, results)
    old_bodies = {m.group("name"): m.group("body") for m in MARKER.finditer(text)}
    new_bodies = {m.group("name"): m.group("body") for m in MARKER.finditer(new)}
    return [n for n in old_bodies if old_bodies[n] != new_bodies.get(n)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated section is stale")
    ap.add_argument("--readme", default=str(README))
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    path, results = Path(args.readme), Path(args.results)
    text = path.read_text()
    new, problems = render(text, results)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if args.check:
        stale = stale_sections(text, results)
        for name in stale:
            old = next(m.group("body") for m in MARKER.finditer(text) if m.group("name") == name)
            fresh = next(m.group("body") for m in MARKER.finditer(new) if m.group("name") == name)
            sys.stderr.writelines(difflib.unified_diff(old.splitlines(True), fresh.splitlines(True),
                                                       f"README.md ({name})", f"from benchmarks/results ({name})"))
            print(f"stale: README section '{name}' differs from benchmarks/results; run "
                  f"./venv-run python benchmarks/readme_tables.py", file=sys.stderr)
        if not stale and not problems:
            print(f"{path.name}: {len(SECTIONS)} generated sections match benchmarks/results")
        return 1 if stale or problems else 0
    if problems:
        return 1
    if new != text:
        path.write_text(new)
        print(f"rewrote {len(stale_sections(text, results))} section(s) of {path}")
    else:
        print(f"{path}: up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
