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

from cadenza.governance.stats import (
    episodes_needed,
    paired_diff_interval,
    paired_episodes_needed,
    wilson,
)

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
    block: int | None = None  # the held-out seed block the episodes came from (cadenza.governance.seeds)
    confidence: float | None = None  # confidence of the intervals at the deciding look
    looks: list[dict[str, Any]] = field(default_factory=list)  # one entry per sequential look
    plan: dict[str, Any] = field(default_factory=dict)  # the look plan (cadenza.governance.sequential)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def env_steps(self) -> int:
        """The env steps the scoring ran on the task: every policy's episodes (each metrics entry's
        ``episodes`` x ``mean_length``), every look; 0 where a policy's metrics carry no episode length."""
        return sum(round(m.get("episodes", 0) * m.get("mean_length", 0.0)) for m in self.metrics.values()
                   if isinstance(m, dict))


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


def not_worse_paired(name: str, table: tuple[int, int, int, int], margin: float, confidence: float) -> Check:
    """Paired non-inferiority: ``table`` = (both, candidate only, reference only, neither) of the event
    that should not become rarer (a success; for collisions pass the *reference's* events first, so the
    difference is reference minus candidate). PASS when the interval of the improvement is above
    ``-margin``, FAIL when it is wholly below."""
    n = sum(table)
    lo, hi = paired_diff_interval(*table, confidence=confidence)
    d = (table[1] - table[2]) / n if n else 0.0
    txt = (f"improvement {100 * d:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}] (paired over {n} episodes; "
           f"allowed worsening {100 * margin:.1f} pts)")
    if lo >= -margin:
        return Check(name, "PASS", txt)
    if hi < -margin:
        return Check(name, "FAIL", txt + ": regression")
    need = paired_episodes_needed(table, lambda lo_, hi_: lo_ >= -margin or hi_ < -margin, confidence)
    return Check(name, "UNDECIDED", txt + ": interval straddles the margin",
                 more_episodes=None if need is None else max(need - n, 1))


def gap_check(name: str, table: tuple[int, int, int, int], max_gap: float, confidence: float) -> Check:
    """``table`` = paired (both, teacher only, student only, neither) successes. PASS when the whole
    interval of teacher - student success is at or below ``max_gap``; FAIL when wholly above."""
    n = sum(table)
    lo, hi = paired_diff_interval(*table, confidence=confidence)
    gap = (table[1] - table[2]) / n if n else 0.0
    txt = (f"teacher - student success {100 * gap:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}] "
           f"(paired, {table[1]} episodes only the teacher won, {table[2]} only the student; "
           f"allowed gap {100 * max_gap:.1f} pts)")
    if hi <= max_gap:
        return Check(name, "PASS", txt)
    if lo > max_gap:
        return Check(name, "FAIL", txt + ": too far from the teacher")
    need = paired_episodes_needed(table, lambda lo_, hi_: hi_ <= max_gap or lo_ > max_gap, confidence)
    return Check(name, "UNDECIDED", txt + ": interval straddles it",
                 more_episodes=None if need is None else max(need - n, 1))


def _safety(check: Check) -> Check:
    check.safety = True
    return check


def residual_checks(*, episodes: int, successes: int, collisions: int,
                    vs_base: tuple[tuple[int, int, int, int], tuple[int, int, int, int]],
                    vs_baseline: tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None,
                    mean_abs_delta: float, clamp_share: float, non_finite: int, g: Any,
                    confidence: float | None = None) -> list[Check]:
    """Checks of a residual candidate. ``vs_base`` / ``vs_baseline`` are the paired tables
    (success table with the candidate first, collision table with the reference first) over the same
    episodes; ``g`` is the ``[governance]`` section; ``confidence`` overrides ``g.confidence`` (the
    confidence of one sequential look)."""
    c = g.confidence if confidence is None else confidence
    checks = [
        enough_episodes(episodes, g.min_episodes),
        rate_at_least("success", successes, episodes, g.success_threshold, c),
        _safety(rate_at_most("collision (safety)", collisions, episodes, g.max_collision_rate, c)),
        not_worse_paired("regression vs base alone", vs_base[0], g.regression_margin, c),
        _safety(not_worse_paired("collisions vs base alone (safety)", vs_base[1], g.regression_margin, c)),
    ]
    if vs_baseline is not None:
        checks.append(not_worse_paired("regression vs current baseline", vs_baseline[0], g.regression_margin, c))
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
