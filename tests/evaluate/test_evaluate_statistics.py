"""Two-arm comparisons against hand-computed values and scipy, stars, compare_all, holm; the paired
analysis, the minimum detectable difference and the Brown-Forsythe test against scipy."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from semgen_ray.evaluate.statistics import (Comparison, PairedComparison, Spread, brown_forsythe, compare, compare_all,
                                           compare_paired, holm, mdd_paired, mdd_two_sample, power_t)

A = [1, 2, 3, 4, 5]
B = [2, 4, 6, 8, 10]

# By hand:
#   mean_a = 15/5 = 3;  deviations -2 -1 0 1 2,  SS_a = 4+1+0+1+4 = 10,  var_a = 10/4 = 2.5,  sd_a = sqrt(2.5)
#   mean_b = 30/5 = 6;  deviations -4 -2 0 2 4,  SS_b = 16+4+0+4+16 = 40, var_b = 40/4 = 10,  sd_b = sqrt(10)
#   diff = 3 - 6 = -3
#   Student: pooled var = (4*2.5 + 4*10) / (5+5-2) = 50/8 = 6.25, pooled sd = 2.5, df = 8
#            se = 2.5 * sqrt(1/5 + 1/5) = 2.5 * sqrt(0.4) = sqrt(2.5);  t = -3 / sqrt(2.5) = -sqrt(3.6)
#   Welch:   var_a/n_a = 0.5, var_b/n_b = 2, se² = 2.5 (same t, equal sizes)
#            df = 2.5² / (0.5²/4 + 2²/4) = 6.25 / (0.0625 + 1) = 6.25 / 1.0625 = 100/17 ≈ 5.882353
#   Cohen's d = -3 / 2.5 = -1.2;  se_d = sqrt(10/25 + 1.44/20) = sqrt(0.4 + 0.072) = sqrt(0.472)
#   Mann-Whitney U of a (pairs a_i > b_j count 1, ties 1/2): a=1: 0; a=2: 0.5 (tie with 2); a=3: 1;
#            a=4: 1 + 0.5 = 1.5; a=5: 2  ->  U = 5
MEAN_A, MEAN_B = 3.0, 6.0
SD_A, SD_B = math.sqrt(2.5), math.sqrt(10.0)
T = -math.sqrt(3.6)  # -1.8973665961
WELCH_DF = 100 / 17
D = -1.2
SE_D = math.sqrt(0.472)


def test_compare_against_hand_computed_values():
    c = compare(A, B, a="mg", b="sg")
    assert (c.a, c.b, c.n_a, c.n_b) == ("mg", "sg", 5, 5)
    assert c.mean_a == pytest.approx(MEAN_A, abs=1e-12) and c.mean_b == pytest.approx(MEAN_B, abs=1e-12)
    assert c.sd_a == pytest.approx(SD_A, abs=1e-12) and c.sd_b == pytest.approx(SD_B, abs=1e-12)
    assert c.diff == pytest.approx(-3.0, abs=1e-12)
    assert c.student_t == pytest.approx(T, abs=1e-9) and c.student_df == 8
    assert c.welch_t == pytest.approx(T, abs=1e-9) and c.welch_df == pytest.approx(WELCH_DF, abs=1e-9)
    assert c.cohens_d == pytest.approx(D, abs=1e-12)
    z = 1.959963984540054
    assert c.d_ci_low == pytest.approx(D - z * SE_D, abs=1e-6) and c.d_ci_high == pytest.approx(D + z * SE_D, abs=1e-6)
    assert c.d_ci_low < c.cohens_d < c.d_ci_high
    assert c.mannwhitney_u == 5.0


def test_compare_p_values_and_intervals_match_scipy():
    c = compare(A, B)
    student = stats.ttest_ind(A, B, equal_var=True)
    welch = stats.ttest_ind(A, B, equal_var=False)
    assert c.student_p == pytest.approx(student.pvalue, abs=1e-12)
    assert c.welch_p == pytest.approx(welch.pvalue, abs=1e-12)
    assert c.welch_df == pytest.approx(welch.df, abs=1e-9)
    ci = welch.confidence_interval(0.95)
    assert c.diff_ci_low == pytest.approx(ci.low, abs=1e-9) and c.diff_ci_high == pytest.approx(ci.high, abs=1e-9)
    mw = stats.mannwhitneyu(A, B, alternative="two-sided")
    assert c.mannwhitney_u == mw.statistic and c.mannwhitney_p == pytest.approx(mw.pvalue, abs=1e-12)


@pytest.mark.parametrize("n_a, n_b", [(10, 10), (7, 12), (3, 2)])
def test_compare_matches_scipy_on_random_samples(n_a, n_b):
    rng = np.random.default_rng(n_a * 100 + n_b)
    x, y = rng.normal(0.77, 0.01, n_a), rng.normal(0.76, 0.03, n_b)
    c = compare(x, y)
    for equal_var, t, df, p in [(True, c.student_t, c.student_df, c.student_p),
                                (False, c.welch_t, c.welch_df, c.welch_p)]:
        ref = stats.ttest_ind(x, y, equal_var=equal_var)
        assert t == pytest.approx(ref.statistic, rel=1e-10)
        assert df == pytest.approx(ref.df, rel=1e-10)
        assert p == pytest.approx(ref.pvalue, rel=1e-9)
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval()
    assert (c.diff_ci_low, c.diff_ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert c.diff_ci_low < c.diff < c.diff_ci_high
    assert c.mannwhitney_p == pytest.approx(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def test_swapping_the_arms_flips_the_signs():
    ab, ba = compare(A, B), compare(B, A)
    assert ba.student_t == pytest.approx(-ab.student_t) and ba.student_p == pytest.approx(ab.student_p)
    assert ba.cohens_d == pytest.approx(-ab.cohens_d) and ba.d_ci_low == pytest.approx(-ab.d_ci_high)
    assert ba.mannwhitney_u == 25 - ab.mannwhitney_u


def test_fewer_than_two_values_names_the_arm():
    with pytest.raises(ValueError, match="'scratch'.*at least 2"):
        compare([0.9], [0.8, 0.7], a="scratch", b="sg")
    with pytest.raises(ValueError, match="'sg'"):
        compare([0.9, 0.8], [], a="scratch", b="sg")
    with pytest.raises(ValueError, match="'sg'"):
        compare_all({"scratch": [0.1, 0.2], "sg": [0.3]})
    with pytest.raises(ValueError, match="non-finite"):
        compare([0.9, np.nan], [0.8, 0.7])


def test_zero_variance_in_both_arms():
    same = compare([0.7, 0.7, 0.7], [0.7, 0.7, 0.7])  # equal means: t = 0, p = 1 (np.mean gives 0.6999..98)
    assert (same.student_t, same.student_p, same.welch_t, same.welch_p) == (0.0, 1.0, 0.0, 1.0)
    assert same.welch_df == 4 and same.cohens_d == 0.0 and same.stars() == "n.s."
    assert same.d_ci_low < 0 < same.d_ci_high and same.diff_ci_low == same.diff_ci_high == 0.0
    assert same.mannwhitney_p == 1.0
    assert (same.mean_a, same.sd_a) == (0.7, 0.0)

    higher = compare([0.8, 0.8, 0.8], [0.7, 0.7, 0.7])  # different means: t = +inf, p = 0
    assert higher.student_t == math.inf and higher.welch_t == math.inf
    assert higher.student_p == 0.0 and higher.welch_p == 0.0
    assert higher.cohens_d == math.inf and higher.d_ci_low == higher.d_ci_high == math.inf
    assert higher.diff_ci_low == pytest.approx(0.1) and higher.diff_ci_high == pytest.approx(0.1)
    assert higher.stars() == "****"
    lower = compare([0.7, 0.7], [0.8, 0.8, 0.8])
    assert lower.student_t == -math.inf and lower.cohens_d == -math.inf and lower.student_p == 0.0


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy's reference, on the constant arm
def test_zero_variance_in_one_arm_is_an_ordinary_case():
    c = compare([0.5, 0.5, 0.5], [0.25, 0.5, 1.0])
    ref = stats.ttest_ind([0.5, 0.5, 0.5], [0.25, 0.5, 1.0], equal_var=False)
    assert c.welch_df == pytest.approx(2.0) and c.welch_df == pytest.approx(ref.df)
    assert c.welch_p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("p, want", [(0.2, "n.s."), (0.05, "n.s."), (0.0499, "*"), (0.01, "*"), (0.0099, "**"),
                                     (0.001, "**"), (0.00099, "***"), (0.0001, "***"), (0.000099, "****"),
                                     (0.0, "****"), (math.nan, "n.s.")])
def test_stars_follow_the_papers_legend(p, want):
    c = dataclasses.replace(compare(A, B), student_p=p)
    assert c.stars() == want


def test_stars_use_the_student_p_and_alpha():
    c = dataclasses.replace(compare(A, B), student_p=0.03, welch_p=0.2)
    assert c.stars() == "*"
    assert c.stars(alpha=0.01) == "n.s."
    assert dataclasses.replace(c, student_p=0.07).stars(alpha=0.1) == "n.s."  # no marker above 0.05
    assert compare(A, B).stars() == "n.s."  # p ≈ 0.094


def test_comparison_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        compare(A, B).diff = 0.0
    assert isinstance(compare(A, B), Comparison)


def test_compare_all_best_and_scratch():
    results = {"scratch": [0.74, 0.72, 0.76, 0.75], "mg": [0.77, 0.78, 0.77, 0.76], "sg": [0.78, 0.77, 0.79, 0.78]}
    out = compare_all(results)
    assert out["best"] == "sg"
    assert [(c.a, c.b) for c in out["vs_best"]] == [("scratch", "sg"), ("mg", "sg")]
    assert [(c.a, c.b) for c in out["vs_scratch"]] == [("mg", "scratch"), ("sg", "scratch")]
    assert out["vs_best"][1] == compare(results["mg"], results["sg"], "mg", "sg")
    assert all(c.diff < 0 for c in out["vs_best"]) and all(c.diff > 0 for c in out["vs_scratch"])

    low = compare_all(results, higher_is_better=False)
    assert low["best"] == "scratch"
    assert [(c.a, c.b) for c in low["vs_best"]] == [("mg", "scratch"), ("sg", "scratch")]

    no_scratch = compare_all({"mg": [1.0, 2.0], "sg": [2.0, 3.0]})
    assert no_scratch["best"] == "sg" and "vs_scratch" not in no_scratch
    assert compare_all({"sg": [1.0, 2.0]}) == {"best": "sg", "vs_best": []}


def test_holm_known_case():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01 = 0.03, 2*0.03 = 0.06, 1*0.04 = 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06], abs=1e-12)


def test_holm_is_monotone_capped_and_validated():
    assert holm([]) == []
    assert holm([0.5]) == [0.5]
    assert holm([0.4, 0.6, 0.01]) == pytest.approx([0.8, 0.8, 0.03])  # 3*0.01, 2*0.4, max(0.8, 0.6)
    assert holm([0.9, 0.8]) == [1.0, 1.0]
    p = np.random.default_rng(3).random(20) ** 3
    adjusted = np.array(holm(p))
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all() and (adjusted >= p).all() and (adjusted <= 1).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


# --- paired analysis ------------------------------------------------------------------------------


def _paired_sample(n, seed, ties=False, zeros=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(0.76, 0.02, n)
    d = rng.normal(0.01, 0.015, n)
    if ties:
        d = np.round(d, 2)  # repeated |d|: scipy's normal approximation with the tie correction
    d[:zeros] = 0.0
    return y + d, y


@pytest.mark.parametrize("n, seed, ties, zeros", [(10, 1, False, 0), (10, 2, True, 0), (7, 3, False, 2),
                                                  (12, 4, True, 3), (3, 5, False, 0), (60, 6, False, 0)])
def test_compare_paired_matches_scipy(n, seed, ties, zeros):
    x, y = _paired_sample(n, seed, ties, zeros)
    c = compare_paired(x, y, "sg", "scratch")
    ref = stats.ttest_rel(x, y)
    assert (c.a, c.b, c.n, c.df) == ("sg", "scratch", n, n - 1)
    assert c.t == pytest.approx(ref.statistic, rel=1e-10) and c.p == pytest.approx(ref.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (c.diff_ci_low, c.diff_ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert c.diff == pytest.approx(np.mean(x - y), abs=1e-14)
    assert c.sd_diff == pytest.approx(np.std(x - y, ddof=1), rel=1e-12)
    w = stats.wilcoxon(x, y)
    assert c.wilcoxon_w == w.statistic and c.wilcoxon_p == pytest.approx(w.pvalue, rel=1e-12)
    assert c.wilcoxon_n == np.count_nonzero(x - y)
    lev = stats.levene(x, y, center="median")
    assert c.spread.statistic == pytest.approx(lev.statistic, rel=1e-9)
    assert c.spread.p == pytest.approx(lev.pvalue, rel=1e-9)
    assert c.mdd_paired == pytest.approx(mdd_paired(c.sd_diff, n), rel=1e-12)
    assert c.mdd_unpaired == pytest.approx(mdd_two_sample(c.sd_pooled, n, n), rel=1e-12)
    assert c.sd_pooled == pytest.approx(math.sqrt((np.var(x, ddof=1) + np.var(y, ddof=1)) / 2), rel=1e-12)


def test_compare_paired_pairs_by_seed():
    x, y = _paired_sample(8, 7)
    seeds = np.arange(8)
    order = np.random.default_rng(0).permutation(8)
    # arm a lacks seed 3 and has an extra seed 99; arm b is shuffled and has an extra seed 42
    keep = seeds != 3
    a_vals, a_seeds = list(x[keep]) + [0.1], list(seeds[keep]) + [99]
    b_vals, b_seeds = list(y[order]) + [0.9], list(seeds[order]) + [42]
    c = compare_paired(a_vals, b_vals, "sg", "scratch", a_seeds, b_seeds)
    assert c.seeds == (0, 1, 2, 4, 5, 6, 7) and c.n == 7
    ref = compare_paired(x[keep], y[keep], "sg", "scratch")
    assert dataclasses.replace(ref, seeds=c.seeds) == c
    assert compare_paired(x, y).seeds == tuple(range(8))  # no seeds: positions pair


def test_compare_paired_errors():
    with pytest.raises(ValueError, match="share 1 seed"):
        compare_paired([0.1, 0.2], [0.3, 0.4], "sg", "scratch", [0, 1], [1, 2])
    with pytest.raises(ValueError, match="repeated seeds"):
        compare_paired([0.1, 0.2, 0.3], [0.3, 0.4], "sg", "scratch", [0, 0, 1], [0, 1])
    with pytest.raises(ValueError, match="equal lengths"):
        compare_paired([0.1, 0.2, 0.3], [0.3, 0.4])
    with pytest.raises(ValueError, match="3 values but 2 seeds"):
        compare_paired([0.1, 0.2, 0.3], [0.3, 0.4], "sg", "scratch", [0, 1], [0, 1])
    with pytest.raises(ValueError, match="both arms or of neither"):
        compare_paired([0.1, 0.2], [0.3, 0.4], seeds_a=[0, 1])
    with pytest.raises(ValueError, match="non-finite"):
        compare_paired([0.1, np.nan], [0.3, 0.4])
    with pytest.raises(ValueError, match="power"):
        compare_paired([0.1, 0.2], [0.3, 0.4], alpha=0.05, power=0.01)


def test_compare_paired_zero_and_constant_differences():
    same = compare_paired([0.7, 0.8, 0.75], [0.7, 0.8, 0.75])  # e.g. every trial collapsed in both arms
    assert (same.t, same.p, same.wilcoxon_w, same.wilcoxon_p, same.wilcoxon_n) == (0.0, 1.0, 0.0, 1.0, 0)
    assert same.diff == 0.0 and same.diff_ci_low == same.diff_ci_high == 0.0 and same.mdd_paired == 0.0
    shifted = compare_paired([0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.25, 0.25])  # constant non-zero difference
    assert shifted.t == math.inf and shifted.p == 0.0 and shifted.diff_ci_low == shifted.diff_ci_high == 0.25
    assert shifted.spread.statistic == 0.0 and shifted.spread.p == 1.0  # both arms constant
    with pytest.raises(dataclasses.FrozenInstanceError):
        same.p = 0.0
    assert isinstance(same, PairedComparison) and isinstance(same.spread, Spread)


# --- Brown-Forsythe -------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes, seed, ties", [((10, 10), 1, False), ((7, 12), 2, False), ((5, 6, 9), 3, True),
                                               ((2, 3), 4, False), ((10, 10), 5, True)])
def test_brown_forsythe_matches_scipy_levene_median(sizes, seed, ties):
    rng = np.random.default_rng(seed)
    groups = [rng.normal(0.8, 0.01 * (i + 1), n) for i, n in enumerate(sizes)]
    if ties:
        groups = [np.round(g, 2) for g in groups]
    b = brown_forsythe(*groups)
    ref = stats.levene(*groups, center="median")
    assert b.statistic == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
    assert b.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert (b.df1, b.df2) == (len(sizes) - 1, sum(sizes) - len(sizes))
    assert b.sds == pytest.approx(tuple(np.std(g, ddof=1) for g in groups), rel=1e-12)


def test_brown_forsythe_degenerate_and_errors():
    assert brown_forsythe([1.0, 1.0], [2.0, 2.0, 2.0]).p == 1.0
    wide = brown_forsythe([0.0, 2.0], [1.0, 1.0])  # deviations 1, 1 vs 0, 0: no within-group variation
    assert wide.statistic == math.inf and wide.p == 0.0
    with pytest.raises(ValueError, match="at least 2 groups"):
        brown_forsythe([1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 values"):
        brown_forsythe([1.0, 2.0], [3.0])


# --- minimum detectable difference ----------------------------------------------------------------


def _scipy_power(delta, se, df, alpha=0.05):
    crit = stats.t.ppf(1 - alpha / 2, df)
    ncp = delta / se
    far = stats.nct.cdf(-crit, df, ncp)  # scipy gives nan for some far tails (df = 1), where it is < 1e-15
    return stats.nct.sf(crit, df, ncp) + (0.0 if np.isnan(far) else far)


@pytest.mark.parametrize("sd, n_a, n_b, alpha", [(0.02, 10, 10, 0.05), (0.01, 5, 5, 0.05), (0.03, 7, 12, 0.01),
                                                 (0.05, 2, 2, 0.05), (0.02, 10, 10, 0.1)])
def test_mdd_two_sample_has_80_percent_power(sd, n_a, n_b, alpha):
    mdd = mdd_two_sample(sd, n_a, n_b, alpha)
    se = sd * math.sqrt(1 / n_a + 1 / n_b)
    assert _scipy_power(mdd, se, n_a + n_b - 2, alpha) == pytest.approx(0.80, abs=0.01)
    assert _scipy_power(mdd, se, n_a + n_b - 2, alpha) == pytest.approx(0.80, abs=1e-8)  # solved, not approximated
    assert mdd_two_sample(2 * sd, n_a, n_b, alpha) == pytest.approx(2 * mdd)


@pytest.mark.parametrize("sd, n, alpha", [(0.02, 10, 0.05), (0.01, 3, 0.05), (0.03, 25, 0.01), (0.02, 2, 0.05)])
def test_mdd_paired_has_80_percent_power(sd, n, alpha):
    mdd = mdd_paired(sd, n, alpha)
    assert _scipy_power(mdd, sd / math.sqrt(n), n - 1, alpha) == pytest.approx(0.80, abs=0.01)
    assert power_t(mdd / (sd / math.sqrt(n)), n - 1, alpha) == pytest.approx(0.80, abs=1e-8)


def test_mdd_power_by_simulation():
    rng = np.random.default_rng(11)
    sims, n, sd = 20000, 10, 0.02
    mdd = mdd_two_sample(sd, n, n)
    a = rng.normal(mdd, sd, (sims, n))
    b = rng.normal(0.0, sd, (sims, n))
    assert np.mean(stats.ttest_ind(a, b, axis=1).pvalue < 0.05) == pytest.approx(0.80, abs=0.01)
    mddp = mdd_paired(sd, n)
    d = rng.normal(mddp, sd, (sims, n))
    assert np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05) == pytest.approx(0.80, abs=0.01)


def test_mdd_approaches_the_normal_formula_and_validates():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert mdd_two_sample(1.0, 2000, 2000) == pytest.approx(z * math.sqrt(2 / 2000), rel=1e-3)
    assert mdd_two_sample(1.0, 10, 10) > z * math.sqrt(2 / 10)  # the t correction: small samples see less
    assert mdd_two_sample(0.0, 10, 10) == 0.0
    with pytest.raises(ValueError):
        mdd_paired(0.1, 1)
    with pytest.raises(ValueError):
        mdd_two_sample(-0.1, 5, 5)
    with pytest.raises(ValueError):
        mdd_two_sample(0.1, 5, 5, alpha=0.9, power=0.8)
