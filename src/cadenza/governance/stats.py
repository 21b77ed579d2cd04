"""Confidence intervals for success / collision rates (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from statistics import NormalDist


@lru_cache(maxsize=256)
def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (``(0, 1)`` when n == 0).

    Closed form (the same numbers as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``,
    checked in the tests), because sequential scoring and its simulations call it many times."""
    if n <= 0:
        return 0.0, 1.0
    z = _z(float(confidence))
    z2 = z * z
    denom = n + z2
    center = (k + z2 / 2.0) / denom
    half = z / denom * math.sqrt(k * (n - k) / n + z2 / 4.0)
    return max(0.0, center - half), min(1.0, center + half)


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


# ---------------------------------------------------------------------------------------------- paired
def paired_table(a: object, b: object) -> tuple[int, int, int, int]:
    """(both, only a, only b, neither) for two boolean outcome vectors over the same episodes."""
    import numpy as np

    x, y = np.asarray(a, bool), np.asarray(b, bool)
    if x.shape != y.shape:
        raise ValueError(f"paired outcomes need the same episodes, got {x.shape} and {y.shape}")
    return int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum()), int((~x & ~y).sum())


def paired_diff_interval(both: int, only_a: int, only_b: int, neither: int,
                         confidence: float = 0.95) -> tuple[float, float]:
    """Interval for ``p_a - p_b`` from paired outcomes (Newcombe 1998, method 10: Wilson score
    intervals of the two margins combined with the correlation of the pairs). Much narrower than the
    unpaired :func:`diff_interval` when the two policies mostly win and lose the same episodes."""
    n = both + only_a + only_b + neither
    if n <= 0:
        return -1.0, 1.0
    ka, kb = both + only_a, both + only_b
    pa, pb = ka / n, kb / n
    la, ua = wilson(ka, n, confidence)
    lb, ub = wilson(kb, n, confidence)
    denom = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(denom) if denom > 0 else 0.0
    d = pa - pb
    lo = d - math.sqrt(max((pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2, 0.0))
    hi = d + math.sqrt(max((ua - pa) ** 2 - 2 * phi * (ua - pa) * (pb - lb) + (pb - lb) ** 2, 0.0))
    return max(-1.0, lo), min(1.0, hi)


def paired_episodes_needed(table: tuple[int, int, int, int], decided: Callable[[float, float], bool],
                           confidence: float, n_max: int = 1_000_000) -> int | None:
    """Smallest n for which the same paired rates, scaled to n episodes, give a decided interval."""
    n0 = sum(table)
    if n0 == 0:
        return None

    def ok(n: int) -> bool:
        scaled = [round(c * n / n0) for c in table]
        return decided(*paired_diff_interval(*scaled, confidence=confidence))

    return smallest_passing(ok, n_max, start=n0, tol=max(1, n0 // 100))
