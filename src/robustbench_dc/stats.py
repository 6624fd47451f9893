"""Confidence intervals for accuracies."""

from __future__ import annotations

import math


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a proportion ``correct / n`` (as fractions)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of ``values`` (one per training seed): seeds are not more images."""
    from scipy.stats import t

    k = len(values)
    if k < 2:
        raise ValueError("a t-interval needs at least two values")
    mean = sum(values) / k
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    half = float(t.ppf(0.5 + confidence / 2, k - 1)) * sd / math.sqrt(k)
    return (mean - half, mean + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for paired outcomes: ``b`` images right only under A, ``c`` only under B."""
    from scipy.stats import binomtest

    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def paired_difference_interval(b: int, c: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wald interval for the paired difference of proportions ``(b - c) / n`` (as fractions)."""
    if n <= 0:
        return (-1.0, 1.0)
    d = (b - c) / n
    var = max(b + c - (b - c) ** 2 / n, 0.0) / (n * n)
    half = z * math.sqrt(var)
    return (max(-1.0, d - half), min(1.0, d + half))


def paired_t_p(differences: list[float]) -> float:
    """Two-sided p-value of a one-sample t-test that the mean paired difference is zero."""
    from scipy.stats import ttest_1samp

    if len(set(differences)) == 1:
        return 0.0 if differences[0] != 0 else 1.0
    return float(ttest_1samp(differences, 0.0).pvalue)


def at_least_p(differences: list[float], gap: float) -> float:
    """One-sided p-value of a t-test of "the mean paired difference is at least ``gap``" against "less": small where
    the seeds rule out an advantage that large."""
    from scipy.stats import ttest_1samp

    if len(set(differences)) == 1:
        return 0.0 if differences[0] < gap else 1.0
    return float(ttest_1samp(differences, gap, alternative="less").pvalue)


def at_least_p_paired(b: int, c: int, n: int, gap: float) -> float:
    """One image set: the one-sided normal test of "the paired difference ``(b - c) / n`` is at least ``gap``
    points" against "less", with the paired variance of the discordant counts."""
    from scipy.stats import norm

    if n <= 0:
        return 1.0
    d = 100 * (b - c) / n
    se = 100 * math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    if se == 0:
        return 0.0 if d < gap else 1.0
    return float(norm.cdf((d - gap) / se))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family's p-values (the family-wise error held at the test's level)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
