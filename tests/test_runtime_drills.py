"""Failure drills for the safe runtime on the real rescue-dog base and real proxy observations.

In every drill each step must still give a finite action within the bounds that equals the base
action alone (clamped), and the runtime must count the fallback under the right cause.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from cadenza.base.loader import load_base
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.runtime import BaseFault, SafeRuntime
from cadenza.tasks.proxy.rescue_dog import RescueDogProxy
from tests.conftest import proxy_observations

ARCH = ResidualArch(obs_dim=18, act_dim=3, hidden_dim=32, alpha=0.3, rate_limit=0.5)
# A deadline no healthy call misses even on a loaded CI machine (a worker thread can wait milliseconds
# for a core there), so each drill sees only the fault it injects.
WIDE = 500_000


@pytest.fixture(scope="module")
def base():
    return load_base("builtin:rescue-dog", act_dim=3)


@pytest.fixture(scope="module")
def observations(base) -> np.ndarray:
    """Real proxy observations from base-driven rollouts at full perturbation."""
    return proxy_observations(base, num_envs=8, steps=12, seed=11).reshape(-1, 18)


class FaultyResidual:
    """A residual callable with an architecture that misbehaves on demand."""

    def __init__(self, fault: str, sleep_s: float = 0.0) -> None:
        self.arch, self.fault, self.sleep_s, self.calls = ARCH, fault, sleep_s, 0

    def __call__(self, obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fault == "slow":
            time.sleep(self.sleep_s)
        if self.fault == "nan":
            return np.array([np.nan, 0.5, 0.5, 1.0])
        if self.fault == "inf":
            return np.array([0.5, -np.inf, 0.5, 1.0])
        if self.fault == "crash":
            raise RuntimeError("residual blew up")
        if self.fault == "short":
            return np.array([0.5, 0.5])
        return np.array([1.0, -1.0, 1.0, 1.0])  # a full-strength, valid correction


def _assert_base_step(action: np.ndarray, base, obs: np.ndarray) -> None:
    assert action.shape == (3,)
    assert np.all(np.isfinite(action))
    assert np.all((action >= -1.0) & (action <= 1.0))
    np.testing.assert_array_equal(action, np.clip(base(obs[None])[0], -1.0, 1.0))


@pytest.mark.parametrize("mode", ["check", "preempt"])
def test_slow_residual_falls_back_to_base(base, observations, mode: str) -> None:
    slow = FaultyResidual("slow", sleep_s=0.02)
    with SafeRuntime.for_residual(base, slow, budget_us=1000, mode=mode) as rt:
        for o in observations[:10]:
            _assert_base_step(rt.step(o), base, o)
        h = rt.health()
    assert h.fallbacks["timeout"] == 10 and h.corrected_steps == 0 and h.fallback_share == 1.0
    assert h.steps == 10


def test_preempt_mode_does_not_wait_for_a_hung_residual(base, observations) -> None:
    release = threading.Event()

    class Hung(FaultyResidual):
        entered = 0

        def __call__(self, obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
            self.entered += 1
            release.wait(10.0)
            return super().__call__(obs, a_base)

    hung = Hung("ok")
    with SafeRuntime.for_residual(base, hung, budget_us=50_000, mode="preempt") as rt:
        t0 = time.perf_counter()
        for o in observations[:20]:
            _assert_base_step(rt.step(o), base, o)
        elapsed = time.perf_counter() - t0
        assert elapsed < 5.0  # 20 steps, not 20 x 10 s: the loop never waited on the hung worker
        assert hung.entered == 1  # the busy worker was not given more work
        release.set()
        time.sleep(0.05)
        a = rt.step(observations[20])  # the late answer of step 1 is dropped, this step asks afresh
        h = rt.health()
    assert h.fallbacks["timeout"] == 20 and h.corrected_steps == 1
    assert h.details["late_results_dropped"] == 1
    assert rt.last_cause == "corrected" and np.all(np.abs(a) <= 1.0)


@pytest.mark.parametrize("mode", ["check", "preempt"])
@pytest.mark.parametrize("fault", ["nan", "inf", "short"])
def test_non_finite_or_malformed_residual_output_falls_back(base, observations, mode: str, fault: str) -> None:
    with SafeRuntime.for_residual(base, FaultyResidual(fault), mode=mode, budget_us=WIDE) as rt:
        for o in observations[:15]:
            _assert_base_step(rt.step(o), base, o)
        h = rt.health()
    assert h.fallbacks == {"timeout": 0, "nan_output": 15, "nan_obs": 0, "exception": 0}


@pytest.mark.parametrize("mode", ["check", "preempt"])
def test_exception_inside_residual_falls_back(base, observations, mode: str) -> None:
    with SafeRuntime.for_residual(base, FaultyResidual("crash"), mode=mode, budget_us=WIDE) as rt:
        for o in observations[:15]:
            _assert_base_step(rt.step(o), base, o)
        h = rt.health()
    assert h.fallbacks["exception"] == 15 and h.corrected_steps == 0
    assert "RuntimeError" in h.last_error and "blew up" in h.last_error


@pytest.mark.parametrize("column", [0, 4, 9, 15])
def test_nan_observation_skips_the_residual_and_the_base_holds_the_sensor(base, observations, column: int) -> None:
    res = FaultyResidual("ok")
    rt = SafeRuntime.for_residual(base, res)
    good = observations[0]
    rt.step(good)
    calls = res.calls
    bad = good.copy()
    bad[column] = np.nan
    for value in (np.nan, np.inf, -np.inf):
        bad[column] = value
        a = rt.step(bad)
        assert np.all(np.isfinite(a)) and np.all(np.abs(a) <= 1.0)
        # the base read the last finite value of the bad entry (sample-and-hold)
        np.testing.assert_array_equal(a, np.clip(base(good[None])[0], -1.0, 1.0))
    assert res.calls == calls  # the residual was not asked
    assert rt.health().fallbacks["nan_obs"] == 3
    assert rt.last_cause == "nan_obs"


def test_nan_observation_on_the_very_first_step_is_still_a_valid_action(base) -> None:
    rt = SafeRuntime.for_residual(base, FaultyResidual("ok"))
    a = rt.step(np.full(18, np.nan))
    assert np.all(np.isfinite(a)) and np.all(np.abs(a) <= 1.0)
    assert rt.health().fallbacks["nan_obs"] == 1


def test_every_drill_in_one_run_keeps_actions_valid(base, observations) -> None:
    """Faults arriving in any order: never an invalid action, every fallback counted once."""
    rng = np.random.default_rng(5)
    faults = rng.choice(["ok", "nan", "crash", "slow", "nan_obs"], size=60)

    class Scripted(FaultyResidual):
        def __call__(self, obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
            self.fault = self.script.pop(0)
            return super().__call__(obs, a_base)

    res = Scripted("ok", sleep_s=0.1)
    res.script = [f for f in faults if f != "nan_obs"]
    rt = SafeRuntime.for_residual(base, res, budget_us=50_000)  # wide, so a loaded machine cannot blur causes
    for i, f in enumerate(faults):
        o = observations[i].copy()
        if f == "nan_obs":
            o[2] = np.nan
        a = rt.step(o)
        assert np.all(np.isfinite(a)) and np.all(np.abs(a) <= 1.0)
    h = rt.health()
    counts = {c: int((faults == c).sum()) for c in ("ok", "nan", "crash", "slow", "nan_obs")}
    assert h.fallbacks["nan_output"] == counts["nan"]
    assert h.fallbacks["exception"] == counts["crash"]
    assert h.fallbacks["timeout"] >= counts["slow"]  # a loaded machine may add late "ok" steps
    assert h.fallbacks["nan_obs"] == counts["nan_obs"]
    assert h.steps == 60 and h.corrected_steps + h.fallback_total == 60


def test_switch_off_and_on_without_restarting(base, observations) -> None:
    res = FaultyResidual("ok")
    rt = SafeRuntime.for_residual(base, res, budget_us=WIDE)
    a_on = rt.step(observations[0])
    assert rt.last_cause == "corrected" and not np.allclose(a_on, np.clip(base(observations[:1])[0], -1, 1))
    rt.disable()
    calls = res.calls
    for o in observations[1:11]:
        _assert_base_step(rt.step(o), base, o)
        assert rt.last_cause == "disabled"
    assert res.calls == calls
    rt.enable()
    o = observations[11]
    a = rt.step(o)
    assert rt.last_cause == "corrected"
    # back in through the rate limit: the residual term starts from zero, so it moves at most rate_limit
    assert np.all(np.abs(rt.last_delta) <= ARCH.rate_limit + 1e-12)
    a_base = base(o[None])[0]
    np.testing.assert_allclose(a, np.clip(a_base + ARCH.alpha * rt.last_delta, -1, 1))
    h = rt.health()
    assert h.disabled_steps == 10 and h.corrected_steps == 2 and h.fallback_total == 0


def test_switch_from_another_thread(base, observations) -> None:
    rt = SafeRuntime.for_residual(base, FaultyResidual("ok"))
    flipper = threading.Thread(target=rt.disable)
    flipper.start()
    flipper.join()
    _assert_base_step(rt.step(observations[0]), base, observations[0])
    assert not rt.health().enabled


def test_base_fault_raises_by_default_and_can_hold(observations) -> None:
    calls = {"n": 0}

    def flaky_base(obs: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            return np.full((obs.shape[0], 3), np.nan)
        return np.full((obs.shape[0], 3), 0.25)

    rt = SafeRuntime.for_residual(flaky_base, FaultyResidual("ok"))
    rt.step(observations[0])
    with pytest.raises(BaseFault, match="non-finite"):
        rt.step(observations[1])
    calls["n"] = 0
    held = SafeRuntime.for_residual(flaky_base, FaultyResidual("ok"), on_base_fault="hold")
    first = held.step(observations[0])
    second = held.step(observations[1])
    np.testing.assert_array_equal(second, first)
    assert held.health().base_faults == 1 and held.last_cause == "base_fault"


def test_runtime_matches_the_residual_controller_on_a_real_episode(base) -> None:
    """The runtime's numpy path applies the same control law as ResidualController (torch)."""
    from cadenza.residual.policy import ResidualController

    torch.manual_seed(3)
    actor = ResidualActor(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=64, alpha=0.2, rate_limit=0.1))
    with torch.no_grad():
        torch.nn.init.normal_(actor.net[-1].weight, std=0.2)
    task = RescueDogProxy(num_envs=1, level=1.0)
    obs, _ = task.reset(seed=4)
    actor.norm.update(np.tile(obs, (4, 1)) + np.random.default_rng(0).normal(size=(4, 18)))
    ctrl = ResidualController(actor)
    rt = SafeRuntime.for_residual(base, actor, budget_us=1e6)  # a loaded CI machine must not time it out
    assert rt.backend == "numpy"
    for _ in range(150):
        a_ref = ctrl.act(obs, base(obs))
        a = rt.step(obs[0])
        np.testing.assert_allclose(a, a_ref[0], atol=1e-5)
        np.testing.assert_allclose(rt.last_delta, ctrl.last_delta[0], atol=1e-5)
        obs, _, term, trunc, _ = task.step(a_ref)
        if term[0] or trunc[0]:
            ctrl.reset()
            rt.reset()
    h = rt.health()
    assert h.corrected_steps == 150 and h.mean_abs_delta > 0


def test_health_report_counts_and_latency(base, observations) -> None:
    res = FaultyResidual("ok")
    rt = SafeRuntime.for_residual(base, res, budget_us=1e6)
    for o in observations[:40]:
        rt.step(o)
    rt.disable()
    for o in observations[40:50]:
        rt.step(o)
    h = rt.health()
    d = h.as_dict()
    assert d["steps"] == 50 and d["corrected_steps"] == 40 and d["disabled_steps"] == 10
    assert d["fallback_total"] == 0
    assert d["latency_us"]["step"]["count"] == 50 and d["latency_us"]["correction"]["count"] == 40
    st = d["latency_us"]["step"]
    assert 0 < st["p50"] <= st["p99"] <= st["max"]
    # the fixed correction saturates: mean |gate * delta| is the rate-limited term, ramping by 0.5 to 1.0
    assert 0.5 <= h.mean_abs_delta <= 1.0 and h.max_abs_delta == pytest.approx(1.0)
    assert any(label == "fallbacks" for label, _ in h.lines())
    rt.reset_counters()
    assert rt.health().steps == 0


def test_two_dimensional_observation_keeps_its_shape(base, observations) -> None:
    rt = SafeRuntime.for_residual(base, FaultyResidual("ok"))
    assert rt.step(observations[:1]).shape == (1, 3)
    with pytest.raises(ValueError, match="one observation"):
        rt.step(observations[:2])


def test_student_hook_falls_back_to_base(base, observations) -> None:
    mode = {"v": "ok"}

    def student(obs: np.ndarray) -> np.ndarray:
        assert obs.shape == (1, 18)
        if mode["v"] == "nan":
            return np.full((1, 3), np.nan)
        if mode["v"] == "crash":
            raise ValueError("onnx session failed")
        return np.array([[2.0, -0.1, 0.3]])  # out of bounds in the first component: clamped

    rt = SafeRuntime.for_student(base, student, act_dim=3, budget_us=WIDE)
    a = rt.step(observations[0])
    np.testing.assert_array_equal(a, [1.0, -0.1, 0.3])
    for v in ("nan", "crash"):
        mode["v"] = v
        _assert_base_step(rt.step(observations[1]), base, observations[1])
    h = rt.health()
    assert h.kind == "student" and h.fallbacks["nan_output"] == 1 and h.fallbacks["exception"] == 1
    assert h.corrected_steps == 1


def test_bad_settings_are_refused(base) -> None:
    with pytest.raises(ValueError, match="mode"):
        SafeRuntime.for_residual(base, FaultyResidual("ok"), mode="fast")
    with pytest.raises(ValueError, match="budget_us"):
        SafeRuntime.for_residual(base, FaultyResidual("ok"), budget_us=0)
    with pytest.raises(TypeError):
        SafeRuntime.for_residual(base, object())
    full = ResidualActor(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=8, use_base=False))
    with pytest.raises(ValueError, match="full policy"):
        SafeRuntime.for_residual(base, full)


def test_base_only_runtime_is_the_clamped_base(base, observations) -> None:
    rt = SafeRuntime.base_only(base, act_dim=3)
    for o in observations[:5]:
        _assert_base_step(rt.step(o), base, o)
    rt.enable()  # nothing to switch on
    h = rt.health()
    assert h.kind == "base" and not h.enabled and h.steps == 5 and h.disabled_steps == 0
    assert rt.last_cause == "base"


def test_importing_the_runtime_loads_no_torch() -> None:
    """A robot that runs a distilled student through the runtime needs numpy, not torch."""
    import subprocess
    import sys

    code = "import sys, cadenza.runtime; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
