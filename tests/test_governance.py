"""Verdict logic on crafted numbers: every branch of the scorecard and the governor's review."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cadenza.governance.governor import LocalGovernor, TaskProfile
from cadenza.governance.scorecard import decide, rate_at_least, rate_at_most, residual_checks
from cadenza.governance.stats import diff_interval, episodes_needed, paired_table, wilson
from cadenza.project.config import GovernanceSection

G = GovernanceSection()


def test_wilson_matches_known_values() -> None:
    lo, hi = wilson(45, 50)
    assert lo == pytest.approx(0.7864, abs=1e-3) and hi == pytest.approx(0.9565, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2


def test_diff_interval_contains_difference_and_shrinks_with_n() -> None:
    lo, hi = diff_interval(90, 100, 70, 100)
    assert lo < 0.2 < hi
    lo2, hi2 = diff_interval(900, 1000, 700, 1000)
    assert hi2 - lo2 < hi - lo


def test_episodes_needed_grows_as_gap_shrinks() -> None:
    assert episodes_needed(0.9, 0.85) < episodes_needed(0.87, 0.85)
    assert episodes_needed(0.85, 0.85) is None


def _tables(n: int, succ: int, coll: int, ref: tuple[int, int, int]):
    """Paired tables of a candidate and a reference on the same n episodes (wins overlap as much as
    they can: both win the first episodes, both collide on the last)."""
    i = np.arange(n)
    cand_s, ref_s = i < succ, i < ref[1]
    cand_c, ref_c = i >= n - coll, i >= n - ref[2]
    return paired_table(cand_s, ref_s), paired_table(ref_c, cand_c)


def _checks(succ: int, coll: int, n: int = 500, base=(500, 300, 80), baseline=None, delta=0.1, clamp=0.01, nan=0):
    return residual_checks(episodes=n, successes=succ, collisions=coll, vs_base=_tables(n, succ, coll, base),
                           vs_baseline=None if baseline is None else _tables(n, succ, coll, baseline),
                           mean_abs_delta=delta, clamp_share=clamp, non_finite=nan, g=G)


def test_deploy_when_every_interval_is_on_the_right_side() -> None:
    verdict, reasons = decide(_checks(succ=470, coll=5))
    assert verdict == "DEPLOY"
    assert len(reasons) == len(_checks(succ=470, coll=5))
    assert all(r.startswith("PASS") for r in reasons)


def test_block_on_safety() -> None:
    verdict, reasons = decide(_checks(succ=470, coll=100))
    assert verdict == "BLOCK"
    assert any(r.startswith("FAIL") and "collision" in r for r in reasons)


def test_block_on_regression_against_base() -> None:
    verdict, reasons = decide(_checks(succ=200, coll=5, base=(500, 320, 5)))
    assert verdict == "BLOCK"
    assert any("regression vs base alone" in r and r.startswith("FAIL") for r in reasons)


def test_block_on_regression_against_baseline() -> None:
    verdict, reasons = decide(_checks(succ=440, coll=5, baseline=(500, 490, 2)))
    assert verdict == "BLOCK"
    assert any("current baseline" in r and r.startswith("FAIL") for r in reasons)


def test_block_on_non_finite_and_clamp() -> None:
    assert decide(_checks(succ=470, coll=5, nan=3))[0] == "BLOCK"
    assert decide(_checks(succ=470, coll=5, clamp=0.9))[0] == "BLOCK"


def test_needs_data_when_interval_straddles_threshold() -> None:
    verdict, reasons = decide(_checks(succ=43, coll=0, n=50, base=(50, 30, 0)))  # 86% +- 10 around 85%
    assert verdict == "NEEDS_DATA"
    line = next(r for r in reasons if r.startswith("UNDECIDED") and "success" in r)
    assert "more episodes" in line


def test_needs_data_when_too_few_episodes() -> None:
    verdict, reasons = decide(_checks(succ=20, coll=0, n=20, base=(20, 12, 0)))
    assert verdict == "NEEDS_DATA"
    assert any("only 20 episodes" in r for r in reasons)


def test_saturation_is_a_warning_not_a_block() -> None:
    verdict, reasons = decide(_checks(succ=470, coll=5, delta=0.8))
    assert verdict == "DEPLOY"
    assert any(r.startswith("WARN") and "base may be too weak" in r for r in reasons)


def test_rate_checks_fail_when_interval_wholly_wrong() -> None:
    assert rate_at_least("s", 10, 100, 0.85, 0.95).status == "FAIL"
    assert rate_at_most("c", 50, 100, 0.05, 0.95).status == "FAIL"


def _profile(budget: int = 100_000) -> TaskProfile:
    return TaskProfile(obs_dim=18, act_dim=3, horizon=350, num_envs=64, device="cpu", budget_steps=budget,
                       target_level=1.0)


def _row(i: int, steps: int, succ: int = 0, eps: int = 0, level: float = 1.0, **kw) -> dict:
    return {"round": i, "env_steps_total": steps, "episodes": eps, "successes": succ, "level": level,
            "approx_kl": 0.01, "value_loss": 0.1, "policy_loss": 0.0, "std": 0.5, "mean_abs_delta": 0.1, **kw}


def test_governor_plan_and_curriculum() -> None:
    plan = LocalGovernor().plan(_profile())
    assert plan.hyperparameters["num_envs"] == 64
    assert plan.level_at(0) == pytest.approx(0.5)
    assert plan.level_at(plan.budget_steps) == pytest.approx(1.0)
    levels = [plan.level_at(s) for s in range(0, plan.budget_steps, 1000)]
    assert levels == sorted(levels)


def test_governor_stops_on_budget_nan_kl_and_plateau() -> None:
    gov = LocalGovernor()
    plan = gov.plan(_profile(100_000))
    assert gov.review([_row(0, 8192)], plan).action == "continue"
    assert "budget" in gov.review([_row(0, 100_000)], plan).reason
    assert "NaN" in gov.review([_row(0, 8192, value_loss=math.nan)], plan).reason
    assert "KL" in gov.review([_row(0, 8192, approx_kl=5.0)], plan).reason
    hist = [_row(i, 8192 * (i + 1), succ=97, eps=100) for i in range(10)]
    d = gov.review(hist, plan)
    assert d.action == "stop" and "plateau" in d.reason
    warn = gov.review([_row(0, 8192, mean_abs_delta=0.7)], plan)
    assert warn.action == "continue" and "saturation" in warn.warnings[0]


def test_safety_failure_blocks_even_on_few_episodes() -> None:
    verdict, _ = decide(_checks(succ=20, coll=0, n=20, base=(20, 12, 0), nan=2))
    assert verdict == "BLOCK"


def test_episodes_needed_decides_at_zero_rate() -> None:
    n = episodes_needed(0.0, 0.05)
    _, hi = wilson(0, n)
    assert hi <= 0.05 and wilson(0, n - 1)[1] > 0.05


def test_governor_stops_once_the_validation_card_clears_every_gate_with_margin() -> None:
    gov = LocalGovernor(stop_margin=0.01)
    plan = gov.plan(_profile(1_000_000))
    close = _row(0, 8192 * 40, val_passes=True, val_margin=0.004)
    assert gov.review([close], plan).action == "continue"  # passes, but not with the margin
    failing = _row(0, 8192 * 40, val_passes=False, val_margin=0.05)
    assert gov.review([failing], plan).action == "continue"  # a failing check is never a stop
    d = gov.review([_row(0, 8192 * 40, val_passes=True, val_margin=0.012)], plan)
    assert d.action == "stop" and "validation card passes every gate" in d.reason


def test_governor_stops_when_validation_stops_improving() -> None:
    gov = LocalGovernor()
    plan = gov.plan(_profile(10_000_000))
    margins = [-0.10, -0.05, -0.02] + [-0.03] * plan.patience
    hist = [_row(i, 8192 * (i + 1), val_passes=False, val_margin=m) for i, m in enumerate(margins)]
    d = gov.review(hist, plan)
    assert d.action == "stop" and f"last {plan.patience} validations" in d.reason
    assert gov.review(hist[:-1], plan).action == "continue"


def test_validation_schedule_by_task_and_only_at_the_target_level() -> None:
    gov = LocalGovernor()
    dash = gov.plan(_profile(200_000))
    assert (dash.validate_every, dash.validation_episodes) == (1, 1000)
    missions = gov.plan(TaskProfile(obs_dim=18, act_dim=3, horizon=2000, num_envs=64, device="cpu",
                                    budget_steps=1_000_000, target_level=1.0, label="proxy:missions"))
    assert missions.validate_every == 16 and missions.validation_episodes == 200
    full = gov.plan(TaskProfile(obs_dim=18, act_dim=3, horizon=350, num_envs=64, device="cpu",
                                budget_steps=200_000, target_level=1.0, use_base=False))
    assert full.validate_every == 0  # the bench's from-scratch arm is not governed by a validation card
    assert not LocalGovernor.validates(dash, [_row(0, 8192, level=0.5)])  # still in the curriculum
    assert LocalGovernor.validates(dash, [_row(0, 8192, level=0.5), _row(1, 16384, level=1.0)])
    hist = [_row(i, 8192 * (i + 1), level=1.0) for i in range(20)]
    assert [LocalGovernor.validates(missions, hist[: i + 1]) for i in range(20)].count(True) == 2  # rounds 0, 16
    assert LocalGovernor.validates(gov.plan(_profile(8192 * 3)), hist[:3])  # the last round always validates
    assert LocalGovernor(validation_episodes=64).plan(_profile()).validation_episodes == 64


def test_the_sac_plan_trains_at_the_target_holds_decisions_and_skips_cards_in_its_base_phase() -> None:
    from dataclasses import replace

    plan = LocalGovernor().plan(replace(_profile(1_000_000), algorithm="sac"))
    hp = plan.hyperparameters
    assert plan.algorithm == "sac" and (hp["num_envs"], hp["n_steps"]) == (16, 64)
    assert plan.curriculum == [(0, 1.0)]  # no ramp: the replay keeps every level; cards only come at the target
    assert hp["decision_ticks"] == 25  # 0.5 s at 50 Hz (a 350-tick dash: under a tenth of it)
    assert hp["every_tick"]  # a 25-tick hold is learned from every tick it ran
    assert hp["base_steps"] == plan.validate_from == 8192 and hp["critic_warmup_updates"] == 5000
    rows = [_row(i, 1024 * (i + 1)) for i in range(10)]
    assert [LocalGovernor.validates(plan, rows[: i + 1]) for i in range(10)] == [False] * 8 + [True] * 2
    ppo = LocalGovernor().plan(_profile(1_000_000))
    assert plan.collision_lr == pytest.approx(ppo.collision_lr / 8)  # as fast per env step as PPO's multiplier
    assert plan.plateau_window == 8 * ppo.plateau_window and plan.patience == 8 * ppo.patience
    short = LocalGovernor().plan(TaskProfile(obs_dim=11, act_dim=2, horizon=50, num_envs=32, device="cpu",
                                             budget_steps=4096, target_level=1.0, label="mujoco:reacher",
                                             algorithm="sac"))
    assert short.hyperparameters["decision_ticks"] == 5  # a 1 s episode: a tenth of it
    assert not short.hyperparameters["every_tick"]  # a 5-tick hold: from its first tick only
    assert short.hyperparameters["base_steps"] == short.validate_from == 819  # a small budget: a short base phase
    assert short.hyperparameters["critic_warmup_updates"] == 500  # and a warm-up in proportion
    reacher = TaskProfile(obs_dim=11, act_dim=2, horizon=50, num_envs=32, device="cpu", budget_steps=1_000_000,
                          target_level=1.0, label="mujoco:reacher")
    ppo_r, sac_r = LocalGovernor().plan(reacher), LocalGovernor().plan(replace(reacher, algorithm="sac"))
    assert sac_r.validate_every == ppo_r.validate_every == 2  # a card every second round for both ...
    assert sac_r.patience == 8 * ppo_r.patience  # ... so patience waits as many env steps: 8x the cards


def test_auto_picks_sac_only_where_an_env_step_is_dear() -> None:
    from dataclasses import replace

    from cadenza.governance.governor import SAC_MIN_STEP_S, choose_algorithm

    p = replace(_profile(), algorithm="auto")
    assert choose_algorithm(p) == "ppo"  # not measured: PPO
    assert choose_algorithm(replace(p, step_s=0.00003)) == "ppo"  # the proxy's cost
    assert choose_algorithm(replace(p, step_s=0.02)) == "sac"  # a robot at 50 Hz
    assert choose_algorithm(replace(p, step_s=0.02, use_base=False)) == "ppo"  # SAC here trains residuals only
    gov = LocalGovernor()
    assert gov.plan(replace(p, step_s=SAC_MIN_STEP_S)).algorithm == "sac"
    assert gov.plan(replace(p, step_s=SAC_MIN_STEP_S / 2)).algorithm == "ppo"
    assert gov.plan(replace(p, step_s=0.02)).hyperparameters == gov.plan(replace(p, algorithm="sac")).hyperparameters


def test_a_users_own_dear_task_spaces_its_cards_so_they_cost_no_more_than_training() -> None:
    """A task with no measured schedule whose env step costs at least DEAR_STEP_S: a card every
    ceil(episodes * horizon / batch) rounds, the first after as many training env steps; none where one card
    costs more than the budget. The built-in tasks and a cheap user task keep the table's schedule."""
    from dataclasses import replace

    from cadenza.governance.governor import DEAR_STEP_S, has_measured_schedule, validation_schedule

    assert has_measured_schedule("proxy") and has_measured_schedule("proxy:missions")
    assert has_measured_schedule("mujoco:reacher") and has_measured_schedule("mujoco:rescue-dog")
    assert not has_measured_schedule("mujoco:byo-pendulum") and not has_measured_schedule("gym:my-robot")
    assert not has_measured_schedule("mujoco:reacher-heavy")
    gov = LocalGovernor()
    robot = replace(_profile(1_000_000), label="gym:my-robot", step_s=0.02)  # 50 Hz on the real thing
    plan = gov.plan(robot)
    batch = plan.hyperparameters["n_steps"] * plan.hyperparameters["num_envs"]
    assert batch == 8192 and plan.validation_episodes == 1000  # the family's card: 1,000 episodes ...
    assert plan.validate_every == math.ceil(1000 * 350 / 8192) == 43  # ... of up to 350,000 env steps: every 43
    assert plan.validate_from == 43 * 8192
    rows = [_row(i, 8192 * (i + 1)) for i in range(100)]
    cards = [r["env_steps_total"] for i, r in enumerate(rows) if LocalGovernor.validates(plan, rows[: i + 1])]
    assert cards == [44 * 8192, 87 * 8192]  # each after as many training env steps as a card can take
    assert validation_schedule(replace(robot, step_s=DEAR_STEP_S / 2), batch) == (1, 1000, 0)  # cheap: as before
    assert validation_schedule(replace(robot, step_s=0.0), batch) == (1, 1000, 0)  # not measured: as before
    for label in ("proxy", "mujoco:reacher", "mujoco:rescue-dog"):  # measured schedules stand, whatever the CPU
        assert gov.plan(replace(robot, label=label)).validate_from == 0
    assert validation_schedule(replace(robot, label="mujoco:byo-pendulum", horizon=100), 2048) == (13, 256, 26624)
    assert LocalGovernor(validation_episodes=20).plan(robot).validate_every == 1  # a card of 7,000 env steps
    sac = gov.plan(replace(robot, algorithm="sac", budget_steps=50_000))
    assert sac.validate_from >= sac.budget_steps  # a 1,024-step round: one card would cost 7 budgets
    rows = [_row(i, 1024 * (i + 1)) for i in range(48)]
    assert not any(LocalGovernor.validates(sac, rows[: i + 1]) for i in range(48))  # no card at all, not the last
    pinned = LocalGovernor(validation_every=5).plan(robot)  # governance.validation_every: the user's cadence
    assert (pinned.validate_every, pinned.validate_from) == (5, 0)
    assert LocalGovernor(validation_every=5).plan(_profile()).validate_every == 5  # on a built-in task too


def test_train_says_what_a_cost_spaced_card_schedule_is_and_nothing_for_a_measured_one() -> None:
    from dataclasses import replace

    from cadenza.residual.train import card_notes

    robot = replace(_profile(1_000_000), label="gym:my-robot", step_s=0.02)
    gov = LocalGovernor()
    assert card_notes(gov.plan(robot), robot, pinned=False) == [
        "validation cards of 1000 episodes every 43 rounds (352,256 env steps): an env step takes 20.00 ms, so the "
        "cards cost no more env steps than training"]
    sac = replace(robot, algorithm="sac", budget_steps=50_000)
    assert card_notes(gov.plan(sac), sac, pinned=False)[0].startswith(
        "no validation card: on this task one card of 1000 episodes can take 350,000 env steps (an env step takes "
        "20.00 ms), more than the budget")
    assert card_notes(gov.plan(replace(robot, label="proxy")), replace(robot, label="proxy"), pinned=False) == []
    assert card_notes(gov.plan(replace(robot, step_s=0.001)), replace(robot, step_s=0.001), pinned=False) == []
    assert card_notes(LocalGovernor(validation_every=3).plan(robot), robot, pinned=True) == []
