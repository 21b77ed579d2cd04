"""Confidence intervals for success / collision rates (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy.stats import binomtest


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


def episodes_needed(p: float, threshold: float, confidence: float = 0.95, n_max: int = 1_000_000) -> int | None:
    """Smallest n for which the Wilson interval around the same rate ``p`` clears ``threshold``.

    ``None`` when no n up to ``n_max`` does (``p`` sits on the threshold).
    """
    def clears(n: int) -> bool:
        lo, hi = wilson(round(p * n), n, confidence)
        return lo >= threshold or hi < threshold if p >= threshold else hi <= threshold or lo > threshold

    return smallest_passing(clears, n_max)


def episodes_needed_diff(p: float, p_ref: float, margin: float, confidence: float = 0.95,
                         n_max: int = 1_000_000) -> int | None:
    """Smallest n (per arm) for which the difference interval of the same rates clears ``-margin``."""
    def clears(n: int) -> bool:
        lo, hi = diff_interval(round(p * n), n, round(p_ref * n), n, confidence)
        return lo >= -margin or hi < -margin

    return smallest_passing(clears, n_max)


def smallest_passing(ok: Callable[[int], bool], n_max: int, *, start: int = 8, tol: int = 1) -> int | None:
    """Smallest n (within ``tol``) with ``ok(n)``, searched by doubling from ``start`` then bisecting;
    ``None`` when no n up to ``n_max`` passes. ``ok`` must be monotone in n."""
    n = start
    while n <= n_max and not ok(n):
        n *= 2
    if n > n_max:
        return None
    lo, hi = n // 2, n  # bisect between the last failing and the first passing size
    while hi - lo > tol:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi
