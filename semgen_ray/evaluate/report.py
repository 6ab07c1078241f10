"""The evaluation report: ``results.csv``, ``report.md`` (a Table-2-style table and the tests) and PNGs.

Per task, the headline metric (AUC for classification; the reference's background-inclusive,
threshold-averaged IoU for segmentation, with foreground IoU and Dice beside it) as mean ± s.d. over
the trials of each arm; the best arm in bold; arms not significantly different from the best (Student
two-sample t-test, p ≥ alpha: the paper's test) marked with †. Below the table, every arm against the
best and against scratch: Student and Welch t-tests, the Mann-Whitney rank test as a check, Cohen's d
with its 95 % CI, and the mean difference with its 95 % CI. All p-values are computed, never typed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HEADLINE = {"classification": "auc", "segmentation": "mean_iou"}
EXTRA = {"classification": (), "segmentation": ("iou", "dice")}
COLUMNS = ("task", "arm", "seed", "auc", "mean_iou", "iou", "dice", "val_loss", "epochs", "train_cases",
           "test_cases", "seconds")


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in COLUMNS})


def _values(rows, task, metric) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        if r["task"] == task and r.get(metric) is not None:
            out.setdefault(r["arm"], []).append(float(r[metric]))
    return out


def _fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def _comparison_lines(c, alpha) -> str:
    return (f"| {c.a} | {c.b} | {c.diff:+.4f} [{c.diff_ci_low:+.4f}, {c.diff_ci_high:+.4f}] | "
            f"{c.student_t:.3f} ({c.student_df:.0f}) | {_fmt_p(c.student_p)} {c.stars(alpha)} | "
            f"{c.welch_t:.3f} ({c.welch_df:.1f}) | {_fmt_p(c.welch_p)} | {_fmt_p(c.mannwhitney_p)} | "
            f"{c.cohens_d:.2f} [{c.d_ci_low:.2f}, {c.d_ci_high:.2f}] |")


def summarise(rows: list[dict], alpha: float) -> dict:
    """Per task: means, s.d.s, best arm and the comparisons (statistics module)."""
    from semgen_ray.evaluate.statistics import compare_all

    out = {}
    for task in sorted({r["task"] for r in rows}):
        metric = HEADLINE[task]
        values = _values(rows, task, metric)
        if not values or min(len(v) for v in values.values()) < 2:
            out[task] = {"metric": metric, "values": values, "comparisons": None}
            continue
        out[task] = {"metric": metric, "values": values, "comparisons": compare_all(values, higher_is_better=True)}
    return out


def write_markdown(path: Path, rows: list[dict], summary: dict, alpha: float, header: str = "") -> None:
    arms = sorted({r["arm"] for r in rows})
    tasks = sorted(summary)
    lines = ["# Target-task evaluation", "", header, "",
             f"Mean ± s.d. over trials (n per cell in brackets). **Bold**: best arm of the task; †: not "
             f"significantly different from the best (two-sample Student t-test, p ≥ {alpha}).", ""]
    lines.append("| arm | " + " | ".join(f"{t} ({summary[t]['metric']})" for t in tasks) + " |")
    lines.append("|---|" + "---|" * len(tasks))
    for arm in arms:
        cells = []
        for t in tasks:
            vals = summary[t]["values"].get(arm)
            if not vals:
                cells.append("–")
                continue
            cell = f"{100 * np.mean(vals):.2f} ± {100 * np.std(vals, ddof=1) if len(vals) > 1 else 0:.2f} [{len(vals)}]"
            comp = summary[t]["comparisons"]
            if comp and comp["best"] == arm:
                cell = f"**{cell}**"
            elif comp:
                c = next((c for c in comp["vs_best"] if c.a == arm), None)
                if c is not None and not c.student_p < alpha:
                    cell += " †"
            cells.append(cell)
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    for t in tasks:
        extras = EXTRA[t]
        if extras:
            lines += ["", f"{t}: other metrics (mean ± s.d., %)", "", "| arm | " + " | ".join(extras) + " |",
                      "|---|" + "---|" * len(extras)]
            for arm in arms:
                vals = [_values(rows, t, m).get(arm) or [np.nan] for m in extras]
                lines.append(f"| {arm} | " + " | ".join(f"{100 * np.mean(v):.2f} ± {100 * np.std(v):.2f}" for v in vals) + " |")
        comp = summary[t]["comparisons"]
        if not comp:
            continue
        head = ("| arm | vs | difference [95 % CI] | Student t (df) | p | Welch t (df) | Welch p | "
                "Mann-Whitney p | Cohen's d [95 % CI] |")
        lines += ["", f"## {t}: tests on {summary[t]['metric']}", "", f"Best: **{comp['best']}**.", "", head,
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [_comparison_lines(c, alpha) for c in comp["vs_best"]]
        if comp.get("vs_scratch"):
            lines += ["", "Against scratch:", "", head, "|---|---|---|---|---|---|---|---|---|"]
            lines += [_comparison_lines(c, alpha) for c in comp["vs_scratch"]]
    lines += ["", "Stars (paper legend): * p < 0.05, ** p < 0.01, *** p < 0.001, **** p < 0.0001, n.s. otherwise.", ""]
    path.write_text("\n".join(lines))


def write_plots(out_dir: Path, rows: list[dict], summary: dict, alpha: float) -> list[Path]:
    from semgen_ray.discovery.montage import _pyplot

    plt = _pyplot()
    paths = []
    for task, s in summary.items():
        arms = sorted(s["values"])
        fig, ax = plt.subplots(figsize=(1.4 * len(arms) + 2, 3.2), dpi=80)
        ax.boxplot([s["values"][a] for a in arms], tick_labels=arms)
        ax.set_ylabel(s["metric"])
        ax.set_title(f"{task}: {s['metric']} per trial")
        fig.tight_layout()
        p = out_dir / f"box_{task}.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
        comp = s["comparisons"]
        fig, ax = plt.subplots(figsize=(1.4 * len(arms) + 2, 3.2), dpi=80)
        means = [np.mean(s["values"][a]) for a in arms]
        sds = [np.std(s["values"][a], ddof=1) if len(s["values"][a]) > 1 else 0 for a in arms]
        ax.bar(arms, means, yerr=sds, capsize=4, color="#8aa")
        if comp and comp.get("vs_scratch"):
            for c in comp["vs_scratch"]:
                i = arms.index(c.a)
                ax.text(i, means[i] + sds[i], c.stars(alpha), ha="center", va="bottom")
        ax.set_ylabel(s["metric"])
        ax.set_title(f"{task}: mean ± s.d., stars vs scratch")
        fig.tight_layout()
        p = out_dir / f"bars_{task}.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    return paths


def write_report(out_dir: str | Path, rows: list[dict], alpha: float, header: str = "") -> dict:
    """Write ``results.csv``, ``report.md`` and the PNGs; returns the per-task summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", rows)
    summary = summarise(rows, alpha)
    write_markdown(out / "report.md", rows, summary, alpha, header)
    write_plots(out, rows, summary, alpha)
    return summary
