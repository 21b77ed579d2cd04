"""The mission's low-level controller applies the residual only where the skill says it is travelling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cadenza.base.rescue_dog import RescueDogBase
from cadenza.mission import skills
from cadenza.mission.actions import ActionStep
from cadenza.mission.body import ProxyBody
from cadenza.mission.controller import LowLevelController
from cadenza.mission.skills import RESIDUAL_FULL_M, RESIDUAL_OFF_M, execute, residual_weight, walk_lead
from cadenza.mission.world import BodyState, Site
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.policy import ResidualController
from cadenza.tasks.proxy.rescue_dog import NOMINAL, RescueDogProxy


def _pushing_residual() -> ResidualController:
    """A residual whose delta is +1 on every channel whatever it sees (gate fully open)."""
    arch = ResidualArch(obs_dim=18, act_dim=3, hidden_dim=16, gate=True, alpha=0.15, rate_limit=None)
    actor = ResidualActor(arch)
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.copy_(torch.tensor([5.0, 5.0, 5.0, 5.0]))
    return ResidualController(actor, version="test")


class _Recording(LowLevelController):
    """The real controller, recording the residual weight of every tick."""

    def __init__(self) -> None:
        super().__init__("residual", RescueDogBase(), residual=_pushing_residual(), version="test")
        self.weights: list[float] = []

    def act(self, obs: np.ndarray, residual_weight: float = 1.0) -> np.ndarray:
        self.weights.append(residual_weight)
        return super().act(obs, residual_weight)


def test_the_weight_scales_the_residual_correction() -> None:
    env = RescueDogProxy(num_envs=1, level=0.0, autoreset=False)
    obs, _ = env.reset(seed=3)
    obs[0, 2] = 2.0 / 5.0  # a carrot 2 m away
    base = RescueDogBase()
    ctl = LowLevelController("residual", base, residual=_pushing_residual(), version="test")
    a_base = base(obs)
    np.testing.assert_array_equal(ctl.act(obs, 0.0), a_base)  # weight 0: the base alone
    full = ctl.act(obs, 1.0)
    assert np.all(np.isfinite(full)) and np.all(np.abs(full - a_base) <= 0.15 + 1e-9)
    assert np.all(full > a_base) or np.any(a_base >= 1.0)  # the residual pushes
    np.testing.assert_allclose(ctl.act(obs, 0.5), a_base + 0.5 * (full - a_base))


def test_residual_weight_follows_the_training_range_of_carrots() -> None:
    assert NOMINAL.goal_radius == RESIDUAL_OFF_M  # no training episode got closer to its goal
    assert residual_weight(0.1) == residual_weight(RESIDUAL_OFF_M) == 0.0
    assert residual_weight(RESIDUAL_FULL_M) == residual_weight(3.0) == 1.0
    mid = residual_weight((RESIDUAL_OFF_M + RESIDUAL_FULL_M) / 2)
    assert mid == pytest.approx(0.5)


def test_skills_use_the_residual_only_while_travelling() -> None:
    site = Site.generate(4)
    body = ProxyBody(0.0, 4, site.rocks, 0.0)
    state = BodyState(body.x, body.y, body.yaw)
    ctl = _Recording()
    out = execute(ActionStep("walk_forward", {"distance_m": 1.5}), site, state, body, ctl)
    assert out.collision is None and out.ticks == len(ctl.weights)
    walk = ctl.weights
    assert walk[0] == 1.0 and walk[-1] == 0.0  # travels with it, brakes without it
    assert any(0.0 < w < 1.0 for w in walk)  # and fades between
    for step in (ActionStep("turn_left", {"degrees": 45.0}), ActionStep("sit"), ActionStep("stand")):
        ctl.weights = []
        execute(step, site, state, body, ctl)
        assert ctl.weights and set(ctl.weights) == {0.0}, step.name  # on the spot: the base alone


def test_an_overshooting_walk_never_turns_the_body_round(monkeypatch: pytest.MonkeyPatch) -> None:
    site = Site.generate(0)
    rocks = site.rocks.copy()
    rocks[:, :2] += 50.0  # open ground: nothing to dodge
    far = Site(site.debris_x0 + 50, site.debris_x1 + 50, site.step_x + 50, rocks, (60.0, 0.0), 0.0)
    body = ProxyBody(0.0, 0, rocks, 0.0)
    body.env.vel[0] = [1.5, 0.0]  # already running: a 0.3 m walk cannot stop in time
    state = BodyState(body.x, body.y, body.yaw)
    leads: list[float] = []
    real_set = body.set_carrot

    def record(x: float, y: float) -> None:  # the carrot's lead over the body along the heading
        leads.append(x - body.x)
        real_set(x, y)

    monkeypatch.setattr(body, "set_carrot", record)
    out = execute(ActionStep("walk_forward", {"distance_m": 0.3}), far, state, body,
                  LowLevelController("base", RescueDogBase()))
    assert out.collision is None and body.x > 0.3 + skills.WALK_TOL_M  # it did overshoot ...
    assert min(leads) >= skills.WALK_MIN_LEAD_M - 1e-9  # ... but the carrot stayed ahead on the line
    assert abs(math.degrees(body.yaw)) < 5.0  # so the base kept facing the way it was going
    assert walk_lead(0.0, 1.0) == skills.WALK_MIN_LEAD_M and walk_lead(5.0, 0.0) == skills.WALK_MAX_LEAD_M
