"""Sequential scoring: the look plan, its error control under repeated looks, and seed blocks."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from cadenza.governance.scorecard import not_worse_paired, rate_at_least, rate_at_most
from cadenza.governance.seeds import (
    BLOCK_STRIDE,
    CHUNK_STRIDE,
    MAX_CHUNKS,
    TRAIN_SEED_LIMIT,
    VALIDATION_SEED,
    block_of_seed,
    chunk_seed,
    heldout_seed,
)
from cadenza.governance.sequential import LookPlan, run_looks
from cadenza.governance.stats import paired_table
from cadenza.project.config import GovernanceSection


def test_look_plan_spends_alpha_linearly_and_sums_to_alpha() -> None:
    plan = LookPlan(first=500, batch=500, cap=3000, confidence=0.95)
    assert plan.sizes() == [500, 1000, 1500, 2000, 2500, 3000]
    spent = [1 - plan.look_confidence(j) for j in range(6)]
    assert spent == pytest.approx([0.05 / 6] * 6)
    assert sum(spent) == pytest.approx(0.05)
    # an uneven last batch spends in proportion to its episodes
    odd = LookPlan(first=500, batch=500, cap=1200)
    assert odd.sizes() == [500, 1000, 1200]
    assert 1 - odd.look_confidence(2) == pytest.approx(0.05 * 200 / 1200)
    # cap == first: the fixed-sample scorecard, one look at the full confidence
    one = LookPlan.from_governance(GovernanceSection(), sequential=False)
    assert one.sizes() == [500] and one.look_confidence(0) == pytest.approx(0.95)
    assert LookPlan.from_governance(GovernanceSection()).cap == 3000


def _bernoulli_looks(rng: np.random.Generator, p: float, plan: LookPlan, check) -> str:
    draws: list[np.ndarray] = []

    def draw(start: int, count: int) -> None:
        draws.append(rng.random(count) < p)

    def checks_at(conf: float) -> list:
        x = np.concatenate(draws)
        return [check(int(x.sum()), x.size, conf)]

    return run_looks(plan, draw, checks_at).verdict


@pytest.mark.parametrize("kind", ["success", "collision"])
def test_false_deploy_rate_under_repeated_looks_stays_below_5_percent(kind: str) -> None:
    """True rate exactly on the threshold: however often we look, DEPLOY must stay rare (<= 5%).

    Also shows why the spending matters: the same looks at a fixed 95% per look deploy far more often."""
    plan = LookPlan(first=200, batch=200, cap=2000, confidence=0.95)
    naive = LookPlan(first=200, batch=200, cap=2000, confidence=0.95)
    reps = 2000
    if kind == "success":
        p = 0.85

        def check(k, n, conf):
            return rate_at_least("success", k, n, p, conf)
    else:
        p = 0.10

        def check(k, n, conf):
            return rate_at_most("collision", k, n, p, conf)
    rng = np.random.default_rng(20261201)
    deploys = sum(_bernoulli_looks(rng, p, plan, check) == "DEPLOY" for _ in range(reps))
    assert deploys / reps <= 0.05, f"false DEPLOY {deploys}/{reps}"

    # the naive procedure: every look at the full 95% (no spending)
    rng = np.random.default_rng(20261201)
    naive_deploys = 0
    for _ in range(reps):
        x = rng.random(naive.cap) < p
        for n in naive.sizes():
            c = check(int(x[:n].sum()), n, 0.95)
            if c.status != "UNDECIDED":
                naive_deploys += c.status == "PASS"
                break
    assert naive_deploys > deploys  # repeated looks at a fixed level inflate the error


def test_false_deploy_rate_of_paired_non_inferiority_on_the_margin() -> None:
    """Candidate exactly `margin` worse than the reference on the same episodes: DEPLOY rare."""
    plan = LookPlan(first=200, batch=200, cap=1600, confidence=0.95)
    margin, reps = 0.05, 1500
    rng = np.random.default_rng(7)

    def one(ref_all: list[np.ndarray], cand_all: list[np.ndarray]) -> str:
        def draw(start: int, count: int) -> None:
            ref = rng.random(count) < 0.70
            # the candidate loses each reference win with probability margin / 0.70: p = 0.65, correlated
            cand = ref & (rng.random(count) >= margin / 0.70)
            ref_all.append(ref)
            cand_all.append(cand)

        def checks_at(conf: float) -> list:
            t = paired_table(np.concatenate(cand_all), np.concatenate(ref_all))
            return [not_worse_paired("regression", t, margin, conf)]

        return run_looks(plan, draw, checks_at).verdict

    deploys = sum(one([], []) == "DEPLOY" for _ in range(reps))
    assert deploys / reps <= 0.05


def test_a_clear_candidate_is_decided_at_the_first_look_and_an_edge_one_later() -> None:
    plan = LookPlan(first=500, batch=500, cap=3000)
    rng = np.random.default_rng(1)
    draws: list[np.ndarray] = []

    def run(p: float):
        draws.clear()
        return run_looks(plan, lambda s, c: draws.append(rng.random(c) < p),
                         lambda conf: [rate_at_least("success", int(np.concatenate(draws).sum()),
                                                     int(np.concatenate(draws).size), 0.85, conf)])

    clear = run(0.95)
    assert clear.verdict == "DEPLOY" and len(clear.looks) == 1 and clear.episodes == 500
    edge = run(0.885)
    assert edge.verdict == "DEPLOY" and len(edge.looks) > 1
    on_threshold = run(0.85)
    assert on_threshold.verdict != "DEPLOY"
    if on_threshold.verdict == "NEEDS_DATA":  # only when the cap is reached
        assert on_threshold.capped and on_threshold.episodes == 3000


def test_seed_blocks_never_overlap_each_other_validation_or_training() -> None:
    firsts = [heldout_seed(k) for k in range(40)]
    assert firsts[0] == 1_000_003
    assert all(b - a == BLOCK_STRIDE for a, b in pairwise(firsts))
    last_chunk = [chunk_seed(f, MAX_CHUNKS - 1) for f in firsts]
    assert all(lc < nxt for lc, nxt in zip(last_chunk, firsts[1:], strict=False))
    assert last_chunk[-1] < VALIDATION_SEED
    assert firsts[0] > TRAIN_SEED_LIMIT
    assert block_of_seed(heldout_seed(3)) == 3 and block_of_seed(VALIDATION_SEED) is None
    assert chunk_seed(heldout_seed(0), 1) == 1_000_003 + CHUNK_STRIDE
    from cadenza.errors import CadenzaError

    with pytest.raises(CadenzaError, match="blocks are 0 to 39"):
        heldout_seed(40)
    with pytest.raises(CadenzaError, match="at most"):
        chunk_seed(heldout_seed(0), MAX_CHUNKS)


def test_closed_form_wilson_matches_scipy() -> None:
    from scipy.stats import binomtest

    from cadenza.governance.stats import wilson

    for n in (1, 7, 200, 3000):
        for k in sorted({0, 1, n // 3, n - 1, n}):
            for conf in (0.95, 0.99, 1 - 0.05 / 6):
                ci = binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
                assert wilson(k, n, conf) == pytest.approx((ci.low, ci.high), abs=1e-12)
