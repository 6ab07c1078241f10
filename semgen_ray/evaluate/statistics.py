"""Comparing pre-training arms over repeated fine-tuning trials (docs/method.md §6.2, ten-trial protocol).

The papers report mean ± s.d. over 10 trials and mark significance with an independent two-sample
t-test between the best method and each other row. :func:`compare` gives that test (Student, equal
variances) together with Welch's t-test, the Mann-Whitney U test, Cohen's d with a 95 % interval and
a 95 % Welch interval of the mean difference; :func:`compare_all` runs it for every arm against the
best arm and against ``"scratch"``; :func:`holm` adjusts a family of p-values.

The trials of two arms share, seed by seed, the labelled subset, the data order and the head's
initialisation, so they are also compared as pairs: :func:`compare_paired` gives the paired t-test, the
Wilcoxon signed-rank test and the mean paired difference with its 95 % t interval, the minimum
detectable difference (:func:`mdd_two_sample`, :func:`mdd_paired`: the true difference a two-sided
test at level alpha would detect with 80 % power, taking the observed spread as the true one) and the
Brown-Forsythe test of equal spread (:func:`brown_forsythe`). The paper's unpaired Student test stays
the headline test; the paired analysis says how much the design could see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

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



# --- paired analysis, power and spread -------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Brown-Forsythe test of equal spread: one-way ANOVA on |x - median of its group|.

    ``statistic`` is the F statistic with (``df1``, ``df2``) = (k - 1, N - k) degrees of freedom and
    ``p`` its upper-tail p-value; ``sds`` are the groups' standard deviations (ddof=1), in input order.
    """

    statistic: float
    df1: int
    df2: int
    p: float
    sds: tuple[float, ...]


def brown_forsythe(*groups) -> Spread:
    """Brown-Forsythe test that the groups have the same spread (robust to non-normal scores).

    Levene's test with the group medians as centres (``scipy.stats.levene(center='median')``): with
    z_ij = |x_ij - median_i|, F = ((N - k) / (k - 1)) · Σ n_i (z̄_i - z̄)² / ΣΣ (z_ij - z̄_i)².
    All deviations equal to their group means (zero denominator): F = 0, p = 1 when the group means of
    the deviations agree too (e.g. every group constant), else F = inf, p = 0 (scipy gives nan).

    Raises:
        ValueError: fewer than 2 groups, a group with fewer than 2 values, or non-finite values.
    """
    if len(groups) < 2:
        raise ValueError(f"brown_forsythe needs at least 2 groups, got {len(groups)}")
    arrays = [_values(g, f"group {i}") for i, g in enumerate(groups)]
    sizes = np.array([g.size for g in arrays])
    k, n_total = sizes.size, int(sizes.sum())
    labels = np.repeat(np.arange(k), sizes)
    x = np.concatenate(arrays)
    medians = np.array([np.median(g) for g in arrays])
    z = np.abs(x - medians[labels])
    z_means = np.bincount(labels, weights=z) / sizes
    between = float(sizes @ (z_means - z.mean()) ** 2)
    within = float(((z - z_means[labels]) ** 2).sum())
    df1, df2 = k - 1, n_total - k
    if within == 0.0:
        f, p = (0.0, 1.0) if np.ptp(z_means) == 0.0 else (math.inf, 0.0)
    else:
        f = (between / df1) / (within / df2)
        p = float(stats.f.sf(f, df1, df2))
    sds = tuple(math.sqrt(_moments(g)[1]) for g in arrays)
    return Spread(statistic=f, df1=df1, df2=df2, p=p, sds=sds)


def _check_levels(alpha: float, power: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not alpha < power < 1.0:
        raise ValueError(f"power must lie in (alpha, 1), got {power}")


def power_t(ncp: float, df: float, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test at level ``alpha`` when the statistic is noncentral t(df, ncp).

    P(|T| > t_{1-alpha/2, df}) with T ~ nct(df, ncp): both tails count. The far tail, P(T < -crit), is
    taken as ``nct.sf(crit, df, -ncp)`` (the same number by symmetry; scipy's ``nct.cdf`` returns nan
    for some far-tail arguments at df = 1) and clipped to [0, 1].
    """
    crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    far = float(stats.nct.sf(crit, df, -ncp))
    far = min(1.0, max(0.0, far)) if math.isfinite(far) else 0.0
    return float(stats.nct.sf(crit, df, ncp)) + far


def _ncp_for_power(df: float, alpha: float, power: float) -> float:
    """The noncentrality at which :func:`power_t` equals ``power`` (Brent's method on [0, hi])."""
    _check_levels(alpha, power)
    hi = float(stats.t.ppf(1.0 - alpha / 2.0, df) + stats.norm.ppf(power)) + 1.0
    while power_t(hi, df, alpha) < power:
        hi *= 2.0
    return float(optimize.brentq(lambda ncp: power_t(ncp, df, alpha) - power, 0.0, hi, xtol=1e-12, rtol=1e-12))


def mdd_two_sample(sd: float, n_a: int, n_b: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference of the unpaired two-sample Student t-test.

    The true mean difference that the two-sided pooled-variance t-test at level ``alpha`` (df =
    n_a + n_b - 2) detects with probability ``power`` when the common s.d. is ``sd`` (the observed
    pooled s.d.): the exact noncentral-t solution, ncp solved with ``scipy.optimize.brentq``, then
    MDD = ncp · sd · sqrt(1/n_a + 1/n_b). No normal approximation.
    """
    if n_a < 1 or n_b < 1 or n_a + n_b < 3:
        raise ValueError(f"mdd_two_sample needs n_a, n_b >= 1 and n_a + n_b >= 3, got {n_a}, {n_b}")
    if not (math.isfinite(sd) and sd >= 0.0):
        raise ValueError(f"sd must be finite and >= 0, got {sd}")
    return _ncp_for_power(n_a + n_b - 2, alpha, power) * sd * math.sqrt(1.0 / n_a + 1.0 / n_b)


def mdd_paired(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable mean paired difference of the paired t-test (n pairs, df = n - 1).

    As :func:`mdd_two_sample` with the s.d. of the paired differences: MDD = ncp · sd_diff / sqrt(n),
    ncp from the exact noncentral t.
    """
    if n < 2:
        raise ValueError(f"mdd_paired needs at least 2 pairs, got {n}")
    if not (math.isfinite(sd_diff) and sd_diff >= 0.0):
        raise ValueError(f"sd_diff must be finite and >= 0, got {sd_diff}")
    return _ncp_for_power(n - 1, alpha, power) * sd_diff / math.sqrt(n)


@dataclass(frozen=True)
class PairedComparison:
    """Arm ``a`` against arm ``b`` on the trials paired by seed; differences are a - b.

    Fields: ``seeds`` (the common seeds, sorted) and ``n`` pairs; the arms' means and s.d.s on those
    pairs; ``diff`` (mean paired difference), ``sd_diff`` and its 95 % t interval; the paired t-test
    (``t``, ``df`` = n - 1, ``p``); the Wilcoxon signed-rank test (``wilcoxon_w``: scipy's statistic,
    min(W+, W-); ``wilcoxon_n``: non-zero differences, zeros are dropped; ``wilcoxon_p``); the minimum
    detectable differences at ``power`` and level ``alpha`` of the paired design (``mdd_paired``, from
    ``sd_diff``) and of the unpaired design with the same n per arm (``mdd_unpaired``, from the pooled
    s.d., ``sd_pooled``); and the Brown-Forsythe test of equal spread of the two arms (``spread``).
    All p-values are two-sided.
    """

    a: str
    b: str
    n: int
    seeds: tuple
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    diff: float
    sd_diff: float
    diff_ci_low: float
    diff_ci_high: float
    t: float
    df: int
    p: float
    wilcoxon_w: float
    wilcoxon_n: int
    wilcoxon_p: float
    alpha: float
    power: float
    sd_pooled: float
    mdd_paired: float
    mdd_unpaired: float
    spread: Spread


def _pairs(a_values, b_values, a, b, seeds_a, seeds_b) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Values of both arms at their common seeds (sorted); positions stand for seeds when none are given."""
    x = np.asarray(a_values, dtype=np.float64).ravel()
    y = np.asarray(b_values, dtype=np.float64).ravel()
    if seeds_a is None and seeds_b is None:
        if x.size != y.size:
            raise ValueError(f"without seeds, arms {a!r} and {b!r} need equal lengths, got {x.size} and {y.size}")
        seeds_a = seeds_b = list(range(x.size))
    elif seeds_a is None or seeds_b is None:
        raise ValueError("give the seeds of both arms or of neither")
    by_seed = []
    for arm, values, seeds in ((a, x, list(seeds_a)), (b, y, list(seeds_b))):
        if len(seeds) != values.size:
            raise ValueError(f"arm {arm!r}: {values.size} values but {len(seeds)} seeds")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"arm {arm!r} has repeated seeds")
        by_seed.append(dict(zip(seeds, values)))
    common = tuple(sorted(set(by_seed[0]) & set(by_seed[1])))
    if len(common) < 2:
        raise ValueError(f"arms {a!r} and {b!r} share {len(common)} seed(s); a paired comparison needs at least 2")
    xs = np.array([by_seed[0][s] for s in common])
    ys = np.array([by_seed[1][s] for s in common])
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError(f"arms {a!r} and {b!r} have non-finite values at common seeds")
    return xs, ys, common


def compare_paired(a_values, b_values, a: str = "a", b: str = "b", seeds_a=None, seeds_b=None, *,
                   alpha: float = 0.05, power: float = 0.8) -> PairedComparison:
    """Compare arm ``a`` with arm ``b`` trial by trial, pairing the trials by seed (differences a - b).

    Only seeds present in both arms are used (``seeds_a[i]`` is the seed of ``a_values[i]``; without
    seeds, positions pair). The paired t statistic, df and p agree with ``scipy.stats.ttest_rel``; the
    Wilcoxon test is ``scipy.stats.wilcoxon`` (zeros dropped, exact for small samples without ties),
    except that all-zero differences give W = 0, p = 1 (scipy: nan or a warning). Constant non-zero
    differences give t = ±inf, p = 0 and the interval (diff, diff), as :func:`compare` does.

    Raises:
        ValueError: fewer than 2 common seeds, repeated seeds in an arm, mismatched lengths or
        non-finite paired values.
    """
    _check_levels(alpha, power)
    x, y, seeds = _pairs(a_values, b_values, a, b, seeds_a, seeds_b)
    n = x.size
    d = x - y
    diff, var_d = _moments(d)
    sd_diff = math.sqrt(var_d)
    se = sd_diff / math.sqrt(n)
    t, p = _t_and_p(diff, se, n - 1)
    half = float(stats.t.ppf(0.975, n - 1)) * se
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        w, wp = 0.0, 1.0
    else:
        res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        w, wp = float(res.statistic), float(res.pvalue)
        if math.isnan(wp):  # defensive
            wp = 1.0
    (mean_a, var_a), (mean_b, var_b) = _moments(x), _moments(y)
    sd_pooled = math.sqrt((var_a + var_b) / 2.0)  # equal n: the pooled variance is the plain average
    return PairedComparison(
        a=a, b=b, n=n, seeds=seeds, mean_a=mean_a, mean_b=mean_b, sd_a=math.sqrt(var_a), sd_b=math.sqrt(var_b),
        diff=diff, sd_diff=sd_diff, diff_ci_low=diff - half, diff_ci_high=diff + half,
        t=t, df=n - 1, p=p, wilcoxon_w=w, wilcoxon_n=nonzero, wilcoxon_p=wp, alpha=alpha, power=power,
        sd_pooled=sd_pooled, mdd_paired=mdd_paired(sd_diff, n, alpha, power),
        mdd_unpaired=mdd_two_sample(sd_pooled, n, n, alpha, power), spread=brown_forsythe(x, y),
    )
