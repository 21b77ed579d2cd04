"""How the bench measures learning (pure functions): evaluation schedule, steps to threshold, seed bands.

Every arm is evaluated with its deterministic policy on the same held-out episodes at the project's
target level, at step 0 and then at the first training boundary at or past each target of
:func:`eval_targets`; after training, one larger final evaluation closes the curve. A curve is a list
of points ``{"env_steps", "episodes", "successes", "success_rate", ...}``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any


def eval_targets(budget: int) -> list[int]:
    """Env-step targets for the periodic evaluation: 0, a geometric run from budget/64 (ratio sqrt 2) and every tenth.

    The geometric part gives early points (where a residual may already be done) without evaluating
    every round; the tenths keep the late curve readable. Targets at or past the budget are left to the
    final evaluation.
    """
    if budget <= 0:
        return [0]
    pts = {0}
    pts.update(round(budget * 2 ** (-k / 2)) for k in range(1, 13))
    pts.update(budget * i // 10 for i in range(1, 10))
    return sorted(p for p in pts if 0 <= p < budget)


def due(targets: Sequence[int], done_before: int, done_now: int) -> bool:
    """Whether a target was crossed by the training step that went from ``done_before`` to ``done_now`` env steps."""
    return any(done_before < t <= done_now for t in targets)


def first_reaching(curve: Sequence[dict[str, Any]], threshold: float) -> int | None:
    """Env steps of the first evaluation whose success rate is at or above ``threshold`` (None: never)."""
    for p in curve:
        if p["episodes"] > 0 and p["success_rate"] >= threshold:
            return int(p["env_steps"])
    return None


def sustained(curve: Sequence[dict[str, Any]], threshold: float) -> int | None:
    """Env steps of the first of two consecutive evaluations at or above ``threshold`` (None: never): the sample-
    efficiency bench's measure, robust to one lucky evaluation. A run's final evaluation is the last point of its
    curve, so a run that stops early counts it as the second."""
    pts = [p for p in curve if p["episodes"] > 0]
    for a, b in itertools.pairwise(pts):
        if a["success_rate"] >= threshold and b["success_rate"] >= threshold:
            return int(a["env_steps"])
    return None


def median_steps(values: Sequence[int | None]) -> float | None:
    """Median over seeds with "not reached" (None) ranked above every number; None when the median is not reached.

    So an arm "reaches" the threshold only when more than half of its seeds did (for an even count,
    both middle seeds must have).
    """
    if not values:
        return None
    key = sorted(math.inf if v is None else float(v) for v in values)
    n = len(key)
    m = key[n // 2] if n % 2 else (key[n // 2 - 1] + key[n // 2]) / 2
    return None if math.isinf(m) else m


def value_at(curve: Sequence[dict[str, Any]], x: float, key: str = "success_rate") -> float:
    """The curve's value at ``x``: the last evaluation at or before ``x`` (a stopped run keeps its final value)."""
    val = math.nan
    for p in curve:
        if p["env_steps"] <= x:
            val = p[key]
        else:
            break
    return val


def band(curves: Sequence[Sequence[dict[str, Any]]], key: str = "success_rate"
         ) -> tuple[list[float], list[float], list[float], list[float]]:
    """Mean, lowest and highest seed at every evaluation step of any seed (x, mean, low, high)."""
    xs = sorted({float(p["env_steps"]) for c in curves for p in c})
    mean, lo, hi = [], [], []
    for x in xs:
        vals = [v for v in (value_at(c, x, key) for c in curves) if not math.isnan(v)]
        if not vals:
            mean.append(math.nan)
            lo.append(math.nan)
            hi.append(math.nan)
            continue
        mean.append(sum(vals) / len(vals))
        lo.append(min(vals))
        hi.append(max(vals))
    return xs, mean, lo, hi
