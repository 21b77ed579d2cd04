"""The mission's low-level controller keeps the residual inside the carrot range it was trained on."""

from __future__ import annotations

import numpy as np
import torch

from cadenza.base.rescue_dog import RescueDogBase
from cadenza.mission.controller import RESIDUAL_MIN_CARROT_M, LowLevelController
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.policy import ResidualController
from cadenza.tasks.proxy.rescue_dog import RescueDogProxy


def _pushing_residual() -> ResidualController:
    """A residual whose delta is +1 on every channel whatever it sees (gate fully open)."""
    arch = ResidualArch(obs_dim=18, act_dim=3, hidden_dim=16, gate=True, alpha=0.15, rate_limit=None)
    actor = ResidualActor(arch)
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.copy_(torch.tensor([5.0, 5.0, 5.0, 5.0]))
    return ResidualController(actor, version="test")


def test_residual_acts_only_at_carrot_distances_seen_in_training() -> None:
    env = RescueDogProxy(num_envs=2, level=0.0, autoreset=False)
    obs, _ = env.reset(seed=3)
    obs[0, 2] = 2.0 / 5.0  # carrot 2 m away: a travel step
    obs[1, 2] = 0.5 * RESIDUAL_MIN_CARROT_M / 5.0  # closer than any training episode got
    base = RescueDogBase()
    ctl = LowLevelController("residual", base, residual=_pushing_residual(), version="test")
    a_base = base(obs)
    a = ctl.act(obs)
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a[1], a_base[1])  # arrival / turn on the spot: the base alone
    assert np.all(a[0] > a_base[0]) or np.any(a_base[0] >= 1.0)  # travel: the residual pushes
    assert np.all(np.abs(a[0] - a_base[0]) <= 0.15 + 1e-9)
