"""The evaluation report: ``results.csv``, ``report.md`` (a Table-2-style table, the tests, task validity) and PNGs.

Per task, the headline metric (AUC for classification; foreground Dice for segmentation, with the
foreground IoU and the paper's background-inclusive, threshold-averaged mean IoU beside it) as
mean ± s.d. over the trials of each arm at the primary label fraction; the best arm in bold; arms not
significantly different from the best (Student two-sample t-test, p ≥ alpha: the paper's test) marked
with †; collapsed trials counted per arm (never dropped). Below the table: whether each task is valid
(scratch with all labels passes the learnability gate, no one-number shortcut separates the classes),
every arm against the best and against scratch (Student, Welch, Mann-Whitney, Cohen's d, the
difference's 95 % CI), the paired analysis against scratch (trials paired by seed: paired t, Wilcoxon,
mean paired difference with CI), the minimum detectable difference at 80 % power and the
Brown-Forsythe spread test; rows at other label fractions give the label-efficiency curve
(``curve.png``). All p-values are computed, never typed. The report names files relative to its own
folder only, so it travels with the run folder.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

HEADLINE = {"classification": "auc", "segmentation": "dice"}
EXTRA = {"classification": (), "segmentation": ("iou", "mean_iou")}
COLUMNS = ("task", "arm", "seed", "label_fraction", "auc", "dice", "iou", "mean_iou", "val_loss", "steps",
           "best_step", "validations", "collapsed", "train_cases", "train_patients", "subset_draws", "test_cases",
           "test_pos", "test_neg", "lr_final", "seconds")
_INT_COLUMNS = {"seed", "steps", "best_step", "validations", "train_cases", "train_patients", "subset_draws",
                "test_cases", "test_pos", "test_neg"}
_STR_COLUMNS = {"task", "arm"}
#: Statistical power at which the minimum detectable difference is reported.
POWER = 0.8
#: Label fractions are compared after rounding to this many decimals (0.1 from YAML vs 1/10).
_DECIMALS = 6


# --- rows -----------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict]) -> None:
    """One line per trial with :data:`COLUMNS`; missing values are empty cells."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})


def _parse(column: str, text: str):
    if text == "":
        return None
    if column in _STR_COLUMNS:
        return text
    if column == "collapsed":
        return _truthy(text)
    if column in _INT_COLUMNS:
        return int(float(text))
    return float(text)


def read_csv(path: str | Path) -> list[dict]:
    """The rows of a ``results.csv`` back, typed: ints, floats, ``collapsed`` as bool, empty cells as None."""
    with open(path, newline="") as f:
        return [{k: _parse(k, v) for k, v in r.items()} for r in csv.DictReader(f)]


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v) if v is not None else False


def _number(v) -> float | None:
    """A finite float, or None for a missing / empty / non-finite value."""
    if v is None or v == "":
        return None
    x = float(v)
    return x if math.isfinite(x) else None


def _fraction(row: dict) -> float:
    """The row's label fraction, rounded; rows without one used all labels (1.0)."""
    f = _number(row.get("label_fraction"))
    return round(1.0 if f is None else f, _DECIMALS)


def primary_fraction(rows: list[dict], label_fraction: float | None = None) -> float | None:
    """The label fraction of the table and the tests.

    ``label_fraction`` when given; otherwise the only fraction in the rows, or, when there are several,
    the largest one (the largest labelled training set: 1.0 when the full set was run). None: no rows.
    """
    if label_fraction is not None:
        return round(float(label_fraction), _DECIMALS)
    fractions = {_fraction(r) for r in rows}
    return max(fractions) if fractions else None


def _arm_order(arms) -> list[str]:
    """Scratch first (the reference of the paired analysis), the others alphabetically."""
    arms = set(arms)
    return (["scratch"] if "scratch" in arms else []) + sorted(arms - {"scratch"})


def _by_arm(rows: list[dict], metric: str) -> tuple[dict, dict, dict]:
    """Arm -> values (ordered by seed), arm -> seeds, arm -> number of rows without a finite value."""
    values: dict[str, list] = {}
    missing: dict[str, int] = {}
    for r in rows:
        x = _number(r.get(metric))
        if x is None:
            missing[r["arm"]] = missing.get(r["arm"], 0) + 1
        else:
            values.setdefault(r["arm"], []).append((r.get("seed"), x))
    def by_seed(sv):
        return (sv[0] is None, 0 if sv[0] is None else sv[0])

    ordered = {a: sorted(values[a], key=by_seed) for a in _arm_order(values)}
    return ({a: [x for _, x in v] for a, v in ordered.items()}, {a: [s for s, _ in v] for a, v in ordered.items()},
            missing)


def _mean_sd(v) -> tuple[float, float, int]:
    """Mean, s.d. (ddof=1; 0 for a single value) and n."""
    a = np.asarray(v, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0, int(a.size)


# --- summary --------------------------------------------------------------------------------------


def _test_split(task_rows: list[dict], info: dict) -> dict:
    """Positives / negatives of the test split: from the rows (most frequent value), else ``info['counts']``.

    ``info['counts']`` may hold ``{"test": {"pos": .., "neg": ..}}`` (also ``positives`` /
    ``negatives``) or flat ``test_pos`` / ``test_neg``.
    """
    out: dict = {"pos": None, "neg": None, "source": None}
    for key in ("pos", "neg"):
        seen = [int(x) for x in (_number(r.get(f"test_{key}")) for r in task_rows) if x is not None]
        if seen:
            vals, counts = np.unique(seen, return_counts=True)
            out[key] = int(vals[np.argmax(counts)])
            out["source"] = "trials"
            if vals.size > 1:
                out[f"{key}_range"] = (int(vals.min()), int(vals.max()))
    if out["pos"] is None and out["neg"] is None:
        counts = (info or {}).get("counts") or {}
        test = counts.get("test") if isinstance(counts.get("test"), dict) else {}
        pos = test.get("pos", test.get("positives", counts.get("test_pos")))
        neg = test.get("neg", test.get("negatives", counts.get("test_neg")))
        if pos is not None or neg is not None:
            out.update(pos=None if pos is None else int(pos), neg=None if neg is None else int(neg),
                       source="task_info")
    return out


def _gate(task: str, metric: str, task_rows: list[dict], info: dict, gates: dict | None) -> tuple[bool | None, dict]:
    """Validity of a task: (valid, details).

    Learnability: the scratch arm's mean headline metric over its trials at label fraction 1.0 must
    reach ``gates[metric]`` ("not measured", None, without such trials or without a gate). Shortcut:
    ``info["shortcut_auc"]["best"]`` must stay below ``gates["max_shortcut_auc"]`` (None when either is
    absent). valid is False when a check fails, None when learnability was not measured, else True.
    """
    gates = gates or {}
    threshold = gates.get(metric)
    full = [x for x in (_number(r.get(metric)) for r in task_rows
                        if r["arm"] == "scratch" and _fraction(r) == 1.0) if x is not None]
    g: dict = {"metric": metric, "threshold": threshold, "label_fraction": 1.0,
               "scratch_mean": float(np.mean(full)) if full else None, "scratch_n": len(full),
               "learnable": None, "shortcut_auc": None, "max_shortcut_auc": gates.get("max_shortcut_auc"),
               "no_shortcut": None, "reasons": []}
    if threshold is not None and full:
        g["learnable"] = bool(g["scratch_mean"] >= threshold)
        if not g["learnable"]:
            g["reasons"].append(f"scratch with all labels reaches mean {metric} {g['scratch_mean']:.3f} "
                                f"< gate {threshold}")
    shortcut = ((info or {}).get("shortcut_auc") or {})
    best = _number(shortcut.get("best")) if isinstance(shortcut, dict) else _number(shortcut)
    g["shortcut_auc"] = best
    if best is not None and g["max_shortcut_auc"] is not None:
        g["no_shortcut"] = bool(best < g["max_shortcut_auc"])
        if not g["no_shortcut"]:
            g["reasons"].append(f"a one-number shortcut reaches AUC {best:.3f} ≥ {g['max_shortcut_auc']}")
    if g["learnable"] is False or g["no_shortcut"] is False:
        valid = False
    elif g["learnable"] is None:
        valid = None
    else:
        valid = True
    return valid, g


def _curve(task_rows: list[dict], metric: str) -> dict:
    """Label fraction -> arm -> (mean, s.d., n) of the headline metric."""
    out: dict = {}
    for f in sorted({_fraction(r) for r in task_rows}):
        values = _by_arm([r for r in task_rows if _fraction(r) == f], metric)[0]
        if values:
            out[f] = {a: _mean_sd(v) for a, v in values.items()}
    return out


def _against_scratch(values: dict, seeds: dict, comparisons: dict | None,
                     alpha: float) -> tuple[list, dict, dict, dict]:
    """Paired comparisons, MDDs and spread tests of every arm against scratch (plus skipped arms' reasons)."""
    from semgen_ray.evaluate.statistics import brown_forsythe, compare_paired, mdd_two_sample

    paired, mdd, spread, skipped = [], {}, {}, {}
    if "scratch" not in values or len(values["scratch"]) < 2:
        return paired, mdd, spread, skipped
    unpaired = {c.a: c for c in (comparisons or {}).get("vs_scratch", [])}
    for arm in values:
        if arm == "scratch" or len(values[arm]) < 2:
            continue
        pc = None
        try:
            pc = compare_paired(values[arm], values["scratch"], arm, "scratch", seeds[arm], seeds["scratch"],
                                alpha=alpha, power=POWER)
            paired.append(pc)
        except ValueError as err:
            skipped[arm] = str(err)
        c = unpaired.get(arm)
        if c is not None:
            pooled = math.sqrt(((c.n_a - 1) * c.sd_a ** 2 + (c.n_b - 1) * c.sd_b ** 2) / (c.n_a + c.n_b - 2))
            mdd[arm] = {"observed": c.diff, "sd_pooled": pooled, "n_a": c.n_a, "n_b": c.n_b,
                        "unpaired": mdd_two_sample(pooled, c.n_a, c.n_b, alpha, POWER),
                        "sd_diff": pc.sd_diff if pc else None, "pairs": pc.n if pc else 0,
                        "paired": pc.mdd_paired if pc else None}
        spread[arm] = brown_forsythe(values[arm], values["scratch"])
    return paired, mdd, spread, skipped


def summarise(rows: list[dict], alpha: float, label_fraction: float | None = None, task_info: dict | None = None,
              gates: dict | None = None) -> dict:
    """Per task (see :func:`write_report` for the keys): values, tests, validity and the curve."""
    from semgen_ray.evaluate.statistics import compare_all

    fraction = primary_fraction(rows, label_fraction)
    task_info = task_info or {}
    out = {}
    for task in sorted({r["task"] for r in rows}):
        if task not in HEADLINE:
            raise ValueError(f"unknown task {task!r} in the trial rows; known: {sorted(HEADLINE)}")
        metric = HEADLINE[task]
        task_rows = [r for r in rows if r["task"] == task]
        primary = [r for r in task_rows if _fraction(r) == fraction]
        values, seeds, missing = _by_arm(primary, metric)
        testable = {a: v for a, v in values.items() if len(v) >= 2}
        comparisons = compare_all(testable, higher_is_better=True) if testable else None
        paired, mdd, spread, skipped = _against_scratch(testable, seeds, comparisons, alpha)
        valid, gate = _gate(task, metric, task_rows, task_info.get(task) or {}, gates)
        collapsed = {}
        for a in _arm_order({r["arm"] for r in primary}):
            arm_rows = [r for r in primary if r["arm"] == a]
            collapsed[a] = (sum(_truthy(r.get("collapsed")) for r in arm_rows), len(arm_rows))
        out[task] = {
            "metric": metric, "label_fraction": fraction, "values": values, "seeds": seeds, "missing": missing,
            "untested": sorted(set(values) - set(testable)), "comparisons": comparisons, "paired": paired,
            "paired_skipped": skipped, "mdd": mdd, "spread": spread, "collapsed": collapsed,
            "extras": {m: {a: _mean_sd(v) for a, v in _by_arm(primary, m)[0].items()} for m in EXTRA[task]},
            "test_split": _test_split(task_rows, task_info.get(task) or {}),
            "valid": valid, "gate": gate, "curve": _curve(task_rows, metric),
        }
    return out


# --- report.md ------------------------------------------------------------------------------------


def _fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def _pct(mean: float, sd: float, n: int) -> str:
    return f"{100 * mean:.2f} ± {100 * sd:.2f} [{n}]"


def _fraction_label(f: float) -> str:
    return f"{100 * f:g} %"


def _pp(value: float, sign: str = "+") -> str:
    """A difference (or s.d.) of a metric in [0, 1] in percentage points, the unit of the means."""
    return f"{100 * value:{sign}.2f}"


def _comparison_lines(c, alpha) -> str:
    return (f"| {c.a} | {c.b} | {_pp(c.diff)} [{_pp(c.diff_ci_low)}, {_pp(c.diff_ci_high)}] | "
            f"{c.student_t:.3f} ({c.student_df:.0f}) | {_fmt_p(c.student_p)} {c.stars(alpha)} | "
            f"{c.welch_t:.3f} ({c.welch_df:.1f}) | {_fmt_p(c.welch_p)} | {_fmt_p(c.mannwhitney_p)} | "
            f"{c.cohens_d:.2f} [{c.d_ci_low:.2f}, {c.d_ci_high:.2f}] |")


def _verdict(valid) -> str:
    return {True: "valid", False: "**INVALID**", None: "not measured"}[valid]


def _gate_text(g: dict) -> str:
    if g["threshold"] is None:
        return "no gate set"
    if g["scratch_mean"] is None:
        return f"not measured (no scratch trials at label fraction {g['label_fraction']:g})"
    sign = "≥" if g["learnable"] else "<"
    return (f"mean {g['metric']} {100 * g['scratch_mean']:.2f} % [{g['scratch_n']}] {sign} "
            f"{100 * g['threshold']:g} %: "
            f"{'passed' if g['learnable'] else 'FAILED'}")


def _shortcut_text(g: dict) -> str:
    if g["shortcut_auc"] is None:
        return "not measured"
    if g["max_shortcut_auc"] is None:
        return f"{100 * g['shortcut_auc']:.2f} % (no limit set)"
    sign = "<" if g["no_shortcut"] else "≥"
    return (f"{100 * g['shortcut_auc']:.2f} % {sign} {100 * g['max_shortcut_auc']:g} %: "
            f"{'passed' if g['no_shortcut'] else 'FAILED'}")


def _split_text(t: dict) -> str:
    if t["pos"] is None and t["neg"] is None:
        return "–"
    text = f"{'?' if t['pos'] is None else t['pos']} / {'?' if t['neg'] is None else t['neg']}"
    ranges = [f"{k[:3]} {t[k][0]}–{t[k][1]}" for k in ("pos_range", "neg_range") if k in t]
    return text + (f" (varies: {', '.join(ranges)})" if ranges else "")


def _table(summary: dict, alpha: float) -> list[str]:
    tasks = sorted(summary)
    arms = _arm_order({a for s in summary.values() for a in (*s["values"], *s["collapsed"])})
    head = []
    for t in tasks:
        mark = " — INVALID" if summary[t]["valid"] is False else ""
        head += [f"{t} ({summary[t]['metric']}, %){mark}", "collapsed"]
    lines = ["| arm | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for arm in arms:
        cells = []
        for t in tasks:
            s = summary[t]
            vals = s["values"].get(arm)
            if not vals:
                cell = "–"
            else:
                cell = _pct(*_mean_sd(vals))
                comp = s["comparisons"]
                if comp and comp["best"] == arm:
                    cell = f"**{cell}**"
                elif comp:
                    c = next((c for c in comp["vs_best"] if c.a == arm), None)
                    if c is not None and not c.student_p < alpha:
                        cell += " †"
            k, n = s["collapsed"].get(arm, (0, 0))
            cells += [cell, f"{k}/{n}" if n else "–"]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def _task_section(task: str, s: dict, alpha: float) -> list[str]:
    metric = s["metric"]
    lines = ["", f"## {task}: {metric}", ""]
    if s["valid"] is False:
        lines += [f"**INVALID task** ({'; '.join(s['gate']['reasons'])}): the comparison below is shown for "
                  "completeness but is not interpretable.", ""]
    elif s["valid"] is None:
        lines += ["Task validity not measured: read the comparison with care.", ""]
    lines.append(f"Test split: {_split_text(s['test_split'])} (positives / negatives).")
    missing = {a: k for a, k in s["missing"].items() if k}
    if missing:
        lines.append("Trials without a finite " + metric + " (left out of the tests): "
                     + ", ".join(f"{a} {k}" for a, k in missing.items()) + ".")
    if s["untested"]:
        lines.append("Arms with fewer than 2 trials (not tested): " + ", ".join(s["untested"]) + ".")
    collapsed = {a: kn for a, kn in s["collapsed"].items() if kn[0]}
    if collapsed:
        lines.append("Collapsed trials (kept in every statistic): "
                     + ", ".join(f"{a} {k}/{n}" for a, (k, n) in collapsed.items()) + ".")
    if s["extras"]:
        ms = list(s["extras"])
        arms = _arm_order({a for m in ms for a in s["extras"][m]})
        lines += ["", f"Other metrics (mean ± s.d. in %, [n]); `{metric}` is the headline.", "",
                  "| arm | " + " | ".join(ms) + " |", "|---|" + "---|" * len(ms)]
        for arm in arms:
            lines.append(f"| {arm} | " + " | ".join(_pct(*s["extras"][m][arm]) if arm in s["extras"][m] else "–"
                                                    for m in ms) + " |")
    comp = s["comparisons"]
    if not comp:
        return lines
    note = " (task INVALID: not interpretable)" if s["valid"] is False else ""
    head = ("| arm | vs | difference, points [95 % CI] | Student t (df) | p | Welch t (df) | Welch p | "
            "Mann-Whitney p | Cohen's d [95 % CI] |")
    rule = "|---|---|---|---|---|---|---|---|---|"
    lines += ["", f"### Against the best arm, unpaired{note}", "", f"Best: **{comp['best']}**.", "", head, rule]
    lines += [_comparison_lines(c, alpha) for c in comp["vs_best"]]
    if comp.get("vs_scratch"):
        lines += ["", f"### Against scratch, unpaired{note}", "", head, rule]
        lines += [_comparison_lines(c, alpha) for c in comp["vs_scratch"]]
    if s["paired"] or s["paired_skipped"]:
        lines += ["", f"### Against scratch, paired by seed{note}", "",
                  "Same seed: same labelled subset, data order and head initialisation in both arms.", "",
                  "| arm | vs | pairs | mean paired difference, points [95 % CI] | paired t (df) | p | "
                  "Wilcoxon W (non-zero) | Wilcoxon p |", "|---|---|---|---|---|---|---|---|"]
        for p in s["paired"]:
            lines.append(f"| {p.a} | {p.b} | {p.n} | {_pp(p.diff)} [{_pp(p.diff_ci_low)}, {_pp(p.diff_ci_high)}] | "
                         f"{p.t:.3f} ({p.df}) | {_fmt_p(p.p)} | {p.wilcoxon_w:g} ({p.wilcoxon_n}) | "
                         f"{_fmt_p(p.wilcoxon_p)} |")
        lines += [f"| {a} | scratch | – | not paired: {why} | | | | |" for a, why in s["paired_skipped"].items()]
    if s["mdd"]:
        lines += ["", f"### Minimum detectable difference ({100 * POWER:.0f} % power, two-sided α = {alpha})", "",
                  "The true difference from scratch the test would detect with this power if the true spread "
                  "were the observed one (exact noncentral t). An observed difference below the MDD that is "
                  "not significant says little either way.", "",
                  "| arm | vs | observed difference, points | MDD unpaired, points (pooled s.d., n arm / scratch) | "
                  "MDD paired, points (s.d. of differences, pairs) |", "|---|---|---|---|---|"]
        for arm, m in s["mdd"].items():
            paired = (f"{_pp(m['paired'], '')} ({_pp(m['sd_diff'], '')}, {m['pairs']})" if m["paired"] is not None
                      else "–")
            lines.append(f"| {arm} | scratch | {_pp(m['observed'])} | {_pp(m['unpaired'], '')} "
                         f"({_pp(m['sd_pooled'], '')}, "
                         f"{m['n_a']} / {m['n_b']}) | {paired} |")
    if s["spread"]:
        lines += ["", "### Spread against scratch (Brown-Forsythe)", "",
                  "| arm | vs | s.d. arm, points | s.d. scratch, points | F (df1, df2) | p |", "|---|---|---|---|---|---|"]
        for arm, b in s["spread"].items():
            lines.append(f"| {arm} | scratch | {_pp(b.sds[0], '')} | {_pp(b.sds[1], '')} | {b.statistic:.3f} "
                         f"({b.df1}, {b.df2}) | {_fmt_p(b.p)} |")
    return lines


def _curve_section(summary: dict) -> list[str]:
    lines = ["", "## Label-efficiency curve", "", "![label-efficiency curve](curve.png)", "",
             "Headline metric, mean ± s.d. in % [n], per label fraction."]
    for task, s in summary.items():
        fractions = list(s["curve"])
        arms = _arm_order({a for f in fractions for a in s["curve"][f]})
        lines += ["", f"{task} ({s['metric']}):", "", "| arm | " + " | ".join(map(_fraction_label, fractions)) + " |",
                  "|---|" + "---|" * len(fractions)]
        for arm in arms:
            lines.append(f"| {arm} | " + " | ".join(_pct(*s["curve"][f][arm]) if arm in s["curve"][f] else "–"
                                                    for f in fractions) + " |")
    return lines


def write_markdown(path: Path, summary: dict, alpha: float, header: str = "", figures: list[str] = ()) -> None:
    """``report.md`` from the summary; ``figures`` are file names relative to the report's folder."""
    tasks = sorted(summary)
    fractions = sorted({f for s in summary.values() for f in s["curve"]})
    primary = next((s["label_fraction"] for s in summary.values()), None)
    lines = ["# Target-task evaluation", "", header, ""]
    if primary is not None:
        others = [f for f in fractions if f != primary]
        lines += [f"Primary label fraction **{_fraction_label(primary)}**: the table and every test use the trials "
                  "at this fraction" + (f"; the trials at {', '.join(map(_fraction_label, others))} feed the "
                                        "label-efficiency curve (`curve.png`)." if others else "."), ""]
    lines += [f"Mean ± s.d. over trials in % (n in brackets); every difference, confidence interval, "
              "minimum detectable difference and s.d. below is in percentage points of the same metric "
              "(0.5 → 50.00 %; a difference of 0.0125 → +1.25 points). Headline metrics: "
              + ", ".join(f"{t} `{summary[t]['metric']}`" for t in tasks)
              + f". **Bold**: best arm of the task; †: not significantly different from the best (two-sample "
              f"Student t-test, p ≥ {alpha}); collapsed k/n: trials whose model collapsed, counted and kept in "
              "every statistic. A task marked INVALID failed a validity check: its comparison is not "
              "interpretable.", ""]
    lines += _table(summary, alpha)
    lines += ["", "## Task validity", "",
              "Learnability gate: scratch trials at label fraction 100 % must reach the gate on the headline "
              "metric. Shortcut: the best one-number feature (mean intensity, air fraction, …) must not "
              "separate the classes.", "",
              "| task | test split (pos / neg) | learnability gate (scratch, 100 % labels) | shortcut AUC | verdict |",
              "|---|---|---|---|---|"]
    for t in tasks:
        s = summary[t]
        lines.append(f"| {t} | {_split_text(s['test_split'])} | {_gate_text(s['gate'])} | "
                     f"{_shortcut_text(s['gate'])} | {_verdict(s['valid'])} |")
    for t in tasks:
        lines += _task_section(t, summary[t], alpha)
    if len(fractions) > 1:
        lines += _curve_section(summary)
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    lines += ["", "Stars (paper legend): * p < 0.05, ** p < 0.01, *** p < 0.001, **** p < 0.0001, n.s. otherwise.",
              ""]
    path.write_text("\n".join(lines))


# --- figures --------------------------------------------------------------------------------------


def write_plots(out_dir: Path, summary: dict, alpha: float) -> list[Path]:
    """Box plot and bar chart (mean ± s.d., stars vs scratch) per task at the primary fraction."""
    from semgen_ray.figures import pyplot

    plt = pyplot()
    paths = []
    for task, s in summary.items():
        arms = list(s["values"])
        if not arms:
            continue
        mark = " (INVALID task)" if s["valid"] is False else ""
        fig, ax = plt.subplots(figsize=(1.4 * len(arms) + 2, 3.2), dpi=80)
        ax.boxplot([s["values"][a] for a in arms], tick_labels=arms)
        ax.set_ylabel(s["metric"])
        ax.set_title(f"{task}: {s['metric']} per trial{mark}")
        fig.tight_layout()
        p = out_dir / f"box_{task}.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
        fig = bars_figure(task, s, alpha)
        p = out_dir / f"bars_{task}.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    return paths


def bars_figure(task: str, s: dict, alpha: float):
    """The figure of ``bars_<task>.png`` (the caller closes it): mean ± s.d. per arm, stars (or
    "n.s.") against scratch above each bar, with head room so that no label reaches the title."""
    from semgen_ray.figures import pyplot

    plt = pyplot()
    arms = list(s["values"])
    mark = " (INVALID task)" if s["valid"] is False else ""
    fig, ax = plt.subplots(figsize=(1.4 * len(arms) + 2, 3.2), dpi=80)
    stats_ = [_mean_sd(s["values"][a]) for a in arms]
    means, sds = [m for m, _, _ in stats_], [0.0 if np.isnan(sd) else sd for _, sd, _ in stats_]
    ax.bar(arms, means, yerr=sds, capsize=4, color="#8aa")
    tops = [m + sd for m, sd in zip(means, sds)]
    low = min(0.0, *[m - sd for m, sd in zip(means, sds)])
    high = max(tops)
    room = 0.18 * ((high - low) or 1.0)               # a band above the tallest error bar for the labels
    ax.set_ylim(low, high + room)
    comp = s["comparisons"]
    for c in (comp or {}).get("vs_scratch", []):
        i = arms.index(c.a)
        ax.text(i, tops[i] + 0.02 * (high - low or 1.0), c.stars(alpha), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel(s["metric"])
    ax.set_title(f"{task}: mean ± s.d., stars vs scratch{mark}", fontsize=9)
    fig.tight_layout()
    return fig


def write_curve(out_dir: Path, summary: dict) -> Path | None:
    """``curve.png``: one panel per task, headline mean ± s.d. against the label fraction, a line per arm.

    Drawn only when the trials span more than one label fraction; returns its path or None.
    """
    fractions = sorted({f for s in summary.values() for f in s["curve"]})
    if len(fractions) < 2:
        return None
    from semgen_ray.figures import pyplot

    plt = pyplot()
    tasks = sorted(summary)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), dpi=80, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        s = summary[task]
        arms = _arm_order({a for f in s["curve"] for a in s["curve"][f]})
        for i, arm in enumerate(arms):
            pts = [(f, *s["curve"][f][arm][:2]) for f in s["curve"] if arm in s["curve"][f]]
            x, y, e = (np.array(c) for c in zip(*pts))
            shift = 1.0 + 0.015 * (i - (len(arms) - 1) / 2)  # keeps overlapping error bars apart
            ax.errorbar(100 * x * shift, y, yerr=e, marker="o", capsize=3, label=arm)
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in fractions], [f"{100 * f:g}" for f in fractions])
        ax.minorticks_off()
        ax.set_xlabel("label fraction (%)")
        ax.set_ylabel(s["metric"])
        ax.set_title(f"{task}{' (INVALID task)' if s['valid'] is False else ''}")
        ax.legend(fontsize="small")
    fig.tight_layout()
    p = out_dir / "curve.png"
    fig.savefig(p)
    plt.close(fig)
    return p


def write_report(out_dir: str | Path, rows: list[dict], alpha: float, header: str = "", *,
                 label_fraction: float | None = None, task_info: dict | None = None,
                 gates: dict | None = None) -> dict:
    """Write ``results.csv``, ``report.md``, the box / bar PNGs and (several fractions) ``curve.png``.

    Args:
        rows: one dict per trial (keys as :data:`COLUMNS`; rows without ``label_fraction`` count as 1.0).
        alpha: significance level of the tests (and of the minimum detectable differences).
        header: text put under the title, as given (the caller keeps absolute paths out of it).
        label_fraction: the primary fraction of the table and the tests; None: see :func:`primary_fraction`.
        task_info: task -> ``{"shortcut_auc": {"best": auc, ...}, "counts": {...}}`` (optional).
        gates: ``{"auc": .., "dice": .., "max_shortcut_auc": ..}``: learnability gates per headline
            metric and the highest tolerated shortcut AUC (None: validity not judged).

    Returns:
        task -> dict with ``metric``; ``label_fraction`` (primary); ``values`` and ``seeds`` (arm ->
        lists at the primary fraction, ordered by seed); ``missing`` (arm -> rows without a finite
        value); ``untested`` (arms with < 2 trials, left out of the tests); ``comparisons``
        (:func:`~semgen_ray.evaluate.statistics.compare_all` or None); ``paired`` (list of
        :class:`~semgen_ray.evaluate.statistics.PairedComparison` vs scratch) and ``paired_skipped``
        (arm -> reason); ``mdd`` (arm -> {"observed", "unpaired", "sd_pooled", "n_a", "n_b", "paired",
        "sd_diff", "pairs"} vs scratch at 80 % power); ``spread`` (arm ->
        :class:`~semgen_ray.evaluate.statistics.Spread` vs scratch); ``collapsed`` (arm -> (k, n));
        ``extras`` (metric -> arm -> (mean, sd, n)); ``test_split`` ({"pos", "neg", "source"});
        ``valid`` (True / False / None = not measured); ``gate`` (the checks' details and ``reasons``);
        ``curve`` (fraction -> arm -> (mean, sd, n)).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", rows)
    summary = summarise(rows, alpha, label_fraction=label_fraction, task_info=task_info, gates=gates)
    paths = write_plots(out, summary, alpha)
    curve = write_curve(out, summary)
    figures = [p.name for p in paths] + ([curve.name] if curve else [])
    write_markdown(out / "report.md", summary, alpha, header, figures=[f for f in figures if f != "curve.png"])
    return summary
