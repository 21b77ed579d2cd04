"""Sharded rollout collection for PPO: the vectorised task split into shards that step whole segments.

With ``[scale] rollout_workers = N`` (or ``train --rollout-workers N``), N > 1, the ``num_envs``
environments of a training are split into N shards (``np.array_split`` sizes, in order). Each shard
(:class:`RolloutShard`) owns its slice of the task, its own copy of the base policy and of the actor,
and its own exploration-noise generator; per round it receives the actor's weights once, steps
``n_steps`` vector steps with them and returns numpy arrays: the features the policy saw, the raw
residual samples, their log-probabilities, rewards, dones, raw observations, the features of final
observations cut by a time limit, the features of the last observation, and episode counts. The
learner stays in the driver: it runs the critic on the returned features, computes GAE and updates.

Each shard is a process of its own: a spawned process on this machine (``--backend local``, so N
shards also use N local cores) or a Ray actor with one CPU (``--backend ray``). **The same seed and N
give the same numbers on either backend**: shard i is seeded from ``SeedSequence(seed).spawn(N)[i]``,
every shard process starts on one thread (``OMP_NUM_THREADS=1``, one torch thread: MKL and oneDNN
choose their kernels, and so their float rounding, by the thread count they start with), and the
driver concatenates the shards' arrays in shard order. Across different CPUs the bits can differ, as
for any training. N = 1 is the unsharded collection of :class:`cadenza.residual.ppo.PPO` (other
numbers than N > 1: one noise generator for all envs, the driver's threads).

A shard is not checkpointed: a resumed run builds fresh shards (reset envs), as the unsharded
trainer resets its task. On Ray, a shard whose actor dies mid-round stops the command with one line;
every finished round is checkpointed, so the same command resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cadenza.residual.control_law import control_law
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.tally import EpisodeTally, charge_collisions


def shard_seeds(seed: int, shards: int) -> list[int]:
    """One seed per shard, from one ``SeedSequence`` (independent streams, fixed by ``seed`` and N)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(shards)]


def shard_sizes(num_envs: int, shards: int) -> list[int]:
    return [len(a) for a in np.array_split(np.arange(num_envs), shards)]


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard needs to build itself (plain data: it travels to a Ray actor)."""

    project_root: str
    real: bool
    reward: str
    num_envs: int
    seed: int
    arch: ResidualArch
    n_steps: int
    noise_hold: int
    gamma: float
    bootstrap_truncation: bool
    init_log_std: float


def shard_specs(project_root: str, *, real: bool, reward: str, arch: ResidualArch, cfg: Any, seed: int,
                shards: int) -> list[ShardSpec]:
    """The specs of a PPO rollout's ``shards`` (``cfg``: the run's PPOConfig; ``seed``: the learner's)."""
    return [ShardSpec(project_root=project_root, real=real, reward=reward, num_envs=n, seed=s, arch=arch,
                      n_steps=cfg.n_steps, noise_hold=cfg.noise_hold, gamma=cfg.gamma,
                      bootstrap_truncation=cfg.bootstrap_truncation, init_log_std=cfg.init_log_std)
            for n, s in zip(shard_sizes(cfg.num_envs, shards), shard_seeds(seed, shards), strict=True)]


class RolloutShard:
    """One slice of the task stepped with the actor's weights; see the module docstring for the contract."""

    def __init__(self, spec: ShardSpec) -> None:
        from cadenza.base.loader import load_base
        from cadenza.project.config import load_project
        from cadenza.tasks.factory import base_source, make_task

        project = load_project(Path(spec.project_root))
        self.spec, self.arch = spec, spec.arch
        self.task = make_task(project, num_envs=spec.num_envs, real=spec.real, seed=spec.seed,
                              reward=spec.reward)  # type: ignore[arg-type]
        self.base = load_base(base_source(project, spec.real), project.root, spec.arch.act_dim)
        self.actor = ResidualActor(spec.arch, init_log_std=spec.init_log_std)
        self.actor.eval()
        self.rng = torch.Generator(device="cpu").manual_seed(spec.seed)
        self.obs, _ = self.task.reset(seed=spec.seed)
        self.prev_delta = np.zeros((spec.num_envs, spec.arch.act_dim))
        self.noise: torch.Tensor | None = None

    def _features(self, obs: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        a_base = self.base(obs)
        x = self.actor.features(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(a_base, dtype=torch.float32))
        return x, a_base

    @torch.no_grad()
    def collect(self, actor_state: dict[str, torch.Tensor], level: float, collision_cost: float) -> dict[str, Any]:
        """Step ``n_steps`` vector steps with these weights at this curriculum level."""
        t0 = time.perf_counter()
        s, k = self.spec, self.arch.act_dim
        self.actor.load_state_dict(actor_state)
        self.task.set_level(level)
        T, n = s.n_steps, s.num_envs
        xs, us, logps = [], [], []
        rews = np.zeros((T, n), np.float32)
        dones = np.zeros((T, n), np.float32)
        raw_obs = np.empty((T, n, self.arch.obs_dim), np.float32)
        trunc_t: list[np.ndarray] = []
        trunc_i: list[np.ndarray] = []
        trunc_x: list[torch.Tensor] = []
        tally = EpisodeTally()
        abs_delta = 0.0
        std = self.actor.log_std.exp()
        alpha = self.arch.alpha if self.arch.use_base else 1.0
        rate_limit = self.arch.rate_limit if self.arch.use_base else None
        for t in range(T):
            x, a_base = self._features(self.obs)
            mean = self.actor.net(x)
            if t % s.noise_hold == 0 or self.noise is None or self.noise.shape != mean.shape:
                self.noise = torch.randn(mean.shape, generator=self.rng)
            u = mean + std * self.noise
            logp = torch.distributions.Normal(mean, std).log_prob(u).sum(-1)
            un = u.numpy().astype(np.float64)
            gate = np.clip(un[:, k:], 0.0, 1.0) if self.arch.gate else None
            out = control_law(a_base, un[:, :k], alpha=alpha, gate=gate, prev_delta=self.prev_delta,
                              rate_limit=rate_limit)
            abs_delta += float(np.abs(out.delta).mean())
            raw_obs[t] = self.obs
            obs, r, term, trunc, info = self.task.step(out.action)
            done = term | trunc
            r = r.astype(np.float32).copy()
            if s.bootstrap_truncation and trunc.any():
                idx = np.flatnonzero(trunc)
                trunc_t.append(np.full(len(idx), t))
                trunc_i.append(idx)
                trunc_x.append(self._features(info["final_obs"][trunc])[0])
            self.prev_delta = np.where(done[:, None], 0.0, out.delta)
            charge_collisions(r, done, info, collision_cost)
            tally.add(done, info)
            xs.append(x)
            us.append(u)
            logps.append(logp)
            rews[t], dones[t] = r, done
            self.obs = obs
        in_dim = xs[0].shape[-1]
        return {
            "x": torch.stack(xs).numpy(), "u": torch.stack(us).numpy(), "logp": torch.stack(logps).numpy(),
            "rew": rews, "done": dones, "raw_obs": raw_obs,
            "trunc_t": np.concatenate(trunc_t) if trunc_t else np.zeros(0, np.int64),
            "trunc_i": np.concatenate(trunc_i) if trunc_i else np.zeros(0, np.int64),
            "trunc_x": torch.cat(trunc_x).numpy() if trunc_x else np.zeros((0, in_dim), np.float32),
            "last_x": self._features(self.obs)[0].numpy(),
            "episodes": tally.episodes, "successes": tally.successes, "collisions": tally.collisions,
            "return_sum": tally.return_sum,
            "abs_delta_sum": abs_delta, "compute_s": time.perf_counter() - t0,
        }

    def close(self) -> None:
        self.task.close()


class ShardPool:
    """The PPO rollout's N shards (:class:`cadenza.scale.shards.ShardWorkers` hosting :class:`RolloutShard`s)
    behind the round loop's task interface: ``set_level``, ``collect(actor_state, collision_cost)``
    (results in shard order), ``close``, ``num_envs``."""

    def __init__(self, specs: list[ShardSpec], level: float, *, ray: bool = False, address: str | None = None) -> None:
        from cadenza.scale.shards import ShardWorkers

        self.level = level
        self.num_envs = sum(s.num_envs for s in specs)
        self.backend = "ray" if ray else "local"
        self._workers = ShardWorkers(RolloutShard, specs, backend=self.backend, address=address,
                                     label="rollout worker", lost_hint="; every finished round is checkpointed: "
                                                                       "run the same train command again to resume")
        self.cluster = self._workers.cluster

    def set_level(self, level: float) -> None:
        self.level = level

    def collect(self, actor_state: dict[str, torch.Tensor], collision_cost: float) -> list[dict[str, Any]]:
        # on Ray the weights go out once per round, through the object store
        return self._workers.call("collect", actor_state, self.level, collision_cost)

    def close(self) -> None:
        self._workers.close()
