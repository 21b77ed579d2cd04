"""PPO for a bounded residual on a frozen base (readable top to bottom, in the spirit of CleanRL).

What differs from textbook PPO, and why:

* the policy is a Gaussian over the *raw residual* ``u`` (delta, plus the gate when it is on); the
  robot receives ``control_law(a_base, delta, gate)``, so the bound ``alpha``, the rate limit and the
  final clamp act inside every rollout exactly as they will on the robot;
* the actor and critic read ``[normalised obs, a_base]``; the base is called as a plain function on
  numpy arrays, so it never sees a gradient and its weights are never written;
* the residual starts near zero (last layer std 0.01) so round 0 rolls out the base itself, and the
  critic is warmed on that first rollout before the first policy step;
* the observation normaliser lives inside the actor and is updated between rounds from the raw
  observations of the last rollout (the buffer stores the features as the policy saw them, so the
  ratio in the update is exact);
* a time-limit truncation either ends the episode's value (``bootstrap_truncation=False``: the task
  counts a timeout as a failure, so the value of "almost there when the time ran out" is 0) or is
  bootstrapped with the value of its final observation (a time limit outside the task);
* collisions cost ``1 + collision_cost`` in what PPO optimises: the task's reward already pays -1
  for one, and the trainer raises ``collision_cost`` (a Lagrange multiplier) while the validation
  card collides more often than the base alone does (docs/governance.md, "Training that aims past
  the gates"), so the residual cannot buy success with collisions;
* optionally (``noise_hold > 1``) each env keeps its exploration noise for several control steps, so
  an exploratory correction lasts long enough to change the outcome of an episode; each step's
  action is still a sample of the current Gaussian, so the likelihood ratio stays per step.

With ``arch.use_base == False`` the same code trains a full policy from scratch (the bench's
"full RL" arm): no base input, ``a = clip(u)``.

With a ``rollout`` pool (:mod:`cadenza.residual.rollout`, ``[scale] rollout_workers`` > 1) the
rollout is collected by shards of the task (in this process or on Ray actors) and this class keeps
the learner: the critic's values, GAE and the update run here on the shards' arrays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cadenza.accel import AccelSettings, Workload, autocast, maybe_compile
from cadenza.residual.control_law import control_law
from cadenza.residual.network import Critic, ResidualActor, ResidualArch, count_params
from cadenza.residual.tally import EpisodeTally, charge_collisions
from cadenza.tasks.interface import Task


@dataclass
class PPOConfig:
    num_envs: int = 64
    n_steps: int = 128  # rollout length per env per round
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    epochs: int = 10
    minibatch_size: int = 2048
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.03
    init_log_std: float = -0.5
    critic_warmup_epochs: int = 10
    noise_hold: int = 1  # keep each env's exploration noise for this many steps (temporally correlated)
    # True: a time-limit truncation is bootstrapped with the value of the final observation (the time
    # limit is outside the task). False: it ends the episode with no future value, because the task
    # counts running out of time as a failure (the episode's outcome is decided within the limit).
    bootstrap_truncation: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def update_workload(arch: ResidualArch, cfg: PPOConfig, budget_steps: int) -> Workload:
    """What the PPO update of a run costs, for the acceleration layer's decisions (``configure(workload=...)``):
    the actor and critic parameters, the minibatch rows, and the most minibatch steps the budget allows."""
    rows = cfg.num_envs * cfg.n_steps  # one round's batch
    minibatch = min(cfg.minibatch_size, rows)
    updates = max(1, budget_steps // rows) * cfg.epochs * -(-rows // minibatch)
    return Workload("ppo_update", params=count_params(ResidualActor(arch).net) + count_params(Critic(arch)),
                    batch=minibatch, expected_calls=updates)


@dataclass
class RoundStats:
    env_steps: int
    episodes: int
    successes: int
    collisions: int
    mean_return: float
    mean_abs_delta: float
    approx_kl: float = 0.0
    clip_frac: float = 0.0
    value_loss: float = 0.0
    policy_loss: float = 0.0
    entropy: float = 0.0
    std: float = 0.0
    epochs_run: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else float("nan")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["success_rate"] = self.success_rate
        return d


def gae_advantages(rews: np.ndarray, dones: np.ndarray, values: np.ndarray, last_v: np.ndarray, gamma: float,
                   lam: float) -> np.ndarray:
    """Generalised advantage estimates over a ``(T, n)`` rollout (``last_v``: values after its last step)."""
    T, n = rews.shape
    adv = np.zeros((T, n), dtype=np.float32)
    gae = np.zeros(n, dtype=np.float32)
    for t in reversed(range(T)):
        next_v = last_v if t == T - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        d = rews[t] + gamma * next_v * nonterminal - values[t]
        gae = d + gamma * lam * nonterminal * gae
        adv[t] = gae
    return adv


class PPO:
    def __init__(self, arch: ResidualArch, cfg: PPOConfig, task: Task,
                 base: Callable[[np.ndarray], np.ndarray] | None, device: str = "cpu", seed: int = 0,
                 accel: AccelSettings | None = None, rollout: Any = None) -> None:
        if arch.use_base and base is None:
            raise ValueError("a residual needs a base policy")
        torch.manual_seed(seed)
        self.arch, self.cfg, self.task, self.base, self.device = arch, cfg, task, base, device
        self.actor = ResidualActor(arch, init_log_std=cfg.init_log_std).to(device)
        self.critic = Critic(arch).to(device)
        # the update calls these; compiled where cadenza.accel decides it pays (they share the weights,
        # so actor / critic and their state dicts stay plain)
        self.accel = accel
        self._actor_net: nn.Module = self.actor.net
        self._critic: nn.Module = self.critic
        if accel is not None:
            rows = min(cfg.minibatch_size, cfg.num_envs * cfg.n_steps)
            calls = int((accel.workload or {}).get("expected_calls", 0))
            x = torch.zeros(rows, arch.input_dim, device=device)
            self._actor_net = maybe_compile(self.actor.net, accel, name="actor", batch=rows, expected_calls=calls,
                                            example_inputs=(x,))
            self._critic = maybe_compile(self.critic, accel, name="critic", batch=rows, expected_calls=calls,
                                         example_inputs=(x,))
        self.opt = torch.optim.Adam([*self.actor.parameters(), *self.critic.parameters()], lr=cfg.lr, eps=1e-5)
        self.rng = torch.Generator(device="cpu").manual_seed(seed)
        n, k = task.num_envs, arch.act_dim
        self.rollout = rollout  # a ShardPool (it is also the task the round loop sets levels on), or None
        self.rollout_timing: dict[str, float] = {}
        if rollout is None:
            self.obs, _ = task.reset(seed=seed)
        self.prev_delta = np.zeros((n, k))
        self.rate_limit = arch.rate_limit if arch.use_base else None
        self.alpha = arch.alpha if arch.use_base else 1.0
        self.rounds_done = 0
        self.collision_cost = 0.0  # extra reward cost of a collision, on top of the task's own (set per round)
        self._noise: torch.Tensor | None = None

    # ------------------------------------------------------------------ acting
    def _base(self, obs: np.ndarray) -> np.ndarray:
        if self.arch.use_base:
            return self.base(obs)  # type: ignore[misc]
        return np.zeros((obs.shape[0], self.arch.act_dim))

    def _features(self, obs: np.ndarray, a_base: np.ndarray) -> torch.Tensor:
        o = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        b = torch.as_tensor(a_base, dtype=torch.float32, device=self.device)
        return self.actor.features(o, b)

    def _to_action(self, u: np.ndarray, a_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.arch.act_dim
        gate = np.clip(u[:, k:], 0.0, 1.0) if self.arch.gate else None
        out = control_law(a_base, u[:, :k], alpha=self.alpha, gate=gate, prev_delta=self.prev_delta,
                          rate_limit=self.rate_limit)
        return out.action, out.delta

    # ------------------------------------------------------------------ one round
    @torch.no_grad()
    def collect(self) -> tuple[dict[str, torch.Tensor], RoundStats, np.ndarray]:
        if self.rollout is not None:
            return self._collect_sharded()
        cfg, T, n = self.cfg, self.cfg.n_steps, self.task.num_envs
        feats, us, logps, vals = [], [], [], []
        rews = np.zeros((T, n), dtype=np.float32)
        dones = np.zeros((T, n), dtype=np.float32)
        raw_obs = np.empty((T, n, self.arch.obs_dim), dtype=np.float32)
        tally = EpisodeTally()
        abs_delta = 0.0
        std = self.actor.log_std.exp()
        for t in range(T):
            a_base = self._base(self.obs)
            x = self._features(self.obs, a_base)
            mean = self.actor.net(x)
            if t % cfg.noise_hold == 0 or self._noise is None or self._noise.shape != mean.shape:
                self._noise = torch.randn(mean.shape, generator=self.rng).to(self.device)
            noise = self._noise
            u = mean + std * noise
            logp = torch.distributions.Normal(mean, std).log_prob(u).sum(-1)
            v = self.critic(x)
            action, delta_eff = self._to_action(u.cpu().numpy().astype(np.float64), a_base)
            abs_delta += float(np.abs(delta_eff).mean())
            raw_obs[t] = self.obs
            obs, r, term, trunc, info = self.task.step(action)
            done = term | trunc
            r = r.astype(np.float32).copy()
            # bootstrap time-limit truncations with the value of the final observation
            if cfg.bootstrap_truncation and trunc.any():
                fo = info["final_obs"][trunc]
                r[trunc] += cfg.gamma * self.critic(self._features(fo, self._base(fo))).cpu().numpy()
            self.prev_delta = np.where(done[:, None], 0.0, delta_eff)  # the rate limit restarts per episode
            charge_collisions(r, done, info, self.collision_cost)
            tally.add(done, info)
            feats.append(x)
            us.append(u)
            logps.append(logp)
            vals.append(v)
            rews[t], dones[t] = r, done
            self.obs = obs
        last_v = self.critic(self._features(self.obs, self._base(self.obs))).cpu().numpy()
        values = torch.stack(vals).cpu().numpy()
        adv = gae_advantages(rews, dones, values, last_v, cfg.gamma, cfg.gae_lambda)
        batch = {
            "x": torch.stack(feats).reshape(T * n, -1),
            "u": torch.stack(us).reshape(T * n, -1),
            "logp": torch.stack(logps).reshape(-1),
            "adv": torch.as_tensor(adv.reshape(-1), device=self.device),
            "ret": torch.as_tensor((adv + values).reshape(-1), device=self.device),
            "val": torch.as_tensor(values.reshape(-1), device=self.device),
        }
        stats = RoundStats(env_steps=T * n, episodes=tally.episodes, successes=tally.successes,
                           collisions=tally.collisions, mean_return=tally.mean_return, mean_abs_delta=abs_delta / T)
        return batch, stats, raw_obs

    @torch.no_grad()
    def _collect_sharded(self) -> tuple[dict[str, torch.Tensor], RoundStats, np.ndarray]:
        """The rollout from the pool's shards (concatenated in shard order); values and GAE here."""
        cfg, T = self.cfg, self.cfg.n_steps
        t0 = time.perf_counter()
        parts = self.rollout.collect({k: v.detach().cpu() for k, v in self.actor.state_dict().items()},
                                     self.collision_cost)
        wall = time.perf_counter() - t0

        def cat(key: str) -> np.ndarray:
            return np.concatenate([p[key] for p in parts], axis=1)

        dev = self.device
        x = torch.as_tensor(cat("x"), device=dev)
        n = x.shape[1]
        rews = cat("rew")
        dones = cat("done")
        values = self.critic(x.reshape(T * n, -1)).reshape(T, n).cpu().numpy()
        offset = 0
        for p in parts:  # bootstrap time-limit truncations with the value of the final observation
            if len(p["trunc_t"]):
                # torch.tensor copies: arrays that come back from Ray are read-only
                v = self.critic(torch.tensor(p["trunc_x"], device=dev)).cpu().numpy()
                rews[p["trunc_t"], offset + p["trunc_i"]] += cfg.gamma * v
            offset += p["x"].shape[1]
        last_v = self.critic(torch.as_tensor(np.concatenate([p["last_x"] for p in parts]), device=dev)).cpu().numpy()
        adv = gae_advantages(rews, dones, values, last_v, cfg.gamma, cfg.gae_lambda)
        batch = {
            "x": x.reshape(T * n, -1),
            "u": torch.as_tensor(cat("u"), device=dev).reshape(T * n, -1),
            "logp": torch.as_tensor(cat("logp"), device=dev).reshape(-1),
            "adv": torch.as_tensor(adv.reshape(-1), device=dev),
            "ret": torch.as_tensor((adv + values).reshape(-1), device=dev),
            "val": torch.as_tensor(values.reshape(-1), device=dev),
        }
        eps = sum(p["episodes"] for p in parts)
        abs_delta = sum(p["abs_delta_sum"] * p["x"].shape[1] for p in parts) / n / T
        stats = RoundStats(env_steps=T * n, episodes=eps, successes=sum(p["successes"] for p in parts),
                           collisions=sum(p["collisions"] for p in parts),
                           mean_return=sum(p["return_sum"] for p in parts) / eps if eps else float("nan"),
                           mean_abs_delta=abs_delta)
        slowest = max(p["compute_s"] for p in parts)
        # what moving the work to other processes costs: the round's wait beyond its slowest shard
        self.rollout_timing = {"rollout_s": wall, "rollout_overhead_s": max(0.0, wall - slowest)}
        return batch, stats, cat("raw_obs")

    def _value_loss(self, x: torch.Tensor, ret: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((self._critic(x).float() - ret) ** 2).mean()

    def update(self, batch: dict[str, torch.Tensor], stats: RoundStats) -> RoundStats:
        cfg = self.cfg
        N = batch["x"].shape[0]
        mb = min(cfg.minibatch_size, N)
        params = [*self.actor.parameters(), *self.critic.parameters()]
        if self.rounds_done == 0 and self.arch.use_base:
            for _ in range(cfg.critic_warmup_epochs):  # warm the critic on the base's own rollout
                for idx in torch.randperm(N, generator=self.rng).split(mb):
                    with autocast(self.accel):
                        loss = cfg.vf_coef * self._value_loss(batch["x"][idx], batch["ret"][idx])
                    self.opt.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    self.opt.step()
        kls, clips, vls, pls, ents = [], [], [], [], []
        epochs_run = 0
        for _ in range(cfg.epochs):
            epochs_run += 1
            epoch_kl = []
            for idx in torch.randperm(N, generator=self.rng).split(mb):
                x, u = batch["x"][idx], batch["u"][idx]
                with autocast(self.accel):  # bf16 matmuls only where cadenza.accel chose it
                    mean = self._actor_net(x).float()
                    dist = torch.distributions.Normal(mean, self.actor.log_std.exp())
                    logp = dist.log_prob(u).sum(-1)
                    log_ratio = logp - batch["logp"][idx]
                    ratio = log_ratio.exp()
                    adv = batch["adv"][idx]
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
                    vl = self._value_loss(x, batch["ret"][idx])
                    ent = dist.entropy().sum(-1).mean()
                    loss = pg + cfg.vf_coef * vl - cfg.ent_coef * ent
                self.opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.opt.step()
                with torch.no_grad():
                    kl = float(((ratio - 1) - log_ratio).mean())
                    epoch_kl.append(kl)
                    kls.append(kl)
                    clips.append(float(((ratio - 1).abs() > cfg.clip).float().mean()))
                    vls.append(float(vl))
                    pls.append(float(pg))
                    ents.append(float(ent))
            if cfg.target_kl is not None and np.mean(epoch_kl) > cfg.target_kl:
                break
        self.rounds_done += 1
        stats.approx_kl = float(np.mean(kls))
        stats.clip_frac = float(np.mean(clips))
        stats.value_loss = float(np.mean(vls))
        stats.policy_loss = float(np.mean(pls))
        stats.entropy = float(np.mean(ents))
        stats.std = float(self.actor.log_std.detach().exp().mean())
        stats.epochs_run = epochs_run
        return stats

    def round(self) -> RoundStats:
        """Collect one rollout, update the policy, then refresh the observation normaliser."""
        batch, stats, raw_obs = self.collect()
        stats = self.update(batch, stats)
        self.actor.norm.update(raw_obs.reshape(-1, self.arch.obs_dim))
        return stats

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "opt": self.opt.state_dict(), "rounds_done": self.rounds_done,
                "rng": self.rng.get_state()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.actor.load_state_dict(sd["actor"])
        self.critic.load_state_dict(sd["critic"])
        self.opt.load_state_dict(sd["opt"])
        self.rounds_done = int(sd["rounds_done"])
        self.rng.set_state(sd["rng"])
