"""Properties of the control law ``a = clamp(a_base + alpha * rate_limit(gate * delta), low, high)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from cadenza.residual.control_law import control_law

K = 3  # action width used by the properties
N = 4  # batch

floats = st.floats(min_value=-50.0, max_value=50.0, allow_nan=False, allow_infinity=False, width=64)
batch = arrays(np.float64, (N, K), elements=floats)
gates = arrays(np.float64, (N, 1), elements=st.floats(-2.0, 3.0, allow_nan=False, width=64))
unit_batch = arrays(np.float64, (N, K), elements=st.floats(-1.0, 1.0, allow_nan=False, width=64))
alphas = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
rate_limits = st.floats(min_value=1e-3, max_value=2.0, allow_nan=False)


@st.composite
def bounds(draw: st.DrawFn) -> tuple[float, float]:
    low = draw(st.floats(-5.0, 4.0, allow_nan=False))
    high = draw(st.floats(low + 1e-3, 5.0, allow_nan=False))
    return low, high


SETTINGS = settings(max_examples=100, deadline=None)


# --------------------------------------------------------------------------------------------- bounds

@SETTINGS
@given(a_base=batch, delta=batch, gate=st.none() | gates, alpha=alphas, lim=bounds(),
       rate=st.none() | rate_limits, prev=st.none() | unit_batch)
def test_action_always_within_bounds(a_base: np.ndarray, delta: np.ndarray, gate: np.ndarray | None,
                                     alpha: float, lim: tuple[float, float], rate: float | None,
                                     prev: np.ndarray | None) -> None:
    low, high = lim
    out = control_law(a_base, delta, alpha=alpha, gate=gate, prev_delta=prev, rate_limit=rate, low=low, high=high)
    assert out.action.shape == (N, K)
    assert np.all(out.action >= low) and np.all(out.action <= high)
    assert np.all(np.abs(out.delta) <= 1.0), "the residual term stays in [-1, 1]"
    # the residual can move the action by at most alpha from the (clamped) base action
    assert np.all(np.abs(out.action - np.clip(a_base, low, high)) <= alpha + 1e-12)


# --------------------------------------------------------------------------------------------- rate limit

@settings(max_examples=60, deadline=None)
@given(deltas=arrays(np.float64, (25, N, K), elements=floats), gate_seq=st.none() | arrays(
    np.float64, (25, N, 1), elements=st.floats(0.0, 1.0, allow_nan=False, width=64)),
    rate=rate_limits, alpha=alphas)
def test_rate_limit_holds_over_a_trajectory(deltas: np.ndarray, gate_seq: np.ndarray | None, rate: float,
                                            alpha: float) -> None:
    prev = np.zeros((N, K))
    a_base = np.zeros((N, K))
    for t in range(deltas.shape[0]):
        g = None if gate_seq is None else gate_seq[t]
        out = control_law(a_base, deltas[t], alpha=alpha, gate=g, prev_delta=prev, rate_limit=rate)
        step = np.abs(out.delta - prev)
        assert np.all(step <= rate * (1 + 1e-12) + 1e-15), f"step {t}: {step.max()} > {rate}"
        # the limit only ever pulls toward the previous value: where the jump is allowed, it is taken exactly
        wanted = np.clip(deltas[t], -1, 1) * (1.0 if g is None else g)
        free = (wanted >= prev - rate) & (wanted <= prev + rate)
        np.testing.assert_array_equal(out.delta[free], wanted[free])
        prev = out.delta


def test_rate_limit_ramps_toward_a_step() -> None:
    prev = np.zeros((1, K))
    seen = []
    for _ in range(5):
        out = control_law(np.zeros((1, K)), np.ones((1, K)), alpha=1.0, prev_delta=prev, rate_limit=0.3)
        prev = out.delta
        seen.append(float(prev[0, 0]))
    assert seen == pytest.approx([0.3, 0.6, 0.9, 1.0, 1.0])


def test_no_rate_limit_without_history() -> None:
    out = control_law(np.zeros((1, K)), np.ones((1, K)), alpha=0.5, prev_delta=None, rate_limit=0.1)
    np.testing.assert_array_equal(out.delta, np.ones((1, K)))


# --------------------------------------------------------------------------------------------- zero residual

@SETTINGS
@given(a_base=batch, gate=st.none() | gates, alpha=alphas, lim=bounds(), rate=st.none() | rate_limits)
def test_zero_delta_gives_the_base_action(a_base: np.ndarray, gate: np.ndarray | None, alpha: float,
                                          lim: tuple[float, float], rate: float | None) -> None:
    low, high = lim
    zero = np.zeros((N, K))
    for prev in (None, zero):
        out = control_law(a_base, zero, alpha=alpha, gate=gate, prev_delta=prev, rate_limit=rate, low=low, high=high)
        np.testing.assert_array_equal(out.action, np.clip(a_base, low, high))
        assert not np.any(out.delta)


@SETTINGS
@given(a_base=unit_batch, delta=batch, alpha=alphas)
def test_closed_gate_gives_the_base_action(a_base: np.ndarray, delta: np.ndarray, alpha: float) -> None:
    out = control_law(a_base, delta, alpha=alpha, gate=np.zeros((N, 1)))
    np.testing.assert_array_equal(out.action, a_base)


# --------------------------------------------------------------------------------------------- gate

@SETTINGS
@given(a_base=batch, delta=batch, alpha=alphas, rate=st.none() | rate_limits, prev=st.none() | unit_batch)
def test_no_gate_equals_an_open_gate(a_base: np.ndarray, delta: np.ndarray, alpha: float, rate: float | None,
                                     prev: np.ndarray | None) -> None:
    no_gate = control_law(a_base, delta, alpha=alpha, gate=None, prev_delta=prev, rate_limit=rate)
    open_gate = control_law(a_base, delta, alpha=alpha, gate=np.ones((N, 1)), prev_delta=prev, rate_limit=rate)
    np.testing.assert_array_equal(no_gate.action, open_gate.action)
    np.testing.assert_array_equal(no_gate.delta, open_gate.delta)


@SETTINGS
@given(delta=batch, gate=gates)
def test_gate_scales_the_residual(delta: np.ndarray, gate: np.ndarray) -> None:
    a_base = np.zeros((N, K))
    out = control_law(a_base, delta, alpha=0.5, gate=gate, low=-10.0, high=10.0)
    expected = np.clip(delta, -1.0, 1.0) * np.clip(gate, 0.0, 1.0)
    np.testing.assert_array_equal(out.delta, expected)
    np.testing.assert_array_equal(out.action, 0.5 * expected)
    assert np.all(np.abs(out.delta) <= np.abs(np.clip(delta, -1.0, 1.0))), "a gate never amplifies"


def test_negative_alpha_is_rejected() -> None:
    with pytest.raises(ValueError, match="alpha"):
        control_law(np.zeros((1, K)), np.zeros((1, K)), alpha=-0.1)


# --------------------------------------------------------------------------------------------- numpy == torch

@SETTINGS
@given(a_base=batch, delta=batch, gate=st.none() | gates, alpha=alphas, lim=bounds(),
       rate=st.none() | rate_limits, prev=st.none() | unit_batch)
def test_numpy_and_torch_agree(a_base: np.ndarray, delta: np.ndarray, gate: np.ndarray | None, alpha: float,
                               lim: tuple[float, float], rate: float | None, prev: np.ndarray | None) -> None:
    low, high = lim
    kw = {"alpha": alpha, "rate_limit": rate, "low": low, "high": high}
    ref = control_law(a_base, delta, gate=gate, prev_delta=prev, **kw)
    t = torch.from_numpy
    got = control_law(t(a_base), t(delta), gate=None if gate is None else t(gate),
                      prev_delta=None if prev is None else t(prev), **kw)
    assert isinstance(got.action, torch.Tensor)
    np.testing.assert_array_equal(got.action.numpy(), ref.action)
    np.testing.assert_array_equal(got.delta.numpy(), ref.delta)
    # a numpy base action with a torch residual (the runtime mixes them) gives the same numbers
    mixed = control_law(a_base, t(delta), gate=None if gate is None else t(gate), prev_delta=prev, **kw)
    np.testing.assert_array_equal(mixed.action.numpy(), ref.action)


# --------------------------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("use_gate", [True, False])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_gradient_step_leaves_the_base_untouched(use_gate: bool, opt_name: str) -> None:
    torch.manual_seed(0)
    obs_dim = 6
    base = nn.Linear(obs_dim, K)
    residual = nn.Linear(obs_dim, K + 1)
    params = list(base.parameters()) + list(residual.parameters())
    opt = torch.optim.SGD(params, lr=0.5) if opt_name == "sgd" else torch.optim.Adam(params, lr=0.05)
    base_before = [p.detach().clone() for p in base.parameters()]
    res_before = [p.detach().clone() for p in residual.parameters()]

    obs = 0.3 * torch.randn(64, obs_dim)
    target = torch.full((64, K), 0.4)
    prev = torch.zeros(64, K)
    for _ in range(3):
        a_base = base(obs)  # deliberately not detached: the control law must cut the graph itself
        u = residual(obs)
        delta = torch.tanh(u[:, :K])
        gate = torch.sigmoid(u[:, K:]) if use_gate else None
        out = control_law(a_base, delta, alpha=0.5, gate=gate, prev_delta=prev, rate_limit=0.5)
        loss = ((out.action - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in base.parameters()), "no gradient may reach the base"
        assert residual.weight.grad is not None and residual.weight.grad.abs().sum() > 0
        opt.step()
        prev = out.delta.detach()

    for before, p in zip(base_before, base.parameters(), strict=True):
        assert torch.equal(before, p), "a base parameter changed"
    changed = [not torch.equal(before, p) for before, p in zip(res_before, residual.parameters(), strict=True)]
    assert all(changed), "every residual parameter should have moved"


def test_gradient_step_with_an_explicitly_trainable_base_tensor() -> None:
    """Even a base action that is itself a leaf requiring grad gets no gradient from the law."""
    a_base = torch.zeros(8, K, requires_grad=True)
    delta = torch.full((8, K), 0.2, requires_grad=True)
    out = control_law(a_base, delta, alpha=0.3)
    out.action.sum().backward()
    assert a_base.grad is None
    assert delta.grad is not None
    assert torch.allclose(delta.grad, torch.full((8, K), 0.3))
