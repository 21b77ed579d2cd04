"""Soft actor-critic for a bounded residual on a frozen base (off-policy; readable top to bottom like ``ppo.py``).

The off-policy counterpart of :mod:`cadenza.residual.ppo`: every transition is kept in a replay
buffer and reused by many updates, which is what a user with an expensive simulator (or a real robot)
needs. It plugs into the same round loop (:func:`cadenza.residual.loop.run_rounds`), validation card,
checkpoints, scorecard and registry, and the policy it trains is the same
:class:`~cadenza.residual.network.ResidualActor` (its mean is the deployed residual), so the control
law, the saved policy file, distillation and the onboard runtime do not know which algorithm ran.

What it does, after the field's residual learners (Policy Decorator, ResFiT, DAWN):

* **the residual starts at zero** (the actor's last layer starts near zero) and acts through the
  control law (``alpha``, gate, rate limit, clamp) inside every rollout, as in PPO;
* **base data first**: the first round (and every round until ``base_steps`` env steps) the actor does
  not move: the envs run its zero residual with exploration noise around the base (``base_noise``; or
  the base alone), the observation normaliser is fitted on those states and then fixed (replayed
  features keep their meaning), and the critic is warmed on those transitions
  (``critic_warmup_updates``) before the actor moves; these samples count in the env steps like any other;
* **held decisions** (``decision_ticks``): an env keeps its sampled ``u`` for that many control ticks (or
  to its episode's end) and stores one transition for them: the discounted reward and collision over
  the ticks, the state after them and the discount ``gamma ** ticks`` to it. A 0.5 s correction
  changes an episode enough for the critic to see it, and the return's horizon is that many times
  shorter; the deployed residual still runs every tick (measured both ways in docs/config.md#sac);
* **every tick learns** (``every_tick``, intra-option learning): a held decision is stored once per tick
  it ran, from that tick's state: the discounted reward and collision from there to the decision's end,
  the same state after it, the discount to it and the share of the hold still to run, which the critics
  take as an input (the actor and the targets ask for a whole decision). The critic sees every state
  the residual acts in, ``decision_ticks`` times more data from the same env steps;
* **progressive exploration**: at each episode start an env switches the residual on with a
  probability that rises linearly from ``explore_start`` to 1 over the first ``explore_steps`` env
  steps; an env with the residual off runs the base alone and its transitions (``u = 0``) are
  replayed like the others;
* **critic**: twin Q networks with LayerNorm (stable at update-to-data ratios of 1 and more), a little
  dropout before each LayerNorm (``critic_dropout``, DroQ's regulariser) and Polyak-averaged targets;
  the target takes the minimum of the two, and so does the actor's objective (``actor_q = "mean"``
  climbs their mean instead);
* **actor**: the Gaussian of ``ResidualActor`` (its mean net and its state-independent ``log_std``),
  reparameterised; the entropy temperature is tuned toward ``target_entropy``. The critic sees the
  raw action clamped to its range (``delta`` to [-1, 1], the gate to [0, 1]); a penalty keeps the
  mean inside it, so the deployed (deterministic) residual is what the critic valued;
* **update-to-data ratio** ``utd``: gradient steps per held decision;
* **collisions** cost ``1 + collision_cost`` (the trainer's Lagrange multiplier, as for PPO); the
  buffer stores the collision flag, so every update charges the current cost to old transitions too;
* a time-limit truncation is bootstrapped (``bootstrap_truncation``), a termination is not.

Each :meth:`SAC.round` steps the vectorised task ``n_steps`` times (``num_envs * n_steps`` env
steps) and returns the round's :class:`~cadenza.residual.ppo.RoundStats`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from cadenza.residual.control_law import control_law
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.ppo import RoundStats
from cadenza.residual.tally import EpisodeTally
from cadenza.tasks.interface import Task


@dataclass
class SACConfig:
    num_envs: int = 16
    n_steps: int = 128  # vector steps per round: a round is num_envs * n_steps env steps
    buffer_size: int = 1_000_000
    batch_size: int = 256
    utd: float = 2.0  # gradient steps per held decision
    gamma: float = 0.99
    tau: float = 0.005  # Polyak factor of the target critics
    actor_lr: float = 1e-4  # below SAC's usual 3e-4: Adam moves the mean as far on a young critic's noise
    critic_lr: float = 3e-4
    hidden_dim: int = 256  # critic width (the actor's comes from the residual architecture)
    init_log_std: float = -1.0  # the residual's initial exploration std, log
    target_entropy: float | None = None  # None: -(action size) (the SAC default)
    # the entropy temperature's start (tuned toward target_entropy from there). Not SAC's usual 1.0: a held
    # decision earns ~0.05 of dense reward, so a temperature near 1 makes the entropy bonus the whole target
    init_temperature: float = 0.001
    base_steps: int = 0  # env steps of the base phase, the actor frozen (0: one round); the critic warms up on them
    # the base phase explores around the zero residual (its noise) instead of running the base alone: a critic
    # warmed on one action everywhere has no slope in u, and the actor's first steps follow whatever it extrapolates
    base_noise: bool = True
    critic_warmup_updates: int = 5000  # critic updates on the base phase's data before the actor moves
    explore_start: float = 0.0  # probability that an episode runs with the residual on, at the start ...
    explore_steps: int = 20_000  # ... rising linearly to 1 over this many env steps
    # what the actor climbs: the "min" of the twin critics (SAC's usual) or their "mean" (less pessimistic); the
    # targets take the minimum either way. Measured on five seeds, neither is better (docs/config.md#sac)
    actor_q: Literal["mean", "min"] = "min"
    bound_penalty: float = 1.0  # weight of the penalty on the actor's mean outside the action's range
    # control ticks each decision is held (1: a new u every tick). A held decision is one transition: its
    # reward is the discounted sum over its ticks and the critic bootstraps gamma ** ticks later, so a
    # correction's effect on the episode is large enough to learn from and the return's horizon is
    # decision_ticks times shorter (the deployed residual still runs every tick; docs/config.md)
    decision_ticks: int = 1
    bootstrap_truncation: bool = True
    # dropout before each LayerNorm of the critics (DroQ's regulariser; 0: none). A 50k run stores only ~2,000
    # held decisions and replays each hundreds of times: 0.01 kept the cards from falling back after their
    # first rise (docs/config.md#sac)
    critic_dropout: float = 0.01
    # store a transition from every tick of a held decision, not only its first (intra-option learning): from tick j
    # the decision still holds u for decision_ticks - j ticks, and the critics take that share of the hold as an
    # input (1: a whole decision, what the actor and the targets ask for). decision_ticks times more data; the
    # governor turns it on for holds of 10 ticks or more (SAC_EVERY_TICK_MIN_HOLD; docs/config.md#sac)
    every_tick: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sac_arch(arch: ResidualArch) -> ResidualArch:
    """The architecture SAC trains: the residual without its gate (``[residual] gate`` is PPO's).

    The gate is one more action component for SAC to explore, starting open at the edge of its range, and a
    sample of it scales the whole correction. With it, copies of ``examples/rescue-dog`` (``--steps 50000``,
    Intel Xeon, 1 thread) deployed seeds 0 and 3 of 0-4; without it, all five (docs/config.md#sac). The
    control law, the policy file, distillation and the runtime take a residual without a gate as they take
    ``--no-gate``."""
    return replace(arch, gate=False)


def sac_workload(arch: ResidualArch, cfg: SACConfig, budget_steps: int) -> Any:
    """What the SAC updates of a run cost, for the acceleration layer (``configure(workload=...)``): the actor
    and both critics, the replay batch; ``utd`` updates per held decision, one decision per
    ``decision_ticks`` env steps, plus the critic's warm-up."""
    from cadenza.accel.decisions import Workload
    from cadenza.residual.network import count_params

    critic = count_params(QNet(arch.input_dim + arch.out_dim, cfg.hidden_dim))
    return Workload("sac_update", params=count_params(ResidualActor(arch).net) + 4 * critic, batch=cfg.batch_size,
                    expected_calls=int(budget_steps * cfg.utd / cfg.decision_ticks) + cfg.critic_warmup_updates)


class QNet(nn.Module):
    """``(features, u) -> Q``: an MLP with LayerNorm after every hidden layer (and dropout before it, DroQ's)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        def drop() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout > 0 else []

        self.net = nn.Sequential(nn.Linear(in_dim, hidden), *drop(), nn.LayerNorm(hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), *drop(), nn.LayerNorm(hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, u], dim=-1)).squeeze(-1)


class Replay:
    """A ring buffer of raw transitions (observations stay raw: features are made with the current normaliser)."""

    def __init__(self, size: int, obs_dim: int, act_dim: int, u_dim: int) -> None:
        self.size, self.n, self.i = size, 0, 0
        self.obs = np.zeros((size, obs_dim), np.float32)
        self.base = np.zeros((size, act_dim), np.float32)
        self.u = np.zeros((size, u_dim), np.float32)
        self.r = np.zeros(size, np.float32)
        self.coll = np.zeros(size, np.float32)
        self.next_obs = np.zeros((size, obs_dim), np.float32)
        self.next_base = np.zeros((size, act_dim), np.float32)
        self.end = np.zeros(size, np.float32)  # 1: no bootstrap (terminated, or truncated without bootstrap)
        self.disc = np.ones(size, np.float32)  # discount to next_obs: gamma ** (ticks the decision was held)
        self.hold = np.ones(size, np.float32)  # share of a whole decision u is still held from obs (1: all of it)

    def add(self, **batch: np.ndarray) -> None:
        m = len(batch["r"])
        idx = (self.i + np.arange(m)) % self.size
        for k, v in batch.items():
            getattr(self, k)[idx] = v
        self.i = (self.i + m) % self.size
        self.n = min(self.n + m, self.size)

    def sample(self, batch: int, gen: torch.Generator, device: str = "cpu") -> dict[str, torch.Tensor]:
        """A uniform batch of ``batch`` transitions (drawn with ``gen``, a CPU generator), as tensors on ``device``."""
        idx = torch.randint(0, self.n, (batch,), generator=gen).numpy()
        return {k: torch.as_tensor(getattr(self, k)[idx], device=device) for k in
                ("obs", "base", "u", "r", "coll", "next_obs", "next_base", "end", "disc", "hold")}


class SAC:
    def __init__(self, arch: ResidualArch, cfg: SACConfig, task: Task,
                 base: Callable[[np.ndarray], np.ndarray] | None, device: str = "cpu", seed: int = 0,
                 accel: Any = None) -> None:
        if not arch.use_base or base is None:
            raise ValueError("the SAC learner trains a residual: it needs a base policy")
        torch.manual_seed(seed)
        self.arch, self.cfg, self.task, self.base, self.device = arch, cfg, task, base, device
        self.actor = ResidualActor(arch, init_log_std=cfg.init_log_std).to(device)
        q_in = arch.input_dim + arch.out_dim + (1 if cfg.every_tick else 0)
        self.q1, self.q2 = (QNet(q_in, cfg.hidden_dim, cfg.critic_dropout).to(device) for _ in range(2))
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        for p in (*self.q1_t.parameters(), *self.q2_t.parameters()):
            p.requires_grad_(False)
        self.log_temp = torch.tensor(float(np.log(cfg.init_temperature)), device=device, requires_grad=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=cfg.critic_lr)
        self.temp_opt = torch.optim.Adam([self.log_temp], lr=cfg.actor_lr)
        self.target_entropy = -float(arch.out_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.rng = torch.Generator(device="cpu").manual_seed(seed)
        self.np_rng = np.random.default_rng(seed)
        n, k = task.num_envs, arch.act_dim
        self.replay = Replay(cfg.buffer_size, arch.obs_dim, k, arch.out_dim)
        self.obs, _ = task.reset(seed=seed)
        self.prev_delta = np.zeros((n, k))
        self.on = np.zeros(n, dtype=bool)  # which envs run the residual this episode
        self.env_steps = 0
        self.rounds_done = 0
        self.updates = 0
        self._owed = 0.0  # gradient steps owed by the update-to-data ratio
        self.collision_cost = 0.0  # extra reward cost of a collision, on top of the task's own (set per round)
        # each env's current decision: held u, its start state, and the discounted reward / collision so far
        self.held = np.zeros((n, arch.out_dim), np.float32)
        self.d_obs = np.zeros((n, arch.obs_dim), np.float32)
        self.d_base = np.zeros((n, k), np.float32)
        self.acc_r, self.acc_coll, self.acc_disc = np.zeros(n), np.zeros(n), np.ones(n)
        self.ticks = np.full(n, -1)  # ticks into the decision; -1: decide at the next tick
        d = max(1, cfg.decision_ticks)  # with every_tick: each tick's state, base action, reward, collision
        self.t_obs, self.t_base = np.zeros((n, d, arch.obs_dim), np.float32), np.zeros((n, d, k), np.float32)
        self.t_r, self.t_coll = np.zeros((n, d)), np.zeros((n, d))
        lo = [-1.0] * k + ([0.0] if arch.gate else [])
        self._lo, self._hi = torch.tensor(lo, device=device), torch.ones(arch.out_dim, device=device)
        self._u_off = np.zeros(arch.out_dim, np.float32)
        if arch.gate:
            self._u_off[k] = 1.0  # gate open, delta 0: the base alone

    # ------------------------------------------------------------------ acting
    def _features(self, obs: np.ndarray | torch.Tensor, a_base: np.ndarray | torch.Tensor) -> torch.Tensor:
        o = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        b = torch.as_tensor(a_base, dtype=torch.float32, device=self.device)
        return self.actor.features(o, b)

    def in_base_phase(self) -> bool:
        """Whether the next round is in the base phase (the actor frozen, no updates, the normaliser still fitted):
        the first round, and every round until ``base_steps`` env steps."""
        return self.rounds_done == 0 or self.env_steps < self.cfg.base_steps

    def _explore_p(self) -> float:
        """The probability that a new episode runs with the residual on (after the base phase)."""
        c = self.cfg
        return min(1.0, c.explore_start + (1.0 - c.explore_start) * self.env_steps / max(1, c.explore_steps))

    def _decide(self, deciding: np.ndarray, a_base: np.ndarray) -> None:
        """New held actions for the envs in ``deciding``: the policy's mean plus exploration noise, or the base
        alone where the residual is off; their decision's start state and return accumulators reset."""
        with torch.no_grad():
            mean = self.actor.net(self._features(self.obs[deciding], a_base[deciding]))
        noise = torch.randn(mean.shape, generator=self.rng).to(self.device)
        std = self.actor.log_std.detach().exp()
        u = (mean + std * noise).clamp(self._lo, self._hi).cpu().numpy()
        self.held[deciding] = np.where(self.on[deciding, None], u, self._u_off)
        self.d_obs[deciding], self.d_base[deciding] = self.obs[deciding], a_base[deciding]
        self.acc_r[deciding], self.acc_coll[deciding], self.acc_disc[deciding] = 0.0, 0.0, 1.0
        self.ticks[deciding] = 0

    def collect(self) -> tuple[RoundStats, np.ndarray]:
        """Step the task ``n_steps`` times. Each env holds its decision ``u`` for ``decision_ticks`` ticks (or to its
        episode's end), then stores one transition: the decision's state, ``u``, the discounted reward and
        collision over its ticks, the state after them and the discount to it; updates run as the
        update-to-data ratio asks, per stored transition."""
        cfg, n, k = self.cfg, self.task.num_envs, self.arch.act_dim
        raw_obs = np.empty((cfg.n_steps, n, self.arch.obs_dim), np.float32)
        tally = EpisodeTally()
        abs_delta = 0.0
        base_phase = self.in_base_phase()
        if base_phase:  # the actor does not move yet: its zero residual plus noise, or the base alone
            self.on[:] = cfg.base_noise
        a_base = self.base(self.obs)
        for t in range(cfg.n_steps):
            deciding = self.ticks < 0
            if deciding.any():
                self._decide(deciding, a_base)
            u = self.held
            gate = u[:, k:] if self.arch.gate else None
            out = control_law(a_base, u[:, :k].astype(np.float64), alpha=self.arch.alpha, gate=gate,
                              prev_delta=self.prev_delta, rate_limit=self.arch.rate_limit)
            abs_delta += float(np.abs(out.delta).mean())
            raw_obs[t] = self.obs
            if cfg.every_tick:  # this tick's place in each env's decision (ticks moves on after the step)
                tick = (np.arange(n), self.ticks.copy())
                self.t_obs[tick], self.t_base[tick] = self.obs, a_base
            obs, r, term, trunc, info = self.task.step(out.action)
            if cfg.every_tick:
                self.t_r[tick], self.t_coll[tick] = r, info["collision"]
            done = term | trunc
            self.acc_r += self.acc_disc * r
            self.acc_coll += self.acc_disc * info["collision"]
            self.acc_disc *= cfg.gamma
            self.ticks += 1
            ends = done | (self.ticks >= cfg.decision_ticks)
            next_base = self.base(obs)
            if ends.any():
                next_obs = obs.copy()
                if done.any() and "final_obs" in info:
                    next_obs[done] = info["final_obs"][done]
                nb = next_base if not done.any() else np.where(done[:, None], self.base(next_obs), next_base)
                end = term | (trunc & (not cfg.bootstrap_truncation))
                if cfg.every_tick:
                    self._store_every_tick(np.flatnonzero(ends), next_obs, nb, end)
                else:
                    self.replay.add(obs=self.d_obs[ends], base=self.d_base[ends], u=self.held[ends],
                                    r=self.acc_r[ends], coll=self.acc_coll[ends], next_obs=next_obs[ends],
                                    next_base=nb[ends], end=end[ends].astype(np.float32), disc=self.acc_disc[ends])
                self.ticks[ends] = -1  # a new decision next tick
            self.prev_delta = np.where(done[:, None], 0.0, out.delta)
            tally.add(done, info)
            if done.any() and not base_phase:  # progressive exploration: a new episode draws its switch
                self.on[done] = self.np_rng.random(int(done.sum())) < self._explore_p()
            self.env_steps += n
            self.obs, a_base = obs, next_base
            if not base_phase:
                self._owed += int(ends.sum()) * cfg.utd
                while self._owed >= 1.0:
                    self.update()
                    self._owed -= 1.0
        stats = RoundStats(env_steps=cfg.n_steps * n, episodes=tally.episodes, successes=tally.successes,
                           collisions=tally.collisions, mean_return=tally.mean_return,
                           mean_abs_delta=abs_delta / cfg.n_steps)
        return stats, raw_obs

    def _store_every_tick(self, envs: np.ndarray, next_obs: np.ndarray, next_base: np.ndarray,
                          end: np.ndarray) -> None:
        """One transition per tick of each ending decision: from tick j, the discounted reward and collision over
        ticks j.. of the decision, the same state after it, the discount ``gamma ** (ticks - j)`` and the share of
        the hold still to run, ``(decision_ticks - j) / decision_ticks``."""
        g, d = self.cfg.gamma, max(1, self.cfg.decision_ticks)
        for e in envs:
            m = int(self.ticks[e])  # ticks the decision ran (its episode may have ended before decision_ticks)
            r, c = np.zeros(m), np.zeros(m)
            acc_r = acc_c = 0.0
            for j in range(m - 1, -1, -1):  # returns from each tick to the decision's end
                acc_r, acc_c = self.t_r[e, j] + g * acc_r, self.t_coll[e, j] + g * acc_c
                r[j], c[j] = acc_r, acc_c
            js = np.arange(m)
            self.replay.add(obs=self.t_obs[e, :m], base=self.t_base[e, :m], u=np.repeat(self.held[e:e + 1], m, 0),
                            r=r, coll=c, next_obs=np.repeat(next_obs[e:e + 1], m, 0),
                            next_base=np.repeat(next_base[e:e + 1], m, 0), end=np.full(m, float(end[e])),
                            disc=g ** (m - js), hold=(d - js) / d)

    def _q_in(self, u: torch.Tensor, hold: torch.Tensor | None = None) -> torch.Tensor:
        """The critics' action input: ``u``, and with ``every_tick`` the share of the hold still to run (default 1)."""
        if not self.cfg.every_tick:
            return u
        h = torch.ones(u.shape[:-1], device=u.device) if hold is None else hold
        return torch.cat([u, h.unsqueeze(-1)], dim=-1)

    # ------------------------------------------------------------------ learning
    def _sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The policy at features ``x``: (mean, a reparameterised sample u, log-probability of u)."""
        mean = self.actor.net(x)
        std = self.actor.log_std.exp()
        u = mean + std * torch.randn(mean.shape, generator=self.rng).to(mean.device)
        return mean, u, torch.distributions.Normal(mean, std).log_prob(u).sum(-1)

    def _critic_update(self, b: dict[str, torch.Tensor]) -> float:
        cfg = self.cfg
        x = self._features(b["obs"], b["base"])
        with torch.no_grad():
            nx = self._features(b["next_obs"], b["next_base"])
            _, nu, logp = self._sample(nx)
            nu = self._q_in(nu.clamp(self._lo, self._hi))
            q_next = torch.minimum(self.q1_t(nx, nu), self.q2_t(nx, nu)) - self.log_temp.exp() * logp
            r = b["r"] - self.collision_cost * b["coll"]
            target = r + b["disc"] * (1.0 - b["end"]) * q_next
        u = self._q_in(b["u"], b["hold"])
        loss = ((self.q1(x, u) - target) ** 2).mean() + ((self.q2(x, u) - target) ** 2).mean()
        self.critic_opt.zero_grad()
        loss.backward()
        self.critic_opt.step()
        with torch.no_grad():
            for q, qt in ((self.q1, self.q1_t), (self.q2, self.q2_t)):
                for p, pt in zip(q.parameters(), qt.parameters(), strict=True):
                    pt.lerp_(p, cfg.tau)
        return float(loss.detach())

    def _actor_update(self, b: dict[str, torch.Tensor]) -> tuple[float, float]:
        x = self._features(b["obs"], b["base"])
        mean, u, logp = self._sample(x)
        uc = self._q_in(u.clamp(self._lo, self._hi))
        q1, q2 = self.q1(x, uc), self.q2(x, uc)
        q = 0.5 * (q1 + q2) if self.cfg.actor_q == "mean" else torch.minimum(q1, q2)
        outside = (mean - mean.clamp(self._lo, self._hi)) ** 2
        loss = (self.log_temp.exp().detach() * logp - q).mean() + self.cfg.bound_penalty * outside.sum(-1).mean()
        self.actor_opt.zero_grad()
        loss.backward()
        self.actor_opt.step()
        temp_loss = -(self.log_temp * (logp.detach() + self.target_entropy)).mean()
        self.temp_opt.zero_grad()
        temp_loss.backward()
        self.temp_opt.step()
        return float(loss.detach()), float(-logp.detach().mean())

    def update(self, actor: bool = True) -> None:
        if self.replay.n < self.cfg.batch_size:  # a resumed run refills its buffer first (it is not checkpointed)
            return
        b = self.replay.sample(self.cfg.batch_size, self.rng, self.device)
        self._last_q_loss = self._critic_update(b)
        if actor:
            self._last_pi_loss, self._last_entropy = self._actor_update(b)
        self.updates += 1

    def round(self) -> RoundStats:
        """Collect one round (updating as the update-to-data ratio asks); in the base phase, fit the normaliser on
        it, and once the phase is over switch the residual on and warm the critic."""
        base_phase = self.in_base_phase()
        stats, raw_obs = self.collect()
        if base_phase:  # the normaliser is fixed once the base's data is in: replayed features keep their meaning
            self.actor.norm.update(raw_obs.reshape(-1, self.arch.obs_dim))
        self.rounds_done += 1
        if base_phase and not self.in_base_phase():  # the base's data is in: the residual may switch on
            self.on = self.np_rng.random(self.task.num_envs) < self._explore_p()
            # warm the critic on the base's own transitions before the actor moves
            for _ in range(self.cfg.critic_warmup_updates):
                self.update(actor=False)
        stats.value_loss = getattr(self, "_last_q_loss", 0.0)
        stats.policy_loss = getattr(self, "_last_pi_loss", 0.0)
        stats.entropy = getattr(self, "_last_entropy", 0.0)
        stats.std = float(self.actor.log_std.detach().exp().mean())
        return stats

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "q1": self.q1.state_dict(), "q2": self.q2.state_dict(),
                "q1_t": self.q1_t.state_dict(), "q2_t": self.q2_t.state_dict(), "log_temp": self.log_temp.detach(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "temp_opt": self.temp_opt.state_dict(), "rounds_done": self.rounds_done,
                "env_steps": self.env_steps, "rng": self.rng.get_state()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.actor.load_state_dict(sd["actor"])
        for name in ("q1", "q2", "q1_t", "q2_t"):
            getattr(self, name).load_state_dict(sd[name])
        with torch.no_grad():
            self.log_temp.copy_(sd["log_temp"])
        self.actor_opt.load_state_dict(sd["actor_opt"])
        self.critic_opt.load_state_dict(sd["critic_opt"])
        self.temp_opt.load_state_dict(sd["temp_opt"])
        self.rounds_done, self.env_steps = int(sd["rounds_done"]), int(sd["env_steps"])
        self.rng.set_state(sd["rng"])
