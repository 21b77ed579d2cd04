"""The student scorecard: the paired interval and every verdict branch (pure functions, no I/O)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cadenza.distill.scoring import StudentEvidence, student_checks
from cadenza.governance.scorecard import decide, gap_check
from cadenza.governance.stats import diff_interval, paired_diff_interval, paired_table
from cadenza.project.config import GovernanceSection

G = GovernanceSection()  # defaults: success >= 0.85, collisions <= 0.10, gap <= 0.03, 200 episodes, 20 ms


def test_paired_table_counts_each_cell() -> None:
    teacher = np.array([1, 1, 0, 0, 1], dtype=bool)
    student = np.array([1, 0, 1, 0, 1], dtype=bool)
    assert paired_table(teacher, student) == (2, 1, 1, 1)
    with pytest.raises(ValueError, match="same episodes"):
        paired_table(teacher, student[:3])


def test_paired_interval_without_correlation_is_newcombes_unpaired_interval() -> None:
    # both*neither == only_a*only_b: the pairs are uncorrelated (phi = 0), and method 10 reduces to
    # the hybrid score interval of two independent proportions with the same margins
    lo, hi = paired_diff_interval(30, 20, 30, 20)
    ulo, uhi = diff_interval(50, 100, 60, 100)
    assert lo == pytest.approx(ulo, abs=1e-12) and hi == pytest.approx(uhi, abs=1e-12)


def test_paired_interval_is_narrower_when_outcomes_agree() -> None:
    n, only_a, only_b = 500, 12, 8
    both = 300
    neither = n - both - only_a - only_b
    lo, hi = paired_diff_interval(both, only_a, only_b, neither)
    ulo, uhi = diff_interval(both + only_a, n, both + only_b, n)
    assert lo < (only_a - only_b) / n < hi
    assert hi - lo < 0.5 * (uhi - ulo)


def test_paired_interval_of_identical_outcomes_is_tight_around_zero() -> None:
    lo, hi = paired_diff_interval(400, 0, 0, 100)
    assert lo <= 0.0 <= hi and hi - lo < 0.01


def _good() -> StudentEvidence:
    """A student that clears every check with the default governance section."""
    return StudentEvidence(episodes=1000, successes=950, collisions=20, gaps={"fp32": (940, 12, 10, 38)},
                           non_finite=0, out_of_bounds=0, latency_p99_ms=0.05, latency_p50_ms=0.01,
                           fp32_parity=3e-7)


def _verdict(ev: StudentEvidence) -> str:
    return decide(student_checks(ev, G))[0]


def test_a_faithful_fast_student_is_deployed() -> None:
    checks = student_checks(_good(), G)
    assert decide(checks)[0] == "DEPLOY"
    assert {c.name for c in checks} >= {"episodes", "success", "collision (safety)", "gap to teacher (fp32)",
                                        "latency budget (safety)", "finite, bounded actions (safety)",
                                        "export parity (safety)"}
    assert "MEETS" in next(c.detail for c in checks if c.name.startswith("latency"))


def test_a_student_far_from_its_teacher_is_blocked() -> None:
    ev = replace(_good(), gaps={"fp32": (880, 72, 10, 38)})  # 6.2 points behind, interval wholly above 3
    assert _verdict(ev) == "BLOCK"
    assert gap_check("g", (880, 72, 10, 38), 0.03, 0.95).status == "FAIL"


def test_an_undecided_gap_asks_for_more_episodes() -> None:
    ev = replace(_good(), gaps={"fp32": (900, 45, 25, 30)})  # +2.0 points, interval straddles 3
    checks = student_checks(ev, G)
    gap = next(c for c in checks if c.name == "gap to teacher (fp32)")
    assert gap.status == "UNDECIDED" and gap.more_episodes and gap.more_episodes > 0
    assert decide(checks)[0] == "NEEDS_DATA"


def test_every_exported_precision_is_judged() -> None:
    ev = replace(_good(), gaps={"fp32": (940, 12, 10, 38), "int8": (880, 72, 10, 38)})
    checks = student_checks(ev, G)
    assert next(c for c in checks if c.name == "gap to teacher (int8)").status == "FAIL"
    assert decide(checks)[0] == "BLOCK"


def test_missing_the_latency_budget_blocks_even_on_few_episodes() -> None:
    ev = replace(_good(), episodes=50, successes=48, collisions=0, gaps={"fp32": (47, 1, 1, 1)},
                 latency_p99_ms=25.0, latency_p50_ms=21.0)
    checks = student_checks(ev, G)
    lat = next(c for c in checks if c.name.startswith("latency"))
    assert lat.status == "FAIL" and "MISSES" in lat.detail
    assert decide(checks)[0] == "BLOCK"


def test_too_few_episodes_is_needs_data() -> None:
    ev = replace(_good(), episodes=50, successes=48, collisions=0, gaps={"fp32": (47, 1, 1, 1)})
    assert _verdict(ev) == "NEEDS_DATA"


@pytest.mark.parametrize("change", [{"fp32_parity": 1e-3}, {"non_finite": 3}, {"out_of_bounds": 1},
                                    {"collisions": 300}])
def test_safety_failures_block(change: dict) -> None:
    assert _verdict(replace(_good(), **change)) == "BLOCK"


def test_low_success_blocks_even_when_faithful() -> None:
    # a faithful copy of a weak teacher is still not deployable
    ev = replace(_good(), successes=600, gaps={"fp32": (595, 5, 5, 395)})
    assert _verdict(ev) == "BLOCK"


def test_regression_against_the_current_student_blocks() -> None:
    ev = replace(_good(), baseline=(850, 10, 100, 40))  # 9 points worse than the promoted student
    checks = student_checks(ev, G)
    reg = next(c for c in checks if c.name == "regression vs current student")
    assert reg.status == "FAIL"
    assert decide(checks)[0] == "BLOCK"
    assert _verdict(replace(_good(), baseline=(930, 15, 12, 43))) == "DEPLOY"


def test_a_stale_teacher_is_a_warning_only() -> None:
    ev = replace(_good(), teacher_note="distilled from residual v0001; the promoted residual is now v0002")
    checks = student_checks(ev, G)
    assert next(c for c in checks if c.name == "teacher").status == "WARN"
    assert decide(checks)[0] == "DEPLOY"
