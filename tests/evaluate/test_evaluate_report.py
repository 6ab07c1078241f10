"""The evaluation report on synthetic trial rows: table, collapsed counts, task validity, paired
analysis, label-efficiency curve, relative paths only, CSV round trip."""

import math
import re

import numpy as np
import pytest

from semgen_ray.evaluate.report import COLUMNS, primary_fraction, read_csv, write_report
from semgen_ray.evaluate.statistics import brown_forsythe, compare_paired, mdd_two_sample

from figures import check_evaluation_figures

GATES = {"auc": 0.80, "dice": 0.5, "max_shortcut_auc": 0.75}
SHIFT = {"scratch": 0.0, "restoration": 0.01, "semantic_genesis": 0.03}


def make_rows(fractions=(1.0,), seeds=5, base=0.85, collapsed=(("restoration", 0),), tasks=("classification",
              "segmentation"), seed=0):
    """Trials of every task × arm × fraction × seed; the headline grows with the fraction and the arm's shift."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in tasks:
        for arm, shift in SHIFT.items():
            for f in fractions:
                for s in range(seeds):
                    value = base - 0.2 * (1 - f) + shift + rng.normal(0, 0.01)
                    r = {"task": task, "arm": arm, "seed": s, "label_fraction": f, "val_loss": 0.25 + 0.01 * s,
                         "steps": 200, "best_step": 120 + s, "validations": 10, "collapsed": (arm, s) in collapsed,
                         "train_cases": 40, "test_cases": 30, "test_pos": 10, "test_neg": 20, "lr_final": 2.5e-4,
                         "seconds": 12.5}
                    if task == "classification":
                        r["auc"] = value
                    else:
                        r.update(dice=value, iou=value - 0.1, mean_iou=value + 0.05)
                    rows.append(r)
    return rows


def test_table_collapsed_counts_and_summary(tmp_path):
    rows = make_rows()
    summary = write_report(tmp_path, rows, 0.05, "Header text", gates=GATES)
    text = (tmp_path / "report.md").read_text()
    assert set(summary) == {"classification", "segmentation"}
    s = summary["classification"]
    assert s["metric"] == "auc" and summary["segmentation"]["metric"] == "dice"
    assert {"metric", "label_fraction", "values", "seeds", "comparisons", "paired", "mdd", "spread", "collapsed",
            "valid", "gate", "curve", "test_split", "extras"} <= set(s)
    assert list(s["values"]) == ["scratch", "restoration", "semantic_genesis"]
    auc = {a: [r["auc"] for r in rows if r["task"] == "classification" and r["arm"] == a] for a in SHIFT}
    assert s["values"] == auc and s["seeds"]["scratch"] == [0, 1, 2, 3, 4]
    sg = np.array(auc["semantic_genesis"])
    cell = f"{100 * sg.mean():.2f} ± {100 * sg.std(ddof=1):.2f} [5]"
    assert f"**{cell}**" in text  # best arm in bold
    assert s["comparisons"]["best"] == "semantic_genesis"
    assert s["collapsed"] == {"scratch": (0, 5), "restoration": (1, 5), "semantic_genesis": (0, 5)}
    assert re.search(r"\| restoration \| [^|]+ \| 1/5 \|", text)  # collapsed column of the table
    assert "restoration 1/5" in text
    assert s["test_split"]["pos"] == 10 and s["test_split"]["neg"] == 20 and "10 / 20" in text
    assert s["valid"] is True and summary["segmentation"]["valid"] is True
    assert "Header text" in text and "paired by seed" in text and "Brown-Forsythe" in text
    assert "Minimum detectable difference" in text
    seg = summary["segmentation"]
    assert set(seg["extras"]) == {"iou", "mean_iou"} and "| arm | iou | mean_iou |" in text
    assert seg["extras"]["iou"]["scratch"][2] == 5
    for metric in ("iou", "mean_iou"):  # the other metrics' s.d. is the sample s.d., as the headline's
        v = np.array([r[metric] for r in rows if r["task"] == "segmentation" and r["arm"] == "restoration"])
        assert seg["extras"][metric]["restoration"] == (pytest.approx(v.mean()), pytest.approx(v.std(ddof=1)), 5)
        assert f"{100 * v.mean():.2f} ± {100 * v.std(ddof=1):.2f} [5]" in text


def test_paired_mdd_and_spread_in_summary(tmp_path):
    rows = make_rows(seeds=6)
    s = write_report(tmp_path, rows, 0.05, gates=GATES)["classification"]
    assert [p.a for p in s["paired"]] == ["restoration", "semantic_genesis"]
    assert all(p.b == "scratch" and p.n == 6 for p in s["paired"])
    want = compare_paired(s["values"]["semantic_genesis"], s["values"]["scratch"], "semantic_genesis", "scratch",
                          s["seeds"]["semantic_genesis"], s["seeds"]["scratch"])
    assert s["paired"][1] == want
    m = s["mdd"]["semantic_genesis"]
    assert m["paired"] == pytest.approx(want.mdd_paired)
    assert m["unpaired"] == pytest.approx(mdd_two_sample(want.sd_pooled, 6, 6))
    assert s["spread"]["restoration"] == brown_forsythe(s["values"]["restoration"], s["values"]["scratch"])
    text = (tmp_path / "report.md").read_text()
    # one unit: the means are in %, so the differences, CIs and MDDs are in percentage points
    pp = [f"{100 * v:+.2f}" for v in (want.diff, want.diff_ci_low, want.diff_ci_high)]
    assert f"| semantic_genesis | scratch | 6 | {pp[0]} [{pp[1]}, {pp[2]}] |" in text
    assert f"| semantic_genesis | scratch | {100 * m['observed']:+.2f} | {100 * m['unpaired']:.2f} (" in text
    assert "percentage points" in text and not re.search(r"[+-]0\.\d{4}\b", text)   # no fractions left


def test_pairing_skips_arms_without_common_seeds(tmp_path):
    rows = [r for r in make_rows(tasks=("classification",))
            if not (r["arm"] == "restoration" and r["seed"] > 1)]
    for r in rows:
        if r["arm"] == "restoration":
            r["seed"] += 10  # no seed in common with scratch
    s = write_report(tmp_path, rows, 0.05)["classification"]
    assert [p.a for p in s["paired"]] == ["semantic_genesis"] and "restoration" in s["paired_skipped"]
    assert s["mdd"]["restoration"]["paired"] is None and s["mdd"]["restoration"]["unpaired"] > 0
    assert "not paired" in (tmp_path / "report.md").read_text()


def test_invalid_when_scratch_below_gate(tmp_path):
    rows = make_rows(base=0.70)  # scratch at 100 %: auc ≈ 0.70 < 0.80; dice ≈ 0.70 ≥ 0.5
    summary = write_report(tmp_path, rows, 0.05, gates=GATES)
    c = summary["classification"]
    assert c["valid"] is False and c["gate"]["learnable"] is False
    assert c["gate"]["scratch_mean"] == pytest.approx(np.mean(c["values"]["scratch"]))
    assert summary["segmentation"]["valid"] is True
    text = (tmp_path / "report.md").read_text()
    assert "classification (auc, %) — INVALID" in text and "**INVALID task**" in text
    assert "not interpretable" in text and "FAILED" in text
    assert f"mean auc {100 * c['gate']['scratch_mean']:.2f} % [5] < 80 %: FAILED" in text   # in %, as the table
    assert c["comparisons"] is not None  # still shown


def test_invalid_when_shortcut_auc_too_high(tmp_path):
    info = {"classification": {"shortcut_auc": {"best": 0.81, "mean_intensity": 0.81}}}
    summary = write_report(tmp_path, make_rows(), 0.05, task_info=info, gates=GATES)
    g = summary["classification"]["gate"]
    assert summary["classification"]["valid"] is False and g["learnable"] is True and g["no_shortcut"] is False
    assert g["shortcut_auc"] == 0.81 and any("shortcut" in r for r in g["reasons"])
    ok = write_report(tmp_path / "ok", make_rows(), 0.05, gates=GATES,
                      task_info={"classification": {"shortcut_auc": {"best": 0.6}}})
    assert ok["classification"]["valid"] is True and ok["classification"]["gate"]["no_shortcut"] is True


def test_gate_not_measured_without_full_label_scratch_rows(tmp_path):
    rows = make_rows(fractions=(0.5,))
    summary = write_report(tmp_path, rows, 0.05, gates=GATES)
    assert summary["classification"]["label_fraction"] == 0.5
    assert summary["classification"]["valid"] is None and summary["classification"]["gate"]["learnable"] is None
    text = (tmp_path / "report.md").read_text()
    assert "not measured" in text and "**INVALID" not in text and "— INVALID" not in text
    no_gates = write_report(tmp_path / "none", make_rows(), 0.05)
    assert no_gates["classification"]["valid"] is None


def test_curve_written_for_several_fractions(tmp_path):
    rows = make_rows(fractions=(0.1, 0.2, 0.5, 1.0))
    summary = write_report(tmp_path, rows, 0.05, gates=GATES)
    check_evaluation_figures(tmp_path, tasks=("classification", "segmentation"), arms=len(SHIFT))
    s = summary["classification"]
    assert s["label_fraction"] == 1.0  # None: the largest fraction
    assert all(len(v) == 5 for v in s["values"].values())  # only the primary fraction's trials
    assert list(s["curve"]) == [0.1, 0.2, 0.5, 1.0]
    sub = [r["auc"] for r in rows if r["task"] == "classification" and r["arm"] == "scratch"
           and r["label_fraction"] == 0.2]
    mean, sd, n = s["curve"][0.2]["scratch"]
    assert (mean, sd, n) == (pytest.approx(np.mean(sub)), pytest.approx(np.std(sub, ddof=1)), 5)
    text = (tmp_path / "report.md").read_text()
    assert "![label-efficiency curve](curve.png)" in text and "| arm | 10 % | 20 % | 50 % | 100 % |" in text

    low = write_report(tmp_path / "low", rows, 0.05, label_fraction=0.2, gates=GATES)["classification"]
    assert low["label_fraction"] == 0.2 and low["values"]["scratch"] == sub
    assert low["valid"] is True  # the gate still reads the 100 % scratch rows

    single = write_report(tmp_path / "single", make_rows(), 0.05)
    assert not (tmp_path / "single" / "curve.png").exists() and list(single["classification"]["curve"]) == [1.0]


def test_primary_fraction_rules():
    rows = make_rows(fractions=(0.1, 0.5), tasks=("classification",))
    assert primary_fraction(rows) == 0.5 and primary_fraction(rows, 0.1) == 0.1
    assert primary_fraction([{"task": "classification", "arm": "scratch"}]) == 1.0  # no fraction: all labels
    assert primary_fraction([]) is None


def test_no_absolute_path_in_report(tmp_path):
    out = tmp_path / "run" / "evaluate"
    write_report(out, make_rows(fractions=(0.5, 1.0)), 0.05, "Target store `store`", gates=GATES)
    text = (out / "report.md").read_text()
    assert str(tmp_path) not in text and "/tmp" not in text
    assert not re.search(r"\]\(/", text)  # image links are relative
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (out / link).is_file()


def test_test_split_from_task_info_when_rows_lack_it(tmp_path):
    rows = make_rows(tasks=("classification",))
    for r in rows:
        del r["test_pos"], r["test_neg"]
    info = {"classification": {"counts": {"test": {"pos": 7, "neg": 14}}}}
    s = write_report(tmp_path, rows, 0.05, task_info=info)["classification"]
    assert s["test_split"] == {"pos": 7, "neg": 14, "source": "task_info"}
    assert "7 / 14" in (tmp_path / "report.md").read_text()


def test_csv_round_trip(tmp_path):
    rows = make_rows(fractions=(0.5, 1.0))
    rows[0]["auc"] = None  # a missing value stays missing
    write_report(tmp_path, rows, 0.05)
    back = read_csv(tmp_path / "results.csv")
    assert len(back) == len(rows)
    assert list(back[0]) == list(COLUMNS)
    for got, want in zip(back, rows):
        assert got == {k: want.get(k) for k in COLUMNS}
    assert isinstance(back[0]["collapsed"], bool) and isinstance(back[0]["seed"], int)


def test_missing_values_and_small_arms(tmp_path):
    rows = make_rows(tasks=("classification",))
    for r in rows:
        if r["arm"] == "restoration" and r["seed"] > 0:
            r["auc"] = math.nan  # one finite trial left: reported, not tested
    s = write_report(tmp_path, rows, 0.05)["classification"]
    assert s["missing"] == {"restoration": 4} and s["untested"] == ["restoration"]
    assert s["comparisons"]["best"] == "semantic_genesis" and [p.a for p in s["paired"]] == ["semantic_genesis"]
    assert "not tested" in (tmp_path / "report.md").read_text()


def test_csv_columns_cover_the_trial_rows():
    from semgen_ray.evaluate.finetune import ROW_KEYS

    assert set(ROW_KEYS) <= set(COLUMNS)


def test_unknown_task_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        write_report(tmp_path, [{"task": "detection", "arm": "scratch", "seed": 0, "auc": 0.5}], 0.05)


def test_bar_labels_stay_inside_the_axes_below_the_title(tmp_path):
    """The stars / "n.s." above each bar sit inside the axes, under the title, whatever the bar heights
    (checked on the drawn figure: label boxes against the title's and the axes' boxes)."""
    import matplotlib.pyplot as plt

    from semgen_ray.evaluate.report import bars_figure

    rows = make_rows(seeds=3, tasks=("classification",), base=0.95)    # bars near the top, n.s. labels
    s = write_report(tmp_path, rows, 0.05)["classification"]
    fig = bars_figure("classification", s, 0.05)
    try:
        (ax,) = fig.axes
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        labels = [t for t in ax.texts if t.get_text()]
        assert len(labels) == 2 and {t.get_text() for t in labels} <= {"n.s.", "*", "**", "***", "****"}
        title, frame = ax.title.get_window_extent(r), ax.get_window_extent(r)
        for t in labels:
            box = t.get_window_extent(r)
            assert box.y1 <= frame.y1 and box.y1 < title.y0, (t.get_text(), box, title)
    finally:
        plt.close(fig)


def test_gate_settings_and_alpha_change_the_verdicts():
    """evaluate.gate_auc, gate_dice, max_shortcut_auc and alpha as the evaluate stage hands them to
    write_report (its summary, without the files and plots): the same trial rows pass or fail the
    gates, and the minimum detectable difference shrinks with a larger alpha, by the settings alone."""
    from semgen_ray.evaluate.report import summarise

    rows = make_rows(base=0.70)  # scratch at 100 %: auc and dice ≈ 0.70
    info = {"classification": {"shortcut_auc": {"best": 0.78}}}

    def summary(alpha=0.05, gate_auc=0.80, gate_dice=0.50, max_shortcut_auc=0.75):
        gates = {"auc": gate_auc, "dice": gate_dice, "max_shortcut_auc": max_shortcut_auc}
        return summarise(rows, alpha, task_info=info, gates=gates)

    base = summary()
    cls, seg = base["classification"]["gate"], base["segmentation"]["gate"]
    assert cls["learnable"] is False and cls["no_shortcut"] is False and seg["learnable"] is True
    changed = summary(gate_auc=0.60, gate_dice=0.75, max_shortcut_auc=0.80)
    cls, seg = changed["classification"]["gate"], changed["segmentation"]["gate"]
    assert cls["learnable"] is True and cls["no_shortcut"] is True and changed["classification"]["valid"] is True
    assert seg["learnable"] is False and changed["segmentation"]["valid"] is False
    loose = summary(alpha=0.2)
    for arm in ("restoration", "semantic_genesis"):
        assert loose["classification"]["mdd"][arm]["unpaired"] < base["classification"]["mdd"][arm]["unpaired"]
