"""Two-arm comparisons against hand-computed values and scipy, stars, compare_all, holm."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from semgen_ray.evaluate.statistics import Comparison, compare, compare_all, holm

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
