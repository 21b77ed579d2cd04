"""The safe runtime's per-step fast path against the reference implementations it replaces.

* the control law on Python floats (``cadenza.runtime.fast_law``) against
  ``cadenza.residual.control_law.control_law`` on random inputs, clamping edges included;
* the float32 numpy forward (normaliser folded or centred) against the torch actor;
* the runtime's step on float32 / float64 / list observations, its |delta| counters, and the
  fresh action array it returns every step.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cadenza.base.loader import load_base
from cadenza.residual.control_law import control_law
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.runtime import NumpyResidual, SafeRuntime
from cadenza.runtime.fast_law import clamp, law_source, make_law
from cadenza.runtime.safe import combined_health
from tests.conftest import proxy_observations

EDGES = np.array([-np.inf, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, np.inf])


def _inputs(rng: np.random.Generator, k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a_base, u with gate column, prev): wide random values, with exact edge values mixed in."""
    a_base = rng.uniform(-1.4, 1.4, size=(n, k))
    u = rng.uniform(-2.0, 2.0, size=(n, k + 1))
    prev = rng.uniform(-1.0, 1.0, size=(n, k))
    # exact edges: delta at +-1, gate at 0 / 1, a_base on the bounds, prev = 0
    finite_edges = EDGES[np.isfinite(EDGES)]
    mask = rng.random(u.shape) < 0.25
    u[mask] = rng.choice(finite_edges, size=int(mask.sum()))
    a_base[rng.random(a_base.shape) < 0.1] = 1.0
    a_base[rng.random(a_base.shape) < 0.1] = -1.0
    prev[rng.random(prev.shape) < 0.2] = 0.0
    return a_base, u, prev


@pytest.mark.parametrize(("k", "gate", "rate_limit"),
                         list(itertools.product([1, 2, 3, 5], [True, False], [None, 0.0, 0.1, 0.5])))
def test_fast_law_equals_control_law_exactly(k: int, gate: bool, rate_limit: float | None) -> None:
    rng = np.random.default_rng(k * 100 + int(gate) * 10 + (0 if rate_limit is None else int(rate_limit * 10) + 1))
    alpha, low, high = 0.3, -1.0, 1.0
    law = make_law(k, alpha=alpha, gate=gate, rate_limit=rate_limit, low=low, high=high)
    a_base, u, prev = _inputs(rng, k, 400)
    for i in range(len(a_base)):
        raw = u[i] if gate else u[i, :k]
        ref = control_law(a_base[i], raw[:k], alpha=alpha, gate=raw[k:k + 1] if gate else None, prev_delta=prev[i],
                          rate_limit=rate_limit, low=low, high=high)
        action, delta, total, peak = law(a_base[i].tolist(), raw.tolist(), prev[i].tolist())
        assert action == ref.action.tolist()  # bit for bit (float64 throughout)
        assert delta == ref.delta.tolist()
        assert total == pytest.approx(float(np.abs(ref.delta).sum()), abs=1e-15)
        assert peak == float(np.abs(ref.delta).max())


def test_fast_law_with_other_bounds_and_alpha() -> None:
    rng = np.random.default_rng(7)
    law = make_law(3, alpha=0.8, gate=True, rate_limit=0.25, low=-0.4, high=0.6)
    a_base, u, prev = _inputs(rng, 3, 300)
    for i in range(len(a_base)):
        ref = control_law(a_base[i], u[i, :3], alpha=0.8, gate=u[i, 3:], prev_delta=prev[i], rate_limit=0.25,
                          low=-0.4, high=0.6)
        action, delta, _, _ = law(a_base[i].tolist(), u[i].tolist(), prev[i].tolist())
        assert action == ref.action.tolist() and delta == ref.delta.tolist()
        assert all(-0.4 <= a <= 0.6 for a in action)


def test_fast_law_against_float32_head_output() -> None:
    """The runtime's head gives float32; control_law then clips and gates in float32: within 1e-6."""
    rng = np.random.default_rng(3)
    law = make_law(3, alpha=0.15, gate=True, rate_limit=0.5)
    a_base, u, prev = _inputs(rng, 3, 500)
    u32 = u.astype(np.float32)
    for i in range(len(a_base)):
        ref = control_law(a_base[i], u32[i, :3], alpha=0.15, gate=u32[i, 3:], prev_delta=prev[i], rate_limit=0.5)
        action, delta, _, _ = law(a_base[i].tolist(), u32[i].tolist(), prev[i].tolist())
        np.testing.assert_allclose(action, ref.action, rtol=0, atol=1e-6)
        np.testing.assert_allclose(delta, ref.delta, rtol=0, atol=1e-6)


def test_fast_law_over_a_sequence_carries_the_rate_limit() -> None:
    """Fed its own delta back, the fast law follows control_law step after step (the runtime's use)."""
    rng = np.random.default_rng(11)
    law = make_law(3, alpha=0.2, gate=True, rate_limit=0.1)
    prev_ref, prev = np.zeros(3), [0.0] * 3
    for _ in range(300):
        a_base, u = rng.uniform(-1.2, 1.2, 3), rng.uniform(-1.5, 1.5, 4)
        ref = control_law(a_base, u[:3], alpha=0.2, gate=u[3:], prev_delta=prev_ref, rate_limit=0.1)
        action, prev, _, _ = law(a_base.tolist(), u.tolist(), prev)
        prev_ref = ref.delta
        assert action == ref.action.tolist() and prev == ref.delta.tolist()


def test_fast_law_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="alpha"):
        make_law(3, alpha=-0.1, gate=True, rate_limit=0.5)
    with pytest.raises(ValueError, match="rate_limit"):
        make_law(3, alpha=0.1, gate=True, rate_limit=-0.5)
    with pytest.raises(ValueError, match="at least one"):
        law_source(0, gate=True, rate_limit=True)
    assert clamp([-2.0, 0.3, 2.0], -1.0, 1.0) == [-1.0, 0.3, 1.0]


# ---------------------------------------------------------------------------------------------- forward
def _actor(seed: int, mean: np.ndarray, std: np.ndarray, hidden: int = 64, layers: int = 2) -> ResidualActor:
    torch.manual_seed(seed)
    actor = ResidualActor(ResidualArch(obs_dim=len(mean), act_dim=3, hidden_dim=hidden, layers=layers))
    with torch.no_grad():
        torch.nn.init.normal_(actor.net[-1].weight, std=0.3)
        actor.norm.mean.copy_(torch.as_tensor(mean))
        actor.norm.var.copy_(torch.as_tensor(std**2))
    return actor


def _reference(actor: ResidualActor, obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
    import copy

    ref = copy.deepcopy(actor).double().eval()
    with torch.inference_mode():
        return ref(torch.as_tensor(obs.astype(np.float64)), torch.as_tensor(a_base)).numpy()


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_numpy_forward_matches_torch_with_the_normaliser_folded(layers: int) -> None:
    rng = np.random.default_rng(layers)
    mean, std = rng.normal(size=18), rng.uniform(0.2, 2.0, 18)
    actor = _actor(layers, mean, std, layers=layers)
    fwd = NumpyResidual(actor)
    assert fwd.folded
    obs = mean + std * rng.normal(size=(40, 18)) * 4.0  # some entries beyond the +-10 std clamp after * 4
    obs[:5] = mean + 30 * std  # all clamped
    a_base = rng.uniform(-1, 1, (40, 3))
    ref = _reference(actor, obs, a_base)
    for dtype in (np.float64, np.float32):
        ref_d = _reference(actor, obs.astype(dtype), a_base)
        got = np.array([fwd(o, b).copy() for o, b in zip(obs.astype(dtype), a_base, strict=True)])
        np.testing.assert_allclose(got, ref_d, rtol=0, atol=2e-6)
    assert fwd.check_against(actor) < 2e-6
    np.testing.assert_allclose(NumpyResidual(actor, dtype="float64")(obs[7], a_base[7]), ref[7], rtol=0, atol=1e-12)


def test_numpy_forward_centres_a_sensor_far_from_zero() -> None:
    """A nearly constant entry far from zero (|mean| >> std): centred in float64, still exact to float32."""
    rng = np.random.default_rng(5)
    mean, std = rng.normal(size=18), rng.uniform(0.2, 2.0, 18)
    mean[4], std[4] = 250.0, 0.01  # e.g. an altitude sensor: 25,000 standard deviations from zero
    actor = _actor(1, mean, std)
    fwd = NumpyResidual(actor)
    assert not fwd.folded and "centred" in fwd.describe()["normaliser"]
    obs = mean + std * rng.normal(size=(30, 18))
    a_base = rng.uniform(-1, 1, (30, 3))
    got = np.array([fwd(o, b).copy() for o, b in zip(obs, a_base, strict=True)])
    np.testing.assert_allclose(got, _reference(actor, obs, a_base), rtol=0, atol=2e-6)
    fwd.check_against(actor)


def test_numpy_forward_refuses_an_unknown_dtype() -> None:
    actor = _actor(0, np.zeros(18), np.ones(18))
    with pytest.raises(ValueError, match="dtype"):
        NumpyResidual(actor, dtype="float16")


# ---------------------------------------------------------------------------------------------- runtime
@pytest.fixture(scope="module")
def base():
    return load_base("builtin:rescue-dog", act_dim=3)


@pytest.fixture(scope="module")
def episode(base) -> np.ndarray:
    """Real float32 proxy observations from a base-driven rollout."""
    return proxy_observations(base, num_envs=1, steps=120, seed=21)[:, 0]


def _rescue_actor(episode: np.ndarray) -> ResidualActor:
    torch.manual_seed(2)
    actor = ResidualActor(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=64, alpha=0.2, rate_limit=0.2))
    actor.norm.update(episode)
    with torch.no_grad():
        torch.nn.init.normal_(actor.net[-1].weight, std=0.3)
    return actor


def test_step_is_the_control_law_on_the_actor_for_any_observation_type(base, episode) -> None:
    """float32, float64, (1, d) and list observations: the same actions as control_law on the torch actor."""
    actor = _rescue_actor(episode)
    runtimes = {kind: SafeRuntime.for_residual(base, actor, budget_us=1e6) for kind in ("f32", "f64", "2d", "list")}
    prev = np.zeros(3)
    for o in episode:
        a_base = base(o[None].astype(np.float64))[0]
        u = _reference(actor, o[None], a_base[None])[0]
        ref = control_law(a_base, u[:3], alpha=0.2, gate=u[3:], prev_delta=prev, rate_limit=0.2)
        prev = ref.delta
        got = {"f32": runtimes["f32"].step(o), "f64": runtimes["f64"].step(o.astype(np.float64)),
               "2d": runtimes["2d"].step(o[None])[0], "list": runtimes["list"].step(o.tolist())}
        for a in got.values():
            assert a.shape == (3,) and a.dtype == np.float64
            np.testing.assert_allclose(a, ref.action, rtol=0, atol=1e-5)
    for rt in runtimes.values():
        h = rt.health()
        assert h.corrected_steps == len(episode) and h.fallback_total == 0


def test_delta_counters_are_the_mean_and_max_of_the_applied_terms(base, episode) -> None:
    actor = _rescue_actor(episode)
    rt = SafeRuntime.for_residual(base, actor, budget_us=1e6)
    rt2 = SafeRuntime.for_residual(base, actor, budget_us=1e6)
    seen = []
    for i, o in enumerate(episode):
        (rt if i % 3 else rt2).step(o)
        if i % 3:
            seen.append(rt.last_delta)
    h = rt.health()
    assert h.mean_abs_delta == pytest.approx(float(np.abs(seen).mean()), rel=1e-12)
    assert h.max_abs_delta == pytest.approx(float(np.abs(seen).max()), rel=1e-12)
    both = combined_health([rt, rt2])
    n1, n2 = rt.corrected_steps, rt2.corrected_steps
    expect = (h.mean_abs_delta * n1 + rt2.health().mean_abs_delta * n2) / (n1 + n2)
    assert both.mean_abs_delta == pytest.approx(expect, rel=1e-12)
    assert both.max_abs_delta == max(h.max_abs_delta, rt2.health().max_abs_delta)


def test_every_step_returns_a_new_array(base, episode) -> None:
    """A caller may keep or modify the action it got; the runtime's state does not change with it."""
    actor = _rescue_actor(episode)
    rt, twin = (SafeRuntime.for_residual(base, actor, budget_us=1e6) for _ in range(2))
    kept = []
    for o in episode[:30]:
        a = rt.step(o)
        kept.append(a.copy())
        a[:] = 99.0  # the caller scribbles on it
        np.testing.assert_array_equal(twin.step(o), kept[-1])
    assert len({id(a) for a in kept}) == len(kept)
    d = rt.last_delta
    d[:] = 5.0
    assert np.all(np.abs(rt.last_delta) <= 1.0)


def test_nan_observation_after_float32_steps_holds_the_float32_reading(base, episode) -> None:
    actor = _rescue_actor(episode)
    rt = SafeRuntime.for_residual(base, actor, budget_us=1e6)
    rt.step(episode[0])
    bad = episode[1].copy()
    bad[[0, 7]] = [np.nan, np.inf]
    a = rt.step(bad)
    held = episode[1].astype(np.float64)
    held[[0, 7]] = episode[0][[0, 7]]
    np.testing.assert_array_equal(a, np.clip(base(held[None])[0], -1, 1))
    assert rt.last_cause == "nan_obs" and np.all(rt.last_delta == 0.0)


def test_inconsistent_settings_are_refused(base) -> None:
    actor = _actor(0, np.zeros(18), np.ones(18), hidden=8)
    with pytest.raises(ValueError, match="low <= high"):
        SafeRuntime.for_residual(base, actor, low=1.0, high=-1.0)
    with pytest.raises(ValueError, match="act_dim 2 does not match"):
        SafeRuntime(base, correction=NumpyResidual(actor), kind="residual", act_dim=2, arch=actor.arch)
