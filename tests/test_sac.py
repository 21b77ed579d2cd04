"""The off-policy residual learner (residual/sac.py) on the real proxy, with tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cadenza.base.rescue_dog import RescueDogBase
from cadenza.governance.governor import Decision, Plan
from cadenza.residual.loop import run_rounds
from cadenza.residual.network import ResidualArch
from cadenza.residual.sac import SAC, SACConfig
from cadenza.tasks.proxy.rescue_dog import ACT_DIM, OBS_DIM, RescueDogProxy

ARCH = ResidualArch(obs_dim=OBS_DIM, act_dim=ACT_DIM, hidden_dim=32)


def _sac(seed: int = 0, **kw: object) -> SAC:
    cfg = SACConfig(**{"num_envs": 4, "n_steps": 32, "batch_size": 32, "hidden_dim": 32, "critic_warmup_updates": 8,
                       "explore_steps": 512, "buffer_size": 4096, **kw})  # type: ignore[arg-type]
    return SAC(ARCH, cfg, RescueDogProxy(num_envs=cfg.num_envs, level=1.0), RescueDogBase(), seed=seed)


def test_the_first_round_is_the_base_alone_and_warms_the_critic() -> None:
    sac = _sac(base_noise=False)
    critic_before = [p.detach().clone() for p in sac.q1.parameters()]
    actor_before = [p.detach().clone() for p in sac.actor.parameters()]
    st = sac.round()
    n = sac.cfg.num_envs * sac.cfg.n_steps
    assert st.env_steps == n and sac.replay.n == n
    u = sac.replay.u[:n]
    assert np.all(u[:, :ACT_DIM] == 0.0) and np.all(u[:, ACT_DIM] == 1.0)  # delta 0, gate open: the base alone
    assert st.mean_abs_delta == 0.0
    assert sac.updates == sac.cfg.critic_warmup_updates  # critic-only updates on the base's transitions
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, sac.q1.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(actor_before, sac.actor.parameters(), strict=True))


def test_base_steps_keep_the_base_alone_longer_and_the_temperature_starts_where_asked() -> None:
    sac = _sac(base_steps=300, init_temperature=0.01, base_noise=False)
    assert float(sac.log_temp.exp()) == pytest.approx(0.01)
    actor_before = [p.detach().clone() for p in sac.actor.parameters()]
    n = sac.cfg.num_envs * sac.cfg.n_steps  # 128 env steps a round: rounds 1-3 run the base alone
    for r in range(3):
        assert sac.in_base_phase()
        sac.round()
        assert sac.updates == (sac.cfg.critic_warmup_updates if r == 2 else 0)  # the warm-up once the data is in
    assert not sac.in_base_phase() and sac.replay.n == 3 * n
    u = sac.replay.u[: 3 * n]
    assert np.all(u[:, :ACT_DIM] == 0.0) and np.all(u[:, ACT_DIM] == 1.0)  # every base-phase step: the base alone
    assert all(torch.equal(a, b) for a, b in zip(actor_before, sac.actor.parameters(), strict=True))
    sac.round()
    assert sac.updates > sac.cfg.critic_warmup_updates  # the actor's updates start after the base phase


def test_a_noisy_base_phase_explores_around_the_zero_residual_and_leaves_the_actor_alone() -> None:
    sac = _sac(base_steps=256, base_noise=True)
    actor_before = [p.detach().clone() for p in sac.actor.parameters()]
    sac.round()
    sac.round()
    n = sac.replay.n
    delta = sac.replay.u[:n, :ACT_DIM]
    assert np.all(np.abs(delta) <= 1.0) and np.abs(delta.mean()) < 0.1 and delta.std() > 0.2  # noise around zero
    assert sac.updates == sac.cfg.critic_warmup_updates  # the critic warmed on them; the actor has not moved
    assert all(torch.equal(a, b) for a, b in zip(actor_before, sac.actor.parameters(), strict=True))
    norm = sac.actor.norm.mean.clone()
    sac.round()
    assert torch.equal(norm, sac.actor.norm.mean)  # the normaliser is fixed after the base phase


def test_a_held_decision_is_one_transition_with_its_discounted_reward() -> None:
    """decision_ticks = 8 without every_tick: each env stores one transition per 8 ticks, whose reward is the
    discounted sum of the ticks' rewards (checked against the same task stepped by hand) and whose discount is
    gamma ** 8."""
    ticks, gamma = 8, 0.99
    sac = SAC(ARCH, SACConfig(num_envs=4, n_steps=32, batch_size=8, hidden_dim=32, critic_warmup_updates=1,
                              buffer_size=512, decision_ticks=ticks, gamma=gamma, base_noise=False),
              RescueDogProxy(num_envs=4, level=1.0, reward="dense"), RescueDogBase(), seed=5)
    sac.round()
    assert sac.replay.n == 4 * (32 // ticks)  # no episode ends within 32 ticks of a dash's start
    assert np.allclose(sac.replay.disc[: sac.replay.n], gamma ** ticks)
    task, base = RescueDogProxy(num_envs=4, level=1.0, reward="dense"), RescueDogBase()
    obs, _ = task.reset(seed=5)
    ret = np.zeros(4)
    for i in range(ticks):
        obs, r, *_ = task.step(base(obs))
        ret += gamma ** i * r
    assert np.allclose(sac.replay.r[:4], ret, atol=1e-6) and np.abs(ret).max() > 0  # the first decision of each env
    assert np.allclose(sac.replay.next_obs[:4], obs, atol=1e-6)  # and the state it led to


def test_progressive_exploration_and_the_update_to_data_ratio() -> None:
    sac = _sac(utd=0.5)
    sac.round()
    p1 = sac._explore_p()
    assert 0.0 < p1 < 1.0  # rises with the env steps done ...
    warm = sac.updates
    sac.round()
    assert sac._explore_p() > p1
    assert sac.updates - warm == sac.cfg.num_envs * sac.cfg.n_steps // 2  # utd 0.5: one update per two steps
    for _ in range(4):
        sac.round()
    assert sac._explore_p() == 1.0  # ... to 1 after explore_steps
    on = sac.replay.u[: sac.replay.n, :ACT_DIM]
    assert np.any(on != 0.0)  # the residual acted once switched on
    assert np.all(np.abs(on) <= 1.0)  # and the critic only ever saw actions inside the range


def test_the_actor_climbs_the_mean_of_the_twin_critics_or_their_minimum() -> None:
    class Const(torch.nn.Module):
        def __init__(self, v: float) -> None:
            super().__init__()
            self.v = v
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
            return self.w + self.v + 0.0 * u.sum(-1)

    losses = {}
    for mode in ("mean", "min"):
        sac = _sac(actor_q=mode)
        sac.round()
        sac.q1, sac.q2 = Const(1.0), Const(3.0)
        b = sac.replay.sample(16, torch.Generator().manual_seed(0))
        sac.rng.manual_seed(7)
        losses[mode], _ = sac._actor_update(b)
    assert losses["mean"] - losses["min"] == pytest.approx(-1.0, abs=1e-5)  # -(1+3)/2 against -min(1, 3)


def test_critic_dropout_is_in_both_critics_and_their_targets_and_draws_fresh_masks() -> None:
    """critic_dropout (DroQ's): a Dropout before each LayerNorm of the twin critics and of their targets, active in
    every update (the same input gives two values), and none at 0."""
    assert not any(isinstance(m, torch.nn.Dropout) for m in _sac(critic_dropout=0.0).q1.modules())
    sac = _sac(critic_dropout=0.2)
    for q in (sac.q1, sac.q2, sac.q1_t, sac.q2_t):
        drops = [m for m in q.modules() if isinstance(m, torch.nn.Dropout)]
        assert len(drops) == 2 and all(m.p == 0.2 and m.training for m in drops)
    x, u = torch.randn(64, ARCH.input_dim), sac._q_in(torch.zeros(64, ARCH.out_dim))
    assert not torch.equal(sac.q1(x, u), sac.q1(x, u))


def test_collisions_cost_what_the_multiplier_says_in_every_update() -> None:
    sac = _sac()
    sac.round()
    b = sac.replay.sample(8, torch.Generator().manual_seed(0))
    b["coll"] = torch.ones(8)
    b["end"] = torch.ones(8)  # no bootstrap: the target is the reward alone
    q0 = sac._critic_update(dict(b))
    sac.collision_cost = 100.0
    q1 = sac._critic_update(dict(b))
    assert q1 > 10 * q0  # the same transitions, now far from the critic's value


def test_checkpoint_round_trip_and_the_shared_round_loop() -> None:
    sac = _sac(seed=3)
    plan = Plan(hyperparameters={"num_envs": 4, "n_steps": 32}, budget_steps=10**6, rounds=3, curriculum=[(0, 1.0)],
                plateau_window=5, plateau_min_gain=0.01, kl_blowup=0.5, validate_every=0)

    class ThreeRounds:
        def review(self, history: list[dict], plan: Plan) -> Decision:
            return Decision("stop", "three rounds") if len(history) == 3 else Decision("continue")

    history: list[dict] = []
    steps, decision = run_rounds(sac, sac.task, plan, ThreeRounds(), history)  # type: ignore[arg-type]
    assert steps == 3 * 128 and decision.reason == "three rounds" and [h["round"] for h in history] == [0, 1, 2]
    again = _sac(seed=99)
    again.load_state_dict(sac.state_dict())
    obs = np.random.default_rng(0).standard_normal((5, OBS_DIM)).astype(np.float32)
    a_base = RescueDogBase()(obs)
    with torch.no_grad():
        x = torch.as_tensor(obs), torch.as_tensor(a_base, dtype=torch.float32)
        assert torch.equal(sac.actor(*x), again.actor(*x))
    assert again.env_steps == sac.env_steps and again.rounds_done == 3


def test_needs_a_base() -> None:
    with pytest.raises(ValueError, match="needs a base"):
        SAC(ARCH, SACConfig(num_envs=2), RescueDogProxy(num_envs=2), None)


@pytest.mark.slow
def test_train_with_algorithm_sac_end_to_end_resumes_and_never_touches_the_base(tmp_path) -> None:
    """`[residual] algorithm = "sac"` through the real `train`: the plan is SAC's, the report says so, an
    interrupted run resumes from its checkpoint, and a torch base gets no gradient."""
    from cadenza.governance.governor import LocalGovernor
    from cadenza.governance.registry import Registry
    from cadenza.project.config import load_project
    from cadenza.residual.train import train_residual
    from tests.conftest import make_project
    from tests.fixtures import torch_base

    root = make_project(tmp_path / "dog", **{
        "base.source": '"tests.fixtures.torch_base:policy"', "residual.algorithm": '"sac"',
        "task.num_envs": "16", "residual.hidden_dim": "32", "governance.eval_episodes": "40",
        "governance.min_episodes": "20", "governance.max_eval_episodes": "120"})
    proj = load_project(root)

    class SmallNets(LocalGovernor):  # the governor's SAC plan, with small networks so the test runs in seconds
        def plan(self, p):  # type: ignore[no-untyped-def]
            plan = super().plan(p)
            plan.hyperparameters.update(batch_size=32, hidden_dim=32, critic_warmup_updates=16, utd=0.25)
            return plan

    gov = SmallNets(validation_episodes=40)
    before = {k: v.clone() for k, v in torch_base.NET.state_dict().items()}
    rounds: list[int] = []

    def stop_after_two(row: dict, plan: object) -> None:
        rounds.append(row["round"])
        if len(rounds) == 2:
            raise KeyboardInterrupt

    assert proj.config.residual.gate  # the project asks for the gate (the default): SAC trains without it
    with pytest.raises(KeyboardInterrupt):
        train_residual(proj, steps=4096, seed=1, governor=gov, on_round=stop_after_two)
    stages: list[str] = []
    res = train_residual(proj, steps=4096, seed=1, governor=gov, on_stage=stages.append)
    assert res.resumed_from == 2 and res.env_steps >= 2048
    assert "sac trains the residual without its gate (residual.gate is PPO's; docs/config.md#sac)" in stages
    report = json.loads(res.report_path.read_text())
    assert report["algorithm"] == "sac" and report["plan"]["algorithm"] == "sac"
    assert report["sac"]["num_envs"] == 16 and report["sac"]["n_steps"] == 64  # the governor's SAC plan
    assert all(row["env_steps"] == 1024 for row in report["history"])
    assert Registry(root).latest("residual") == "v0001"
    from cadenza.residual.policy import load_policy

    actor, _ = load_policy(Registry(root).path("residual", "v0001", "policy.pt"))
    assert not actor.arch.gate and actor.arch.out_dim == actor.arch.act_dim  # the registered policy has no gate
    assert all(torch.equal(before[k], v) for k, v in torch_base.NET.state_dict().items())
    assert all(p.grad is None for p in torch_base.NET.parameters())


def test_auto_measures_the_env_step_and_picks_ppo_on_the_cheap_proxy(tmp_path) -> None:
    """`algorithm = "auto"` on the proxy (an env step costs ~0.03 ms): the trainer measures the step, the governor
    picks PPO, and the report and the stage line say what was asked, what was measured and what ran."""
    from cadenza.governance.governor import SAC_MIN_STEP_S, LocalGovernor
    from cadenza.project.config import load_project
    from cadenza.residual.train import train_residual
    from tests.conftest import make_project

    root = make_project(tmp_path / "dog", **{
        "residual.algorithm": '"auto"', "task.num_envs": "16", "residual.hidden_dim": "32",
        "governance.eval_episodes": "40", "governance.min_episodes": "20", "governance.max_eval_episodes": "80"})
    stages: list[str] = []
    res = train_residual(load_project(root), steps=4096, seed=0, governor=LocalGovernor(validation_episodes=40),
                         on_stage=stages.append)
    report = json.loads(res.report_path.read_text())
    assert report["algorithm_asked"] == "auto" and report["algorithm"] == "ppo" and "ppo" in report
    assert 0.0 < report["env_step_s"] < SAC_MIN_STEP_S
    assert stages[0].startswith("algorithm auto: ppo (an env step takes ")


def test_every_tick_stores_each_tick_of_a_held_decision_with_the_hold_left() -> None:
    """every_tick with decision_ticks = 8: a transition from every tick j of a decision, its reward the discounted
    sum from j to the decision's end (checked against the task stepped by hand), the same state after it, the
    discount gamma ** (8 - j) and the share of the hold left (8 - j) / 8; the critics take that share as an input
    and the actor and the targets ask for a whole decision."""
    ticks, gamma, n = 8, 0.99, 4
    sac = SAC(ARCH, SACConfig(num_envs=n, n_steps=32, batch_size=8, hidden_dim=32, critic_warmup_updates=1,
                              buffer_size=512, decision_ticks=ticks, gamma=gamma, base_noise=False, every_tick=True),
              RescueDogProxy(num_envs=n, level=1.0, reward="dense"), RescueDogBase(), seed=5)
    assert sac.q1.net[0].in_features == ARCH.input_dim + ARCH.out_dim + 1
    sac.round()
    assert sac.replay.n == n * 32  # every tick stored (no episode ends within 32 ticks of a dash's start)
    task, base = RescueDogProxy(num_envs=n, level=1.0, reward="dense"), RescueDogBase()
    obs, _ = task.reset(seed=5)
    seen, rewards = [], []
    for _ in range(ticks):
        seen.append(obs)
        obs, r, *_ = task.step(base(obs))
        rewards.append(r)
    for e in range(n):  # the first decision: env e's eight ticks are rows 8e .. 8e + 7
        for j in range(ticks):
            row = e * ticks + j
            ret = sum(gamma ** (i - j) * rewards[i][e] for i in range(j, ticks))
            assert sac.replay.r[row] == pytest.approx(ret, abs=1e-6)
            assert np.allclose(sac.replay.obs[row], seen[j][e], atol=1e-6)
            assert np.allclose(sac.replay.next_obs[row], obs[e], atol=1e-6)
            assert sac.replay.disc[row] == pytest.approx(gamma ** (ticks - j))
            assert sac.replay.hold[row] == pytest.approx((ticks - j) / ticks)
    u = torch.zeros(3, ARCH.out_dim)
    assert torch.equal(sac._q_in(u)[:, -1], torch.ones(3))  # a whole decision, unless the replay says otherwise


def test_a_checkpoint_of_another_critic_layout_asks_for_fresh_and_is_left_alone(tmp_path) -> None:
    """An interrupted SAC run whose checkpoint was saved with another critic layout (here without every_tick's
    hold input, as an older version saved it): resuming says which file and what to do, and keeps the file."""
    from cadenza.errors import ArtefactError
    from cadenza.governance.governor import LocalGovernor
    from cadenza.project.config import load_project
    from cadenza.residual.train import train_residual
    from tests.conftest import make_project

    root = make_project(tmp_path / "dog", **{"residual.algorithm": '"sac"', "task.num_envs": "16",
                                             "residual.hidden_dim": "32"})
    proj = load_project(root)

    def small(every_tick: bool) -> LocalGovernor:
        class Small(LocalGovernor):
            def plan(self, p):  # type: ignore[no-untyped-def]
                plan = super().plan(p)
                plan.hyperparameters.update(batch_size=32, hidden_dim=32, critic_warmup_updates=16, utd=0.25,
                                            every_tick=every_tick)
                return plan
        return Small(validation_episodes=40)

    def stop_after_one(row: dict, plan: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_residual(proj, steps=4096, seed=1, governor=small(False), on_round=stop_after_one)
    ckpt = root / "residual" / "run" / "checkpoint.pt"
    saved = ckpt.read_bytes()
    with pytest.raises(ArtefactError, match=r"checkpoint\.pt: the interrupted run's checkpoint does not fit .*--fresh"):
        train_residual(proj, steps=4096, seed=1, governor=small(True))
    assert ckpt.read_bytes() == saved
