"""Scorecards and verdicts: DEPLOY | BLOCK | NEEDS_DATA (pure functions, no I/O).

A scorecard is a list of checks. Each check is PASS, FAIL, UNDECIDED (its interval straddles the
threshold) or WARN (reported, never blocking). The verdict:

* BLOCK when a safety check FAILs, whatever the number of episodes;
* NEEDS_DATA when fewer than the minimum number of episodes were run;
* BLOCK when any other check FAILs (regression or performance, the interval on the wrong side);
* NEEDS_DATA when nothing failed but a check is UNDECIDED (its interval straddles the threshold);
* DEPLOY when every check passes with its interval on the right side of its threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cadenza.governance.stats import diff_interval, episodes_needed, episodes_needed_diff, wilson

Status = Literal["PASS", "FAIL", "UNDECIDED", "WARN"]
Verdict = Literal["DEPLOY", "BLOCK", "NEEDS_DATA"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    more_episodes: int | None = None  # for UNDECIDED: roughly how many more would decide it
    safety: bool = False  # a failed safety check blocks even on few episodes

    def line(self) -> str:
        extra = f" (about {self.more_episodes} more episodes would decide it)" if self.more_episodes else ""
        return f"{self.status:<9} {self.name}: {self.detail}{extra}"


@dataclass
class Scorecard:
    kind: str
    task: str
    episodes: int
    metrics: dict[str, Any]
    checks: list[Check]
    verdict: Verdict = "NEEDS_DATA"
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(checks: list[Check]) -> tuple[Verdict, list[str]]:
    """The verdict and its reasons (one line per check)."""
    reasons = [c.line() for c in checks]
    if any(c.status == "FAIL" and c.safety for c in checks):
        return "BLOCK", reasons
    if any(c.name == "episodes" and c.status == "UNDECIDED" for c in checks):
        return "NEEDS_DATA", reasons
    if any(c.status == "FAIL" for c in checks):
        return "BLOCK", reasons
    if any(c.status == "UNDECIDED" for c in checks):
        return "NEEDS_DATA", reasons
    return "DEPLOY", reasons


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def enough_episodes(n: int, min_episodes: int) -> Check:
    if n >= min_episodes:
        return Check("episodes", "PASS", f"{n} episodes (minimum {min_episodes})")
    return Check("episodes", "UNDECIDED", f"only {n} episodes, the minimum is {min_episodes}",
                 more_episodes=min_episodes - n)


def rate_at_least(name: str, k: int, n: int, threshold: float, confidence: float) -> Check:
    """Pass when the whole interval is at or above ``threshold``; fail when it is wholly below."""
    lo, hi = wilson(k, n, confidence)
    p = k / n if n else 0.0
    txt = f"{_pct(p)} [{_pct(lo)}, {_pct(hi)}] vs threshold {_pct(threshold)}"
    if lo >= threshold:
        return Check(name, "PASS", txt)
    if hi < threshold:
        return Check(name, "FAIL", txt + ": below")
    need = episodes_needed(p, threshold, confidence)
    return Check(name, "UNDECIDED", txt + ": interval straddles it",
                 more_episodes=None if need is None else max(need - n, 1))


def rate_at_most(name: str, k: int, n: int, threshold: float, confidence: float) -> Check:
    """Pass when the whole interval is at or below ``threshold``; fail when it is wholly above."""
    lo, hi = wilson(k, n, confidence)
    p = k / n if n else 0.0
    txt = f"{_pct(p)} [{_pct(lo)}, {_pct(hi)}] vs limit {_pct(threshold)}"
    if hi <= threshold:
        return Check(name, "PASS", txt)
    if lo > threshold:
        return Check(name, "FAIL", txt + ": above")
    need = episodes_needed(p, threshold, confidence)
    return Check(name, "UNDECIDED", txt + ": interval straddles it",
                 more_episodes=None if need is None else max(need - n, 1))


def not_worse(name: str, k: int, n: int, k_ref: int, n_ref: int, margin: float, confidence: float,
              higher_is_better: bool = True) -> Check:
    """Non-inferiority of a rate against a reference with ``margin`` (Newcombe interval on the difference)."""
    p, p_ref = (k / n if n else 0.0), (k_ref / n_ref if n_ref else 0.0)
    if higher_is_better:
        lo, hi = diff_interval(k, n, k_ref, n_ref, confidence)
        d = p - p_ref
    else:  # a rate that should not rise: the improvement is reference minus candidate
        lo, hi = diff_interval(k_ref, n_ref, k, n, confidence)
        d = p_ref - p
    txt = (f"{_pct(p)} vs {_pct(p_ref)}: improvement {100 * d:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}] "
           f"(allowed worsening {100 * margin:.1f} pts)")
    if lo >= -margin:
        return Check(name, "PASS", txt)
    if hi < -margin:
        return Check(name, "FAIL", txt + ": regression")
    need = episodes_needed_diff(p if higher_is_better else p_ref, p_ref if higher_is_better else p, margin, confidence)
    return Check(name, "UNDECIDED", txt + ": interval straddles the margin",
                 more_episodes=None if need is None else max(need - min(n, n_ref), 1))


def _safety(check: Check) -> Check:
    check.safety = True
    return check


def residual_checks(*, episodes: int, successes: int, collisions: int, base: tuple[int, int, int],
                    baseline: tuple[int, int, int] | None, mean_abs_delta: float, clamp_share: float,
                    non_finite: int, g: Any) -> list[Check]:
    """Checks of a residual candidate. ``base`` / ``baseline`` are (episodes, successes, collisions)
    measured on the same episodes; ``g`` is the ``[governance]`` config section."""
    c = g.confidence
    checks = [
        enough_episodes(episodes, g.min_episodes),
        rate_at_least("success", successes, episodes, g.success_threshold, c),
        _safety(rate_at_most("collision (safety)", collisions, episodes, g.max_collision_rate, c)),
        not_worse("regression vs base alone", successes, episodes, base[1], base[0], g.regression_margin, c),
        _safety(not_worse("collisions vs base alone (safety)", collisions, episodes, base[2], base[0],
                          g.regression_margin, c, higher_is_better=False)),
    ]
    if baseline is not None:
        checks.append(not_worse("regression vs current baseline", successes, episodes, baseline[1], baseline[0],
                                g.regression_margin, c))
    checks.append(Check("finite actions (safety)", "FAIL" if non_finite else "PASS",
                        f"{non_finite} non-finite residual outputs", safety=True))
    checks.append(Check("clamp share (safety)", "FAIL" if clamp_share > g.max_clamp_share else "PASS",
                        f"{_pct(clamp_share)} of action components clamped by the residual "
                        f"(limit {_pct(g.max_clamp_share)})", safety=True))
    sat = "WARN" if mean_abs_delta > g.saturation_warn else "PASS"
    checks.append(Check("residual saturation", sat,
                        f"mean |delta| {_pct(mean_abs_delta)} of its bound (warn above {_pct(g.saturation_warn)})"
                        + ("; the base may be too weak for this task" if sat == "WARN" else "")))
    return checks
