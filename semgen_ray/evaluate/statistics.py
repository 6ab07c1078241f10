"""Comparing pre-training arms over repeated fine-tuning trials (SPEC.md §6.2, ten-trial protocol).

The papers report mean ± s.d. over 10 trials and mark significance with an independent two-sample
t-test between the best method and each other row. :func:`compare` gives that test (Student, equal
variances) together with Welch's t-test, the Mann-Whitney U test, Cohen's d with a 95 % interval and
a 95 % Welch interval of the mean difference; :func:`compare_all` runs it for every arm against the
best arm and against ``"scratch"``; :func:`holm` adjusts a family of p-values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Significance levels of the paper's legend (SG ``images/result1.png``), with their markers.
STAR_LEVELS = ((0.0001, "****"), (0.001, "***"), (0.01, "**"), (0.05, "*"))


@dataclass(frozen=True)
class Comparison:
    """Arm ``a`` against arm ``b``; every difference is a - b. Standard deviations use ddof=1.

    Fields: the sizes, means and s.d.s of both arms; ``diff`` = mean_a - mean_b; Student's t-test
    (pooled variance, df = n_a + n_b - 2); Welch's t-test (Welch-Satterthwaite df); the two-sided
    Mann-Whitney U (U of arm a); Cohen's d = diff / pooled s.d. with a 95 % normal-approximation
    interval, se = sqrt((n_a + n_b) / (n_a n_b) + d² / (2 (n_a + n_b))); and the 95 % Welch interval
    of ``diff``. All p-values are two-sided.
    """

    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    diff: float
    student_t: float
    student_df: float
    student_p: float
    welch_t: float
    welch_df: float
    welch_p: float
    mannwhitney_u: float
    mannwhitney_p: float
    cohens_d: float
    d_ci_low: float
    d_ci_high: float
    diff_ci_low: float
    diff_ci_high: float

    def stars(self, alpha: float = 0.05) -> str:
        """The paper's marker for ``student_p`` (the papers use the independent two-sample t-test).

        Legend of SG ``images/result1.png``: "*" p < 0.05, "**" p < 0.01, "***" p < 0.001,
        "****" p < 0.0001 (the legend's ">***"), "n.s." otherwise. ``alpha`` is the significance
        level: p >= alpha (or a nan p) gives "n.s." whatever the markers say; a p below alpha but not
        below 0.05 (alpha > 0.05) is also "n.s.", as the legend has no marker for it.
        """
        p = self.student_p
        if not p < alpha:  # also catches nan
            return "n.s."
        for level, marker in STAR_LEVELS:
            if p < level:
                return marker
        return "n.s."


def _values(values, arm: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"arm {arm!r} needs at least 2 values for a comparison, got {x.size}")
    if not np.isfinite(x).all():
        raise ValueError(f"arm {arm!r} has non-finite values")
    return x


def _moments(x: np.ndarray) -> tuple[float, float]:
    """Mean and variance (ddof=1); a constant arm gets exactly its value and 0 (not rounding noise)."""
    if (x == x[0]).all():
        return float(x[0]), 0.0
    return float(x.mean()), float(x.var(ddof=1))


def _t_and_p(diff: float, se: float, df: float) -> tuple[float, float]:
    """t = diff / se and its two-sided p; se = 0 gives t = 0, p = 1 (diff = 0) or t = ±inf, p = 0."""
    if se == 0.0:
        if diff == 0.0:
            return 0.0, 1.0
        return math.copysign(math.inf, diff), 0.0
    t = diff / se
    return t, float(min(1.0, 2.0 * stats.t.sf(abs(t), df)))


def compare(a_values, b_values, a: str = "a", b: str = "b") -> Comparison:
    """Compare the trial results of arm ``a`` with those of arm ``b`` (differences are a - b).

    The t statistics, degrees of freedom and p-values follow the textbook formulas
    (Student: pooled variance, df = n_a + n_b - 2; Welch: se² = s_a²/n_a + s_b²/n_b,
    df = se⁴ / ((s_a²/n_a)² / (n_a - 1) + (s_b²/n_b)² / (n_b - 1))); they agree with
    ``scipy.stats.ttest_ind(equal_var=True/False)``.

    An arm whose values are all identical gets exactly that mean and variance 0 (``np.mean`` of
    [0.7, 0.7, 0.7] is 0.6999999999999998, which would leave a spurious tiny variance).
    Zero variance in both arms (e.g. identical scores in every trial): the standard errors are 0, and
    instead of scipy's nan the result is t = 0, p = 1 when the means are equal and t = ±inf, p = 0
    when they differ; Welch's df (0/0) is then set to n_a + n_b - 2, Cohen's d is 0 or ±inf, an
    infinite d gets the degenerate interval (d, d), and the difference interval is (diff, diff).

    Raises:
        ValueError: an arm has fewer than 2 values (the message names the arm), or non-finite values.
    """
    x, y = _values(a_values, a), _values(b_values, b)
    n_a, n_b = x.size, y.size
    (mean_a, var_a), (mean_b, var_b) = _moments(x), _moments(y)
    diff = mean_a - mean_b

    student_df = float(n_a + n_b - 2)
    pooled_var = ((n_a - 1) * var_a + (n_b - 1) * var_b) / student_df
    pooled_sd = math.sqrt(pooled_var)
    student_t, student_p = _t_and_p(diff, pooled_sd * math.sqrt(1.0 / n_a + 1.0 / n_b), student_df)

    va, vb = var_a / n_a, var_b / n_b
    welch_se = math.sqrt(va + vb)
    if welch_se == 0.0:
        welch_df = student_df
    else:
        welch_df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    welch_t, welch_p = _t_and_p(diff, welch_se, welch_df)

    mw = stats.mannwhitneyu(x, y, alternative="two-sided")
    mw_u, mw_p = float(mw.statistic), float(mw.pvalue)
    if math.isnan(mw_p):  # defensive: all values tied
        mw_p = 1.0

    if pooled_sd == 0.0:
        d = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    else:
        d = diff / pooled_sd
    z = float(stats.norm.ppf(0.975))
    if math.isfinite(d):
        se_d = math.sqrt((n_a + n_b) / (n_a * n_b) + d * d / (2.0 * (n_a + n_b)))
        d_ci = (d - z * se_d, d + z * se_d)
    else:
        d_ci = (d, d)
    half = float(stats.t.ppf(0.975, welch_df)) * welch_se
    return Comparison(
        a=a, b=b, n_a=n_a, n_b=n_b, mean_a=mean_a, mean_b=mean_b,
        sd_a=math.sqrt(var_a), sd_b=math.sqrt(var_b), diff=diff,
        student_t=student_t, student_df=student_df, student_p=student_p,
        welch_t=welch_t, welch_df=welch_df, welch_p=welch_p,
        mannwhitney_u=mw_u, mannwhitney_p=mw_p,
        cohens_d=d, d_ci_low=d_ci[0], d_ci_high=d_ci[1],
        diff_ci_low=diff - half, diff_ci_high=diff + half,
    )


def compare_all(results: dict[str, list[float]], higher_is_better: bool = True) -> dict:
    """Compare every arm with the best arm and with ``"scratch"``, as the papers' tables do.

    Args:
        results: arm name -> per-trial scores (e.g. 10 AUC or IoU values).
        higher_is_better: the best arm has the highest mean (False: the lowest, e.g. for a loss).

    Returns:
        ``{"best": arm, "vs_best": [compare(arm, best) for every other arm]}``, plus
        ``"vs_scratch": [compare(arm, "scratch") for every other arm]`` only when an arm named
        ``"scratch"`` exists. Arms keep the order of ``results``; a tie for the best mean goes to the
        first such arm.
    """
    if not results:
        raise ValueError("compare_all: no arms")
    for arm, values in results.items():
        _values(values, arm)
    means = {arm: float(np.mean(values)) for arm, values in results.items()}
    pick = max if higher_is_better else min
    best = pick(means, key=means.__getitem__)
    out: dict = {
        "best": best,
        "vs_best": [compare(values, results[best], arm, best) for arm, values in results.items() if arm != best],
    }
    if "scratch" in results:
        out["vs_scratch"] = [compare(values, results["scratch"], arm, "scratch")
                             for arm, values in results.items() if arm != "scratch"]
    return out


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the p-values sorted ascending, p_(i) (i = 1..m) becomes max_{j <= i} (m - j + 1) p_(j),
    capped at 1; an adjusted p below alpha rejects at family-wise level alpha.

    Example: ``holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]`` (up to rounding).
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if p.size == 0:
        return []
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("holm: p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()
