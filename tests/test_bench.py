"""The bench's pure parts: cost arithmetic, the evaluation schedule, steps to threshold, the verdict, the schema."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from cadenza.bench.cost import CPU_CORE_HOURS, GPU_HOURS, Rates, cost_at, device_hours, run_cost
from cadenza.bench.measure import band, due, eval_targets, first_reaching, median_steps, sustained, value_at
from cadenza.bench.schema import REPORT_SCHEMA, errors
from cadenza.bench.verdict import ArmResult, accuracy_call, decide, format_ratio
from cadenza.governance.stats import diff_interval

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ cost
def test_cpu_runs_are_priced_by_core_hours_of_cpu_time() -> None:
    rates = Rates(gpu_per_hour=2.0, cpu_core_per_hour=0.05)
    c = run_cost("cpu", wall_s=100.0, cpu_s=7200.0, rates=rates)
    assert c.unit == CPU_CORE_HOURS
    assert c.device_hours == pytest.approx(2.0)  # 7200 CPU seconds = 2 core-hours, whatever the wall time
    assert c.dollars == pytest.approx(2.0 * 0.05)
    assert c.rate_per_hour == 0.05


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_gpu_runs_are_priced_by_wall_hours(device: str) -> None:
    rates = Rates(gpu_per_hour=2.5, cpu_core_per_hour=0.05)
    c = run_cost(device, wall_s=1800.0, cpu_s=9999.0, rates=rates)
    assert c.unit == GPU_HOURS
    assert c.device_hours == pytest.approx(0.5)
    assert c.dollars == pytest.approx(0.5 * 2.5)


def test_cost_rejects_bad_numbers() -> None:
    with pytest.raises(ValueError, match="GPU-hour"):
        Rates(gpu_per_hour=-1.0, cpu_core_per_hour=0.05)
    with pytest.raises(ValueError, match="CPU core-hour"):
        Rates(gpu_per_hour=1.0, cpu_core_per_hour=math.nan)
    with pytest.raises(ValueError, match="times"):
        device_hours("cpu", -1.0, 0.0)
    with pytest.raises(ValueError, match="env_steps"):
        cost_at(1.0, 0, 10)


def test_cost_at_is_the_share_of_the_run_spent_by_then() -> None:
    assert cost_at(3.0, 300, 100) == pytest.approx(1.0)
    assert cost_at(3.0, 300, 600) == pytest.approx(3.0)  # never more than the run cost
    assert cost_at(3.0, 300, 0) == 0.0


# ------------------------------------------------------------------------------------------------ measure
@pytest.mark.parametrize("budget", [1, 1000, 8192, 200_000, 1_000_000])
def test_eval_targets_start_at_zero_and_stay_inside_the_budget(budget: int) -> None:
    t = eval_targets(budget)
    assert t[0] == 0 and t == sorted(set(t)) and all(x < budget for x in t)
    if budget >= 1000:
        assert min(x for x in t if x > 0) <= budget / 64 + 1  # an early point for a fast learner
        assert max(t) >= 0.9 * budget - 1  # and a late one


def test_due_fires_once_per_crossed_target() -> None:
    t = [0, 100, 250]
    assert due(t, 0, 100) and not due(t, 100, 200) and due(t, 200, 300) and not due(t, 300, 900)


def _curve(xs: list[int], rates: list[float], eps: int = 100) -> list[dict]:
    return [{"env_steps": x, "episodes": eps, "successes": round(r * eps), "success_rate": r}
            for x, r in zip(xs, rates, strict=True)]


def test_first_reaching_and_median_over_seeds() -> None:
    c = _curve([0, 10, 20, 30], [0.5, 0.84, 0.85, 0.99])
    assert first_reaching(c, 0.85) == 20
    assert first_reaching(c, 0.995) is None
    assert first_reaching([{"env_steps": 0, "episodes": 0, "success_rate": 1.0}], 0.5) is None  # no episodes
    assert median_steps([30, 10, 20]) == 20
    assert median_steps([10, None, 20]) == 20  # two of three seeds reached it
    assert median_steps([10, None, None]) is None  # most seeds did not
    assert median_steps([10, 30]) == 20 and median_steps([10, None]) is None
    assert median_steps([]) is None


def test_sustained_is_the_first_of_two_consecutive_evaluations_at_the_threshold() -> None:
    def curve(*rates: float) -> list[dict]:
        return [{"env_steps": 10 * i, "episodes": 100, "success_rate": r} for i, r in enumerate(rates)]

    assert sustained(curve(0.1, 0.9, 0.5, 0.86, 0.85, 0.95), 0.85) == 30  # one lucky evaluation does not count
    assert sustained(curve(0.1, 0.9), 0.85) is None  # a last point alone is not sustained
    assert sustained(curve(0.9, 0.5, 0.9), 0.85) is None
    # a point without episodes is skipped, so the evaluations either side of it are consecutive
    c = curve(0.9, 0.0, 0.9)
    c[1]["episodes"] = 0
    assert sustained(c, 0.85) == 0


def test_an_arm_with_fewer_runs_than_the_seeds_says_so_in_its_legend_entry() -> None:
    from cadenza.bench.plot import arm_label

    arm = {"label": "full RL (SB3 SAC)", "runs": [{}, {}], "summary": {"steps_to_threshold_median": 360032.0}}
    assert arm_label(arm, 5, 0.85, False) == "full RL (SB3 SAC), 2 of 5 seeds"
    assert arm_label(arm, 2, 0.85, True) == "full RL (SB3 SAC)  (to 85%: 360,032 steps)"
    arm["summary"]["steps_to_threshold_median"] = None
    assert arm_label(arm, 5, 0.85, True) == "full RL (SB3 SAC), 2 of 5 seeds  (to 85%: not reached)"


def test_band_carries_a_stopped_seed_forward() -> None:
    a = _curve([0, 10, 20], [0.2, 0.4, 0.6])
    b = _curve([0, 10], [0.0, 0.8])  # stopped early at 10: keeps 0.8
    xs, mean, lo, hi = band([a, b])
    assert xs == [0, 10, 20]
    assert mean == pytest.approx([0.1, 0.6, 0.7]) and lo == pytest.approx([0.0, 0.4, 0.6])
    assert hi == pytest.approx([0.2, 0.8, 0.8])
    assert math.isnan(value_at(a, -1))


# ------------------------------------------------------------------------------------------------ verdict
def arm(name: str, stt: list[int | None], succ: int, eps: int = 1500, steps: float = 200_000,
        dollars: float = 1.0) -> ArmResult:
    return ArmResult(name=name, steps_to_threshold=tuple(stt), env_steps=steps, successes=succ, episodes=eps,
                     dollars=dollars)


def test_residual_wins_with_a_lower_bound_when_full_never_gets_there() -> None:
    res = arm("residual", [8192, 16384, 8192], succ=1400, dollars=0.8)
    full = arm("full", [None, None, None], succ=30, dollars=1.2)
    v = decide(res, [full], threshold=0.85, margin=0.05)
    assert v.outcome == "RESIDUAL_WINS"
    c = v.comparisons[0]
    assert c.samples == "win" and c.accuracy == "better"
    assert c.sample_ratio.lower_bound and c.sample_ratio.value == pytest.approx(200_000 / 8192)
    assert c.sample_ratio.text.startswith("> ")
    res_cost = 0.8 * 8192 / 200_000
    assert c.cost_ratio.lower_bound and c.cost_ratio.value == pytest.approx(1.2 / res_cost)
    assert "residual wins" in v.line and format_ratio(c.sample_ratio.value, True) in v.line
    assert v.headline_sample_ratio is c.sample_ratio


def test_residual_wins_with_an_exact_ratio_and_the_headline_is_the_weakest_claim() -> None:
    res = arm("residual", [10_000, 10_000, 20_000], succ=1380)
    full = arm("full", [100_000, 150_000, 120_000], succ=1390)  # reached, later; equally accurate
    sb3 = arm("sb3", [None, None, None], succ=10)
    v = decide(res, [full, sb3], threshold=0.85, margin=0.05)
    assert v.outcome == "RESIDUAL_WINS"
    assert v.comparisons[0].accuracy == "non-inferior"
    assert not v.comparisons[0].sample_ratio.lower_bound
    assert v.comparisons[0].sample_ratio.value == pytest.approx(120_000 / 10_000)
    assert v.headline_sample_ratio.value == pytest.approx(min(12.0, 200_000 / 10_000))


def test_residual_loses_when_full_rl_gets_there_first_or_alone() -> None:
    res = arm("residual", [50_000, 60_000, 70_000], succ=1350)
    full = arm("full", [20_000, 30_000, 40_000], succ=1400)
    v = decide(res, [full], threshold=0.85, margin=0.05)
    assert v.outcome == "RESIDUAL_LOSES" and v.comparisons[0].samples == "lose"
    assert v.comparisons[0].sample_ratio.value == pytest.approx(30_000 / 60_000)
    never = arm("residual", [None, None, 10], succ=1000)
    v2 = decide(never, [full], threshold=0.85, margin=0.05)
    assert v2.outcome == "RESIDUAL_LOSES" and "residual loses" in v2.line


def test_undecided_on_a_tie_or_a_faster_but_less_accurate_residual() -> None:
    res = arm("residual", [20_000] * 3, succ=1300)
    tie = arm("full", [20_000] * 3, succ=1300)
    v = decide(res, [tie], threshold=0.85, margin=0.05)
    assert v.outcome == "UNDECIDED" and v.comparisons[0].samples == "tie"
    better_full = arm("full", [100_000] * 3, succ=1480)  # later, but ends clearly more accurate
    v2 = decide(res, [better_full], threshold=0.85, margin=0.05)
    lo, hi = diff_interval(1300, 1500, 1480, 1500)
    assert hi < 0 and lo < -0.05  # the premise: significantly worse by more than the margin
    assert v2.outcome == "UNDECIDED" and v2.comparisons[0].accuracy == "worse" and "less accurate" in v2.line
    few = arm("residual", [20_000], succ=18, eps=20)
    v3 = decide(few, [arm("full", [100_000], succ=19, eps=20)], threshold=0.85, margin=0.05)
    assert v3.outcome == "UNDECIDED" and v3.comparisons[0].accuracy == "undecided"


def test_needs_data_when_nobody_reaches_the_threshold_or_nothing_to_compare() -> None:
    res = arm("residual", [None, None, None], succ=1000, steps=4096)
    full = arm("full", [None, None, None], succ=0, steps=4096)
    v = decide(res, [full], threshold=0.85, margin=0.05)
    assert v.outcome == "NEEDS_DATA" and "--steps" in v.line
    assert v.comparisons[0].accuracy == "better"  # a real difference, but no deployable policy to judge by
    assert decide(res, [], threshold=0.85, margin=0.05).outcome == "NEEDS_DATA"


def test_a_base_that_already_meets_the_threshold_gives_no_finite_ratio() -> None:
    res = arm("residual", [0, 0, 0], succ=1450)
    full = arm("full", [None, None, None], succ=0)
    v = decide(res, [full], threshold=0.85, margin=0.05)
    assert v.outcome == "RESIDUAL_WINS"
    assert v.comparisons[0].sample_ratio.value is None and "base alone" in v.comparisons[0].sample_ratio.text


def test_accuracy_call_boundaries() -> None:
    assert accuracy_call(0.01, 0.2, 0.05) == "better"
    assert accuracy_call(-0.05, 0.02, 0.05) == "non-inferior"
    assert accuracy_call(-0.2, -0.1, 0.05) == "worse"
    assert accuracy_call(-0.2, 0.1, 0.05) == "undecided"


# ------------------------------------------------------------------------------------------------ schema
def _docs_schema() -> dict:
    text = (ROOT / "docs" / "bench.md").read_text()
    m = re.search(r"<!-- report-schema -->\s*```json\n(.*?)```", text, re.S)
    assert m, "docs/bench.md has no report schema block"
    return json.loads(m.group(1))


def test_the_documented_schema_is_the_one_the_code_checks() -> None:
    assert _docs_schema() == REPORT_SCHEMA


def test_the_schema_is_valid_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)


def test_hand_validator_catches_what_jsonschema_catches() -> None:
    point = {"env_steps": 0, "episodes": 10, "successes": 5, "collisions": 0, "success_rate": 0.5,
             "collision_rate": 0.0, "mean_return": 0.5}
    schema = REPORT_SCHEMA["properties"]["arms"]["items"]["properties"]["runs"]["items"]["properties"]["final"]
    assert errors(point, schema) == []
    bad = [dict(point, success_rate=1.5), {k: v for k, v in point.items() if k != "episodes"},
           dict(point, episodes="10"), dict(point, extra=1), dict(point, episodes=True)]
    for b in bad:
        assert errors(b, schema), b
    jsonschema = pytest.importorskip("jsonschema")
    v = jsonschema.Draft202012Validator(schema)
    assert not list(v.iter_errors(point)) and all(list(v.iter_errors(b)) for b in bad)
    assert errors(np.float64(0.5), {"type": "number"}) == []


def test_sb3_sac_takes_the_sac_residuals_update_ratio_for_the_task() -> None:
    """The sb3-sac arm's gradient steps per vector step come from the SAC residual's plan for the same task: 2 updates
    per held decision, 25 ticks on a 50 Hz dash (0.08 per env step), 5 on the 1 s reacher (0.4)."""
    from cadenza.bench.arms import sac_updates_per_env_step, sb3_settings
    from cadenza.governance.governor import LocalGovernor, TaskProfile

    def ticks(horizon: int, label: str) -> int:
        p = TaskProfile(obs_dim=11, act_dim=2, horizon=horizon, num_envs=64, device="cpu", budget_steps=50_000,
                        target_level=1.0, label=label, algorithm="sac")
        return LocalGovernor().plan(p).hyperparameters["decision_ticks"]

    dash = sac_updates_per_env_step(ticks(350, "proxy:rescue-dog"))
    reacher = sac_updates_per_env_step(ticks(50, "mujoco:reacher"))
    assert dash == pytest.approx(0.08) and reacher == pytest.approx(0.4)
    assert sb3_settings(64, "sb3-sac", dash)["gradient_steps"] == 5
    assert sb3_settings(64, "sb3-sac", reacher)["gradient_steps"] == 26
    assert sb3_settings(64, "sb3-sac", dash)["ent_coef"] == "auto_0.001"
    assert "gradient_steps" not in sb3_settings(64, "sb3")  # PPO: SB3's own settings
    # sb3-sac-utd1: one gradient step per env step, SB3's single-env default, whatever the residual's ratio
    assert sb3_settings(64, "sb3-sac-utd1", dash)["gradient_steps"] == 64
    assert sb3_settings(16, "sb3-sac-utd1")["gradient_steps"] == 16
    with pytest.raises(ValueError, match="updates per env step"):
        sb3_settings(64, "sb3-sac")
