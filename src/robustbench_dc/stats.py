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


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


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
