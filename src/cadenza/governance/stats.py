"""Confidence intervals for success / collision rates (pure functions)."""

from __future__ import annotations

import math

from scipy.stats import binomtest, norm


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (``(0, 1)`` when n == 0)."""
    if n <= 0:
        return 0.0, 1.0
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def diff_interval(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``p1 - p2`` (two independent proportions)."""
    if n1 <= 0 or n2 <= 0:
        return -1.0, 1.0
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, confidence)
    l2, u2 = wilson(k2, n2, confidence)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, lo), min(1.0, hi)


def episodes_needed(p: float, threshold: float, confidence: float = 0.95) -> int | None:
    """Episodes for the interval around ``p`` to clear ``threshold`` (normal approximation).

    ``None`` when ``p`` sits on the threshold (no finite number of episodes decides it).
    """
    gap = abs(p - threshold)
    if gap < 1e-6:
        return None
    z = norm.ppf(0.5 + confidence / 2)
    var = max(p * (1 - p), 0.25 / 100)  # avoid 0 at p in {0, 1}
    return int(math.ceil(z * z * var / (gap * gap)))
